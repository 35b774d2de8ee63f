"""Stages 2 and 3 against moto: what SageMaker receives for the tuning job and the training job."""

from __future__ import annotations

import json
import re

import boto3
from launch_testkit import BUCKET, REGION, ROLE

from dog_breeds.training.metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC, epoch_line
from training.launch.jobs import decode_hyperparameter, train_hyperparameters


def test_tune_sends_the_four_ranges_the_objective_and_its_regex(run_launch, tmp_path):
    run = run_launch("tune", "--role", ROLE, "--max-jobs", "4", "--max-parallel-jobs", "2")
    assert run.rc == 0, run.err

    job_name = re.search(r"tuning job: (\S+)", run.out).group(1)
    sm = boto3.client("sagemaker", region_name=REGION)
    desc = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=job_name)
    config = desc["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Minimize",
        "MetricName": "valid:loss",
    }
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}
    ranges = config["ParameterRanges"]
    continuous = {r["Name"]: r for r in ranges["ContinuousParameterRanges"]}
    assert {
        n: (float(r["MinValue"]), float(r["MaxValue"]), r["ScalingType"])
        for n, r in continuous.items()
    } == {
        "lr": (1e-5, 1e-2, "Logarithmic"),
        "weight_decay": (1e-4, 1e-1, "Logarithmic"),
        "eps": (1e-9, 1e-8, "Linear"),
    }
    (batch,) = ranges["CategoricalParameterRanges"]
    assert batch["Name"] == "batch_size"
    assert [json.loads(v) for v in batch["Values"]] == ["64", "128"]

    # The objective is read from the training log by the regex that train_metrics defines.
    definition = desc["TrainingJobDefinition"]
    metrics = {
        m["Name"]: m["Regex"] for m in definition["AlgorithmSpecification"]["MetricDefinitions"]
    }
    assert metrics == {m["Name"]: m["Regex"] for m in METRIC_DEFINITIONS}
    line = epoch_line(3, 10, 0.41, 0.87, 0.512345, 0.8, 12.0)
    assert float(re.search(metrics[OBJECTIVE_METRIC], line).group(1)) == 0.512345
    assert (
        "pytorch-training:2.8.0-gpu-py312" in definition["AlgorithmSpecification"]["TrainingImage"]
    )
    assert definition["InputDataConfig"][0]["ChannelName"] == "training"
    assert definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://{BUCKET}/dog-breeds/dogImages"
    )
    # Tuned names are not also static; train.py's other hyperparameters are.
    static = train_hyperparameters(definition["StaticHyperParameters"])
    assert set(static) == {"epochs", "hidden_size", "dropout", "pretrained", "unfreeze_stages"}

    # The tuner's answer is saved for `train` (moto's best job is a canned one).
    best = json.loads((tmp_path / "runs" / "best_hyperparameters.json").read_text())
    assert best["tuning_job"] == job_name
    assert best["best_training_job"] == "FakeTrainingJobName"
    assert best["hyperparameters"]["pretrained"] == "true"
    assert "best training job: FakeTrainingJobName" in run.out


def test_tune_dry_run_prints_the_request_and_changes_nothing(run_launch):
    run = run_launch("tune", "--role", ROLE, "--dry-run")
    assert run.rc == 0, run.err

    printed = dict(run.dry_run_requests())
    assert set(printed) == {"PutObject", "CreateHyperParameterTuningJob"}
    request = printed["CreateHyperParameterTuningJob"]
    objective = request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert objective == {"MetricName": "valid:loss", "Type": "Minimize"}
    # What was printed is exactly what botocore was handed.
    assert run.requests("CreateHyperParameterTuningJob") == [request]

    sm = boto3.client("sagemaker", region_name=REGION)
    assert sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=BUCKET)


