"""The one place headrace reads its settings from: environment variables, validated.

DAG files, operators and builders call :func:`get_settings` and never read ``os.environ``
themselves, so both targets are configured the same way (``.env.example`` lists every variable).
Nothing here creates clients or touches storage: reading settings is cheap and safe at parse time.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from spark_jobs.dataset_spec import Capacity, InstanceCapacity

TARGETS = ("local", "aws")
# Where Spark jobs run on the aws target; the local target always uses local Spark.
SPARK_ENGINES = ("glue", "emr_serverless", "emr_ec2")
LAKE_ZONES = (
    "landing",
    "curated",
    "quarantine",
    "features",
    "models",
    "predictions",
    "monitoring",
    "reports",
    # OpenLineage events of every task (include/lineage.py).
    "lineage",
)

# The repository root: the default local lake lives under it, in a git-ignored folder.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCAL_LAKE = REPO_ROOT / ".local" / "lake"

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/+=,.@-]+$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$")
_EMR_SERVERLESS_APP = re.compile(r"^[0-9a-z]{16}$")
_SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
_EMR_CLUSTER = re.compile(r"^j-[0-9A-Z]{8,15}$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
# An SQS queue URL: https://sqs.<region>.amazonaws.com/<account>/<name> (any endpoint, so a
# VPC endpoint or a moto server in tests works too).
_SQS_QUEUE_URL = re.compile(r"^https?://[^/\s]+/\d{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?$")
_ECR_IMAGE = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+"
    r"(:[\w.-]{1,128}|@sha256:[0-9a-f]{64})$"
)

# The SageMaker PyTorch training image (Deep Learning Container) the training code targets:
# PyTorch 2.5.1 is the newest SageMaker PyTorch training DLC built for Python 3.11 (2.6 moved
# to 3.12), the Python this repository pins; GPU build with CUDA 12.4.
TRAINING_IMAGE_REPOSITORY = "pytorch-training"
TRAINING_IMAGE_TAG = "2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker"
# The DLCs live in account 763104351884 in most regions; these regions use their own account
# (the SageMaker Python SDK's image_uri_config lists the same).
DEFAULT_DLC_ACCOUNT = "763104351884"
DLC_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-3": "364406365360",
    "ap-southeast-3": "907027046896",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-south-1": "692866216735",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}


# The reconciliation report's default for how long a day may sit at one stage before it is
# called stuck (HEADRACE_STUCK_AFTER_HOURS), and the range allowed: 6 minutes to 30 days.
DEFAULT_STUCK_AFTER_HOURS = 6.0
STUCK_AFTER_HOURS_RANGE = (0.1, 720.0)


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names every offending variable."""


def default_training_image_uri(region: str) -> str:
    """The SageMaker PyTorch GPU training image of ``region`` (override: HEADRACE_TRAINING_IMAGE_URI)."""
    account = DLC_ACCOUNTS.get(region, DEFAULT_DLC_ACCOUNT)
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{TRAINING_IMAGE_REPOSITORY}:{TRAINING_IMAGE_TAG}"


@dataclass(frozen=True)
class TrainingSettings:
    """How training and tuning jobs run, on both targets.

    The instance, volume, image and spot settings shape the SageMaker requests; the runtime and
    tuning limits bound the local runtime too (it honours the same request body).
    """

    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 50
    max_runtime_s: int = 2 * 3600
    # Managed spot training: cheaper, may be interrupted; checkpoints make it resumable.
    use_spot: bool = True
    # How long SageMaker may wait for spot capacity plus run: at least max_runtime_s.
    max_wait_s: int = 4 * 3600
    # Empty on the local target unless set: the local runtime runs no container image.
    image_uri: str = ""
    tuning_max_jobs: int = 20
    tuning_max_parallel_jobs: int = 2


