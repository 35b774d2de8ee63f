"""``make parity``'s serving step reads, from the real model server's log, how many workers
TorchServe started and how many OpenVINO threads each took, and checks them against the model's
environment: unset, one worker per CPU, one thread each."""

from __future__ import annotations

from local.parity import serving

# As TorchServe 0.12 writes a worker's model_fn line into logs/model_log.log (from a parity run).
LINE = (
    "2026-12-01T08:55:31,822 [INFO ] {worker}-model_1.0-stdout MODEL_LOG - serving runtime: "
    "{runtime} (int8 IR matches the artifact; validation top-1 drop 0.0 points <= 0.5; "
    "{threads} threads, 0.87 s)"
)


def log(*workers: tuple[str, str, int]) -> str:
    return "\n".join(LINE.format(worker=w, runtime=r, threads=t) for w, r, t in workers)


def test_each_workers_runtime_and_threads_are_read_from_the_model_log():
    text = log(("W-9000", "openvino-int8", 1), ("W-9001", "openvino-int8", 1))
    text += (
        "\n2026-12-01T08:55:31,822 [INFO ] MODEL_LOG - serving runtime: openvino (x; 2 threads, "
    )
    assert serving.worker_runtimes(text) == {
        "W-9000": {"runtime": "openvino-int8", "threads": 1},
        "W-9001": {"runtime": "openvino-int8", "threads": 1},
    }


def outcome(workers: dict, env: dict[str, str], cpus: int) -> list[str]:
    checks = serving.Checks()
    serving.check_workers(workers, env, cpus, checks)
    return checks.problems


def test_unset_workers_means_one_per_cpu_sharing_the_cores():
    two = serving.worker_runtimes(log(("W-9000", "openvino", 1), ("W-9001", "openvino", 1)))
    assert outcome(two, {}, cpus=2) == []
    # Two workers taking every core each: the oversubscription this check exists for.
    greedy = serving.worker_runtimes(log(("W-9000", "openvino", 2), ("W-9001", "openvino", 2)))
    (problem,) = outcome(greedy, {}, cpus=2)
    assert "4 threads on 2 CPUs" in problem
    # One worker found where the environment asks for two (or, unset, one per CPU).
    one = serving.worker_runtimes(log(("W-9000", "openvino", 2)))
    assert outcome(one, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, cpus=2) == []
    assert "1 workers (expected 2)" in outcome(one, {}, cpus=2)[0]


def shutdown_problems(shutdown: dict, logs: str = "") -> list[str]:
    checks = serving.Checks()
    serving.check_shutdown(shutdown, logs, checks)
    return checks.problems


CLEAN = {"ended_on_sigterm": ["java", "python", "worker", "worker"], "killed": [], "exit": 0}


def test_a_clean_shutdown_ends_every_process_on_sigterm():
    assert shutdown_problems(CLEAN, log(("W-9000", "openvino", 1))) == []


def test_a_worker_that_had_to_be_killed_or_crashed_fails_the_shutdown_check():
    killed = {"ended_on_sigterm": ["java", "python"], "killed": ["worker"], "exit": 0}
    assert [p.split(":")[1] for p in shutdown_problems(killed)] == [
        " nothing had to be killed",
        " the workers ended on SIGTERM",
    ]
    crashed = "W-9000-model_1.0-stderr MODEL_LOG - Fatal Python error: Segmentation fault"
    assert shutdown_problems(CLEAN, crashed) == [f"shutdown: no crash in the logs: {crashed}"]
