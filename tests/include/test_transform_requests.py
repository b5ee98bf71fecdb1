"""CreateModel and CreateTransformJob bodies: valid for botocore on both targets, with the
security settings from config and the DataProcessing join that brings the ids back."""

from __future__ import annotations

import pytest
from aws_test_env import AWS_ENV, KMS_KEY_ARN

from include import sagemaker_requests as requests
from include.aws_validation import RequestValidationError, validate_request
from include.config import load_settings
from include.job_tags import job_tags

AWS_SETTINGS = load_settings(AWS_ENV)
LOCAL_SETTINGS = load_settings({"PIPELINE_TARGET": "local", "HEADRACE_LAKE_ROOT": "file:///lake"})
LAKE = "s3://headrace-test-lake/lake"
MODEL_URI = f"{LAKE}/models/churn/jobs/job-a/output/model.tar.gz"
IDS = ["customer_id", "snapshot_date"]


def transform_request(settings=AWS_SETTINGS, lake=LAKE, **overrides) -> dict:
    arguments = {
        "job_name": "headrace-churn-scoring-transform-0123456789abcdef",
        "model_name": "headrace-churn-v3-0123456789ab",
        "input_uri": f"{lake}/predictions/churn/input/ds=2026-01-07/abc",
        "output_uri": f"{lake}/predictions/churn/transform/ds=2026-01-07/job",
        "id_columns": IDS,
        **overrides,
    }
    return requests.build_transform_job_request(settings, **arguments)


def test_aws_model_serves_the_registered_artifact_with_the_security_settings():
    body = requests.build_model_request(
        AWS_SETTINGS, model_name="headrace-churn-v3-0123456789ab", model_uri=MODEL_URI
    )
    validate_request("sagemaker", "CreateModel", body)
    container = body["PrimaryContainer"]
    assert container["ModelDataUrl"] == MODEL_URI
    assert container["Image"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:"
        "2.5.1-cpu-py311-ubuntu22.04-sagemaker"
    )
    # The serving code is code/inference.py inside model.tar.gz: no download, no network.
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert container["Environment"]["SAGEMAKER_REGION"] == "eu-west-1"
    assert body["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/headrace-sagemaker"
    assert body["EnableNetworkIsolation"] is True
    assert body["VpcConfig"] == {
        "SecurityGroupIds": ["sg-0123456789abcdef0"],
        "Subnets": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    }


def test_aws_transform_job_splits_lines_in_mini_batches_and_encrypts_with_the_kms_key():
    body = transform_request()
    validate_request("sagemaker", "CreateTransformJob", body)
    assert body["BatchStrategy"] == "MultiRecord"
    assert body["MaxPayloadInMB"] * body["MaxConcurrentTransforms"] <= 100
    source = body["TransformInput"]["DataSource"]["S3DataSource"]
    # A prefix with its slash: ".../abc" would also take in ".../abcd".
    assert source == {"S3DataType": "S3Prefix",
                      "S3Uri": f"{LAKE}/predictions/churn/input/ds=2026-01-07/abc/"}  # fmt: skip
    assert body["TransformInput"]["ContentType"] == "text/csv"
    assert body["TransformInput"]["SplitType"] == "Line"
    assert body["TransformInput"]["CompressionType"] == "None"
    assert body["TransformOutput"] == {
        "S3OutputPath": f"{LAKE}/predictions/churn/transform/ds=2026-01-07/job",
        "Accept": "text/csv",
        "AssembleWith": "Line",
        "KmsKeyId": KMS_KEY_ARN,
    }
    assert body["TransformResources"]["VolumeKmsKeyId"] == KMS_KEY_ARN
    assert body["TransformResources"]["InstanceType"] == "ml.m5.xlarge"


def test_csv_join_sends_only_the_features_and_keeps_ids_and_score():
    assert transform_request()["DataProcessing"] == {
        "InputFilter": "$[2:]",  # the two id columns stay out of the model's input
        "JoinSource": "Input",  # the score is appended to the whole input row
        "OutputFilter": "$[0,1,-1]",  # ids, then the score (the last field)
    }
    one_id = transform_request(id_columns=["customer_id"])["DataProcessing"]
    assert (one_id["InputFilter"], one_id["OutputFilter"]) == ("$[1:]", "$[0,-1]")


def test_json_lines_join_keeps_ids_and_the_sagemaker_output():
    body = transform_request(content_type="application/jsonlines")
    validate_request("sagemaker", "CreateTransformJob", body)
    assert body["TransformOutput"]["Accept"] == "application/jsonlines"
    assert body["DataProcessing"] == {
        "InputFilter": "$",
        "JoinSource": "Input",
        "OutputFilter": "$['customer_id','snapshot_date','SageMakerOutput']",
    }


def test_local_bodies_use_file_uris_and_still_validate():
    lake = "file:///lake"
    body = transform_request(LOCAL_SETTINGS, lake=lake)
    assert body["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"].startswith("file:///lake/")
    assert "KmsKeyId" not in body["TransformOutput"]
    model = requests.build_model_request(
        LOCAL_SETTINGS, model_name="m-1", model_uri=f"{lake}/models/model.tar.gz"
    )
    assert "Image" not in model["PrimaryContainer"] and "VpcConfig" not in model


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input_uri": "s3://another-bucket/in"}, "input_uri 's3://another-bucket/in' is not in"),
        ({"content_type": "application/x-parquet"}, "content_type 'application/x-parquet'"),
        ({"max_payload_mb": 20, "max_concurrent_transforms": 8}, "at most 100 MB"),
        ({"id_columns": []}, "at least one id column"),
        (
            {
                "id_columns": ["a_rather_long_customer_identifier", "another_long_id_column"],
                "content_type": "application/jsonlines",
            },
            "longer than SageMaker's 63",
        ),
        ({"compression": "Zip"}, "compression 'Zip'"),
    ],
)
def test_bad_arguments_are_refused_naming_the_parameter(overrides, message):
    with pytest.raises(ValueError, match=message):
        transform_request(**overrides)


