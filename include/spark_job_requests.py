"""Request bodies that run a ``spark_jobs`` entry point on Glue, EMR Serverless or EMR on EC2.

Built once, from settings, with AWS's own key spelling, and checked against botocore's service
model before they leave this module (:func:`include.aws_validation.validate_request`). Every
body carries the security settings from config: the Glue job runs in the configured subnet and
security groups and encrypts S3, logs and bookmarks with the configured KMS key; EMR Serverless
encrypts its logs with it; all three have a maximum runtime.

A run's size is its dataset's (``capacity.spark`` in the dataset spec,
:class:`spark_jobs.dataset_spec.SparkCapacity`): Glue workers go in StartJobRun, since the Glue job
definition is shared by every dataset; EMR executors go in the run's Spark properties.

The code ships as two objects under the lake bucket's ``artifacts/spark_jobs/`` prefix: the
entry-point script (``<job>.py``) and a zip of the whole jobs package for its imports
(``--extra-py-files`` on Glue, ``--py-files`` on EMR). :func:`spark_job_artifacts` builds both
deterministically, so an unchanged package uploads nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from include.aws_validation import validate_request
from include.config import REPO_ROOT, AwsSettings, ConfigError, Settings
from include.job_names import NAMING_RULES, sanitize
from include.job_tags import PROJECT, check_tags
from spark_jobs.dataset_spec import (
    DEFAULT_GLUE_WORKER_TYPE,
    DEFAULT_GLUE_WORKERS,
    DEFAULT_SPARK_MAX_RUNTIME_MINUTES,
    ExecutorCapacity,
    GlueCapacity,
)

# Glue 5.1 runs Spark 3.5.6 on Python 3.11: the pyspark pinned for local runs and tests.
GLUE_VERSION = "5.1"
ARTIFACTS_PREFIX = "artifacts/spark_jobs"
JOBS_PACKAGE = "spark_jobs"
# Glue has no run names, so a run carries its run key as an argument; a retry finds its run by it.
GLUE_RUN_KEY_ARGUMENT = "--headrace-run-key"
# Glue's own arguments, which a job's argv must not set through job_args.
_GLUE_RESERVED_ARGUMENTS = frozenset(
    {GLUE_RUN_KEY_ARGUMENT, "--extra-py-files", "--job-language", "--TempDir", "--conf"}
)
DEFAULT_TIMEOUT = timedelta(minutes=DEFAULT_SPARK_MAX_RUNTIME_MINUTES)
# A run of a dataset whose spec sets no capacity: Glue's smallest job, EMR's own executor defaults.
DEFAULT_GLUE_CAPACITY = GlueCapacity()
DEFAULT_EXECUTORS = ExecutorCapacity()
# EMR Serverless refuses run timeouts under five minutes.
EMR_SERVERLESS_MIN_TIMEOUT_MINUTES = 5

_JOB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _aws(settings: Settings) -> AwsSettings:
    if settings.aws is None:
        raise ConfigError(
            f"AWS job requests need PIPELINE_TARGET=aws; this process runs {settings.target!r}"
        )
    return settings.aws


def _check_job(job: str) -> str:
    if not _JOB_NAME.match(job):
        raise ValueError(f"job {job!r} is not a module name under {JOBS_PACKAGE}/ (e.g. 'ingest')")
    return job


def timeout_minutes(timeout: timedelta) -> int:
    """A timeout in whole minutes, rounded up: AWS runtime limits are set in minutes."""
    minutes = math.ceil(timeout.total_seconds() / 60)
    if minutes < 1:
        raise ValueError(f"timeout must be at least one minute, got {timeout}")
    return minutes


# --- code artifacts ----------------------------------------------------------------------


def artifacts_prefix_uri(settings: Settings) -> str:
    return f"s3://{_aws(settings).bucket}/{ARTIFACTS_PREFIX}"


def script_uri(settings: Settings, job: str) -> str:
    """Where the entry point of ``job`` lives in S3, e.g. ``s3://bucket/artifacts/spark_jobs/ingest.py``."""
    return f"{artifacts_prefix_uri(settings)}/{_check_job(job)}.py"


def package_uri(settings: Settings, package: str = JOBS_PACKAGE) -> str:
    """Where the zip of the jobs package lives in S3, e.g. ``…/artifacts/spark_jobs/spark_jobs.zip``."""
    return f"{artifacts_prefix_uri(settings)}/{package}.zip"


