"""The endpoint as the real serving container runs it: the SageMaker PyTorch inference toolkit's
HandlerService calling endpoint_inference.py (local.endpoint.container.ToolkitContainer)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bad_images
import pytest

from dog_breeds.artifact import serving_code
from dog_breeds.serving import inference as ei
from local.endpoint.container import ToolkitContainer, WorkerFailed, WorkerPool


@pytest.fixture(scope="module")
def container(trained_artifact):
    with ToolkitContainer(trained_artifact) as served:
        yield served


@pytest.fixture(scope="module")
def test_images(tiny_dataset):
    return sorted((tiny_dataset / "test").glob("*/*.jpg"))


def test_container_is_healthy_once_the_model_is_loaded(container):
    assert container.ping() is True


def test_toolkit_answers_what_the_handlers_answer(container, trained_artifact, test_images):
    served = ei.model_fn(str(trained_artifact))
    for path in test_images:
        response = container.invoke(path.read_bytes(), "image/jpeg")
        assert response.status == 200 and response.content_type == "application/json"
        direct = ei.predict_fn(ei.input_fn(path.read_bytes(), "image/jpeg"), served)
        result = json.loads(response.body)
        assert result["predictions"][0]["index"] == direct["predictions"][0]["index"]


def test_top_k_travels_in_the_custom_attributes_header(container, test_images):
    response = container.invoke(
        test_images[0].read_bytes(), "image/jpeg", custom_attributes="top_k=2"
    )
    assert response.status == 200
    assert len(json.loads(response.body)["predictions"]) == 2


def test_json_request_through_the_toolkit(container, test_images):
    body = json.dumps({"image": base64.b64encode(test_images[0].read_bytes()).decode(), "top_k": 1})
    response = container.invoke(body.encode(), "application/json")
    assert response.status == 200 and json.loads(response.body)["top_k"] == 1


@pytest.mark.parametrize("case", bad_images.bad_requests(), ids=lambda c: c.name)
def test_bad_input_comes_back_4xx_not_500(container, case):
    response = container.invoke(case.body, case.content_type)
    assert response.status == case.status
    assert case.reason in response.body.decode()


def test_the_worker_survives_bad_input(container, test_images):
    for case in bad_images.bad_requests()[:4]:
        container.invoke(case.body, case.content_type)
    assert container.invoke(test_images[0].read_bytes(), "image/jpeg").status == 200


def test_packaged_model_carries_self_contained_serving_code(trained_artifact, tmp_path):
    """model.tar.gz's code/ imports on its own, as in the container (no training/ on the path)."""
    tar_path = serving_code.package_model(trained_artifact, tmp_path / "model.tar.gz")
    with tarfile.open(tar_path) as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path / "model", filter="data")
    assert {"model.pth", "classes.json", "config.json", "code/endpoint_inference.py",
            "code/dog_breeds/__init__.py", "code/dog_breeds/serving/image_decode.py",
            "code/requirements.txt"} <= names  # fmt: skip
    assert not {"code/train.py", "code/dog_breeds/data/synthetic.py",
                "code/dog_breeds/training/trainer.py"} & names  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "model" / "code")}
    probe = "import endpoint_inference, sys; print(endpoint_inference.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(tmp_path / "model" / "code"))


@pytest.mark.parametrize("name", sorted(bad_images.odd_but_valid_images()))
def test_odd_but_valid_images_are_classified_through_the_toolkit(container, name):
    body, content_type = bad_images.odd_but_valid_images()[name]
    response = container.invoke(body, content_type, custom_attributes="top_k=2")
    assert response.status == 200, response.body[:300]
    result = json.loads(response.body)
    assert len(result["predictions"]) == 2
    assert result["predictions"][0]["probability"] >= result["predictions"][1]["probability"]


@pytest.mark.parametrize("top_k", ["0", "-3", "many", "2.5"])
def test_a_bad_top_k_header_is_a_400_through_the_toolkit(container, test_images, top_k):
    response = container.invoke(
        test_images[0].read_bytes(), "image/jpeg", custom_attributes=f"top_k={top_k}"
    )
    assert response.status == 400 and "top_k must be a positive integer" in response.body.decode()


@pytest.fixture(scope="module")
def packaged_model(trained_artifact, tmp_path_factory):
    """model.tar.gz extracted, as SageMaker puts it in /opt/ml/model."""
    work = tmp_path_factory.mktemp("packaged")
    tar_path = serving_code.package_model(trained_artifact, work / "model.tar.gz")
    with tarfile.open(tar_path) as tar:
        tar.extractall(work / "model", filter="data")
    return work / "model"


