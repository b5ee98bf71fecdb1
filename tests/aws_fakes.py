"""The fake AWS account every aws-target test runs against (a moto server on 127.0.0.1 and what a
deployment has made in it), and the recorder of every request the test's botocore clients send.

Used by the pytest fixtures of tests/conftest.py and by the scripts that run DAGs in a process of
their own (tests/contract/aws_lifecycle_driver.py, tests/plugins/fixtures/spark_job_dag.py),
which put the repository root on ``sys.path`` to import it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scripts.airflow_stack import free_port

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account: roles must belong to it
# The EMR Serverless application's maximum capacity in the aws target (include/cost.py prices a
# run at it).
EMR_SERVERLESS_MAXIMUM = {"cpu": "16 vCPU", "memory": "64 GB"}
# The account's applied Service Quotas: two instances of every SageMaker instance type and job
# kind (the lifecycle's runs fit; a training run with three trials at once does not), and EMR
# Serverless vCPUs for four times the application's maximum capacity.
QUOTA_INSTANCES = 2
EMR_SERVERLESS_VCPUS = 64
# The salt secret's ARN where no test reads the salt (no Spark job runs): valid in form only.
UNREAD_SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:headrace/pii-salt-AbCdEf"
# Variables that would send boto3 to a real profile or session.
AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN")


# --- the account ----------------------------------------------------------------------------


class MotoServer:
    """A moto server in a process of its own on 127.0.0.1. Its own process, not a thread of the
    test's: what it stores (a lake's objects) is never in the memory of the process under test,
    which the aws lifecycle driver measures task by task."""

    def __init__(self) -> None:
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        # Its request log goes to a file: read back only to say why it did not start.
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        # No account here runs an EC2 instance from a named image, so moto need not load its
        # default AMIs (EMR's instances are made without them): it did for every region at every
        # reset, about 0.3 s each, 26 s of the quality gate tests' moto server.
        env = {**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=self._output, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._output.seek(0)
                tail = self._output.read()[-2000:].decode(errors="replace")
                self.stop()
                raise RuntimeError(f"the moto server on port {port} did not start:\n{tail}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (by its own PID); safe to call more than once."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._output.close()


def start_moto():
    """A moto server on loopback, started: ``(server, endpoint URL)``; the caller stops it."""
    server = MotoServer()
    return server, server.endpoint


def call_moto_api(endpoint: str, path: str, payload: dict | None = None) -> None:
    """A call to a moto server's control API, ``/moto-api/<path>`` (``reset``,
    ``state-manager/set-transition``, ``recorder/start-recording`` …)."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}", data=json.dumps(payload or {}).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def moto_environment(endpoint: str) -> dict[str, str]:
    """What sends every boto3 client of a process to ``endpoint``. moto accepts any credentials;
    these only keep boto3 from looking for real ones. Unset :data:`AWS_UNSET` as well."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret (moto's dummy credential)
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
        "AWS_CONFIG_FILE": "/nonexistent/config",
    }


def start_moto_for_this_process():
    """A moto server, with this process's environment pointed at it (scripts that run DAGs in a
    process of their own); returns the server to stop."""
    server, endpoint = start_moto()
    os.environ.update(moto_environment(endpoint))
    for name in AWS_UNSET:
        os.environ.pop(name, None)
    return server


def aws_client(service: str):
    """A boto3 client in :data:`REGION`, of the endpoint the environment names."""
    import boto3

    return boto3.client(service, region_name=REGION)


@dataclass
class FakeAccount:
    """What :func:`build_fake_account` made; ``settings`` is the aws target's environment."""

    bucket: str
    kms_key_arn: str
    subnet_id: str
    availability_zone: str
    security_group_id: str
    settings: dict[str, str]
    topic_arn: str | None = None


def create_engine_resource(
    engine: str, maximum_capacity: dict | None = EMR_SERVERLESS_MAXIMUM
) -> dict[str, str]:
    """The application (emr_serverless) or cluster (emr_ec2) that ``engine`` runs on, made in
    moto; returns the setting that names it (none for glue). ``maximum_capacity`` None makes an
    application without one."""
    if engine == "emr_serverless":
        capacity = {"maximumCapacity": maximum_capacity} if maximum_capacity else {}
        application = aws_client("emr-serverless").create_application(
            name="headrace", releaseLabel="emr-7.9.0", type="SPARK", **capacity
        )
        return {"HEADRACE_EMR_SERVERLESS_APPLICATION_ID": application["applicationId"]}
    if engine == "emr_ec2":
        cluster = aws_client("emr").run_job_flow(
            Name="headrace",
            ReleaseLabel="emr-7.9.0",
            Instances={
                "MasterInstanceType": "m5.xlarge",
                "InstanceCount": 1,
                "KeepJobFlowAliveWhenNoSteps": True,
            },
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
        )
        return {"HEADRACE_EMR_CLUSTER_ID": cluster["JobFlowId"]}
    return {}