def build_package_zip(package: str = JOBS_PACKAGE, repo_root: Path = REPO_ROOT) -> bytes:
    """The ``.py`` files of ``package`` as a zip importable from ``--py-files``.

    Byte-for-byte deterministic (sorted entries, fixed timestamps and modes), so its hash says
    whether the code changed. Every package level gets an ``__init__.py``, written empty where
    the source tree has none: zipimport does not find namespace packages.
    """
    package_dir = repo_root.joinpath(*package.split("."))
    if not package_dir.is_dir():
        raise FileNotFoundError(f"jobs package {package!r} not found at {package_dir}")
    entries: dict[str, bytes] = {}
    parts = package.split(".")
    for depth in range(1, len(parts) + 1):
        entries["/".join(parts[:depth]) + "/__init__.py"] = b""
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        entries[path.relative_to(repo_root).as_posix()] = path.read_bytes()

    return deterministic_zip(entries)


def deterministic_zip(entries: dict[str, bytes]) -> bytes:
    """A zip of ``{name: bytes}`` with sorted entries, fixed timestamps and modes: the same
    files always give the same bytes (and so the same content address)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def spark_job_artifacts(
    settings: Settings, job: str, *, package: str = JOBS_PACKAGE, repo_root: Path = REPO_ROOT
) -> dict[str, bytes]:
    """``{s3 uri: bytes}`` of what ``job`` needs in S3: its entry point and the package zip."""
    script = repo_root.joinpath(*package.split("."), f"{_check_job(job)}.py")
    if not script.is_file():
        raise FileNotFoundError(f"Spark job {job!r} has no entry point at {script}")
    return {
        script_uri(settings, job): script.read_bytes(),
        package_uri(settings, package): build_package_zip(package, repo_root),
    }


# --- AWS Glue ----------------------------------------------------------------------------


def glue_job_name(job: str) -> str:
    """The Glue job of one entry point, shared by all its runs, e.g. ``headrace-ingest``."""
    return sanitize(f"headrace-{_check_job(job)}", NAMING_RULES["glue_job"])


def glue_security_configuration_name(settings: Settings) -> str:
    # Security configurations cannot be changed, so a new KMS key gets a new name.
    key_hash = hashlib.sha256(_aws(settings).kms_key_arn.encode()).hexdigest()[:12]
    return f"headrace-kms-{key_hash}"


def build_glue_security_configuration_request(settings: Settings) -> dict:
    """CreateSecurityConfiguration: S3 output, CloudWatch logs and bookmarks under the KMS key."""
    kms_key_arn = _aws(settings).kms_key_arn
    body = {
        "Name": glue_security_configuration_name(settings),
        "EncryptionConfiguration": {
            "S3Encryption": [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": kms_key_arn}],
            "CloudWatchEncryption": {
                "CloudWatchEncryptionMode": "SSE-KMS",
                "KmsKeyArn": kms_key_arn,
            },
            "JobBookmarksEncryption": {
                "JobBookmarksEncryptionMode": "CSE-KMS",
                "KmsKeyArn": kms_key_arn,
            },
        },
    }
    validate_request("glue", "CreateSecurityConfiguration", body)
    return body


def glue_network_connection_name(settings: Settings) -> str:
    return f"headrace-network-{_aws(settings).subnet_ids[0]}"


def build_glue_network_connection_request(settings: Settings, availability_zone: str) -> dict:
    """CreateConnection of type NETWORK: how a Glue job runs inside the configured VPC.

    Glue places a job's workers in the subnet of its first network connection, so this uses the
    first configured subnet. ``availability_zone`` is that subnet's zone (EC2 DescribeSubnets).
    """
    aws = _aws(settings)
    body = {
        "ConnectionInput": {
            "Name": glue_network_connection_name(settings),
            "Description": "headrace Spark jobs run in this subnet and these security groups",
            "ConnectionType": "NETWORK",
            "ConnectionProperties": {},
            "PhysicalConnectionRequirements": {
                "SubnetId": aws.subnet_ids[0],
                "SecurityGroupIdList": list(aws.security_group_ids),
                "AvailabilityZone": availability_zone,
            },
        }
    }
    validate_request("glue", "CreateConnection", body)
    return body


def build_glue_job_request(
    settings: Settings,
    job: str,
    *,
    package: str = JOBS_PACKAGE,
    timeout: timedelta = DEFAULT_TIMEOUT,
    worker_type: str = DEFAULT_GLUE_WORKER_TYPE,
    number_of_workers: int = DEFAULT_GLUE_WORKERS,
    max_concurrent_runs: int = 10,
) -> dict:
    """CreateJob: the Glue job definition of one entry point.

    Shared by every dataset's runs, so its worker type and count are only the fallback: each
    run carries its dataset's (:func:`build_glue_start_job_run_request`).

    ``Description`` ends in a digest of the rest of the body, so comparing descriptions tells
    whether an existing job needs an UpdateJob, without second-guessing the defaults Glue fills in.
    """
    aws = _aws(settings)
    body = {
        "Name": glue_job_name(job),
        "Role": aws.glue_role_arn,
        "Command": {
            "Name": "glueetl",
            "ScriptLocation": script_uri(settings, job),
            "PythonVersion": "3",
        },
        "DefaultArguments": {
            "--job-language": "python",
            "--extra-py-files": package_uri(settings, package),
            "--TempDir": f"s3://{aws.bucket}/artifacts/glue-temp/",
            # Idempotency is the job's own (per-partition atomic writes), not Glue bookmarks'.
            "--job-bookmark-option": "job-bookmark-disable",
            "--enable-continuous-cloudwatch-log": "true",
            "--enable-metrics": "true",
        },
        # Runs of different DAG runs and mapped tasks share this job; over the limit they queue.
        "ExecutionProperty": {"MaxConcurrentRuns": max_concurrent_runs},
        "JobRunQueuingEnabled": True,
        # Airflow owns retries: a Glue-side retry would be a run no task knows about.
        "MaxRetries": 0,
        "Timeout": timeout_minutes(timeout),
        "GlueVersion": GLUE_VERSION,
        "WorkerType": worker_type,
        "NumberOfWorkers": number_of_workers,
        "ExecutionClass": "STANDARD",
        "SecurityConfiguration": glue_security_configuration_name(settings),
        "Connections": {"Connections": [glue_network_connection_name(settings)]},
        # The job's cost allocation tags: StartJobRun takes none, so a run is billed under its
        # job's, and the definition is shared by every dataset and run (no dataset/dag/run tag).
        "Tags": {"project": PROJECT, "spark_job": job},
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    body["Description"] = f"headrace Spark job {package}.{job} (definition {digest})"
    validate_request("glue", "CreateJob", body)
    return body


def build_glue_update_job_request(job_request: dict) -> dict:
    """UpdateJob carrying the same definition as the CreateJob body ``job_request``."""
    update = {key: value for key, value in job_request.items() if key not in ("Name", "Tags")}
    body = {"JobName": job_request["Name"], "JobUpdate": update}
    validate_request("glue", "UpdateJob", body)
    return body


def glue_arguments(job_args: Sequence[str]) -> dict[str, str]:
    """A job's argv as Glue ``Arguments``: ``["--ds", "2026-01-01"]`` → ``{"--ds": "2026-01-01"}``.

    Glue passes arguments as ``--key value`` pairs and nothing else, so a flag without a value or
    a positional argument is refused here, naming it, rather than silently dropped.
    """
    args = list(job_args)
    if len(args) % 2:
        raise ValueError(f"Glue job arguments come in --key value pairs; {args[-1]!r} has no value")
    arguments: dict[str, str] = {}
    for key, value in zip(args[::2], args[1::2], strict=True):
        if not key.startswith("--") or len(key) < 3:
            raise ValueError(f"Glue job argument {key!r} must be a --key followed by its value")
        if key in _GLUE_RESERVED_ARGUMENTS:
            raise ValueError(f"Glue job argument {key!r} is set by headrace; use another name")
        if key in arguments:
            raise ValueError(f"Glue job argument {key!r} is given twice")
        arguments[key] = str(value)
    return arguments


def build_glue_start_job_run_request(
    settings: Settings,
    job: str,
    job_args: Sequence[str],
    run_key: str,
    *,
    timeout: timedelta = DEFAULT_TIMEOUT,
    capacity: GlueCapacity = DEFAULT_GLUE_CAPACITY,
) -> dict:
    """StartJobRun: the job's argv as arguments, plus the run key a retry finds this run by.

    :param capacity: the run's workers (the dataset spec's ``capacity.spark.glue``); they
        override the shared job definition's for this run only.
    """
    # No Tags: Glue's StartJobRun has no such member; the job definition carries them
    # (build_glue_job_request).
    body = {
        "JobName": glue_job_name(job),
        "Arguments": {**glue_arguments(job_args), GLUE_RUN_KEY_ARGUMENT: run_key},
        "Timeout": timeout_minutes(timeout),
        "WorkerType": capacity.worker_type,
        "NumberOfWorkers": capacity.number_of_workers,
        "SecurityConfiguration": glue_security_configuration_name(settings),
    }
    validate_request("glue", "StartJobRun", body)
    return body


# --- EMR Serverless ----------------------------------------------------------------------


def executor_conf_arguments(executors: ExecutorCapacity) -> list[str]:
    """``--conf key=value`` arguments of spark-submit carrying the run's executor sizes."""
    return [
        argument
        for key, value in executors.spark_conf().items()
        for argument in ("--conf", f"{key}={value}")
    ]