def test_train_sends_debugger_hook_five_rules_and_profiler(run_launch, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "best_hyperparameters.json").write_text(
        json.dumps({"hyperparameters": {"lr": "0.00031", "batch_size": '"128"', "eps": 5e-9}})
    )
    run = run_launch("train", "--role", ROLE, "--epochs", "3")
    assert run.rc == 0, run.err

    job_name = json.loads((runs / "training_job.json").read_text())["training_job"]
    sm = boto3.client("sagemaker", region_name=REGION)
    desc = sm.describe_training_job(TrainingJobName=job_name)

    hook = desc["DebugHookConfig"]
    assert hook["S3OutputPath"] == f"s3://{BUCKET}/dog-breeds/debug"
    losses = [c for c in hook["CollectionConfigurations"] if c["CollectionName"] == "losses"]
    assert losses == [
        {
            "CollectionName": "losses",
            "CollectionParameters": {"train.save_interval": "10", "eval.save_interval": "1"},
        }
    ]
    rules = {r["RuleConfigurationName"]: r for r in desc["DebugRuleConfigurations"]}
    assert set(rules) == {
        "VanishingGradient",
        "Overfit",
        "Overtraining",
        "PoorWeightInitialization",
        "LossNotDecreasing",
    }
    assert all("sagemaker-debugger-rules" in r["RuleEvaluatorImage"] for r in rules.values())

    # moto keeps no Profiler settings: read them from the request that left the process.
    (request,) = run.requests("CreateTrainingJob")
    assert request["ProfilerConfig"] == {
        "S3OutputPath": f"s3://{BUCKET}/dog-breeds/profiler",
        "ProfilingIntervalInMilliseconds": 500,
        "DisableProfiler": False,
    }
    (profiler_rule,) = request["ProfilerRuleConfigurations"]
    assert profiler_rule["RuleConfigurationName"] == "ProfilerReport"
    assert profiler_rule["RuleParameters"] == {"rule_to_invoke": "ProfilerReport"}

    # Best hyperparameters from the saved file, flags on top, defaults for the rest.
    hyper = train_hyperparameters(desc["HyperParameters"])
    assert hyper["lr"] == 0.00031 and hyper["batch_size"] == 128 and hyper["eps"] == 5e-9
    assert hyper["epochs"] == 3 and hyper["pretrained"] == "true"
    assert desc["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert "pytorch-training:2.8.0-gpu-py312" in desc["AlgorithmSpecification"]["TrainingImage"]
    assert "EnableManagedSpotTraining" not in request
    # The source_dir went to the code prefix of the test bucket.
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert f"dog-breeds/code/{job_name}/source/sourcedir.tar.gz" in keys


def test_train_on_spot_cpu_dry_run_has_checkpoints_and_max_wait(run_launch):
    run = run_launch(
        "train",
        "--role",
        ROLE,
        "--cpu",
        "--spot",
        "--max-run",
        "3600",
        "--max-wait",
        "7200",
        "--dry-run",
    )
    assert run.rc == 0, run.err
    (request,) = [p for op, p in run.dry_run_requests() if op == "CreateTrainingJob"]
    job_name = request["TrainingJobName"]
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 7200,
    }
    assert (
        request["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/dog-breeds/checkpoints/{job_name}"
    )
    assert request["ResourceConfig"]["InstanceType"] == "ml.m5.2xlarge"
    assert "pytorch-training:2.8.0-cpu-py312" in request["AlgorithmSpecification"]["TrainingImage"]
    sm = boto3.client("sagemaker", region_name=REGION)
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []


def test_train_takes_hyperparameters_from_a_named_tuning_job(run_launch, tmp_path):
    tuned = run_launch("tune", "--role", ROLE, "--no-wait", "--epochs", "7")
    job_name = re.search(r"tuning job: (\S+)", tuned.out).group(1)
    run = run_launch("train", "--role", ROLE, "--tuning-job", job_name, "--dry-run")
    assert run.rc == 0, run.err
    (request,) = [p for op, p in run.dry_run_requests() if op == "CreateTrainingJob"]
    assert train_hyperparameters(request["HyperParameters"])["epochs"] == 7
    assert f"tuning job {job_name}" in run.out

    # Later, without a role: save the best of that tuning job for `train`.
    attached = run_launch("tune", "--attach", job_name)
    assert attached.rc == 0, attached.err
    best = json.loads((tmp_path / "runs" / "best_hyperparameters.json").read_text())
    assert best["tuning_job"] == job_name and best["hyperparameters"]["epochs"] == 7


def test_hyperparameters_come_back_decoded():
    assert decode_hyperparameter('"64"') == 64
    assert decode_hyperparameter("0.001") == 0.001
    assert decode_hyperparameter('"true"') == "true"
    assert decode_hyperparameter("not json") == "not json"
    assert train_hyperparameters(
        {"lr": "1e-4", "sagemaker_program": '"train.py"', "_tuning_objective_metric": "x"}
    ) == {"lr": 1e-4}


def test_cpu_flag_beats_the_training_instance_from_the_environment(run_launch, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_TRAINING_INSTANCE", "ml.p3.2xlarge")
    requests = {}
    for flags in ([], ["--cpu"], ["--cpu", "--instance-type", "ml.c5.4xlarge"]):
        run = run_launch("train", "--role", ROLE, "--dry-run", *flags)
        assert run.rc == 0, run.err
        (request,) = [p for op, p in run.dry_run_requests() if op == "CreateTrainingJob"]
        requests[" ".join(flags)] = request["ResourceConfig"]["InstanceType"]
    assert requests == {
        "": "ml.p3.2xlarge",
        "--cpu": "ml.m5.2xlarge",
        "--cpu --instance-type ml.c5.4xlarge": "ml.c5.4xlarge",
    }


def test_a_dry_run_says_what_it_would_start_and_that_nothing_changed(run_launch, tmp_path):
    run = run_launch("train", "--role", ROLE, "--dry-run")
    assert run.rc == 0, run.err
    (request,) = [p for op, p in run.dry_run_requests() if op == "CreateTrainingJob"]
    assert f"would start training job: {request['TrainingJobName']}" in run.out
    assert "console:" not in run.out
    assert run.out.rstrip().endswith(
        "# dry run: nothing was changed; the 2 request(s) above were not sent"
    )
    assert not (tmp_path / "runs" / "training_job.json").exists()  # deploy must not find it
