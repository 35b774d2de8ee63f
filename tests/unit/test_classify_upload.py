"""The pure decisions behind the handler: which key, which error class, which result is newer."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from PIL import Image

from classify_upload import images
from classify_upload.classify import triage_storage_error
from classify_upload.endpoint import (
    MAX_MODEL_VALUE_CHARS,
    Prediction,
    RetryPolicy,
    invoke_endpoint,
    model_identity,
    parse_prediction,
    triage_endpoint_error,
)
from classify_upload.errors import (
    CONFIGURATION_CODES,
    OBJECT_ENCRYPTED_CODES,
    TRANSIENT_CODES,
    ConfigurationFailure,
    PermanentFailure,
    ServiceError,
    TransientFailure,
)
from classify_upload.events import (
    SEQUENCER_WIDTH,
    UploadedObject,
    is_folder_marker,
    is_test_event,
    is_under_prefix,
    pad_sequencer,
    uploaded_objects,
)
from classify_upload.images import downscale_jpeg, fit_request, sniff_content_type
from classify_upload.settings import Settings
from classify_upload.table import (
    MAX_ERROR_MESSAGE,
    STATUS_FAILED,
    STATUS_PREDICTED,
    bounded_message,
    failed_item,
    predicted_item,
)


def client_error(code: str, status: int, **extra: Any) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return ClientError(response, "InvokeEndpoint")


def model_error(original_status: int) -> ClientError:
    return client_error("ModelError", 424, OriginalStatusCode=original_status)


# -- events --------------------------------------------------------------------------------------


def test_keys_are_decoded_per_record_not_only_the_first():
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-25T03:00:00.000Z",
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {"key": key, "size": 1, "eTag": "e", "sequencer": "0A"},
                },
            }
            for key in ["uploads/a+b.jpg", "uploads/my+dog%2Bcaf%C3%A9+%281%29.jpg"]
        ]
    }
    assert [o.key for o in uploaded_objects(event)] == [
        "uploads/a b.jpg",
        "uploads/my dog+café (1).jpg",
    ]


def test_only_object_created_records_count():
    record = {
        "eventName": "ObjectRemoved:Delete",
        "eventTime": "t",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "uploads/x.jpg", "sequencer": "0A"}},
    }
    assert uploaded_objects({"Records": [record]}) == []


def test_test_event_is_recognised():
    assert is_test_event({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})
    assert not is_test_event({"Records": []})
    assert uploaded_objects({"Service": "Amazon S3", "Event": "s3:TestEvent"}) == []


def test_prefix_match_is_a_plain_prefix():
    assert is_under_prefix("uploads/a.jpg", "uploads/")
    assert not is_under_prefix("uploads.jpg", "uploads/")
    assert not is_under_prefix("other/uploads/a.jpg", "uploads/")


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
        ("0055AED6DCD90281E5", "0055AED6DCD90281E501"),  # longer: right-padded, then compared
        ("", "01"),  # a missing sequencer is the oldest
        ("0055aed6dcd90281e5", "0055AED6DCD90281F0"),  # case does not matter
    ],
)
def test_padded_sequencers_order_as_s3_documents(older, newer):
    assert pad_sequencer(older) < pad_sequencer(newer)
    assert len(pad_sequencer(newer)) == SEQUENCER_WIDTH


def test_equal_sequencers_pad_equal():
    assert pad_sequencer("0055AED6DCD90281E5") == pad_sequencer("0055aed6dcd90281e5")


# -- error classification ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected", "error_type"),
    [
        (model_error(400), PermanentFailure, "ModelRejected400"),
        (model_error(413), PermanentFailure, "ModelRejected413"),
        (model_error(415), PermanentFailure, "ModelRejected415"),
        (model_error(500), TransientFailure, "ModelError500"),
        (model_error(503), TransientFailure, "ModelError503"),
        (model_error(429), TransientFailure, "ModelError429"),
        (client_error("ModelNotReadyException", 429), TransientFailure, "ModelNotReadyException"),
        (client_error("ThrottlingException", 400), TransientFailure, "ThrottlingException"),
        (client_error("ServiceUnavailable", 503), TransientFailure, "ServiceUnavailable"),
        (client_error("InternalFailure", 500), TransientFailure, "InternalFailure"),
        (client_error("InternalDependencyException", 530), TransientFailure, None),
        (client_error("AccessDeniedException", 400), ConfigurationFailure, None),
        (client_error("UnrecognizedClientException", 403), ConfigurationFailure, None),
        (client_error("SomethingNew", 418), TransientFailure, None),
    ],
)
def test_endpoint_errors_are_classified_once(error, expected, error_type):
    failure = triage_endpoint_error(error)
    assert type(failure) is expected
    if error_type:
        assert failure.error_type == error_type


def test_validation_errors_split_into_configuration_and_request():
    unknown = ClientError(
        {
            "Error": {"Code": "ValidationError", "Message": "Endpoint x of account 1 not found."},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "InvokeEndpoint",
    )
    too_big = client_error("ValidationError", 400)
    assert isinstance(triage_endpoint_error(unknown), ConfigurationFailure)
    assert isinstance(triage_endpoint_error(too_big), PermanentFailure)


def test_network_errors_are_transient():
    assert isinstance(
        triage_endpoint_error(EndpointConnectionError(endpoint_url="http://x")), TransientFailure
    )
    assert isinstance(
        triage_endpoint_error(ReadTimeoutError(endpoint_url="http://x")), TransientFailure
    )


@pytest.mark.parametrize(
    ("code", "status", "what", "expected"),
    [
        ("NoSuchKey", 404, "object", PermanentFailure),
        ("NoSuchVersion", 404, "object", PermanentFailure),
        ("AccessDenied", 403, "object", ConfigurationFailure),
        ("SlowDown", 503, "object", TransientFailure),
        ("InternalError", 500, "object", TransientFailure),
        ("ProvisionedThroughputExceededException", 400, "table", TransientFailure),
        ("ResourceNotFoundException", 400, "table", ConfigurationFailure),
        ("AccessDeniedException", 400, "table", ConfigurationFailure),
    ],
)
def test_storage_errors_are_classified_once(code, status, what, expected):
    assert type(triage_storage_error(client_error(code, status), what)) is expected


@pytest.mark.parametrize("code", sorted(CONFIGURATION_CODES))
def test_one_configuration_table_for_every_service(code):
    error = client_error(code, 400)
    # S3's own KMS codes on GetObject are about the object's key, not the stack: a FAILED item
    # (tests/unit/test_messages_dropped.py); from every other call they are configuration.
    object_class = PermanentFailure if code in OBJECT_ENCRYPTED_CODES else ConfigurationFailure
    assert type(triage_storage_error(error, "object")) is object_class
    assert type(triage_storage_error(error, "table")) is ConfigurationFailure
    assert type(triage_endpoint_error(error)) is ConfigurationFailure


@pytest.mark.parametrize(
    ("code", "status", "what"),
    [
        # Each was configuration for one caller only: the endpoint's table had the first three,
        # the storage table the last three.
        ("ExpiredTokenException", 400, "object"),
        ("InvalidClientTokenId", 400, "table"),
        ("KMSAccessDeniedException", 400, "object"),
        ("KMS.AccessDeniedException", 400, "endpoint"),
        ("ResourceNotFoundException", 400, "endpoint"),
        ("ValidationException", 400, "endpoint"),
        # 401 was configuration for the endpoint only.
        ("", 401, "table"),
    ],
)
def test_codes_one_caller_missed_are_now_configuration(code, status, what):
    error = client_error(code, status)
    if what == "endpoint":
        failure = triage_endpoint_error(error)
    else:
        failure = triage_storage_error(error, what)
    assert type(failure) is ConfigurationFailure


def test_transient_status_wins_and_unknown_codes_are_left_to_the_caller():
    assert ServiceError("AccessDenied", "m", 503).failure_class() is TransientFailure
    assert ServiceError("AccessDenied", "m", 429).failure_class() is TransientFailure
    assert ServiceError("SomethingNew", "m", 403).failure_class() is ConfigurationFailure
    assert ServiceError("SomethingNew", "m", 400).failure_class() is None
    assert ServiceError("", "m", 401).error_type == "HTTP401"
    assert CONFIGURATION_CODES.isdisjoint(TRANSIENT_CODES)


# -- retries -------------------------------------------------------------------------------------


def test_backoff_is_full_jitter_and_bounded():
    policy = RetryPolicy(max_attempts=6, base_delay_s=0.25, max_delay_s=2.0)
    assert [policy.delay(n, rng=lambda: 1.0) for n in range(1, 6)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert policy.delay(3, rng=lambda: 0.0) == 0.0


class _ScriptedClient:
    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.calls = 0

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return {"Body": io.BytesIO(outcome)}


GOOD = json.dumps(
    {"predictions": [{"breed": "Beagle", "index": 1, "probability": 0.9}], "top_k": 1}
).encode()


def test_retries_stop_at_the_first_success_and_sleep_between():
    client = _ScriptedClient([client_error("ServiceUnavailable", 503)] * 2 + [GOOD])
    sleeps: list[float] = []
    prediction = invoke_endpoint(
        client, "ep", b"x", "image/jpeg", 3, RetryPolicy(max_attempts=4), sleep=sleeps.append
    )
    assert prediction.breed == "Beagle" and prediction.attempts == 3
    assert client.calls == 3 and len(sleeps) == 2


def test_retries_give_up_after_max_attempts_with_a_transient_failure():
    client = _ScriptedClient([client_error("ServiceUnavailable", 503)] * 10)
    with pytest.raises(TransientFailure):
        invoke_endpoint(client, "ep", b"x", "image/jpeg", 3, RetryPolicy(4), sleep=lambda s: None)
    assert client.calls == 4


def test_permanent_and_configuration_failures_are_not_retried():
    for error in (
        model_error(400),
        client_error("AccessDeniedException", 400),
    ):
        client = _ScriptedClient([error, GOOD])
        with pytest.raises((PermanentFailure, ConfigurationFailure)):
            invoke_endpoint(client, "ep", b"x", "image/jpeg", 3, RetryPolicy(4), sleep=print)
        assert client.calls == 1


# -- response parsing ----------------------------------------------------------------------------


def test_prediction_keeps_the_best_first_and_truncates_to_top_k():
    body = json.dumps(
        {
            "predictions": [
                {"breed": "Beagle", "index": 1, "probability": 0.7},
                {"breed": "Boxer", "index": 2, "probability": 0.2},
                {"breed": "Pug", "index": 3, "probability": 0.1},
            ],
            "top_k": 3,
            "model": {"name": "resnet50", "version": "abc", "runtime": "openvino"},
        }
    ).encode()
    prediction = parse_prediction(body, top_k=2)
    assert prediction.breed == "Beagle" and prediction.probability == 0.7
    assert [p["breed"] for p in prediction.top_k] == ["Beagle", "Boxer"]
    assert prediction.model["runtime"] == "openvino"


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"predictions": []}'])
def test_a_malformed_response_is_a_permanent_failure(body):
    with pytest.raises(PermanentFailure, match="BadModelResponse"):
        parse_prediction(body, top_k=3)


# -- images --------------------------------------------------------------------------------------


def _encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format=fmt)
    return out.getvalue()


def test_content_type_is_sniffed_from_the_bytes():
    assert sniff_content_type(_encoded("JPEG")) == "image/jpeg"
    assert sniff_content_type(_encoded("PNG")) == "image/png"
    assert sniff_content_type(_encoded("WEBP")) == "image/webp"
    assert sniff_content_type(b"GIF89a...") == "application/x-image"


def test_small_bodies_are_sent_unchanged():
    body = _encoded("PNG")
    request = fit_request(body)
    assert request.body == body and not request.downscaled


def test_downscaling_loops_until_under_the_limit():
    pixels = np.random.default_rng(1).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    limit = 40_000
    small = downscale_jpeg(out.getvalue(), limit=limit)
    assert len(small) <= limit
    with Image.open(io.BytesIO(small)) as image:
        assert image.format == "JPEG" and image.width < 800
        assert image.width / image.height == pytest.approx(800 / 600, rel=0.02)


def test_an_oversized_non_image_is_a_permanent_failure():
    with pytest.raises(PermanentFailure, match="NotAnImage"):
        fit_request(b"x" * 2000, limit=1000)


def test_settings_come_from_the_environment_with_defaults():
    required = {"TABLE_NAME": "t", "ENDPOINT_NAME": "e", "UPLOAD_BUCKET": "b"}
    settings = Settings.from_env(required)
    assert settings == Settings("t", "e", "b", "uploads/", 3, 25 * 1024 * 1024, 0.5, 6_291_456)
    assert Settings.from_env({**required, "TOP_K": "5"}).top_k == 5
    tuned = Settings.from_env(
        {
            **required,
            "MAX_OBJECT_BYTES": "1000",
            "LOW_CONFIDENCE_THRESHOLD": "0.25",
            "MAX_REQUEST_BYTES": "4000000",
        }
    )
    assert (tuned.max_object_bytes, tuned.low_confidence_threshold) == (1000, 0.25)
    assert tuned.max_request_bytes == 4_000_000


def test_the_upload_bucket_is_required_so_no_bucket_goes_unchecked():
    with pytest.raises(KeyError, match="UPLOAD_BUCKET"):
        Settings.from_env({"TABLE_NAME": "t", "ENDPOINT_NAME": "e"})


def test_an_unexpected_error_keeps_the_event_and_spares_the_other_records():
    from classify_upload.classify import classify_event
    from classify_upload.clients import Clients

    class FakeS3:
        def get_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:
            if Key.endswith("boom.jpg"):
                raise RuntimeError("a bug")
            return {"Body": io.BytesIO(b"")}

    class FakeTable:
        def __init__(self) -> None:
            self.items: list[dict[str, Any]] = []

        def put_item(self, **kwargs: Any) -> None:
            self.items.append(kwargs["Item"])

    def record(key: str) -> dict[str, Any]:
        return {
            "eventName": "ObjectCreated:Put",
            "eventTime": "2026-11-25T03:00:00.000Z",
            "s3": {"bucket": {"name": "b"}, "object": {"key": key, "size": 0, "sequencer": "0A"}},
        }

    table = FakeTable()
    summary = classify_event(
        {"Records": [record("uploads/boom.jpg"), record("uploads/empty.jpg")]},
        Settings("t", "e"),
        Clients(FakeS3(), None, table),
        "request-id",
        RetryPolicy(),
    )
    assert [key for key, _ in summary.retry_later] == ["uploads/boom.jpg"]
    assert [(i["key"], i["status"]) for i in table.items] == [("uploads/empty.jpg", "FAILED")]


def test_console_folder_markers_are_recognised():
    assert is_folder_marker("uploads/", 0)
    assert is_folder_marker("uploads/2026/", 0)
    assert not is_folder_marker("uploads/dog.jpg", 0)  # an empty upload: a FAILED item


def test_big_jpegs_are_decoded_at_a_reduced_scale_and_upright(monkeypatch):
    pixels = np.zeros((1600, 2400, 3), dtype=np.uint8)
    pixels[:200, :200] = (255, 0, 0)  # stored top-left; upright (EXIF 6) it is top-right
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", exif=exif)
    monkeypatch.setattr(images, "DRAFT_MIN_PIXELS", 900_000)

    image = images.open_upright(out.getvalue())

    assert image.size == (800, 1200)  # decoded at 1/2 scale, then rotated
    assert image.width * image.height >= 900_000
    assert image.getpixel((image.width - 10, 10))[0] > 200


# -- the table item --------------------------------------------------------------------------------

COMMON_ATTRIBUTES = {
    "bucket",
    "key",
    "status",
    "etag",
    "version_id",
    "size",
    "sequencer",
    "event_time",
    "endpoint_name",
    "request_id",
    "predicted_at",
    "timings_ms",
}


def _object() -> UploadedObject:
    return UploadedObject(
        "b", "uploads/a.jpg", 10, "etag", "v1", pad_sequencer("0A"), "2026-11-25T03:00:00.000Z", "x"
    )


def test_items_hold_every_attribute_of_the_table_contract():
    prediction = Prediction("Beagle", 0.9, [{"breed": "Beagle", "probability": 0.9}], {"n": "m"})
    predicted = predicted_item(
        _object(), prediction, endpoint_name="ep", request_id="r", timings_ms={"total": 1.0}
    )
    failed = failed_item(
        _object(),
        error_type="EmptyObject",
        error_message="zero bytes",
        endpoint_name="ep",
        request_id="r",
        timings_ms={"total": 1.0},
    )
    assert set(predicted) == COMMON_ATTRIBUTES | {
        "breed",
        "probability",
        "top_k",
        "model",
        "downscaled",
        "attempts",
        "confidence_threshold",
    }
    assert set(failed) == COMMON_ATTRIBUTES | {"error_type", "error_message"}
    assert predicted["status"] == STATUS_PREDICTED and failed["status"] == STATUS_FAILED


def test_error_messages_are_bounded_and_say_so():
    assert bounded_message("short") == "short"
    long = bounded_message("x" * 100_000)
    assert len(long) == MAX_ERROR_MESSAGE
    assert long.endswith("[100000 characters, truncated]")


def test_model_identity_keeps_short_scalars_only():
    identity = model_identity(
        {"model": {"name": "r" * 1000, "epochs": 8, "ok": True, "sizes": [1], "f": 0.5}}
    )
    assert identity == {"name": "r" * MAX_MODEL_VALUE_CHARS, "epochs": 8, "ok": True}
    assert model_identity({"model": "resnet"}) == {}


TOOLKIT_ERROR_BODY = (
    "Unable to decode the image\n"
    "Traceback (most recent call last):\n"
    '  File "/opt/conda/lib/python3.12/site-packages/sagemaker_inference/transformer.py", '
    "line 150, in transform\n"
    "    result = self._run_handler_function(\n"
    "ValueError: cannot identify image file\n"
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (TOOLKIT_ERROR_BODY, "Unable to decode the image"),
        # Only a traceback: its exception line, paths replaced.
        (
            TOOLKIT_ERROR_BODY.split("\n", 1)[1] + "see /opt/ml/model/code/x.py\n",
            "see <path>",
        ),
        (
            '{"error": "the body is not a decodable image"}',
            '{"error": "the body is not a decodable image"}',
        ),
        (
            "read https://docs.aws.amazon.com/sagemaker/x",
            "read https://docs.aws.amazon.com/sagemaker/x",
        ),
        ("", "the model gave no message"),
    ],
    ids=["message-then-traceback", "traceback-only", "json", "url-kept", "empty"],
)
def test_model_messages_lose_tracebacks_and_paths(body, expected):
    from classify_upload.endpoint import model_message

    assert model_message(body) == expected


def test_a_rejected_input_is_stored_with_the_models_message_only():
    from classify_upload.endpoint import model_failure

    failure = model_failure(
        {"OriginalStatusCode": 400, "OriginalMessage": TOOLKIT_ERROR_BODY}, "fallback"
    )
    assert isinstance(failure, PermanentFailure)
    assert failure.message == "Unable to decode the image"


def test_a_reprocess_request_names_one_object_as_the_table_holds_it():
    from classify_upload.events import REPROCESS_EVENT_NAME, reprocess_request

    body = {
        "reprocess": {
            "run_id": "rp-1",
            "bucket": "b",
            "key": "uploads/a b+c.jpg",  # decoded already: no second unquoting
            "version_id": "v1",
            "sequencer": "0A".ljust(64, "0"),
            "etag": "e",
            "size": 12,
            "event_time": "2026-11-25T03:00:00.000Z",
        }
    }
    obj = reprocess_request(body)
    assert obj is not None
    assert (obj.key, obj.version_id, obj.reprocess_id) == ("uploads/a b+c.jpg", "v1", "rp-1")
    assert obj.sequencer == body["reprocess"]["sequencer"]
    assert obj.event_name == REPROCESS_EVENT_NAME
    assert reprocess_request({"Records": []}) is None
    with pytest.raises(ValueError, match="malformed reprocess request"):
        reprocess_request({"reprocess": {"bucket": "b"}})


@pytest.mark.parametrize(("probability", "low"), [(0.49, True), (0.5, False), (0.9, False)])
def test_predictions_below_the_threshold_are_marked_low(probability, low):
    from classify_upload.endpoint import Prediction
    from classify_upload.events import UploadedObject
    from classify_upload.table import predicted_item

    obj = UploadedObject("b", "uploads/x.jpg", 1, "e", None, "0" * 64, "", "ObjectCreated:Put")
    prediction = Prediction(
        "Beagle", probability, [{"breed": "Beagle", "probability": probability}]
    )
    item = predicted_item(
        obj,
        prediction,
        endpoint_name="ep",
        request_id="r",
        timings_ms={},
        low_confidence_threshold=0.5,
    )
    assert ("confidence" in item) is low
    assert item.get("confidence", "LOW") == "LOW"