def test_a_job_name_sagemaker_would_refuse_fails_here():
    with pytest.raises(RequestValidationError, match="TransformJobName"):
        transform_request(job_name="scoring_job_with_underscores")


def test_transform_job_carries_the_datasets_instances(tmp_path):
    import yaml

    from include.config import DATASETS_DIR, dataset_capacity

    assert transform_request()["TransformResources"] == {
        "InstanceType": "ml.m5.xlarge",  # today's size, what a silent spec gets
        "InstanceCount": 1,
        "VolumeKmsKeyId": KMS_KEY_ARN,
    }
    raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    raw["capacity"] = {"transform": {"instance_type": "ml.c5.4xlarge", "instance_count": 4}}
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(raw))
    transform = dataset_capacity("churn", tmp_path).transform
    body = transform_request(
        instance_type=transform.instance_type, instance_count=transform.instance_count
    )
    validate_request("sagemaker", "CreateTransformJob", body)
    assert (
        body["TransformResources"]["InstanceType"],
        body["TransformResources"]["InstanceCount"],
    ) == (
        "ml.c5.4xlarge",
        4,
    )
    # The builder still refuses what SageMaker would, naming the member.
    with pytest.raises(RequestValidationError, match=r"TransformResources\.InstanceType"):
        transform_request(instance_type="ml.c5.huge")


def test_model_and_transform_job_carry_the_jobs_cost_allocation_tags():
    tags = job_tags(
        "churn",
        dag_id="churn_scoring",
        run_id="scheduled__2026-01-07T00:00:00+00:00",
        extra={"model-version": "3"},
    )
    expected = [
        {"Key": "project", "Value": "headrace"},
        {"Key": "dataset", "Value": "churn"},
        {"Key": "dag", "Value": "churn_scoring"},
        {"Key": "run", "Value": "scheduled__2026-01-07T00:00:00+00:00"},
        {"Key": "model-version", "Value": "3"},
    ]
    model = requests.build_model_request(
        AWS_SETTINGS, model_name="headrace-churn-v3-0123456789ab", model_uri=MODEL_URI, tags=tags
    )
    validate_request("sagemaker", "CreateModel", model)
    assert model["Tags"] == expected
    body = transform_request(tags=tags)
    validate_request("sagemaker", "CreateTransformJob", body)
    assert body["Tags"] == expected
