"""SageMakerTrainingJobOperator / SageMakerTuningJobOperator on both targets.

aws: against the moto server, on a features partition committed there. moto completes a
training job the moment it is created and has no StopTrainingJob or StopHyperParameterTuningJob,
so those answers are stubbed (tests/aws_fakes.py) and the requests the operator sent are asserted.
local: the real training/train.py through the local runtime, on a small committed features
partition with a planted signal.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import yaml
from airflow.exceptions import AirflowException, AirflowFailException

from headrace_operators.sagemaker_jobs import (
    SageMakerTrainingJobOperator,
    SageMakerTuningJobOperator,
)
from include.aws_validation import validate_request
from include.config import DATASETS_DIR
from include.job_names import TaskRunIdentity

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_helpers import commit_s3_features, write_feature_channels

DS = "2026-01-07"


@pytest.fixture
def aws_features(aws_target):
    """A committed features partition of churn in moto: its manifest's bytes and split → the
    names of the files it lists (an unlisted file of an earlier commit lies beside them)."""
    return commit_s3_features(aws_target.client("s3"), aws_target.bucket, ds=DS)


def training_operator(**overrides) -> SageMakerTrainingJobOperator:
    arguments = {
        "task_id": "train",
        "dataset": "churn",
        "ds": DS,
        "hyperparameters": {"epochs": 2},
        "aws_conn_id": None,
        "poll_interval": 1,
    }
    arguments.update(overrides)
    return SageMakerTrainingJobOperator(**arguments)


def test_aws_training_sends_one_valid_create_and_a_retry_reattaches(
    aws_target, aws_features, aws_calls, task_context
):
    context = task_context(dag_id="churn_training", task_id="train")
    first = training_operator().execute(context)
    second = training_operator().execute(context)  # the retry of the same task instance

    creates = aws_calls.of("sagemaker", "CreateTrainingJob")
    assert len(creates) == 1, "a retry must re-attach, not create a second job"
    request = creates[0]
    validate_request("sagemaker", "CreateTrainingJob", request)
    expected_name = TaskRunIdentity("churn_training", context["run_id"], "train").name_for(
        "sagemaker"
    )
    assert request["TrainingJobName"] == expected_name == first["job_name"] == second["job_name"]
    # The cost allocation tags: the dataset, the DAG and run of the task, the features day.
    assert request["Tags"] == [
        {"Key": "project", "Value": "headrace"},
        {"Key": "dataset", "Value": "churn"},
        {"Key": "dag", "Value": "churn_training"},
        {"Key": "run", "Value": context["run_id"]},
        {"Key": "features-ds", "Value": DS},
    ]
    # The security settings every job carries, from config.
    assert request["EnableNetworkIsolation"] is True
    assert request["VpcConfig"]["Subnets"] == [aws_target.subnet_id]
    assert request["OutputDataConfig"]["KmsKeyId"] == aws_target.kms_key_arn
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == aws_target.kms_key_arn
    stopping = request["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    sources = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in request["InputDataConfig"]
    }
    # Each data channel is a manifest file of exactly the files the features manifest lists,
    # under a folder named by that manifest's digest; the unlisted file is not among them.
    manifest, files = aws_features
    lake = f"s3://{aws_target.bucket}/lake"
    inputs = f"lake/models/churn/input/ds={DS}/{hashlib.sha256(manifest).hexdigest()[:16]}"
    s3 = aws_target.client("s3")
    for split, names in files.items():
        key = f"{inputs}/{split}.manifest.json"
        assert sources[split] == {
            "S3DataType": "ManifestFile",
            "S3Uri": f"s3://{aws_target.bucket}/{key}",
            "S3DataDistributionType": "FullyReplicated",
        }
        listed = json.loads(s3.get_object(Bucket=aws_target.bucket, Key=key)["Body"].read())
        assert listed == [{"prefix": f"{lake}/features/churn/ds={DS}/split={split}/"}, *names]
    # Written once (the retry built no request), encrypted like every lake object.
    manifest_puts = [p for p in aws_calls.of("s3", "PutObject") if p["Key"].startswith(inputs)]
    # …beside the training window's document (the days it asked for and used: the lineage).
    assert sorted(p["Key"] for p in manifest_puts) == sorted(
        [*(f"{inputs}/{split}.manifest.json" for split in files), f"{inputs}/window.json"]
    )
    assert {p["SSEKMSKeyId"] for p in manifest_puts} == {aws_target.kms_key_arn}
    assert request["HyperParameters"]["epochs"] == "2"
    # The training code went up once, encrypted, and the retry found it unchanged.
    puts = [p for p in aws_calls.of("s3", "PutObject") if p["Key"].endswith("sourcedir.tar.gz")]
    assert len(puts) == 1 and puts[0]["SSEKMSKeyId"] == aws_target.kms_key_arn
    assert sources["code"]["S3Uri"] == f"s3://{aws_target.bucket}/{puts[0]['Key']}"
    assert first["model_uri"] == second["model_uri"]
    assert first["model_uri"].startswith(
        f"s3://{aws_target.bucket}/lake/models/churn/jobs/{expected_name}/"
    )


def test_aws_on_kill_stops_the_job_it_attached_to(
    aws_target, aws_features, aws_calls, task_context
):
    aws_calls.stubs[("sagemaker", "StopTrainingJob")] = (200, {})  # moto has no StopTrainingJob
    operator = training_operator()
    result = operator.execute(task_context(dag_id="churn_training", task_id="train"))
    operator.on_kill()
    assert aws_calls.of("sagemaker", "StopTrainingJob") == [{"TrainingJobName": result["job_name"]}]


def test_aws_a_job_still_running_when_the_trigger_gives_up_is_stopped(
    aws_target, aws_features, aws_calls, task_context
):
    """The trigger's attempts cover the job's wait; past them the job is stopped, as the
    polling path stops it at its deadline, not left running unwatched."""
    aws_calls.stubs[("sagemaker", "StopTrainingJob")] = (200, {})  # moto has no StopTrainingJob
    context = task_context(dag_id="churn_training", task_id="train")
    name = training_operator().execute(context)["job_name"]
    # moto completes jobs at once: the job is described as SageMaker shows one still training.
    aws_calls.stubs[("sagemaker", "DescribeTrainingJob")] = (
        200,
        {"TrainingJobName": name, "TrainingJobStatus": "InProgress"},
    )
    given_up = {"status": "error", "message": "Waiter error: max attempts reached"}

    with pytest.raises(AirflowException, match=f"training job {name} still running after its wait"):
        training_operator().execute_complete(context, event=given_up, job_name=name)
    assert aws_calls.of("sagemaker", "StopTrainingJob") == [{"TrainingJobName": name}]


def test_aws_tuning_request_is_valid_and_named_within_32_characters(
    aws_target, aws_features, aws_calls, task_context
):
    operator = SageMakerTuningJobOperator(
        task_id="tune", dataset="churn", ds=DS, aws_conn_id=None, max_jobs=4, max_parallel_jobs=2,
        deferrable=False, poll_interval=0,
    )  # fmt: skip
    # moto completes a tuning job at once and reports a made-up best training job
    # ("FakeTrainingJobName") that it cannot describe: the operator must refuse to hand on a
    # model it cannot find, naming the job.
    with pytest.raises(AirflowException, match="FakeTrainingJobName"):
        operator.execute(task_context(dag_id="churn_training", task_id="tune"))
    (request,) = aws_calls.of("sagemaker", "CreateHyperParameterTuningJob")
    validate_request("sagemaker", "CreateHyperParameterTuningJob", request)
    assert len(request["HyperParameterTuningJobName"]) <= 32
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian"
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "validation:auc",
    }
    # Every trial reads the manifest files of the committed partition.
    manifest, files = aws_features
    inputs = (
        f"s3://{aws_target.bucket}/lake/models/churn/input/ds={DS}/"
        f"{hashlib.sha256(manifest).hexdigest()[:16]}"
    )
    sources = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]
        for c in request["TrainingJobDefinition"]["InputDataConfig"]
    }
    for split in files:
        assert sources[split]["S3DataType"] == "ManifestFile"
        assert sources[split]["S3Uri"] == f"{inputs}/{split}.manifest.json"


def sized_specs(folder: Path, capacity: dict) -> Path:
    """A datasets folder whose churn spec has ``capacity`` as its capacity block."""
    import yaml

    from include.config import DATASETS_DIR

    raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    (folder / "churn.yaml").write_text(yaml.safe_dump({**raw, "capacity": capacity}))
    return folder


def test_aws_training_is_sized_by_the_datasets_capacity_over_the_setting(
    tmp_path, aws_target, aws_features, aws_calls, task_context, monkeypatch
):
    from include.config import get_settings

    # The deployment's setting: what a dataset whose spec is silent gets.
    monkeypatch.setenv("HEADRACE_TRAINING_INSTANCE_TYPE", "ml.g5.2xlarge")
    get_settings.cache_clear()
    settings = get_settings()
    training = {"instance_type": "ml.m5.4xlarge", "instance_count": 2, "max_runtime_minutes": 300}

    class SizedTraining(SageMakerTrainingJobOperator):
        datasets_dir = sized_specs(tmp_path, {"training": training})

    SizedTraining(
        task_id="train", dataset="churn", ds=DS, aws_conn_id=None, poll_interval=1
    ).execute(task_context(dag_id="churn_training", task_id="train"))
    training_operator().execute(task_context(dag_id="churn_training", task_id="train", run_id="b"))

    sized, silent = aws_calls.of("sagemaker", "CreateTrainingJob")
    assert (sized["ResourceConfig"]["InstanceType"], sized["ResourceConfig"]["InstanceCount"]) == (
        "ml.m5.4xlarge",
        2,
    )
    # 300 minutes outlast the deployment's spot wait: the wait grows to twice the runtime.
    assert sized["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 18000,
        "MaxWaitTimeInSeconds": 36000,
    }
    assert silent["ResourceConfig"]["InstanceType"] == settings.training.instance_type
    assert silent["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert silent["StoppingCondition"]["MaxRuntimeInSeconds"] == settings.training.max_runtime_s


def test_aws_tuning_trials_are_sized_by_the_datasets_capacity(
    tmp_path, aws_target, aws_features, aws_calls, task_context
):
    class SizedTuning(SageMakerTuningJobOperator):
        datasets_dir = sized_specs(
            tmp_path, {"training": {"instance_type": "ml.c5.2xlarge", "instance_count": 1}}
        )

    operator = SizedTuning(
        task_id="tune", dataset="churn", ds=DS, aws_conn_id=None, max_jobs=2,
        max_parallel_jobs=1, deferrable=False, poll_interval=0,
    )  # fmt: skip
    with pytest.raises(AirflowException, match="FakeTrainingJobName"):  # moto's made-up best job
        operator.execute(task_context(dag_id="churn_training", task_id="tune"))
    (request,) = aws_calls.of("sagemaker", "CreateHyperParameterTuningJob")
    resources = request["TrainingJobDefinition"]["ResourceConfig"]
    assert (resources["InstanceType"], resources["InstanceCount"]) == ("ml.c5.2xlarge", 1)


def tagged_specs(folder: Path, tags: dict) -> Path:
    """A datasets folder whose churn spec has ``tags`` as its tags block."""
    raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    (folder / "churn.yaml").write_text(yaml.safe_dump({**raw, "tags": tags}))
    return folder


def test_aws_tuning_job_carries_the_specs_cost_allocation_tags(
    tmp_path, aws_target, aws_features, aws_calls, task_context
):
    class TaggedTuning(SageMakerTuningJobOperator):
        datasets_dir = tagged_specs(tmp_path, {"cost-center": "CC-1042"})

    operator = TaggedTuning(
        task_id="tune", dataset="churn", ds=DS, aws_conn_id=None, max_jobs=2,
        max_parallel_jobs=1, deferrable=False, poll_interval=0,
    )  # fmt: skip
    run_id = "manual__2026-01-07T08:00:00+00:00"
    with pytest.raises(AirflowException, match="FakeTrainingJobName"):  # moto's made-up best job
        operator.execute(task_context(dag_id="churn_training", task_id="tune", run_id=run_id))
    (request,) = aws_calls.of("sagemaker", "CreateHyperParameterTuningJob")
    assert request["Tags"] == [
        {"Key": "project", "Value": "headrace"},
        {"Key": "dataset", "Value": "churn"},
        {"Key": "dag", "Value": "churn_training"},
        {"Key": "run", "Value": run_id},
        {"Key": "cost-center", "Value": "CC-1042"},
        {"Key": "features-ds", "Value": DS},
    ]


def test_a_bad_spec_tag_fails_the_task_before_any_job_starts(
    tmp_path, aws_target, aws_features, aws_calls, task_context
):
    from spark_jobs.dataset_spec import SpecError

    class TaggedTraining(SageMakerTrainingJobOperator):
        datasets_dir = tagged_specs(tmp_path, {"team": "risk & ops"})

    with pytest.raises(SpecError) as raised:
        TaggedTraining(task_id="train", dataset="churn", ds=DS, aws_conn_id=None).execute(
            task_context(dag_id="churn_training", task_id="train")
        )
    assert raised.value.problems == [
        "tags.team: the value may hold only ASCII letters, digits, spaces and _ . : / = + - @, "
        "found '&'"
    ]
    assert aws_calls.of("sagemaker", "CreateTrainingJob") == []


def test_a_tuning_job_over_the_job_budget_is_refused_before_it_is_created(
    aws_target, aws_features, aws_calls, task_context
):
    # HEADRACE_TUNING_MAX_JOBS' default: 20 trials on ml.g5.xlarge spot, each up to its 4 h wait.
    operator = SageMakerTuningJobOperator(
        task_id="tune", dataset="churn", ds=DS, aws_conn_id=None, deferrable=False,
        poll_interval=0,
    )  # fmt: skip
    with pytest.raises(AirflowFailException) as refused:
        operator.execute(task_context(dag_id="churn_training", task_id="tune"))
    name = TaskRunIdentity("churn_training", task_context()["run_id"], "tune").name_for(
        "sagemaker_tuning"
    )
    # $1.408/h x 1 instance x 4 h x (1 - 0.5 spot discount) x 20 trials, us-east-1 list prices.
    assert str(refused.value) == (
        f"refused before starting: tuning job {name}: worst case $56.32 (ml.g5.xlarge $1.408/h x "
        "1 x 4.0 h x 0.5 (spot) x 20 jobs = $56.32) exceeds the per-job budget $25.00 "
        f"({DATASETS_DIR / 'churn.yaml'} cost:). Lower the job's size or limits, or raise the "
        "budget in the dataset spec's cost: block"
    )
    assert aws_calls.of("sagemaker", "CreateHyperParameterTuningJob") == []
    # Nothing went up for it either: the code tarball is uploaded only for a job that starts.
    assert not [p for p in aws_calls.of("s3", "PutObject") if p["Key"].endswith(".tar.gz")]


def test_the_datasets_own_budget_refuses_a_tuning_job_the_default_would_allow(
    tmp_path, aws_target, aws_features, aws_calls, task_context
):
    class Budgeted(SageMakerTuningJobOperator):
        datasets_dir = sized_specs(tmp_path, {})

    spec = tmp_path / "churn.yaml"
    raw = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**raw, "cost": {"budget_per_job_usd": 5}}))
    operator = Budgeted(
        task_id="tune", dataset="churn", ds=DS, aws_conn_id=None, max_jobs=4,
        max_parallel_jobs=2, deferrable=False, poll_interval=0,
    )  # fmt: skip
    with pytest.raises(
        AirflowFailException, match=r"worst case \$11\.26 .* per-job budget \$5\.00"
    ):
        operator.execute(task_context(dag_id="churn_training", task_id="tune"))
    assert aws_calls.of("sagemaker", "CreateHyperParameterTuningJob") == []


def test_a_bad_training_instance_type_fails_naming_the_spec_and_field(tmp_path, task_context):
    from spark_jobs.dataset_spec import SpecError

    class SizedTraining(SageMakerTrainingJobOperator):
        datasets_dir = sized_specs(tmp_path, {"training": {"instance_type": "ml.g5.huge"}})

    with pytest.raises(SpecError) as raised:
        SizedTraining(task_id="train", dataset="churn", ds=DS).execute(task_context())
    (problem,) = raised.value.problems
    assert problem.startswith(
        "capacity.training.instance_type: 'ml.g5.huge' is not a sagemaker TrainingInstanceType"
    )
    assert str(tmp_path / "churn.yaml") in str(raised.value)


def test_bad_ds_is_refused_with_the_parameter_named(task_context):
    with pytest.raises(AirflowException, match="ds='yesterday'"):
        training_operator(ds="yesterday").execute(task_context())


@pytest.fixture
def local_features(fresh_settings, tmp_path, monkeypatch):
    """A features partition of churn in the local lake, and job state under tmp."""
    from include.config import get_settings

    monkeypatch.setenv("HEADRACE_LOCAL_RUNS_DIR", str(tmp_path / "runs"))
    get_settings.cache_clear()
    settings = get_settings()
    features_root = Path(settings.zone_uri("features").removeprefix("file://")) / "churn"
    if not list(features_root.glob("ds=*/_manifest.json")):  # the session's lake: written once
        write_feature_channels(features_root, rows=1500, seed=3)
    return settings


@pytest.mark.e2e
def test_local_training_runs_the_real_trainer_and_a_retry_returns_the_same_job(
    local_features, task_context
):
    context = task_context(dag_id="churn_training", task_id="train")
    first = training_operator(hyperparameters={"epochs": 3, "batch-size": 256}).execute(context)
    log = Path(local_features.local_runs_dir, "training-jobs", first["job_name"], "output.log")
    runs_before = log.read_text().count("final validation:auc=")
    second = training_operator(hyperparameters={"epochs": 3, "batch-size": 256}).execute(context)

    assert second == first
    assert log.read_text().count("final validation:auc=") == runs_before == 1
    assert first["model_uri"].endswith(
        f"/models/churn/jobs/{first['job_name']}/output/model.tar.gz"
    )
    assert Path(first["model_uri"].removeprefix("file://")).stat().st_size > 0
    # The planted signal is learnt: well above chance on held-out data.
    assert first["final_metrics"]["test:auc"] > 0.75
    # The channels were the committed partition's manifest files: each held exactly the split's
    # two listed parquet files, not the _SUCCESS marker beside them in the folder.
    job_dir = log.parent
    sent = json.loads((job_dir / "request.json").read_text())["InputDataConfig"]
    sources = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in sent}
    for split in ("train", "validation", "test"):
        assert sources[split]["S3DataType"] == "ManifestFile"
        assert sources[split]["S3Uri"].endswith(f"/{split}.manifest.json")
        held = sorted(p.name for p in (job_dir / "input" / "data" / split).iterdir())
        assert held == ["part-00000.parquet", "part-00001.parquet"], split
    assert first["hyperparameters"]["epochs"] == "3"


def test_a_failed_local_training_fails_the_task_with_the_jobs_own_reason(
    local_features, task_context, capsys
):
    """Through the local job loop every job operator shares: the task's log names the job's own
    log, and the task's error is the job's."""
    import re

    context = task_context(dag_id="churn_training", task_id="train_rejected")
    with pytest.raises(AirflowException) as failed:
        training_operator(hyperparameters={"epochs": 0}).execute(context)
    started = re.findall(
        r"Started local training job (\S+); its log: (\S+)", capsys.readouterr().out
    )
    assert len(started) == 1 and started[0][1].endswith(f"/{started[0][0]}/output.log"), started
    message = str(failed.value)
    assert message.startswith("local training job headrace-churn-"), message
    assert "is Failed (Failed): AlgorithmError: train.py exited with code 2" in message, message


@pytest.mark.e2e
def test_local_tuning_is_a_local_job_and_a_retry_returns_the_same_result(
    local_features, task_context, capsys
):
    """Through the local job loop: the search runs as a local job the task starts and waits on;
    a retried task re-attaches to it instead of searching again."""
    import re

    context = task_context(dag_id="churn_training", task_id="tune")

    def tune() -> dict:
        return SageMakerTuningJobOperator(
            task_id="tune",
            dataset="churn",
            ds=DS,
            hyperparameters={"epochs": 2},
            max_jobs=2,
            max_parallel_jobs=1,
            aws_conn_id=None,
            poll_interval=1,
        ).execute(context)

    first = tune()
    started = re.findall(r"Started local tuning job (\S+); its log: (\S+)", capsys.readouterr().out)
    assert len(started) == 1, started
    name, log = started[0]
    assert log == str(Path(local_features.local_runs_dir, "tuning-jobs", name, "output.log"))
    second = tune()

    assert f"Re-attached to local tuning job {name} (Completed)" in capsys.readouterr().out
    assert second == first
    assert first["tuning_job_name"] == name
    assert first["trials"]["Completed"] == 2
    assert first["job_name"].startswith(f"{name}-00")
    assert Path(first["model_uri"].removeprefix("file://")).stat().st_size > 0
    assert first["objective"]["MetricName"] == "validation:auc"
