"""SageMakerProcessingJobOperator on both targets.

aws: against the moto server (moto completes a processing job the moment it is created and has no
StopProcessingJob, so that answer is stubbed and the request sent is asserted).
local: a real processing job through the local runtime, running the training tarball's entry
point in the training environment.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from airflow.exceptions import AirflowException

from headrace_operators import SageMakerProcessingJobOperator
from include.aws_validation import validate_request
from include.job_names import TaskRunIdentity

DS = "2026-01-07"


class FixtureProcessingJobOperator(SageMakerProcessingJobOperator):
    # A fixture package with a probe entry point, shipped as the training package is.
    source_package = "tests/plugins/fixtures/processing_package"


def processing_operator(lake: str, **overrides) -> SageMakerProcessingJobOperator:
    arguments = {
        "task_id": "profile",
        "dataset": "churn",
        "ds": DS,
        "entry_point": "probe.py",
        "inputs": {"features": f"{lake}/features/churn/ds={DS}"},
        "outputs": {"report": f"{lake}/monitoring/churn/profile/ds={DS}"},
        "arguments": ["--ds", DS],
        "aws_conn_id": None,
        "poll_interval": 1,
    }
    arguments.update(overrides)
    return FixtureProcessingJobOperator(**arguments)


def test_aws_sends_one_valid_isolated_create_and_a_retry_reattaches(
    aws_target, aws_calls, task_context
):
    lake = f"s3://{aws_target.bucket}/lake"
    context = task_context(dag_id="churn_monitoring", task_id="profile")
    first = processing_operator(lake).execute(context)
    second = processing_operator(lake).execute(context)  # the retry of the same task instance

    creates = aws_calls.of("sagemaker", "CreateProcessingJob")
    assert len(creates) == 1, "a retry must re-attach, not create a second job"
    request = creates[0]
    validate_request("sagemaker", "CreateProcessingJob", request)
    name = TaskRunIdentity("churn_monitoring", context["run_id"], "profile").name_for("sagemaker")
    assert request["ProcessingJobName"] == name == first["job_name"] == second["job_name"]
    assert request["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert request["NetworkConfig"]["VpcConfig"]["Subnets"] == [aws_target.subnet_id]
    assert request["ProcessingOutputConfig"]["KmsKeyId"] == aws_target.kms_key_arn
    assert request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == (
        aws_target.kms_key_arn
    )
    # The cost allocation tags name the dataset, the DAG and the run of the task.
    assert request["Tags"] == [
        {"Key": "project", "Value": "headrace"},
        {"Key": "dataset", "Value": "churn"},
        {"Key": "dag", "Value": "churn_monitoring"},
        {"Key": "run", "Value": context["run_id"]},
    ]
    # The code is the training tarball, uploaded once, encrypted, at its content-addressed key.
    puts = [p for p in aws_calls.of("s3", "PutObject") if p["Key"].endswith("sourcedir.tar.gz")]
    assert len(puts) == 1 and puts[0]["SSEKMSKeyId"] == aws_target.kms_key_arn
    code = next(i for i in request["ProcessingInputs"] if i["InputName"] == "code")
    assert (
        code["S3Input"]["S3Uri"] == f"s3://{aws_target.bucket}/{puts[0]['Key'].rsplit('/', 1)[0]}/"
    )
    assert first["outputs"] == {"report": f"{lake}/monitoring/churn/profile/ds={DS}/"}


def test_aws_processing_is_sized_by_the_datasets_capacity(
    tmp_path, aws_target, aws_calls, task_context
):
    import yaml

    from include.config import DATASETS_DIR

    raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    raw["capacity"] = {
        "processing": {
            "instance_type": "ml.m5.4xlarge",
            "instance_count": 2,
            "max_runtime_minutes": 90,
        }
    }
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(raw))

    class SizedProcessing(FixtureProcessingJobOperator):
        datasets_dir = tmp_path

    lake = f"s3://{aws_target.bucket}/lake"
    processing_operator(lake).execute(task_context(dag_id="churn_monitoring", run_id="a"))
    arguments = {
        "task_id": "profile", "dataset": "churn", "ds": DS, "entry_point": "probe.py",
        "outputs": {"report": f"{lake}/monitoring/churn/profile/ds={DS}"},
        "aws_conn_id": None, "poll_interval": 1,
    }  # fmt: skip
    sized = SizedProcessing(**arguments)
    sized.execute(task_context(dag_id="churn_monitoring", run_id="b"))

    default, request = aws_calls.of("sagemaker", "CreateProcessingJob")
    validate_request("sagemaker", "CreateProcessingJob", request)
    cluster = request["ProcessingResources"]["ClusterConfig"]
    assert (cluster["InstanceType"], cluster["InstanceCount"]) == ("ml.m5.4xlarge", 2)
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == 90 * 60
    assert sized.max_wait_s(None) == 90 * 60
    # A spec that says nothing: one ml.m5.xlarge for at most an hour.
    today = default["ProcessingResources"]["ClusterConfig"]
    assert (today["InstanceType"], today["InstanceCount"]) == ("ml.m5.xlarge", 1)
    assert default["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600


def test_aws_on_kill_stops_the_job_it_attached_to(aws_target, aws_calls, task_context):
    aws_calls.stubs[("sagemaker", "StopProcessingJob")] = (200, {})  # moto has none
    operator = processing_operator(f"s3://{aws_target.bucket}/lake")
    result = operator.execute(task_context(dag_id="churn_monitoring", task_id="profile"))
    operator.on_kill()
    assert aws_calls.of("sagemaker", "StopProcessingJob") == [
        {"ProcessingJobName": result["job_name"]}
    ]


@pytest.fixture
def local_lake(fresh_settings, tmp_path, monkeypatch):
    """The local target with its lake and job state under tmp, and a features folder."""
    from include.config import get_settings

    monkeypatch.setenv("HEADRACE_LAKE_ROOT", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("HEADRACE_LOCAL_RUNS_DIR", str(tmp_path / "runs"))
    get_settings.cache_clear()
    features = tmp_path / "lake" / "features" / "churn" / f"ds={DS}"
    features.mkdir(parents=True)
    (features / "part-0.parquet").write_bytes(b"not read")
    return get_settings()


@pytest.mark.e2e
def test_local_job_runs_the_entry_point_and_a_retry_returns_the_same_job(local_lake, task_context):
    lake = local_lake.lake_root
    context = task_context(dag_id="churn_monitoring", task_id="profile")
    first = processing_operator(lake).execute(context)
    job_dir = Path(local_lake.local_runs_dir, "processing-jobs", first["job_name"])
    pid = json.loads((job_dir / "process.json").read_text())["pid"]
    retry = processing_operator(lake)
    second = retry.execute(context)

    assert second == first
    assert json.loads((job_dir / "process.json").read_text())["pid"] == pid
    report = Path(first["outputs"]["report"].removeprefix("file://"))
    assert json.loads((report / "seen.json").read_text()) == {
        "arguments": ["--ds", DS],
        "features": ["part-0.parquet"],
    }
    # OpenLineage: the lake folders the job read (not its code) and wrote, and the job's name.
    lineage = retry.get_openlineage_facets_on_complete(None)
    lake_path = lake.removeprefix("file://")
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("file", f"{lake_path}/features/churn/ds={DS}")
    ]
    assert [d.name for d in lineage.outputs] == [f"{lake_path}/monitoring/churn/profile/ds={DS}"]
    assert lineage.run_facets["externalQuery"].externalQueryId == first["job_name"]


@pytest.mark.e2e
def test_local_on_kill_stops_the_running_job(local_lake, task_context):
    operator = processing_operator(local_lake.lake_root, arguments=["--sleep"])
    outcome: dict = {}

    def run():
        try:
            operator.execute(task_context(dag_id="churn_monitoring", task_id="profile"))
        except AirflowException as error:
            outcome["error"] = str(error)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while operator._job_name is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # the job is running its entry point
    operator.on_kill()
    thread.join(timeout=60)

    assert "is Stopped: stopped" in outcome["error"]


def test_an_entry_point_the_package_lacks_is_refused_naming_it(local_lake, task_context):
    with pytest.raises(AirflowException, match=r"entry_point='monitor\.py' is not a file of"):
        processing_operator(local_lake.lake_root, entry_point="monitor.py").execute(
            task_context(dag_id="churn_monitoring", task_id="profile")
        )