def build_fake_account(
    bucket: str,
    *,
    engine: str = "glue",
    engine_resources: Iterable[str] | None = None,
    pii_salt: str | None = None,
    alerts_topic: bool = False,
    versioned: bool = False,
) -> FakeAccount:
    """What a deployment makes before the DAGs run, in the moto the environment points at: the
    bucket (``versioned``: with versioning on), KMS key, VPC subnet and security group, and the
    resources of ``engine_resources`` (default: ``engine``'s). ``pii_salt``: the salt secret is
    made with it (else its ARN is :data:`UNREAD_SECRET_ARN`); ``alerts_topic``: the SNS topic."""
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    kms_key_arn = aws_client("kms").create_key(Description="headrace lake")["KeyMetadata"]["Arn"]
    ec2 = aws_client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}b"
    )["Subnet"]
    security_group_id = ec2.create_security_group(
        GroupName="headrace-jobs", Description="headrace jobs", VpcId=vpc_id
    )["GroupId"]
    secret_arn = UNREAD_SECRET_ARN
    if pii_salt is not None:
        secret_arn = aws_client("secretsmanager").create_secret(
            Name="headrace/pii-salt", SecretString=pii_salt
        )["ARN"]
    settings = {
        "PIPELINE_TARGET": "aws",
        "HEADRACE_BUCKET": bucket,
        "HEADRACE_LAKE_ROOT": f"s3://{bucket}/lake",
        "HEADRACE_SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/headrace-sagemaker",
        "HEADRACE_GLUE_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/headrace-glue",
        "HEADRACE_EMR_SERVERLESS_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/headrace-emr",
        "HEADRACE_KMS_KEY_ARN": kms_key_arn,
        "HEADRACE_SUBNET_IDS": subnet["SubnetId"],
        "HEADRACE_SECURITY_GROUP_IDS": security_group_id,
        "HEADRACE_PII_SALT_SECRET_ARN": secret_arn,
        "HEADRACE_SPARK_ENGINE": engine,
    }
    topic_arn = None
    if alerts_topic:
        topic_arn = aws_client("sns").create_topic(Name="headrace-alerts")["TopicArn"]
        settings["HEADRACE_ALERTS_TOPIC_ARN"] = topic_arn
    for resource in (engine,) if engine_resources is None else engine_resources:
        settings.update(create_engine_resource(resource))
    return FakeAccount(
        bucket=bucket,
        kms_key_arn=kms_key_arn,
        subnet_id=subnet["SubnetId"],
        availability_zone=subnet["AvailabilityZone"],
        security_group_id=security_group_id,
        settings=settings,
        topic_arn=topic_arn,
    )


# --- the record -----------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: bytes as their length and digest, others by type name."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    # A mapped task's XComs (a lazy sequence); never a request's stream, which must stay unread.
    if isinstance(value, Sequence):
        return [jsonable(v) for v in value]
    return f"<{type(value).__name__}>"


def service_quotas(params: dict) -> tuple[int, dict]:
    """ListServiceQuotas of the fake account, one page (moto implements no ListServiceQuotas):
    SageMaker's quota of each instance type of the price table and each job kind it is priced
    for, named as Service Quotas names them, and EMR Serverless's vCPUs."""
    from include.cost import load_prices
    from include.quotas import (
        EMR_SERVERLESS,
        EMR_SERVERLESS_VCPU_QUOTA,
        SAGEMAKER,
        sagemaker_quota_name,
    )

    def entry(service: str, name: str, value: float) -> dict:
        code = "L-" + hashlib.sha256(name.encode()).hexdigest()[:8].upper()
        arn = f"arn:aws:servicequotas:{REGION}:{ACCOUNT}:{service}/{code}"
        return {"ServiceCode": service, "QuotaCode": code, "QuotaName": name, "QuotaArn": arn,
                "Value": float(value)}  # fmt: skip

    if params["ServiceCode"] == EMR_SERVERLESS:
        vcpus = entry(EMR_SERVERLESS, EMR_SERVERLESS_VCPU_QUOTA, EMR_SERVERLESS_VCPUS)
        return 200, {"Quotas": [vcpus]}
    if params["ServiceCode"] != SAGEMAKER:
        return 400, {"Error": {"Code": "NoSuchResourceException", "Message": "no quotas"}}
    kinds = {"training": ("training", "spot training")}
    return 200, {
        "Quotas": [
            entry(SAGEMAKER, sagemaker_quota_name(instance_type, kind), QUOTA_INSTANCES)
            for use, prices in load_prices().sagemaker_instance_hour.items()
            for instance_type in prices
            for kind in kinds.get(use, (use,))
        ]
    }


# botocore's data loaders by data path, shared by every session RequestCapture hooks.
_SHARED_LOADERS: dict = {}


