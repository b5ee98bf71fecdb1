"""SageMakerTransformOperator on both targets.

aws: against the moto server. moto completes a transform job the moment it is created and has no
StopTransformJob; the stop is answered by the recorder's stub (tests/aws_fakes.py), and the deferral
test stubs DescribeTransformJob with an InProgress job, so the request the operator sends and
the trigger it defers to can be asserted. local: the real training/inference.py handlers through
the local transform runtime, on a model trained by train.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from airflow.exceptions import AirflowException, TaskDeferred

from headrace_operators.sagemaker_transform import SageMakerTransformOperator
from include.aws_validation import validate_request
from include.job_names import TaskRunIdentity

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))
import scoring_helpers as helpers

DS = "2026-01-07"


def aws_model(bucket: str) -> dict:
    return {
        "version": "3",
        "model_uri": f"s3://{bucket}/lake/models/churn/jobs/job-a/output/model.tar.gz",
        "model_name": "headrace-churn-v3-0123456789ab",
        "id_columns": ["customer_id", "snapshot_date"],
    }


def transform_operator(model: dict, input_uri: str, **overrides) -> SageMakerTransformOperator:
    arguments = {
        "task_id": "transform",
        "dataset": "churn",
        "ds": DS,
        "model": model,
        "input_uri": input_uri,
        "aws_conn_id": None,
        "poll_interval": 1,
    }
    arguments.update(overrides)
    return SageMakerTransformOperator(**arguments)


def test_aws_creates_the_model_and_one_valid_transform_job_and_a_retry_reattaches(
    aws_target, aws_calls, task_context
):
    model = aws_model(aws_target.bucket)
    input_uri = f"s3://{aws_target.bucket}/lake/predictions/churn/input/ds={DS}/abc"
    context = task_context(dag_id="churn_scoring", task_id="transform")
    first = transform_operator(model, input_uri).execute(context)
    second = transform_operator(model, input_uri).execute(context)  # the retry

    (model_request,) = aws_calls.of("sagemaker", "CreateModel")
    validate_request("sagemaker", "CreateModel", model_request)
    assert model_request["ModelName"] == model["model_name"]
    assert model_request["PrimaryContainer"]["ModelDataUrl"] == model["model_uri"]
    assert model_request["EnableNetworkIsolation"] is True
    assert model_request["VpcConfig"]["Subnets"] == [aws_target.subnet_id]
    run_tags = [
        {"Key": "project", "Value": "headrace"},
        {"Key": "dataset", "Value": "churn"},
        {"Key": "dag", "Value": "churn_scoring"},
        {"Key": "run", "Value": context["run_id"]},
    ]
    assert model_request["Tags"] == [*run_tags, {"Key": "model-version", "Value": "3"}]

    creates = aws_calls.of("sagemaker", "CreateTransformJob")
    assert len(creates) == 1, "a retry must re-attach, not start a second transform"
    request = creates[0]
    validate_request("sagemaker", "CreateTransformJob", request)
    assert request["Tags"] == [
        *run_tags,
        {"Key": "ds", "Value": DS},
        {"Key": "model-version", "Value": "3"},
    ]
    expected = TaskRunIdentity("churn_scoring", context["run_id"], "transform").name_for(
        "sagemaker"
    )
    assert request["TransformJobName"] == expected == first["job_name"] == second["job_name"]
    assert request["ModelName"] == model["model_name"]
    assert request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == input_uri + "/"
    assert request["TransformOutput"]["KmsKeyId"] == aws_target.kms_key_arn
    assert request["TransformResources"]["VolumeKmsKeyId"] == aws_target.kms_key_arn
    assert request["DataProcessing"] == {
        "InputFilter": "$[2:]", "JoinSource": "Input", "OutputFilter": "$[0,1,-1]"
    }  # fmt: skip
    assert first["output_uri"] == (
        f"s3://{aws_target.bucket}/lake/predictions/churn/transform/ds={DS}/{expected}"
    )
    assert first == second
    assert first["model_version"] == "3"


def test_aws_model_of_a_version_is_created_once_across_days(aws_target, aws_calls, task_context):
    model = aws_model(aws_target.bucket)
    input_uri = f"s3://{aws_target.bucket}/lake/predictions/churn/input/ds={DS}/abc"
    transform_operator(model, input_uri).execute(task_context(dag_id="churn_scoring", run_id="a"))
    transform_operator(model, input_uri).execute(task_context(dag_id="churn_scoring", run_id="b"))
    assert len(aws_calls.of("sagemaker", "CreateTransformJob")) == 2
    assert len(aws_calls.of("sagemaker", "CreateModel")) == 1


def test_aws_running_job_is_deferred_to_the_sagemaker_trigger(aws_target, aws_calls, task_context):
    model = aws_model(aws_target.bucket)
    name = TaskRunIdentity("churn_scoring", "run-1", "transform").name_for("sagemaker")
    # moto finishes every job at once: an earlier try's job still running is stubbed.
    aws_calls.stubs[("sagemaker", "DescribeTransformJob")] = (
        200,
        {"TransformJobName": name, "TransformJobStatus": "InProgress", "ModelName": "m",
         "TransformOutput": {"S3OutputPath": f"s3://{aws_target.bucket}/out"}},
    )  # fmt: skip
    operator = transform_operator(model, f"s3://{aws_target.bucket}/in")
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(task_context(dag_id="churn_scoring", run_id="run-1", task_id="transform"))
    trigger = deferred.value.trigger
    # Ours, not the provider's SageMakerTrigger it extends: it stops the job on a kill.
    assert type(trigger).__name__ == "SageMakerJobTrigger"
    assert (trigger.job_name, trigger.job_type) == (name, "transform")
    assert deferred.value.kwargs == {"job_name": name}
    assert aws_calls.of("sagemaker", "CreateTransformJob") == []


def test_aws_on_kill_stops_the_transform_job(aws_target, aws_calls, task_context):
    aws_calls.stubs[("sagemaker", "StopTransformJob")] = (200, {})  # moto has no StopTransformJob
    operator = transform_operator(aws_model(aws_target.bucket), f"s3://{aws_target.bucket}/in")
    result = operator.execute(task_context(dag_id="churn_scoring", task_id="transform"))
    operator.on_kill()
    assert aws_calls.of("sagemaker", "StopTransformJob") == [
        {"TransformJobName": result["job_name"]}
    ]


def test_aws_transform_is_sized_by_the_datasets_capacity(
    tmp_path, aws_target, aws_calls, task_context
):
    import yaml

    from include.config import DATASETS_DIR

    raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    raw["capacity"] = {
        "transform": {
            "instance_type": "ml.m5.2xlarge",
            "instance_count": 3,
            "max_runtime_minutes": 90,
        }
    }
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(raw))

    class SizedTransform(SageMakerTransformOperator):
        datasets_dir = tmp_path

    model = aws_model(aws_target.bucket)
    input_uri = f"s3://{aws_target.bucket}/lake/predictions/churn/input/ds={DS}/abc"
    transform_operator(model, input_uri).execute(task_context(dag_id="churn_scoring", run_id="a"))
    sized = SizedTransform(
        task_id="transform", dataset="churn", ds=DS, model=model, input_uri=input_uri,
        aws_conn_id=None, poll_interval=1,
    )  # fmt: skip
    sized.execute(task_context(dag_id="churn_scoring", run_id="b"))

    default, request = aws_calls.of("sagemaker", "CreateTransformJob")
    validate_request("sagemaker", "CreateTransformJob", request)
    resources = request["TransformResources"]
    assert (resources["InstanceType"], resources["InstanceCount"]) == ("ml.m5.2xlarge", 3)
    # A spec that says nothing: today's one ml.m5.xlarge.
    today = default["TransformResources"]
    assert (today["InstanceType"], today["InstanceCount"]) == ("ml.m5.xlarge", 1)
    # SageMaker has no runtime limit for a transform job: the operator's wait is the limit.
    assert sized.max_wait_s(None) == 90 * 60


def test_an_incomplete_model_argument_is_refused_naming_the_keys(task_context):
    with pytest.raises(AirflowException, match="model must be a dict with version, model_uri"):
        transform_operator({"version": "1"}, "file:///in").execute(task_context())


@pytest.fixture
def local_model(fresh_settings, tmp_path, monkeypatch) -> dict:
    """A model trained by train.py, packaged in the local lake, and job state under tmp."""
    from include.config import get_settings

    monkeypatch.setenv("HEADRACE_LOCAL_RUNS_DIR", str(tmp_path / "runs"))
    get_settings.cache_clear()
    (landing,) = helpers.generate_days(tmp_path / "landing", seed=4, days=1, rows=3000).values()
    features = helpers.feature_rows(helpers.read_landing(landing))
    partition = helpers.write_features_partition(tmp_path / "features", DS, features)
    model_dir = helpers.train_model(partition, tmp_path / "train")
    model_uri = helpers.package_model(model_dir, tmp_path / "lake-models" / "model.tar.gz")
    config = json.loads((model_dir / "model_config.json").read_text())
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    helpers.input_lines(features, config["features"]).to_csv(
        input_dir / "part-00000.csv", header=False, index=False
    )
    return {
        "model": {"version": "1", "model_uri": model_uri, "model_name": "headrace-churn-v1-local",
                  "id_columns": config["id_columns"]},
        "input_uri": f"file://{input_dir}",
        "rows": len(features),
        "settings": get_settings(),
    }  # fmt: skip


@pytest.mark.e2e
def test_local_transform_scores_every_row_and_a_retry_returns_the_same_job(
    local_model, task_context
):
    context = task_context(dag_id="churn_scoring", task_id="transform")
    operator = transform_operator(local_model["model"], local_model["input_uri"])
    first = operator.execute(context)
    job_dir = Path(local_model["settings"].local_runs_dir, "transform-jobs",
                   first["job_name"])  # fmt: skip
    pid = json.loads((job_dir / "process.json").read_text())["pid"]
    second = transform_operator(local_model["model"], local_model["input_uri"]).execute(context)

    assert second == first
    assert json.loads((job_dir / "process.json").read_text())["pid"] == pid
    out_dir = Path(first["output_uri"].removeprefix("file://"))
    assert first["output_uri"].endswith(f"/predictions/churn/transform/ds={DS}/{first['job_name']}")
    out = pd.read_csv(out_dir / "part-00000.csv.out", header=None)
    assert len(out) == local_model["rows"]
    assert out.shape[1] == 3  # customer_id, snapshot_date, score
    assert out[2].between(0, 1).all()
