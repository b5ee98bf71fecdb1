"""Fixtures of the AWS contract suite: a moto server on 127.0.0.1, the aws target pointed at it,
and the session-level request recorder of ``aws_lifecycle_driver.py`` (with its stubs for what
moto lacks), undone after each test. The lifecycle itself runs in a subprocess of its own."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from aws_lifecycle_driver import ACCOUNT, REGION, RequestCapture  # noqa: E402

ARTIFACTS = HERE.parents[1] / ".local" / "test-artifacts"
_SESSION_START = time.time()


def pytest_terminal_summary(terminalreporter):
    """Where this run's request logs are: kept as test artifacts (git-ignored .local/)."""
    logs = sorted(
        str(path)
        for path in ARTIFACTS.glob("aws_requests-*.jsonl")
        if path.stat().st_mtime >= _SESSION_START
    )
    if logs:
        terminalreporter.write_line("AWS contract request logs (JSON lines): " + ", ".join(logs))


@pytest.fixture(scope="session")
def contract_moto(start_moto_server):
    return start_moto_server()


@pytest.fixture
def recorded(monkeypatch) -> RequestCapture:
    """Every request of every botocore session created in the test (sync and async)."""
    import boto3

    capture = RequestCapture()
    capture.actor = "test"
    capture.install(monkeypatch.setattr)
    # A default session made before the hooks would make unhooked clients.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return capture


@pytest.fixture
def contract_target(contract_moto, moto_api, monkeypatch, fresh_settings, recorded):
    """``PIPELINE_TARGET=aws`` against a fresh moto, the engines' resources created in it."""
    import boto3

    from include.config import get_settings

    moto_api(contract_moto, "reset")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret (moto's dummy credential)
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": contract_moto,
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
        "AWS_CONFIG_FILE": "/nonexistent/config",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    def client(service: str):
        return boto3.client(service, region_name=REGION)

    bucket = "headrace-contract-lake"
    client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    kms_key_arn = client("kms").create_key()["KeyMetadata"]["Arn"]
    ec2 = client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}b"
    )["Subnet"]["SubnetId"]
    security_group_id = ec2.create_security_group(
        GroupName="headrace-jobs", Description="headrace jobs", VpcId=vpc_id
    )["GroupId"]
    application_id = client("emr-serverless").create_application(
        name="headrace",
        releaseLabel="emr-7.9.0",
        type="SPARK",
        maximumCapacity={"cpu": "16 vCPU", "memory": "64 GB"},
    )["applicationId"]
    cluster_id = client("emr").run_job_flow(
        Name="headrace",
        ReleaseLabel="emr-7.9.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                   "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]  # fmt: skip
    settings = {
        "PIPELINE_TARGET": "aws",
        "HEADRACE_BUCKET": bucket,
        "HEADRACE_LAKE_ROOT": f"s3://{bucket}/lake",
        "HEADRACE_SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/headrace-sagemaker",
        "HEADRACE_GLUE_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/headrace-glue",
        "HEADRACE_EMR_SERVERLESS_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/headrace-emr",
        "HEADRACE_KMS_KEY_ARN": kms_key_arn,
        "HEADRACE_SUBNET_IDS": subnet_id,
        "HEADRACE_SECURITY_GROUP_IDS": security_group_id,
        "HEADRACE_PII_SALT_SECRET_ARN": (
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:headrace/pii-salt-AbCdEf"
        ),
        "HEADRACE_SPARK_ENGINE": "glue",
        "HEADRACE_EMR_SERVERLESS_APPLICATION_ID": application_id,
        "HEADRACE_EMR_CLUSTER_ID": cluster_id,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    def use(engine: str) -> None:
        monkeypatch.setenv("HEADRACE_SPARK_ENGINE", engine)
        get_settings.cache_clear()

    yield SimpleNamespace(
        endpoint=contract_moto, bucket=bucket, kms_key_arn=kms_key_arn, client=client, use=use,
        application_id=application_id, cluster_id=cluster_id,
    )  # fmt: skip
    moto_api(contract_moto, "state-manager/unset-transition", {"model_name": "glue::job_run"})


@pytest.fixture
def task_context():
    """A task context as Airflow passes it, reduced to what the operators read."""

    def make(dag_id: str, task_id: str, run_id: str = "manual__2026-01-07T00:00:00+00:00"):
        ti = SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=-1)
        return {"ti": ti, "run_id": run_id}

    return make