class RequestCapture:
    """Every request, who sent it (``actor``: ``dag:<dag_id>``, ``simulated``, ``setup`` …), and
    the stubs and after-call behaviours that stand in for what moto lacks.

    ``stubs`` maps ``(service, operation)`` to ``(http_status, parsed_response)`` or to a function
    of the request's parameters returning one: the call is answered on botocore's ``before-call``
    event and never reaches moto. ``after`` maps one to a function of ``(params, parsed)`` run on
    ``after-call``. The requests a stub or an after-call function sends are recorded as
    ``simulated``.
    """

    def __init__(self, actor: str = "setup") -> None:
        self.requests: list[dict] = []
        self.api_calls: list[tuple[str, str]] = []
        self.sessions_hooked = 0
        self.clients_created = 0
        self.actor = actor
        self._local = threading.local()
        # What moto lacks that every test of the aws target needs.
        self.stubs: dict[tuple[str, str], Any] = {
            ("service-quotas", "ListServiceQuotas"): service_quotas
        }
        self.after: dict[tuple[str, str], Any] = {}

    # While an after-call handler simulates AWS, its own requests are the simulator's.
    def current_actor(self) -> str:
        return getattr(self._local, "actor", None) or self.actor

    def of(self, service: str, operation: str) -> list[dict]:
        return [
            r["params"]
            for r in self.requests
            if (r["service"], r["operation"]) == (service, operation)
        ]

    @contextlib.contextmanager
    def simulating(self):
        outer = getattr(self._local, "actor", None)  # scopes nest
        self._local.actor = "simulated"
        try:
            yield
        finally:
            self._local.actor = outer

    def on_parameters(self, params, model, **kwargs) -> None:
        self.requests.append(
            {
                "seq": len(self.requests),
                "actor": self.current_actor(),
                "service": model.service_model.service_name,
                "operation": model.name,
                "params": jsonable(dict(params)),
                "stubbed": False,
            }
        )

    def on_before_call(self, model, params, **kwargs):
        stub = self.stubs.get((model.service_model.service_name, model.name))
        if stub is None:
            return None
        from botocore.awsrequest import AWSResponse

        request = self._last_of(model)
        request["stubbed"] = True
        # A stub stands in for AWS, as an after-call handler does: its own requests (a stubbed
        # Glue Data Quality run reading the lake) are the simulator's, not the caller's.
        with self.simulating():
            status, parsed = stub(request["params"]) if callable(stub) else stub
        return AWSResponse("http://stubbed.invalid", status, {}, None), parsed

    def on_after_call(self, http_response, parsed, model, **kwargs) -> None:
        handler = self.after.get((model.service_model.service_name, model.name))
        if handler is not None:
            with self.simulating():
                handler(self._last_of(model)["params"], parsed)

    def _last_of(self, model) -> dict:
        service = model.service_model.service_name
        return next(
            r
            for r in reversed(self.requests)
            if (r["service"], r["operation"]) == (service, model.name)
        )

    def install(self, patch=setattr) -> RequestCapture:
        """Hook every botocore session made from now on; ``patch(obj, name, value)`` sets the
        hooks (``monkeypatch.setattr`` in tests, to undo them after)."""
        import aiobotocore.client
        import boto3
        import botocore.client
        import botocore.session

        capture = self
        session_init = botocore.session.Session.__init__

        def hooked_init(session, *args, **kwargs):
            session_init(session, *args, **kwargs)
            # Each session's own loader parses the service models' JSON again (a task's hooks
            # make several sessions): a loader per data path, shared, parses each file once.
            # Only the parsing is shared: the models, and the clients built on them, are the
            # sessions' own.
            data_path = session.get_config_variable("data_path")
            loader = _SHARED_LOADERS.setdefault(data_path, session.get_component("data_loader"))
            session.register_component("data_loader", loader)
            session.register("before-parameter-build", capture.on_parameters)
            session.register("before-call", capture.on_before_call)
            session.register("after-call", capture.on_after_call)
            capture.sessions_hooked += 1

        patch(botocore.session.Session, "__init__", hooked_init)
        # A default session made before the hooks would make unhooked clients.
        patch(boto3, "DEFAULT_SESSION", None)

        sync_call = botocore.client.BaseClient._make_api_call

        def counted_call(client, operation_name, api_params):
            capture.api_calls.append((client.meta.service_model.service_name, operation_name))
            return sync_call(client, operation_name, api_params)

        patch(botocore.client.BaseClient, "_make_api_call", counted_call)

        async_call = aiobotocore.client.AioBaseClient._make_api_call

        async def counted_async_call(client, operation_name, api_params):
            capture.api_calls.append((client.meta.service_model.service_name, operation_name))
            return await async_call(client, operation_name, api_params)

        patch(aiobotocore.client.AioBaseClient, "_make_api_call", counted_async_call)

        sync_create = botocore.client.ClientCreator.create_client

        def counted_create(creator, *args, **kwargs):
            capture.clients_created += 1
            return sync_create(creator, *args, **kwargs)

        patch(botocore.client.ClientCreator, "create_client", counted_create)
        async_create = aiobotocore.client.AioClientCreator.create_client

        async def counted_async_create(creator, *args, **kwargs):
            capture.clients_created += 1
            return await async_create(creator, *args, **kwargs)

        patch(aiobotocore.client.AioClientCreator, "create_client", counted_async_create)
        return self
