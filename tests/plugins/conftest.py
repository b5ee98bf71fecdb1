"""Fixtures for operator tests: a moto server on 127.0.0.1, the aws target pointed at it, a
recorder of every AWS request sent, and an Airflow task context."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account: roles must belong to it


# The EMR Serverless application's maximum capacity in the AWS target (include/cost.py prices a
# run at it).
EMR_SERVERLESS_MAXIMUM = {"cpu": "16 vCPU", "memory": "64 GB"}


@pytest.fixture(scope="session")
def moto_server(start_moto_server):
    """One moto server for the session, on loopback only; each test resets its state."""
    return start_moto_server()


@dataclass
class AwsCall:
    service: str
    operation: str
    params: dict


@dataclass
class AwsCallRecorder:
    """Every request any botocore client sends in the test, and canned answers for some.

    ``stubs`` maps ``(service, operation)`` to ``(http_status, parsed_response)``: the call is
    answered by the ``before-call`` event and never reaches moto. Used only for operations moto
    does not implement, so the request the operator sends can still be asserted.
    """

    calls: list[AwsCall] = field(default_factory=list)
    stubs: dict[tuple[str, str], tuple[int, dict]] = field(default_factory=dict)

    def of(self, service: str, operation: str) -> list[dict]:
        return [
            call.params
            for call in self.calls
            if call.service == service and call.operation == operation
        ]

    def _record(self, params, model, **kwargs):
        self.calls.append(AwsCall(model.service_model.service_name, model.name, dict(params)))

    def _answer(self, model, **kwargs):
        stub = self.stubs.get((model.service_model.service_name, model.name))
        if stub is None:
            return None
        from botocore.awsrequest import AWSResponse

        status, parsed = stub
        return AWSResponse("http://stubbed.invalid", status, {}, None), parsed


@pytest.fixture
def aws_calls(monkeypatch) -> AwsCallRecorder:
    """Registers the recorder's event hooks on every botocore client created in the test, and on
    every aiobotocore client (what the provider's triggers poll with)."""
    from aiobotocore.client import AioClientCreator
    from botocore.client import ClientCreator

    recorder = AwsCallRecorder()
    create_client = ClientCreator.create_client
    create_aio_client = AioClientCreator.create_client

    def hooked(client):
        client.meta.events.register("before-parameter-build", recorder._record)
        client.meta.events.register("before-call", recorder._answer)
        return client

    def create_recorded_client(self, *args, **kwargs):
        return hooked(create_client(self, *args, **kwargs))

    async def create_recorded_aio_client(self, *args, **kwargs):
        return hooked(await create_aio_client(self, *args, **kwargs))

    monkeypatch.setattr(ClientCreator, "create_client", create_recorded_client)
    monkeypatch.setattr(AioClientCreator, "create_client", create_recorded_aio_client)
    return recorder


@pytest.fixture
def aws_target(moto_server, moto_api, monkeypatch, fresh_settings):
    """``PIPELINE_TARGET=aws`` against a fresh moto: bucket, KMS key, subnet, security group.

    Returns a namespace with the ids, a boto3 client factory, and ``use(engine)`` that creates
    the engine's application or cluster in moto and selects it in settings.
    """
    import boto3

    from include.config import get_settings

    moto_api(moto_server, "reset")
    # moto accepts any credentials; these only keep boto3 from looking for real ones.
    fake_credentials = dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "testing")
    for name, value in {
        **fake_credentials,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_server,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")

    def client(service: str):
        return boto3.client(service, region_name=REGION)

    bucket = "headrace-test-lake"
    client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    kms_key_arn = client("kms").create_key(Description="headrace test key")["KeyMetadata"]["Arn"]
    ec2 = client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}b"
    )["Subnet"]
    security_group_id = ec2.create_security_group(
        GroupName="headrace-jobs", Description="headrace jobs", VpcId=vpc_id
    )["GroupId"]

    env = {
        "PIPELINE_TARGET": "aws",
        "HEADRACE_BUCKET": bucket,
        "HEADRACE_LAKE_ROOT": f"s3://{bucket}/lake",
        "HEADRACE_SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/headrace-sagemaker",
        "HEADRACE_GLUE_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/headrace-glue",
        "HEADRACE_EMR_SERVERLESS_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/headrace-emr",
        "HEADRACE_KMS_KEY_ARN": kms_key_arn,
        "HEADRACE_SUBNET_IDS": subnet["SubnetId"],
        "HEADRACE_SECURITY_GROUP_IDS": security_group_id,
        "HEADRACE_PII_SALT_SECRET_ARN": (
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:headrace/pii-salt-AbCdEf"
        ),
        "HEADRACE_SPARK_ENGINE": "glue",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    target = SimpleNamespace(
        endpoint=moto_server,
        bucket=bucket,
        kms_key_arn=kms_key_arn,
        subnet_id=subnet["SubnetId"],
        availability_zone=subnet["AvailabilityZone"],
        security_group_id=security_group_id,
        client=client,
        application_id=None,
        cluster_id=None,
    )

    def use(engine: str, emr_serverless_maximum_capacity=EMR_SERVERLESS_MAXIMUM) -> None:
        """Select ``engine``; an EMR Serverless application has ``emr_serverless_maximum_capacity``
        (a deployment's has one: a run is priced at it; None: none, which is refused)."""
        if engine == "emr_serverless":
            capacity = emr_serverless_maximum_capacity
            target.application_id = client("emr-serverless").create_application(
                name="headrace",
                releaseLabel="emr-7.9.0",
                type="SPARK",
                **({"maximumCapacity": capacity} if capacity else {}),
            )["applicationId"]
            monkeypatch.setenv("HEADRACE_EMR_SERVERLESS_APPLICATION_ID", target.application_id)
        elif engine == "emr_ec2":
            target.cluster_id = client("emr").run_job_flow(
                Name="headrace",
                ReleaseLabel="emr-7.9.0",
                Instances={
                    "MasterInstanceType": "m5.xlarge",
                    "InstanceCount": 1,
                    "KeepJobFlowAliveWhenNoSteps": True,
                },
                JobFlowRole="EMR_EC2_DefaultRole",
                ServiceRole="EMR_DefaultRole",
            )["JobFlowId"]
            monkeypatch.setenv("HEADRACE_EMR_CLUSTER_ID", target.cluster_id)
        monkeypatch.setenv("HEADRACE_SPARK_ENGINE", engine)
        get_settings.cache_clear()

    def hold_glue_runs_starting() -> None:
        """moto finishes Glue runs on first sight; keep them STARTING, like a real queue."""
        moto_api(
            moto_server,
            "state-manager/set-transition",
            {
                "model_name": "glue::job_run",
                "transition": {"progression": "manual", "times": 10**6},
            },
        )

    target.use = use
    target.hold_glue_runs_starting = hold_glue_runs_starting
    yield target
    moto_api(moto_server, "state-manager/unset-transition", {"model_name": "glue::job_run"})


@pytest.fixture
def task_context():
    """A task context as Airflow passes it, reduced to what the operator reads."""

    def make(
        dag_id: str = "ingest_daily",
        run_id: str = "scheduled__2026-01-02T00:00:00+00:00",
        task_id: str = "ingest",
        map_index: int = -1,
    ) -> dict:
        ti = SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)
        return {"ti": ti, "run_id": run_id}

    return make