@dataclass(frozen=True)
class AwsSettings:
    """What the aws target needs to build secure job requests (VPC, KMS, roles)."""

    region: str
    bucket: str
    sagemaker_role_arn: str
    glue_role_arn: str
    emr_serverless_role_arn: str
    kms_key_arn: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    # The salt for hashing PII columns, kept in Secrets Manager (never in job arguments).
    pii_salt_secret_arn: str
    spark_engine: str = "glue"
    emr_serverless_application_id: str = ""
    emr_cluster_id: str = ""
    # Drift alerts are published here; empty: alerts are only written to the lake and logged.
    alerts_topic_arn: str = ""
    # The SQS queue S3 event notifications of the landing prefix go to; the ingestion DAGs'
    # watchers start a run per landed day. Empty: ingestion runs daily and by hand only.
    landing_queue_url: str = ""


@dataclass(frozen=True)
class Settings:
    """Validated settings. ``aws`` is set exactly when ``target == "aws"``."""

    target: str
    lake_root: str
    aws: AwsSettings | None = field(default=None)
    # Where local jobs keep their state (pid, status, log); one folder per Airflow deployment,
    # because run ids are unique only within one metadata database. Empty: see local_runs_root.
    local_runs_dir: str = ""
    training: TrainingSettings = field(default_factory=TrainingSettings)
    # Local target: where people and producers drop landing files (``<inbox>/<dataset>/…``);
    # the ingestion DAGs' watchers move each complete file into the landing zone.
    landing_inbox_uri: str = ""
    # Seconds between two looks at the local inbox; a file is taken once its size and
    # modification time are the same at two consecutive looks.
    landing_poll_s: float = 2.0
    # The reconciliation report calls a day stuck once it has sat at one stage (landed,
    # curated, validated, …) this long without moving on; its DAG alerts on stuck days.
    stuck_after_hours: float = DEFAULT_STUCK_AFTER_HOURS

    @property
    def is_local(self) -> bool:
        return self.target == "local"

    @property
    def local_runs_root(self) -> Path:
        """The folder of every local job (``<root>/<kind>-jobs/<name>``, :mod:`include.local_jobs`):
        ``local_runs_dir`` (the local stack sets one in its Airflow home), else the repository's
        ``.local/local_runs``."""
        return (
            Path(self.local_runs_dir)
            if self.local_runs_dir
            else REPO_ROOT / ".local" / "local_runs"
        )

    def zone_uri(self, zone: str) -> str:
        """URI of one lake zone, e.g. ``file:///…/lake/curated`` or ``s3://bucket/prefix/curated``."""
        if zone not in LAKE_ZONES:
            raise ConfigError(f"unknown lake zone {zone!r}; zones are {', '.join(LAKE_ZONES)}")
        return f"{self.lake_root.rstrip('/')}/{zone}"


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings from ``environ`` (default: the process environment).

    Every problem is collected first and reported in one :class:`ConfigError`, so a person
    fixing ``.env`` sees all the bad variables at once.
    """
    env = os.environ if environ is None else environ
    errors: list[str] = []

    target = env.get("PIPELINE_TARGET", "local").strip().lower() or "local"
    if target not in TARGETS:
        errors.append(f"PIPELINE_TARGET={target!r} is not one of {', '.join(TARGETS)}")

    if target == "aws":
        aws, aws_errors = _load_aws(env)
        errors.extend(aws_errors)
        default_lake = f"s3://{aws.bucket}/lake" if aws and aws.bucket else ""
    else:
        aws = None
        default_lake = DEFAULT_LOCAL_LAKE.as_uri()

    lake_root = env.get("HEADRACE_LAKE_ROOT", "").strip() or default_lake
    errors.extend(_lake_root_errors(lake_root, target, aws))
    training = _load_training(env, aws.region if aws else "", errors)
    landing_inbox_uri, landing_poll_s = _load_landing(env, lake_root, errors)
    stuck_after_hours = _load_stuck_after_hours(env, errors)

    if errors:
        raise ConfigError("invalid headrace settings:\n  - " + "\n  - ".join(errors))
    return Settings(
        target=target,
        lake_root=lake_root.rstrip("/"),
        aws=aws,
        local_runs_dir=env.get("HEADRACE_LOCAL_RUNS_DIR", "").strip(),
        training=training,
        landing_inbox_uri=landing_inbox_uri,
        landing_poll_s=landing_poll_s,
        stuck_after_hours=stuck_after_hours,
    )


def _load_landing(env: Mapping[str, str], lake_root: str, errors: list[str]) -> tuple[str, float]:
    """The local landing inbox (default ``<lake>/landing/_inbox``) and its poll interval."""
    inbox = env.get("HEADRACE_LANDING_INBOX", "").strip().rstrip("/")
    if not inbox:
        # Under the landing zone but outside every ``landing/<dataset>/`` the ingest job reads.
        inbox = f"{lake_root.rstrip('/')}/landing/_inbox" if lake_root else ""
    elif urlparse(inbox).scheme != "file" or not urlparse(inbox).path.startswith("/"):
        errors.append(f"HEADRACE_LANDING_INBOX={inbox!r} must be an absolute file:// URI")
    raw_poll = env.get("HEADRACE_LANDING_POLL_S", "").strip()
    poll_s = 2.0
    if raw_poll:
        try:
            poll_s = float(raw_poll)
        except ValueError:
            errors.append(f"HEADRACE_LANDING_POLL_S={raw_poll!r} is not a number of seconds")
        else:
            if not 0.1 <= poll_s <= 3600:
                errors.append(f"HEADRACE_LANDING_POLL_S={poll_s} must be between 0.1 and 3600")
                poll_s = 2.0
    return inbox, poll_s


def _load_stuck_after_hours(env: Mapping[str, str], errors: list[str]) -> float:
    """``HEADRACE_STUCK_AFTER_HOURS``: hours at one stage before the reconciliation report calls
    a day stuck (default 6)."""
    raw = env.get("HEADRACE_STUCK_AFTER_HOURS", "").strip()
    if not raw:
        return DEFAULT_STUCK_AFTER_HOURS
    try:
        hours = float(raw)
    except ValueError:
        errors.append(f"HEADRACE_STUCK_AFTER_HOURS={raw!r} is not a number of hours")
        return DEFAULT_STUCK_AFTER_HOURS
    low, high = STUCK_AFTER_HOURS_RANGE
    if not low <= hours <= high:  # also refuses nan
        errors.append(f"HEADRACE_STUCK_AFTER_HOURS={hours} must be between {low} and {high} hours")
        return DEFAULT_STUCK_AFTER_HOURS
    return hours


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _load_training(env: Mapping[str, str], region: str, errors: list[str]) -> TrainingSettings:
    """Training and tuning settings; problems are appended to ``errors``, defaults kept."""
    defaults = TrainingSettings()

    def integer(name: str, default: int, minimum: int) -> int:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            errors.append(f"{name}={raw!r} is not a whole number")
            return default
        if value < minimum:
            errors.append(f"{name}={value} must be at least {minimum}")
            return default
        return value

    instance_type = env.get("HEADRACE_TRAINING_INSTANCE_TYPE", "").strip() or defaults.instance_type
    if not _INSTANCE_TYPE.match(instance_type):
        errors.append(
            f"HEADRACE_TRAINING_INSTANCE_TYPE={instance_type!r} is not a SageMaker instance type "
            "(ml.<family>.<size>, e.g. ml.g5.xlarge)"
        )

    raw_spot = env.get("HEADRACE_TRAINING_USE_SPOT", "").strip().lower()
    use_spot = defaults.use_spot
    if raw_spot in _TRUE:
        use_spot = True
    elif raw_spot in _FALSE:
        use_spot = False
    elif raw_spot:
        errors.append(f"HEADRACE_TRAINING_USE_SPOT={raw_spot!r} is not true or false")

    max_runtime_s = integer("HEADRACE_TRAINING_MAX_RUNTIME_S", defaults.max_runtime_s, 1)
    # Unset, the wait allows as long again for spot capacity as the job may run.
    max_wait_s = integer("HEADRACE_TRAINING_MAX_WAIT_S", 2 * max_runtime_s, 1)
    if use_spot and max_wait_s < max_runtime_s:
        errors.append(
            f"HEADRACE_TRAINING_MAX_WAIT_S={max_wait_s} must be at least "
            f"HEADRACE_TRAINING_MAX_RUNTIME_S={max_runtime_s} with managed spot training "
            "(HEADRACE_TRAINING_USE_SPOT=true)"
        )

    image_uri = env.get("HEADRACE_TRAINING_IMAGE_URI", "").strip()
    if image_uri and not _ECR_IMAGE.match(image_uri):
        errors.append(
            f"HEADRACE_TRAINING_IMAGE_URI={image_uri!r} is not an ECR image URI "
            "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>)"
        )
    elif not image_uri and region:
        image_uri = default_training_image_uri(region)

    max_jobs = integer("HEADRACE_TUNING_MAX_JOBS", defaults.tuning_max_jobs, 1)
    max_parallel = integer(
        "HEADRACE_TUNING_MAX_PARALLEL_JOBS", defaults.tuning_max_parallel_jobs, 1
    )
    if max_parallel > max_jobs:
        errors.append(
            f"HEADRACE_TUNING_MAX_PARALLEL_JOBS={max_parallel} is more than "
            f"HEADRACE_TUNING_MAX_JOBS={max_jobs}"
        )

    return TrainingSettings(
        instance_type=instance_type,
        instance_count=integer("HEADRACE_TRAINING_INSTANCE_COUNT", defaults.instance_count, 1),
        volume_size_gb=integer("HEADRACE_TRAINING_VOLUME_GB", defaults.volume_size_gb, 1),
        max_runtime_s=max_runtime_s,
        use_spot=use_spot,
        max_wait_s=max_wait_s,
        image_uri=image_uri,
        tuning_max_jobs=max_jobs,
        tuning_max_parallel_jobs=max_parallel,
    )


def _load_aws(env: Mapping[str, str]) -> tuple[AwsSettings | None, list[str]]:
    errors: list[str] = []

    def required(name: str, pattern: re.Pattern[str], what: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            errors.append(f"{name} is required when PIPELINE_TARGET=aws ({what})")
        elif not pattern.match(value):
            errors.append(f"{name}={value!r} is not a valid {what}")
        return value

    def required_list(name: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
        values = _split_list(env.get(name, ""))
        if not values:
            errors.append(f"{name} is required when PIPELINE_TARGET=aws (comma-separated {what}s)")
        errors.extend(
            f"{name}: {value!r} is not a valid {what}"
            for value in values
            if not pattern.match(value)
        )
        return values

    spark_engine = env.get("HEADRACE_SPARK_ENGINE", "glue").strip().lower() or "glue"
    if spark_engine not in SPARK_ENGINES:
        errors.append(
            f"HEADRACE_SPARK_ENGINE={spark_engine!r} is not one of {', '.join(SPARK_ENGINES)}"
        )

    region = env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip()
    if not region:
        errors.append("AWS_REGION is required when PIPELINE_TARGET=aws (e.g. eu-west-1)")
    elif not _REGION.match(region):
        errors.append(f"AWS_REGION={region!r} is not a valid AWS region name")

    aws = AwsSettings(
        region=region,
        bucket=required("HEADRACE_BUCKET", _BUCKET, "S3 bucket name"),
        sagemaker_role_arn=required("HEADRACE_SAGEMAKER_ROLE_ARN", _ROLE_ARN, "IAM role ARN"),
        glue_role_arn=required("HEADRACE_GLUE_ROLE_ARN", _ROLE_ARN, "IAM role ARN"),
        emr_serverless_role_arn=required(
            "HEADRACE_EMR_SERVERLESS_ROLE_ARN", _ROLE_ARN, "IAM role ARN"
        ),
        kms_key_arn=required("HEADRACE_KMS_KEY_ARN", _KMS_KEY_ARN, "KMS key or alias ARN"),
        subnet_ids=required_list("HEADRACE_SUBNET_IDS", _SUBNET, "subnet id"),
        security_group_ids=required_list(
            "HEADRACE_SECURITY_GROUP_IDS", _SECURITY_GROUP, "security group id"
        ),
        pii_salt_secret_arn=required(
            "HEADRACE_PII_SALT_SECRET_ARN", _SECRET_ARN, "Secrets Manager secret ARN"
        ),
        spark_engine=spark_engine,
        emr_serverless_application_id=(
            required(
                "HEADRACE_EMR_SERVERLESS_APPLICATION_ID",
                _EMR_SERVERLESS_APP,
                "EMR Serverless application id",
            )
            if spark_engine == "emr_serverless"
            else env.get("HEADRACE_EMR_SERVERLESS_APPLICATION_ID", "").strip()
        ),
        emr_cluster_id=(
            required("HEADRACE_EMR_CLUSTER_ID", _EMR_CLUSTER, "EMR cluster id (j-…)")
            if spark_engine == "emr_ec2"
            else env.get("HEADRACE_EMR_CLUSTER_ID", "").strip()
        ),
        alerts_topic_arn=_optional(
            env, "HEADRACE_ALERTS_TOPIC_ARN", _SNS_TOPIC_ARN, "SNS topic ARN", errors
        ),
        landing_queue_url=_optional(
            env,
            "HEADRACE_LANDING_QUEUE_URL",
            _SQS_QUEUE_URL,
            "SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue>)",
            errors,
        ),
    )
    return aws, errors


def _optional(
    env: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str, errors: list[str]
) -> str:
    value = env.get(name, "").strip()
    if value and not pattern.match(value):
        errors.append(f"{name}={value!r} is not a valid {what}")
    return value


def _lake_root_errors(lake_root: str, target: str, aws: AwsSettings | None) -> list[str]:
    if not lake_root:
        return ["HEADRACE_LAKE_ROOT is empty and no default can be derived"]
    parsed = urlparse(lake_root)
    if target == "local":
        if parsed.scheme != "file" or not parsed.path.startswith("/"):
            return [
                f"HEADRACE_LAKE_ROOT={lake_root!r} must be an absolute file:// URI "
                "when PIPELINE_TARGET=local"
            ]
        return []
    if target == "aws":
        if parsed.scheme != "s3" or not parsed.netloc:
            return [
                f"HEADRACE_LAKE_ROOT={lake_root!r} must be an s3:// URI when PIPELINE_TARGET=aws"
            ]
        if aws and aws.bucket and parsed.netloc != aws.bucket:
            return [
                f"HEADRACE_LAKE_ROOT={lake_root!r} is not inside HEADRACE_BUCKET={aws.bucket!r}: "
                "every job reads and writes only the lake bucket"
            ]
    return []


@functools.cache
def get_settings() -> Settings:
    """Settings of this process, read once (tests call ``get_settings.cache_clear()``)."""
    return load_settings()


# --- per-dataset capacity ----------------------------------------------------------------------

DATASETS_DIR = REPO_ROOT / "include" / "datasets"


def dataset_capacity(dataset: str, datasets_dir: Path = DATASETS_DIR) -> Capacity:
    """The ``capacity:`` block of ``<datasets_dir>/<dataset>.yaml``, today's sizes where it is
    silent (:class:`spark_jobs.dataset_spec.Capacity`).

    :raises spark_jobs.dataset_spec.SpecError: the spec is missing or invalid, naming the field.
    """
    from spark_jobs.dataset_spec import load_spec

    return load_spec(Path(datasets_dir) / f"{dataset}.yaml").capacity


def with_training_capacity(settings: Settings, capacity: InstanceCapacity) -> Settings:
    """``settings`` with a dataset's training capacity (its spec's ``capacity.training``).

    What the spec sets wins over ``HEADRACE_TRAINING_INSTANCE_TYPE`` / ``_INSTANCE_COUNT`` /
    ``_MAX_RUNTIME_S``; what it leaves out keeps the deployment's setting. A runtime above the
    deployment's spot wait gets a wait of twice the runtime, as an unset
    ``HEADRACE_TRAINING_MAX_WAIT_S`` does.
    """
    from dataclasses import replace

    training = settings.training
    changes: dict[str, object] = {}
    if capacity.instance_type is not None:
        changes["instance_type"] = capacity.instance_type
    if capacity.instance_count is not None:
        changes["instance_count"] = capacity.instance_count
    if capacity.max_runtime_minutes is not None:
        runtime_s = capacity.max_runtime_minutes * 60
        changes["max_runtime_s"] = runtime_s
        if training.max_wait_s < runtime_s:
            changes["max_wait_s"] = 2 * runtime_s
    if not changes:
        return settings
    return replace(settings, training=replace(training, **changes))
