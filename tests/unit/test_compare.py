"""``training.launch.compare``'s pure core: the numbers of one source, the table, the gate."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import pytest

from training.launch import compare
from training.launch.aws import Aws, LaunchError
from training.launch.compare import Change, Comparison, ModelInfo, ModelScores, Sample


def samples(*labels: str | None) -> list[Sample]:
    return [Sample(f"img{i}", Path(f"/data/img{i}.jpg"), label) for i, label in enumerate(labels)]


def scores(source: str, breeds: list[str | None], classes=("Akita", "Beagle", "Pug")):
    """A model's answers for img0, img1, ...; None: the endpoint refused that image."""
    result = ModelScores(source=source, classes=list(classes))
    result.identity = {"name": "dog-breeds-resnet50", "version": source[:12], "runtime": "pytorch"}
    for i, breed in enumerate(breeds):
        if breed is None:
            result.refused[f"img{i}"] = "400: not an image"
        else:
            result.breeds[f"img{i}"] = breed
    return result


def comparison(*results: compare.SourceResult, notes=()) -> Comparison:
    live = ModelInfo("s3://b/live.tar.gz", "dog-breeds-resnet50", "111111111111", "openvino", 3)
    candidate = ModelInfo("s3://b/cand.tar.gz", "dog-breeds-resnet50", "222222222222", "pytorch", 3)
    return Comparison(candidate, live, list(results), list(notes))


def test_a_labelled_source_gets_each_model_s_accuracy_agreement_and_changes():
    data = samples("Akita", "Akita", "Beagle", "Pug", "Pug")
    live = scores("live", ["Akita", "Akita", "Beagle", "Beagle", "Pug"])
    candidate = scores("cand", ["Akita", "Beagle", "Pug", "Pug", "Pug"])

    result = compare.summarize("test split", "data/", data, live, candidate)

    assert (result.n, result.skipped) == (5, 0)
    assert result.live_accuracy == 4 / 5
    assert result.candidate_accuracy == 3 / 5
    assert result.agreement == 2 / 5
    assert result.changed == 3
    assert result.changes == [Change("Beagle", "Pug", 2), Change("Akita", "Beagle", 1)]
    assert (result.fixed, result.broken) == (1, 2)


def test_an_image_either_model_refused_is_skipped_for_both():
    data = samples("Akita", "Beagle", "Pug")
    live = scores("live", ["Akita", None, "Pug"])
    candidate = scores("cand", ["Akita", None, "Akita"])

    result = compare.summarize("test split", "data/", data, live, candidate, {"img2": "gone"})

    assert result.n == 1 and result.skipped == 2
    assert result.skipped_items == {"img2": "gone", "img1": "400: not an image"}
    assert result.live_accuracy == result.candidate_accuracy == result.agreement == 1.0


def test_an_unlabelled_source_has_agreement_but_no_accuracy():
    data = samples(None, None, None, None)
    live = scores("live", ["Akita", "Pug", "Pug", "Pug"])
    candidate = scores("cand", ["Akita", "Beagle", "Beagle", "Pug"])

    result = compare.summarize("table sample", "table t", data, live, candidate)

    assert result.live_accuracy is None and result.candidate_accuracy is None
    assert result.fixed is None and result.broken is None
    assert (result.agreement, result.changed) == (0.5, 2)
    assert result.changes == [Change("Pug", "Beagle", 2)]


def test_a_source_with_nothing_scored_has_no_numbers_to_divide():
    result = compare.summarize("table sample", "t", [], scores("live", []), scores("cand", []))
    assert (result.n, result.agreement, result.live_accuracy) == (0, None, None)


def test_the_accuracy_drop_is_in_points_and_read_from_the_labelled_source():
    table = compare.summarize(
        "table sample", "t", samples(None), scores("l", ["Pug"]), scores("c", ["Akita"])
    )
    split = compare.summarize(
        "test split",
        "d",
        samples("Pug", "Pug", "Pug", "Pug"),
        scores("l", ["Pug", "Pug", "Pug", "Akita"]),
        scores("c", ["Pug", "Pug", "Akita", "Akita"]),
    )
    assert comparison(table, split).accuracy_drop_points() == 25.0
    assert comparison(table).accuracy_drop_points() is None


@pytest.mark.parametrize(
    ("live", "candidate", "max_drop", "refused"),
    [
        (["Pug"] * 4, ["Pug"] * 4, 1.0, False),
        (["Pug"] * 4, ["Pug", "Pug", "Pug", "Akita"], 25.0, False),  # exactly the maximum
        (["Pug"] * 4, ["Pug", "Pug", "Pug", "Akita"], 24.9, True),
        (["Pug", "Pug", "Pug", "Akita"], ["Pug"] * 4, -30.0, True),  # must gain 30 points
    ],
)
def test_the_gate_refuses_a_drop_beyond_its_maximum(live, candidate, max_drop, refused):
    split = compare.summarize(
        "test split", "d", samples(*["Pug"] * 4), scores("l", live), scores("c", candidate)
    )
    why = compare.refusal(comparison(split), max_drop)
    assert (why is not None) == refused
    if refused:
        assert why.startswith("the candidate's test accuracy is ")
        assert why.endswith(f"points below the live model's (max {max_drop:g})")


