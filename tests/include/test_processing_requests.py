"""CreateProcessingJob: the body validates against botocore, carries the security settings, and its
container command really unpacks the source tarball and runs the entry point with its arguments."""

from __future__ import annotations

import subprocess

import pytest
from aws_test_env import AWS_ENV, KMS_KEY_ARN

from include import sagemaker_requests as requests
from include.aws_validation import RequestValidationError, validate_request
from include.config import load_settings
from include.job_tags import job_tags

SETTINGS = load_settings(AWS_ENV)
LAKE = "s3://headrace-test-lake/lake"
SOURCE = "s3://headrace-test-lake/artifacts/training/0123456789abcdef/sourcedir.tar.gz"
NAME = "headrace-churn-monitoring-baseline-0123456789abcdef"  # pragma: allowlist secret


def processing_request(settings=SETTINGS, lake=LAKE, source=SOURCE, **overrides):
    arguments = {
        "job_name": NAME,
        "entry_point": "monitor.py",
        "source_uri": source,
        "inputs": {"features": f"{lake}/features/churn/ds=2026-01-07"},
        "manifest_inputs": {"curated": f"{lake}/models/churn/input/curated.manifest.json"},
        "outputs": {"baseline": f"{lake}/monitoring/churn/baseline/v3"},
        "arguments": ["--ds", "2026-01-07"],
        **overrides,
    }
    return requests.build_processing_job_request(settings, **arguments)


def test_processing_job_is_isolated_encrypted_and_in_the_vpc():
    body = processing_request()
    assert body["NetworkConfig"] == {
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "VpcConfig": {
            "SecurityGroupIds": ["sg-0123456789abcdef0"],
            "Subnets": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
        },
    }
    assert body["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 1,
        "InstanceType": "ml.m5.xlarge",
        "VolumeSizeInGB": 30,
        "VolumeKmsKeyId": KMS_KEY_ARN,
    }
    assert body["ProcessingOutputConfig"]["KmsKeyId"] == KMS_KEY_ARN
    assert body["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert body["RoleArn"] == AWS_ENV["HEADRACE_SAGEMAKER_ROLE_ARN"]
    # The training image: processing runs in the environment the training code is built for.
    assert body["AppSpecification"]["ImageUri"] == SETTINGS.training.image_uri
    assert {"Key": "project", "Value": "headrace"} in body["Tags"]
    assert body["Environment"] == {"HEADRACE_PROCESSING_ROOT": "/opt/ml/processing"}


def test_inputs_are_the_code_folders_and_manifests_under_opt_ml_processing():
    body = processing_request()
    inputs = {item["InputName"]: item["S3Input"] for item in body["ProcessingInputs"]}
    assert list(inputs) == ["code", "features", "curated"]
    assert inputs["code"]["S3Uri"] == "s3://headrace-test-lake/artifacts/training/0123456789abcdef/"
    assert inputs["code"]["LocalPath"] == "/opt/ml/processing/input/code"
    assert inputs["features"]["S3Uri"] == f"{LAKE}/features/churn/ds=2026-01-07/"
    assert inputs["features"]["S3DataType"] == "S3Prefix"
    assert inputs["curated"] == {
        "S3Uri": f"{LAKE}/models/churn/input/curated.manifest.json",
        "LocalPath": "/opt/ml/processing/input/curated",
        "S3DataType": "ManifestFile",
        "S3InputMode": "File",
        "S3DataDistributionType": "FullyReplicated",
        "S3CompressionType": "None",
    }
    (output,) = body["ProcessingOutputConfig"]["Outputs"]
    assert output == {
        "OutputName": "baseline",
        "S3Output": {
            "S3Uri": f"{LAKE}/monitoring/churn/baseline/v3/",
            "LocalPath": "/opt/ml/processing/output/baseline",
            "S3UploadMode": "EndOfJob",
        },
    }
    assert body["AppSpecification"]["ContainerArguments"] == ["--ds", "2026-01-07"]


def test_every_uri_lies_in_the_lake_bucket_and_names_are_checked():
    with pytest.raises(
        ValueError, match=r"output 'baseline' 's3://elsewhere/x' is not in the lake"
    ):
        processing_request(outputs={"baseline": "s3://elsewhere/x"})
    with pytest.raises(ValueError, match="reserved for the source tarball"):
        processing_request(inputs={"code": f"{LAKE}/x"})
    with pytest.raises(
        ValueError, match=r"\['curated'\] are given both as folders and as manifests"
    ):
        processing_request(inputs={"curated": f"{LAKE}/x"})
    with pytest.raises(ValueError, match=r"must name a sourcedir\.tar\.gz"):
        processing_request(source="s3://headrace-test-lake/artifacts/training/0123/code.zip")
    with pytest.raises(ValueError, match="max_runtime_s=0 must be between 1 and 777600"):
        processing_request(max_runtime_s=0)


def test_botocore_refuses_what_sagemaker_would():
    with pytest.raises(RequestValidationError, match="InstanceType"):
        processing_request(instance_type="ml.g9.huge")
    with pytest.raises(RequestValidationError, match="ProcessingJobName"):
        processing_request(job_name="x" * 64)


def test_local_body_has_file_uris_and_no_aws_resources(tmp_path):
    local = load_settings({"HEADRACE_LAKE_ROOT": (tmp_path / "lake").as_uri()})
    lake = local.lake_root
    body = processing_request(
        local, lake=lake, source=f"{lake}/artifacts/training/0123456789abcdef/sourcedir.tar.gz"
    )
    assert "VpcConfig" not in body["NetworkConfig"]
    assert "KmsKeyId" not in body["ProcessingOutputConfig"]
    assert body["AppSpecification"]["ImageUri"] == requests.LOCAL_PROCESSING_IMAGE
    assert body["RoleArn"] == requests.LOCAL_ROLE_ARN
    with pytest.raises(ValueError, match="must be an absolute file:// URI on the local target"):
        processing_request(local, lake=lake, source=SOURCE)


def test_the_container_command_unpacks_the_tarball_and_runs_the_entry_point(tmp_path):
    package = tmp_path / "package"
    package.mkdir()
    (package / "train.py").write_text("")
    (package / "helper.py").write_text("GREETING = 'unpacked'\n")
    (package / "monitor.py").write_text(
        "import sys\nfrom helper import GREETING\n"
        "open(sys.argv[2], 'w').write(GREETING + ' ' + ' '.join(sys.argv[1:2]))\n"
    )
    root = tmp_path / "processing"
    code = root / "input" / "code"
    code.mkdir(parents=True)
    (code / requests.SOURCE_TARBALL).write_bytes(
        requests.build_source_tarball("package", repo_root=tmp_path, shared_modules=())
    )
    result_file = tmp_path / "result.txt"

    command = requests.processing_entrypoint("monitor.py", root=str(root))
    subprocess.run([*command, "--ds=2026-01-07", str(result_file)], check=True, timeout=60)

    assert result_file.read_text() == "unpacked --ds=2026-01-07"
    assert (root / "source" / "helper.py").is_file()


def test_processing_job_carries_the_jobs_cost_allocation_tags():
    run_id = "asset_triggered__2026-01-07T00:05:00+00:00_Xy12AbCd"
    body = processing_request(tags=job_tags("churn", dag_id="churn_monitoring", run_id=run_id))
    validate_request("sagemaker", "CreateProcessingJob", body)
    assert body["Tags"] == [
        {"Key": "project", "Value": "headrace"},
        {"Key": "dataset", "Value": "churn"},
        {"Key": "dag", "Value": "churn_monitoring"},
        {"Key": "run", "Value": run_id},
    ]