def build_emr_serverless_start_job_run_request(
    settings: Settings,
    job: str,
    job_args: Sequence[str],
    *,
    name: str,
    client_token: str,
    package: str = JOBS_PACKAGE,
    timeout: timedelta = DEFAULT_TIMEOUT,
    spark_submit_parameters: str = "",
    executors: ExecutorCapacity = DEFAULT_EXECUTORS,
    tags: Mapping[str, str] | None = None,
) -> dict:
    """StartJobRun on the configured application.

    ``client_token`` makes a repeated start return the first run instead of a second one;
    ``name`` is how a retry lists this task's runs. The subnets and security groups are the
    application's (EMR Serverless sets the network per application, not per run).

    :param executors: the run's executors (the dataset spec's ``capacity.spark.emr_serverless``).
        StartJobRun has no capacity member: the application's maximum capacity bounds all its
        runs, and ``spark.dynamicAllocation.maxExecutors`` with the executor size bounds this one.
    :param tags: the run's cost allocation tags (:func:`include.job_tags.job_tags`);
        ``project`` and ``spark_job`` are always set.
    """
    aws = _aws(settings)
    if not aws.emr_serverless_application_id:
        raise ConfigError("HEADRACE_EMR_SERVERLESS_APPLICATION_ID is required for EMR Serverless")
    minutes = timeout_minutes(timeout)
    if minutes < EMR_SERVERLESS_MIN_TIMEOUT_MINUTES:
        raise ValueError(
            f"executionTimeoutMinutes must be at least {EMR_SERVERLESS_MIN_TIMEOUT_MINUTES} "
            f"on EMR Serverless, got {minutes} (timeout {timeout})"
        )
    submit = " ".join(
        ["--py-files", package_uri(settings, package), *executor_conf_arguments(executors)]
    )
    if spark_submit_parameters:
        submit = f"{submit} {spark_submit_parameters}"
    spark_submit: dict = {"entryPoint": script_uri(settings, job), "sparkSubmitParameters": submit}
    if job_args:
        spark_submit["entryPointArguments"] = [str(arg) for arg in job_args]
    body = {
        "applicationId": aws.emr_serverless_application_id,
        "clientToken": client_token,
        "executionRoleArn": aws.emr_serverless_role_arn,
        "name": name,
        "jobDriver": {"sparkSubmit": spark_submit},
        "configurationOverrides": {
            "monitoringConfiguration": {
                "s3MonitoringConfiguration": {
                    "logUri": f"s3://{aws.bucket}/artifacts/emr-serverless-logs/",
                    "encryptionKeyArn": aws.kms_key_arn,
                }
            }
        },
        "executionTimeoutMinutes": minutes,
        "tags": check_tags({"project": PROJECT, **(tags or {}), "spark_job": job}),
    }
    validate_request("emr-serverless", "StartJobRun", body)
    return body