def test_the_endpoint_serves_the_artifacts_code_not_the_repository(packaged_model, test_images):
    """A module the packaging forgot fails the endpoint here, as it would in the container,
    instead of being found in the repository's training/container."""
    import shutil

    broken = packaged_model.parent / "broken"
    shutil.copytree(packaged_model, broken)
    (broken / "code" / "dog_breeds" / "serving" / "image_decode.py").unlink()

    with pytest.raises(WorkerFailed, match=r"ImportError: .*image_decode"):
        ToolkitContainer(broken)

    with ToolkitContainer(packaged_model) as served:
        assert served.code_dir == packaged_model / "code"
        assert served.invoke(test_images[0].read_bytes(), "image/jpeg").status == 200


def test_a_worker_closed_in_order_exits_0_after_serving(packaged_model, test_images):
    """endpoint_inference.py with its OpenVINO runtime loaded ends cleanly when told to stop."""
    with ToolkitContainer(packaged_model) as served:
        assert served.invoke(test_images[0].read_bytes(), "image/jpeg").status == 200
        assert served.last_exit_code is None
    assert served.last_exit_code == 0


def test_a_worker_that_dies_is_answered_503_then_started_again(packaged_model, test_images):
    with ToolkitContainer(packaged_model) as served:
        served._proc.kill()  # what an out-of-memory kill does to a TorchServe worker
        served._proc.wait()
        assert not served.ping()
        assert served.invoke(test_images[0].read_bytes(), "image/jpeg").status == 200
        assert served.restarts == 1 and served.ping()


# endpoint_inference logs on load, e.g. "serving runtime: openvino-int8 (...; 1 threads, 0.87 s)"
RUNTIME_LINE = re.compile(r"serving runtime: (openvino-\S+) \([^\n]*?(\d+) threads, ")


def test_a_worker_pool_is_that_many_processes_each_with_its_share_of_the_cores(
    packaged_model, test_images, tmp_path
):
    """The endpoint as TorchServe runs it on an ml.t2.medium: two workers, each told the endpoint
    has two (so OpenVINO takes half the cores in each), requests spread over both."""
    from dog_breeds.serving.runtimes import available_cpus

    log = tmp_path / "workers.log"
    body = test_images[0].read_bytes()
    with WorkerPool(packaged_model, 2, log_path=log) as pool:
        pids = {worker._proc.pid for worker in pool.workers}

        def invoke(_: int) -> tuple[int, bytes]:
            answer = pool.invoke(body, "image/jpeg")
            return answer.status, answer.body

        with ThreadPoolExecutor(max_workers=4) as clients:
            answers = list(clients.map(invoke, range(12)))
        assert pool.ping()
    assert len(pids) == 2
    assert {status for status, _ in answers} == {200}
    assert len({answer for _, answer in answers}) == 1  # the same model in both
    # Both workers served: idle workers queue first in, first out, so each takes its turn.
    served = [worker.requests for worker in pool.workers]
    assert sum(served) == 12 and min(served) > 0, served
    loaded = RUNTIME_LINE.findall(log.read_text())
    assert [int(threads) for _, threads in loaded] == [max(1, available_cpus() // 2)] * 2


def test_a_pool_restarts_a_dead_worker_while_the_other_serves(packaged_model, test_images):
    body = test_images[0].read_bytes()
    with WorkerPool(packaged_model, 2) as pool:
        pool.workers[0]._proc.kill()
        pool.workers[0]._proc.wait()
        assert pool.ping()  # the other one still answers
        assert [pool.invoke(body, "image/jpeg").status for _ in range(2)] == [200, 200]
        assert pool.restarts == 1 and all(worker.ping() for worker in pool.workers)


def test_a_pool_whose_model_fails_to_load_leaves_no_worker_running(packaged_model, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(packaged_model, broken)
    (broken / "code" / "dog_breeds" / "serving" / "image_decode.py").unlink()
    before = _model_workers()
    with pytest.raises(WorkerFailed, match=r"ImportError: .*image_decode"):
        WorkerPool(broken, 2)
    assert _model_workers() == before
    with pytest.raises(ValueError, match="at least one worker"):
        WorkerPool(packaged_model, 0)


def _model_workers() -> set[int]:
    """Live children of this process that run local.endpoint.worker (read from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        if int(ppid) == os.getpid() and state != "Z" and b"local/endpoint/worker.py" in cmdline:
            found.add(int(stat.parent.name))
    return found