def test_without_labels_the_gate_has_nothing_to_refuse():
    table = compare.summarize(
        "table sample", "t", samples(None), scores("l", ["Pug"]), scores("c", ["Akita"])
    )
    assert compare.refusal(comparison(table), 0.0) is None


def test_the_table_has_one_aligned_row_a_source_and_the_top_changes():
    split = compare.summarize(
        "test split",
        "d",
        samples("Pug", "Pug", "Akita", "Akita"),
        scores("l", ["Pug", "Pug", "Akita", "Akita"]),
        scores("c", ["Beagle", "Beagle", "Akita", "Pug"]),
    )
    table = compare.summarize(
        "table sample", "t", samples(None, None), scores("l", ["Pug", None]), scores("c", ["Pug"])
    )
    text = compare.format_table(comparison(split, table, notes=["a note"]))
    lines = text.splitlines()
    assert lines[0].startswith("candidate  dog-breeds-resnet50 222222222222 (pytorch, 3 classes)")
    assert lines[1].startswith("live       dog-breeds-resnet50 111111111111 (openvino, 3 classes)")
    assert lines[3:6] == [
        "source        n  skipped  live acc  cand acc   agree  changed",
        "test split    4        0    100.0%     25.0%   25.0%        3",
        "table sample  1        1         -         -  100.0%        0",
    ]
    assert (
        "top changes, test split (live → candidate):\n  Pug → Beagle: 2\n  Akita → Pug: 1" in text
    )
    assert "test accuracy: the candidate loses 75.0 points" in text
    assert lines[-1] == "note: a note"


def test_the_json_holds_every_number_for_scripts():
    split = compare.summarize(
        "test split", "d", samples("Pug"), scores("l", ["Pug"]), scores("c", ["Akita"])
    )
    data = comparison(split).to_json()
    assert data["accuracy_drop_points"] == 100.0
    assert data["live"]["version"] == "111111111111"
    (source,) = data["sources"]
    assert source["changes"] == [{"old": "Pug", "new": "Akita", "count": 1}]
    assert {"n", "skipped", "live_accuracy", "candidate_accuracy", "agreement", "changed"} <= set(
        source
    )


def test_class_lists_that_differ_are_named():
    live = scores("l", [], classes=("Akita", "Pug"))
    assert compare.classes_note(live, scores("c", [], classes=("Akita", "Pug"))) is None
    note = compare.classes_note(live, scores("c", [], classes=("Akita", "Basenji", "Pug")))
    assert note == (
        "the models' class lists differ (live 2 classes, candidate 3; only candidate: Basenji): "
        "breeds are compared by name"
    )
    reordered = compare.classes_note(live, scores("c", [], classes=("Pug", "Akita")))
    assert "same names, another order" in reordered


def test_the_newest_predicted_items_are_taken_by_predicted_at():
    items = [{"key": k, "predicted_at": t} for k, t in [("a", "2024-05-01T10:00:00.000Z"),
             ("b", "2024-05-01T12:00:00.000Z"), ("c", "2024-04-30T23:59:59.999Z"),
             ("d", "2024-05-01T11:00:00.000Z")]]  # fmt: skip
    assert [i["key"] for i in compare.newest(iter(items), 3)] == ["b", "d", "a"]
    assert [i["key"] for i in compare.newest(items, 10)] == ["b", "d", "a", "c"]


def test_the_table_is_read_with_one_filtered_scan_of_the_fields_a_sample_needs():
    request = compare.table_scan_request("predictions")
    assert request["TableName"] == "predictions"
    assert request["FilterExpression"] == "#status = :predicted"
    assert request["ExpressionAttributeValues"] == {":predicted": {"S": "PREDICTED"}}
    fields = {
        request["ExpressionAttributeNames"][n] for n in request["ProjectionExpression"].split(", ")
    }
    assert fields == {"bucket", "key", "version_id", "status", "predicted_at", "breed"}


def gate_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    compare.add_gate_arguments(parser)
    return parser.parse_args(argv)


def test_the_gate_flags_and_their_defaults():
    args = gate_args()
    assert args.max_accuracy_drop == 1.0 and args.force is False
    assert args.compare_data is None and args.compare_table is None
    assert args.compare_sample == 50
    args = gate_args("--max-accuracy-drop", "2.5", "--force", "--compare-data", "s3://b/d",
                     "--compare-table", "t", "--compare-sample", "7")  # fmt: skip
    assert (args.max_accuracy_drop, args.force, args.compare_data) == (2.5, True, "s3://b/d")
    assert (args.compare_table, args.compare_sample) == ("t", 7)


# These cases return or refuse before any AWS call: no session at all, so a call would fail loudly.
NO_AWS = cast(Aws, None)


def test_the_gate_skips_with_one_line_when_there_is_nothing_to_compare(capsys):
    assert compare.gate(gate_args(), NO_AWS, "s3://b/new.tar.gz", None) is None
    assert capsys.readouterr().out == "compare: skipped: no live model to compare with\n"
    assert compare.gate(gate_args(), NO_AWS, "s3://b/new.tar.gz", "s3://b/old") is None
    assert capsys.readouterr().out == (
        "compare: skipped: no --compare-data or --compare-table to score the models on\n"
    )
    with pytest.raises(LaunchError, match="--compare-sample 0: use 1 or more"):
        compare.gate(gate_args("--compare-table", "t", "--compare-sample", "0"), NO_AWS, "a", "b")