# --- EMR on EC2 --------------------------------------------------------------------------


def build_emr_add_steps_request(
    settings: Settings,
    job: str,
    job_args: Sequence[str],
    *,
    step_name: str,
    package: str = JOBS_PACKAGE,
    executors: ExecutorCapacity = DEFAULT_EXECUTORS,
) -> dict:
    """AddJobFlowSteps: one ``spark-submit`` step on the configured cluster.

    ``ActionOnFailure=CONTINUE``: a failed job fails its task, never the shared cluster.
    ``step_name`` is how a retry lists this task's step. A step has no runtime limit of its own
    (the operator stops it after its timeout).

    :param executors: the step's executors (the dataset spec's ``capacity.spark.emr_step``),
        within what the cluster's instances hold.
    """
    aws = _aws(settings)
    if not aws.emr_cluster_id:
        raise ConfigError("HEADRACE_EMR_CLUSTER_ID is required for EMR on EC2")
    spark_submit = [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        "--py-files",
        package_uri(settings, package),
        *executor_conf_arguments(executors),
        script_uri(settings, job),
        *(str(arg) for arg in job_args),
    ]
    # No tags: AddJobFlowSteps has no such member; a step is billed under its cluster's tags,
    # which whoever creates the cluster sets (RunJobFlow's Tags), not headrace.
    body = {
        "JobFlowId": aws.emr_cluster_id,
        "Steps": [
            {
                "Name": step_name,
                "ActionOnFailure": "CONTINUE",
                "HadoopJarStep": {"Jar": "command-runner.jar", "Args": spark_submit},
            }
        ],
    }
    validate_request("emr", "AddJobFlowSteps", body)
    return body
