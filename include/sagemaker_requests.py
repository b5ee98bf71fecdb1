"""Request bodies for SageMaker training, tuning and batch scoring: CreateTrainingJob,
CreateHyperParameterTuningJob, CreateModel and CreateTransformJob.

Built once, from settings, with AWS's own key spelling, and checked against botocore's service
model before they leave this module (:func:`include.aws_validation.validate_request`). On the aws
target they go to SageMaker as they are; on the local target :mod:`include.local_sagemaker` runs
the very same body on this machine, so both targets share one description of a training job.

Every aws body carries the security settings from config: the job runs in the configured
subnets and security groups (``VpcConfig``), with network isolation and inter-container traffic
encryption on, its volume and its output encrypted with the configured KMS key, a maximum
runtime, and managed spot training with checkpoints when enabled. Every S3 URI lies in the lake
bucket.

The training code runs in SageMaker script mode: the PyTorch training image (a SageMaker
Deep Learning Container) downloads ``sourcedir.tar.gz`` (a tarball of ``training/``, see
:func:`build_source_tarball`) and runs ``sagemaker_program`` from it with every other
hyperparameter as a ``--name value`` flag. With network isolation the container has no network
and no credentials, so it cannot fetch the tarball from S3 itself; as the SageMaker Python SDK
does in that case, the tarball travels as an input channel named ``code`` (SageMaker's own agent
downloads channels, outside the container), and ``sagemaker_submit_directory`` points at
``/opt/ml/input/data/code/sourcedir.tar.gz``.

A data channel is a folder (``S3Prefix``: every object under it) or a SageMaker manifest file
(``ManifestFile``, :func:`channel_manifest`: exactly the objects it lists); the training DAG uses
manifest files, so a job reads a committed partition's files and never a stray one beside them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import re
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from include.aws_validation import validate_request
from include.config import (
    REPO_ROOT,
    TRAINING_IMAGE_REPOSITORY,
    TRAINING_IMAGE_TAG,
    ConfigError,
    Settings,
)
from include.job_tags import PROJECT, check_tags

# One metric value as the training code prints it: ``validation:auc=0.812345``.
METRIC_VALUE_PATTERN = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
# What training/train.py prints, per epoch and once at the end (the training contract).
TRAINING_METRICS = (
    "train:loss",
    "validation:loss",
    "validation:auc",
    "validation:logloss",
    "test:auc",
    "test:logloss",
    "test:f1",
)
OBJECTIVE_METRIC = "validation:auc"
OBJECTIVE_TYPE = "Maximize"

TRAINING_CHANNELS = ("train", "validation", "test")
CHANNEL_CONTENT_TYPE = "application/x-parquet"
# S3DataType of a data channel: every object under a prefix, or exactly a manifest file's list.
S3_PREFIX = "S3Prefix"
MANIFEST_FILE = "ManifestFile"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
CODE_CHANNEL = "code"
SOURCE_TARBALL = "sourcedir.tar.gz"
CONTAINER_SOURCE_TARBALL = f"/opt/ml/input/data/{CODE_CHANNEL}/{SOURCE_TARBALL}"
ENTRY_POINT = "train.py"
TRAINING_PACKAGE = "training"
# The code artifact's prefix in the lake bucket; the key holds the tarball's digest, so a code
# change gets a new object and an unchanged package uploads nothing.
SOURCE_PREFIX = "artifacts/training"
# Files at the source directory's root that make the SageMaker training toolkit pip-install at
# job start (requirements.txt: ``pip install -r``; setup.py: ``pip install .``), which a job with
# network isolation cannot do. What training/ imports comes from the image instead
# (training/image_packages.txt), so the tarball carries neither.
INSTALL_TRIGGERS = ("requirements.txt", "setup.py")
# Repository modules the tarball carries at their own paths beside the package's files: the
# processing jobs (training/process.py) run include/monitoring/ and include/scoring_job.py in the
# training image.
# They import only what the image has; tests/training/test_training_dependencies.py checks them.
# report.py (matplotlib) stays out: the worker renders the HTML from the job's small report.
SHARED_MODULES = (
    "include/__init__.py",
    "include/scoring_job.py",
    "include/storage.py",
    *(
        f"include/monitoring/{name}.py"
        for name in ("__init__", "baseline", "columns", "drift", "job", "score_join",
                     "statistics", "streaming", "thresholds")
    ),
)  # fmt: skip
# Script mode's own hyperparameters (sagemaker-training-toolkit's params.py): read by the
# container, never passed to the entry point. Tuning jobs add _tuning_objective_metric.
SCRIPT_MODE_HYPERPARAMETERS = frozenset(
    {
        "sagemaker_program",
        "sagemaker_submit_directory",
        "sagemaker_region",
        "sagemaker_container_log_level",
        "sagemaker_job_name",
        "sagemaker_enable_cloudwatch_metrics",
        "sagemaker_s3_output",
        "_tuning_objective_metric",
    }
)
# On the local target nothing is sent to IAM, but CreateTrainingJob requires a role: this one
# never leaves the machine, and the local runtime ignores it.
LOCAL_ROLE_ARN = "arn:aws:iam::000000000000:role/headrace-local-training"

# The search space of the training contract's hyperparameters (training/train.py flags).
DEFAULT_PARAMETER_RANGES: dict[str, list[dict[str, Any]]] = {
    "ContinuousParameterRanges": [
        {
            "Name": "learning-rate",
            "MinValue": "0.0001",
            "MaxValue": "0.01",
            "ScalingType": "Logarithmic",
        },
        {
            "Name": "weight-decay",
            "MinValue": "0.000001",
            "MaxValue": "0.01",
            "ScalingType": "Logarithmic",
        },
        {"Name": "dropout", "MinValue": "0.0", "MaxValue": "0.5", "ScalingType": "Linear"},
    ],
    "IntegerParameterRanges": [
        {"Name": "hidden-width", "MinValue": "64", "MaxValue": "512", "ScalingType": "Linear"},
        {"Name": "num-layers", "MinValue": "1", "MaxValue": "4", "ScalingType": "Linear"},
    ],
    "CategoricalParameterRanges": [{"Name": "batch-size", "Values": ["1024", "2048", "4096"]}],
}
RANGE_KINDS = ("ContinuousParameterRanges", "IntegerParameterRanges", "CategoricalParameterRanges")

_TAR_EPOCH = 0


def metric_definitions(names: Sequence[str] = TRAINING_METRICS) -> list[dict[str, str]]:
    """``MetricDefinitions`` for metrics printed as ``name=value``; SageMaker keeps the last value."""
    return [{"Name": name, "Regex": f"{re.escape(name)}={METRIC_VALUE_PATTERN}"} for name in names]


def hyperparameter_value(name: str, value: Any) -> str:
    """A hyperparameter as SageMaker carries it: a string (``True`` → ``"true"``, ``1e-3`` → ``"0.001"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"hyperparameter {name!r} is {value}; it must be a finite number")
        return repr(value)
    if isinstance(value, str):
        return value
    raise TypeError(
        f"hyperparameter {name!r} is a {type(value).__name__}; use a string, number or bool"
    )


# --- the training code artifact --------------------------------------------------------------


def build_source_tarball(
    package: str = TRAINING_PACKAGE,
    repo_root: Path = REPO_ROOT,
    shared_modules: Sequence[str] = SHARED_MODULES,
) -> bytes:
    """``sourcedir.tar.gz`` of the training package: its files at the archive root, as script
    mode expects (``train.py`` beside the modules it imports), and ``shared_modules`` (files or
    folders of ``repo_root``) at their own paths.

    Byte-for-byte deterministic (sorted entries, fixed times, owners and modes, gzip without a
    timestamp), so its digest says whether the code changed. Caches, tests and notebooks stay out.
    A package with an :data:`INSTALL_TRIGGERS` file is refused: the job could not install it.
    """
    package_dir = repo_root / package
    if not (package_dir / ENTRY_POINT).is_file():
        raise FileNotFoundError(
            f"training package has no entry point at {package_dir / ENTRY_POINT}"
        )
    for name in INSTALL_TRIGGERS:
        if (package_dir / name).exists():
            raise ValueError(
                f"{package_dir / name} would make the training job pip-install at start, which "
                "it cannot do with network isolation: use what the training image has "
                f"({package}/image_packages.txt) or change the image"
            )
    files = {path.relative_to(package_dir).as_posix(): path for path in _source_files(package_dir)}
    for module in shared_modules:
        source = repo_root / module
        if not source.exists():
            raise FileNotFoundError(f"the source tarball's shared module {source} does not exist")
        shared = [source] if source.is_file() else _source_files(source)
        files.update({path.relative_to(repo_root).as_posix(): path for path in shared})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in sorted(files.items()):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = _TAR_EPOCH
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _source_files(folder: Path) -> list[Path]:
    """The files of a source folder the tarball carries: no caches, hidden files or notebooks."""
    return [
        path
        for path in folder.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.suffix not in (".pyc", ".ipynb")
    ]


def training_source_artifact(
    settings: Settings,
    package: str = TRAINING_PACKAGE,
    repo_root: Path = REPO_ROOT,
    shared_modules: Sequence[str] = SHARED_MODULES,
) -> tuple[str, bytes]:
    """``(uri, bytes)`` of the source tarball, at a content-addressed key in the lake bucket
    (``s3://bucket/artifacts/training/<digest>/sourcedir.tar.gz``; under the lake root locally)."""
    tarball = build_source_tarball(package, repo_root, shared_modules)
    digest = hashlib.sha256(tarball).hexdigest()[:16]
    if settings.aws is not None:
        root = f"s3://{settings.aws.bucket}"
    else:
        root = settings.lake_root.rstrip("/")
    return f"{root}/{SOURCE_PREFIX}/{digest}/{SOURCE_TARBALL}", tarball


# --- CreateTrainingJob ---------------------------------------------------------------------


def _tag_list(tags: Mapping[str, str] | None) -> list[dict[str, str]]:
    """SageMaker's ``Tags``: ``project=headrace`` and the caller's (a job's are
    :func:`include.job_tags.job_tags`), checked here: botocore's validator cannot read
    SageMaker's ``\\p{L}`` tag pattern, so :func:`validate_request` leaves it to the service."""
    return [
        {"Key": key, "Value": value}
        for key, value in check_tags({"project": PROJECT, **(tags or {})}).items()
    ]


def _vpc_config(aws) -> dict[str, list[str]]:
    """A job's ``VpcConfig``: the lake's subnets and security groups."""
    return {"SecurityGroupIds": list(aws.security_group_ids), "Subnets": list(aws.subnet_ids)}


def _check_uri(settings: Settings, uri: str, what: str) -> str:
    """``uri`` if the target may use it: in the lake bucket on aws, an absolute file:// locally."""
    parsed = urlparse(uri)
    if settings.aws is not None:
        if parsed.scheme != "s3" or parsed.netloc != settings.aws.bucket:
            raise ValueError(
                f"{what} {uri!r} is not in the lake bucket s3://{settings.aws.bucket}/: "
                "every job reads and writes only the lake bucket"
            )
    elif parsed.scheme != "file" or not parsed.path.startswith("/"):
        raise ValueError(f"{what} {uri!r} must be an absolute file:// URI on the local target")
    return uri


def _prefix(uri: str) -> str:
    # An S3 prefix matches keys, not folders: without the slash, split=train would also take in
    # split=train_old.
    return uri if uri.endswith("/") else uri + "/"


def channel_manifest(prefix_uri: str, keys: Sequence[str]) -> bytes:
    """A ``ManifestFile`` channel's manifest, in the format SageMaker documents:
    ``[{"prefix": "s3://bucket/some/prefix/"}, "relative/key-1", …]``.

    The channel holds exactly ``prefix + key`` for each key; SageMaker downloads each object under
    the channel folder by its key. The bytes depend only on the arguments, so writing the same
    channel again writes the same object.
    """
    if not prefix_uri.endswith("/"):
        raise ValueError(f"manifest prefix {prefix_uri!r} must end with '/' (a folder, not a key)")
    if not keys:
        raise ValueError(f"a manifest under {prefix_uri} needs at least one key")
    bad = [key for key in keys if not key or key.startswith("/") or ".." in key.split("/")]
    if bad:
        raise ValueError(f"manifest keys {bad} are not relative to the prefix {prefix_uri}")
    return (json.dumps([{"prefix": prefix_uri}, *keys], indent=2) + "\n").encode()


def write_processing_inputs(
    root_uri: str, plan: bytes, channels: Mapping[str, tuple[str, Sequence[str]]]
) -> tuple[dict[str, str], dict[str, str]]:
    """Write a processing job's plan and channel manifests under ``root_uri/<digest>/``; returns
    the job's ``inputs`` (``plan``: the plan's folder, holding ``plan.json``) and
    ``manifest_inputs`` (name → manifest URI).

    :param channels: input name → (folder URI, keys in it): the input holds exactly those files.
    The digest covers every byte written, so a retry writes the same objects at the same keys.
    """
    from include.scoring_job import PLAN_FILE, PLAN_INPUT
    from include.storage import storage_for

    manifests = {
        name: channel_manifest(f"{prefix.rstrip('/')}/", list(keys))
        for name, (prefix, keys) in channels.items()
    }
    digest = hashlib.sha256(plan + b"".join(manifests.values())).hexdigest()[:16]
    folder = f"{root_uri.rstrip('/')}/{digest}"
    storage = storage_for(folder)
    storage.write_bytes(f"{folder}/{PLAN_INPUT}/{PLAN_FILE}", plan)
    manifest_inputs = {}
    for name, data in manifests.items():
        manifest_inputs[name] = f"{folder}/{name}.manifest.json"
        storage.write_bytes(manifest_inputs[name], data)
    return {PLAN_INPUT: f"{folder}/{PLAN_INPUT}"}, manifest_inputs


def _check_stopping(settings: Settings) -> None:
    training = settings.training
    if training.use_spot and training.max_wait_s < training.max_runtime_s:
        raise ConfigError(
            f"HEADRACE_TRAINING_MAX_WAIT_S={training.max_wait_s} must be at least "
            f"HEADRACE_TRAINING_MAX_RUNTIME_S={training.max_runtime_s} with managed spot training"
        )


def build_training_job_request(
    settings: Settings,
    *,
    job_name: str,
    hyperparameters: Mapping[str, Any],
    channels: Mapping[str, str],
    output_uri: str,
    checkpoint_uri: str,
    source_uri: str | None = None,
    channel_data_type: str = S3_PREFIX,
    entry_point: str = ENTRY_POINT,
    metric_names: Sequence[str] = TRAINING_METRICS,
    environment: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict:
    """CreateTrainingJob: the training code in script mode on the configured instance.

    :param settings: the process settings; ``settings.training`` sizes the job, ``settings.aws``
        (on aws) gives the role, KMS key, subnets and security groups.
    :param job_name: the deterministic job name (:mod:`include.job_names`, rule ``sagemaker``).
    :param hyperparameters: the entry point's flags without dashes, e.g. ``{"epochs": 20}``;
        values become strings.
    :param channels: channel name → URI of a folder of parquet files, e.g.
        ``{"train": ".../features/churn/ds=2026-01-07/split=train"}``, or of a manifest file
        listing them (:func:`channel_manifest`), as ``channel_data_type`` says.
    :param output_uri: where SageMaker writes ``<job_name>/output/model.tar.gz``.
    :param checkpoint_uri: where checkpoints in ``/opt/ml/checkpoints`` are kept, so an
        interrupted spot job resumes.
    :param source_uri: the ``sourcedir.tar.gz`` (:func:`training_source_artifact`); required on
        aws, optional locally (the local runtime runs the repository's ``training/``).
    :param channel_data_type: ``S3Prefix`` (every object under each folder) or ``ManifestFile``
        (exactly the objects each manifest lists).
    :param entry_point: the script in the tarball that script mode runs.
    :param metric_names: metrics the job prints as ``name=value``, tracked by regex.
    :param environment: extra environment variables of the container.
    :param tags: extra tags (``project=headrace`` is always set).
    """
    training = settings.training
    aws = settings.aws
    _check_stopping(settings)
    if not channels:
        raise ValueError("a training job needs at least one input channel (e.g. train)")
    if CODE_CHANNEL in channels:
        raise ValueError(f"channel name {CODE_CHANNEL!r} is reserved for the source tarball")
    if aws is not None and not source_uri:
        raise ValueError("source_uri (the sourcedir.tar.gz in S3) is required on the aws target")
    if channel_data_type not in (S3_PREFIX, MANIFEST_FILE):
        raise ValueError(
            f"channel_data_type {channel_data_type!r} is not supported; use {S3_PREFIX} or "
            f"{MANIFEST_FILE}"
        )

    user_hyperparameters = {
        str(name): hyperparameter_value(str(name), value) for name, value in hyperparameters.items()
    }
    reserved = sorted(
        name
        for name in user_hyperparameters
        if name in SCRIPT_MODE_HYPERPARAMETERS or name.startswith("sagemaker_")
    )
    if reserved:
        raise ValueError(f"hyperparameters {reserved} are script mode's own; headrace sets them")
    script_mode = {
        "sagemaker_program": entry_point,
        "sagemaker_container_log_level": "20",
        "sagemaker_job_name": job_name,
    }
    if aws is not None:
        script_mode["sagemaker_region"] = aws.region

    input_data = [
        {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": channel_data_type,
                    "S3Uri": _channel_uri(settings, uri, name, channel_data_type),
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "ContentType": CHANNEL_CONTENT_TYPE,
            "CompressionType": "None",
            "InputMode": "File",
        }
        for name, uri in channels.items()
    ]
    if source_uri:
        input_data.append(
            {
                "ChannelName": CODE_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": _check_uri(settings, source_uri, "source_uri"),
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
        )
        script_mode["sagemaker_submit_directory"] = CONTAINER_SOURCE_TARBALL

    stopping: dict[str, int] = {"MaxRuntimeInSeconds": training.max_runtime_s}
    if training.use_spot:
        stopping["MaxWaitTimeInSeconds"] = training.max_wait_s
    output: dict[str, str] = {"S3OutputPath": _check_uri(settings, output_uri, "output_uri")}
    resources: dict[str, Any] = {
        "InstanceType": training.instance_type,
        "InstanceCount": training.instance_count,
        "VolumeSizeInGB": training.volume_size_gb,
    }
    algorithm: dict[str, Any] = {
        "TrainingInputMode": "File",
        "MetricDefinitions": metric_definitions(metric_names),
        "EnableSageMakerMetricsTimeSeries": True,
    }
    if training.image_uri:
        algorithm["TrainingImage"] = training.image_uri

    body: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": algorithm,
        "RoleArn": aws.sagemaker_role_arn if aws else LOCAL_ROLE_ARN,
        "HyperParameters": {**user_hyperparameters, **script_mode},
        "InputDataConfig": input_data,
        "OutputDataConfig": output,
        "ResourceConfig": resources,
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": training.use_spot,
        "CheckpointConfig": {
            "S3Uri": _check_uri(settings, checkpoint_uri, "checkpoint_uri"),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        },
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "Environment": dict(environment or {}),
        "Tags": _tag_list(tags),
    }
    if aws is not None:
        output["KmsKeyId"] = aws.kms_key_arn
        resources["VolumeKmsKeyId"] = aws.kms_key_arn
        body["VpcConfig"] = _vpc_config(aws)
    validate_request("sagemaker", "CreateTrainingJob", _as_sent(body))
    return body


def _channel_uri(settings: Settings, uri: str, name: str, data_type: str) -> str:
    uri = _check_uri(settings, uri, f"channel {name!r}")
    if data_type == MANIFEST_FILE:
        if uri.endswith("/"):
            raise ValueError(f"channel {name!r}: a ManifestFile channel names a file, got {uri!r}")
        return uri
    return _prefix(uri)


def _as_sent(body: Any) -> Any:
    """``body`` with file:// URIs spelled as s3:// ones, for shape validation on the local target.

    The local runtime reads file:// URIs, which SageMaker's model does not allow; every other
    rule (names, lengths, enums, required members) is checked on both targets alike.
    """
    if isinstance(body, Mapping):
        return {key: _as_sent(value) for key, value in body.items()}
    if isinstance(body, list):
        return [_as_sent(item) for item in body]
    if isinstance(body, str) and body.startswith("file:///"):
        return "s3://local-lake/" + body[len("file:///") :]
    return body


# --- CreateHyperParameterTuningJob -------------------------------------------------------------

# CreateTrainingJob members a tuning job's training job definition does not have: per-job
# identity, and the hyperparameters that become StaticHyperParameters.
_PER_JOB_MEMBERS = frozenset(
    {"TrainingJobName", "HyperParameters", "Tags", "ExperimentConfig", "DebugHookConfig"}
)


def check_parameter_ranges(parameter_ranges: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Raise ``ValueError`` naming the range that SageMaker (or the local tuner) would refuse."""
    unknown = sorted(set(parameter_ranges) - set(RANGE_KINDS))
    if unknown:
        raise ValueError(f"unknown parameter range kinds {unknown}; kinds are {list(RANGE_KINDS)}")
    seen: set[str] = set()
    for kind in RANGE_KINDS:
        for spec in parameter_ranges.get(kind, ()):
            name = spec.get("Name", "")
            if not name:
                raise ValueError(f"a {kind} entry has no Name: {dict(spec)!r}")
            if name in seen:
                raise ValueError(f"hyperparameter {name!r} has more than one range")
            seen.add(name)
            if kind == "CategoricalParameterRanges":
                values = spec.get("Values") or []
                if not values or not all(isinstance(value, str) for value in values):
                    raise ValueError(f"categorical range {name!r} needs a list of string Values")
                continue
            number = int if kind == "IntegerParameterRanges" else float
            try:
                low, high = number(spec["MinValue"]), number(spec["MaxValue"])
            except (KeyError, ValueError):
                raise ValueError(
                    f"range {name!r} needs MinValue and MaxValue as {number.__name__} strings, "
                    f"got {spec.get('MinValue')!r}..{spec.get('MaxValue')!r}"
                ) from None
            if low >= high:
                raise ValueError(f"range {name!r}: MinValue {low} must be below MaxValue {high}")
            scaling = spec.get("ScalingType", "Auto")
            if scaling == "Logarithmic" and low <= 0:
                raise ValueError(f"range {name!r}: Logarithmic scaling needs MinValue > 0")
            if scaling == "ReverseLogarithmic":
                raise ValueError(
                    f"range {name!r}: ReverseLogarithmic scaling is not supported (the local "
                    "tuner has no equivalent); use Linear or Logarithmic"
                )


def build_tuning_job_request(
    settings: Settings,
    *,
    tuning_job_name: str,
    training_request: Mapping[str, Any],
    parameter_ranges: Mapping[str, Sequence[Mapping[str, Any]]] = DEFAULT_PARAMETER_RANGES,
    objective_metric: str = OBJECTIVE_METRIC,
    objective_type: str = OBJECTIVE_TYPE,
    max_jobs: int | None = None,
    max_parallel_jobs: int | None = None,
    strategy: str = "Bayesian",
    early_stopping: bool = True,
    random_seed: int = 0,
    tags: Mapping[str, str] | None = None,
) -> dict:
    """CreateHyperParameterTuningJob searching ``parameter_ranges`` around one training job.

    :param tuning_job_name: the deterministic name (:mod:`include.job_names`, rule
        ``sagemaker_tuning``: 32 characters at most).
    :param training_request: a :func:`build_training_job_request` body; its hyperparameters
        minus the tuned ones become the static hyperparameters of every training job.
    :param parameter_ranges: ``ParameterRanges`` (Continuous/Integer/Categorical), default
        :data:`DEFAULT_PARAMETER_RANGES`.
    :param objective_metric: a metric of the training request's ``MetricDefinitions``.
    :param objective_type: ``Maximize`` or ``Minimize``.
    :param max_jobs: training jobs in all (default ``HEADRACE_TUNING_MAX_JOBS``).
    :param max_parallel_jobs: at once (default ``HEADRACE_TUNING_MAX_PARALLEL_JOBS``).
    :param strategy: ``Bayesian`` or ``Random`` (what the local runtime can honour too).
    :param early_stopping: stop training jobs unlikely to beat the best so far
        (``TrainingJobEarlyStoppingType=Auto``; the same median rule locally).
    :param random_seed: makes the search reproducible on both targets.
    """
    training = settings.training
    max_jobs = training.tuning_max_jobs if max_jobs is None else max_jobs
    max_parallel_jobs = (
        training.tuning_max_parallel_jobs if max_parallel_jobs is None else max_parallel_jobs
    )
    if not 1 <= max_parallel_jobs <= max_jobs:
        raise ValueError(
            f"max_parallel_jobs={max_parallel_jobs} must be between 1 and max_jobs={max_jobs}"
        )
    if strategy not in ("Bayesian", "Random"):
        raise ValueError(f"strategy {strategy!r} is not supported; use Bayesian or Random")
    check_parameter_ranges(parameter_ranges)
    algorithm = training_request["AlgorithmSpecification"]
    metric_names = [metric["Name"] for metric in algorithm.get("MetricDefinitions", [])]
    if objective_metric not in metric_names:
        raise ValueError(
            f"objective metric {objective_metric!r} is not among the training job's "
            f"MetricDefinitions {metric_names}"
        )

    tuned = {spec["Name"] for kind in RANGE_KINDS for spec in parameter_ranges.get(kind, ())}
    definition = {
        key: value for key, value in training_request.items() if key not in _PER_JOB_MEMBERS
    }
    definition["AlgorithmSpecification"] = {
        key: value
        for key, value in algorithm.items()
        # Time-series metrics are a per-job switch; the tuning definition has no such member.
        if key != "EnableSageMakerMetricsTimeSeries"
    }
    # Each training job gets its own name; the tuning job's name stands in the static set.
    definition["StaticHyperParameters"] = {
        key: value
        for key, value in training_request.get("HyperParameters", {}).items()
        if key not in tuned and key != "sagemaker_job_name"
    }
    body = {
        "HyperParameterTuningJobName": tuning_job_name,
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {
                "Type": objective_type,
                "MetricName": objective_metric,
            },
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": max_jobs,
                "MaxParallelTrainingJobs": max_parallel_jobs,
            },
            "ParameterRanges": {
                kind: [dict(spec) for spec in parameter_ranges.get(kind, ())]
                for kind in RANGE_KINDS
            },
            "TrainingJobEarlyStoppingType": "Auto" if early_stopping else "Off",
            "RandomSeed": random_seed,
        },
        "TrainingJobDefinition": definition,
        "Tags": _tag_list(tags),
    }
    validate_request("sagemaker", "CreateHyperParameterTuningJob", _as_sent(body))
    return body


def uris_in_request(body: Any) -> list[str]:
    """Every URI a request body names (S3 or file), for checks that they stay in the lake."""
    if isinstance(body, Mapping):
        return [uri for value in body.values() for uri in uris_in_request(value)]
    if isinstance(body, list):
        return [uri for item in body for uri in uris_in_request(item)]
    if isinstance(body, str) and re.match(r"^(s3|file|https)://", body):
        return [body]
    return []


# --- CreateModel and CreateTransformJob (batch scoring) --------------------------------------

# What the serving container runs: train.py copies the serving handlers to code/ in the model
# directory, so code/inference.py travels inside model.tar.gz (no network needed to fetch it).
INFERENCE_PROGRAM = "inference.py"
CONTAINER_MODEL_CODE_DIR = "/opt/ml/model/code"
# Batch transform content types the serving handlers read and write (training/serving.py).
TRANSFORM_CONTENT_TYPES = ("text/csv", "application/jsonlines")
TRANSFORM_INSTANCE_TYPE = "ml.m5.xlarge"
# SageMaker's default mini-batch size; TorchServe in the PyTorch container takes 6.5 MB at most.
TRANSFORM_MAX_PAYLOAD_MB = 6
TRANSFORM_MAX_CONCURRENT = 4
TRANSFORM_INVOCATION_TIMEOUT_S = 600
# On the local target nothing is sent to IAM; a CreateModel body still needs a role.
LOCAL_MODEL_ROLE_ARN = "arn:aws:iam::000000000000:role/headrace-local-inference"


def build_model_request(
    settings: Settings,
    *,
    model_name: str,
    model_uri: str,
    image_uri: str | None = None,
    environment: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict:
    """CreateModel: a registered model.tar.gz served by the SageMaker PyTorch inference image.

    :param settings: the process settings; on aws they give the role, subnets, security groups
        and region.
    :param model_name: a deterministic name per registry version (rule ``sagemaker``), so the
        model is created once and found again.
    :param model_uri: the version's ``model.tar.gz`` (``ModelVersion.model_uri``).
    :param image_uri: the inference image; default the PyTorch CPU inference DLC of the region
        (:func:`include.registry.default_inference_image_uri`). Locally none: the local runtime
        runs the repository's ``training/inference.py`` handlers, not an image.
    :param environment: extra container environment variables.
    :param tags: extra tags (``project=headrace`` is always set).
    """
    aws = settings.aws
    container: dict[str, Any] = {
        "ModelDataUrl": _check_uri(settings, model_uri, "model_uri"),
        "Environment": {
            # The SageMaker Python SDK sets these for script-mode models; the code sits in
            # model.tar.gz because a network-isolated container cannot download it.
            "SAGEMAKER_PROGRAM": INFERENCE_PROGRAM,
            "SAGEMAKER_SUBMIT_DIRECTORY": CONTAINER_MODEL_CODE_DIR,
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            **({"SAGEMAKER_REGION": aws.region} if aws else {}),
            **dict(environment or {}),
        },
    }
    if aws is not None:
        from include.registry import default_inference_image_uri

        container["Image"] = image_uri or default_inference_image_uri(aws.region)
    elif image_uri:
        container["Image"] = image_uri
    body: dict[str, Any] = {
        "ModelName": model_name,
        "PrimaryContainer": container,
        "ExecutionRoleArn": aws.sagemaker_role_arn if aws else LOCAL_MODEL_ROLE_ARN,
        "EnableNetworkIsolation": True,
        "Tags": _tag_list(tags),
    }
    if aws is not None:
        body["VpcConfig"] = _vpc_config(aws)
    validate_request("sagemaker", "CreateModel", _as_sent(body))
    return body


def transform_data_processing(content_type: str, id_columns: Sequence[str]) -> dict[str, str]:
    """``DataProcessing`` that keeps the id columns out of the model and joins them back.

    Input lines hold the id columns first, then the model's features in model order.

    - CSV: ``InputFilter`` ``$[<n ids>:]`` sends only the features; ``JoinSource`` ``Input``
      appends the model's output (the score) to the whole input row; ``OutputFilter``
      ``$[0,…,<n ids - 1>,-1]`` keeps the ids and the score: an output line is ``ids…,score``.
    - JSON lines: the whole object goes in (the handler ignores keys that are not features);
      the join adds the model's output under ``SageMakerOutput``; ``OutputFilter`` keeps the ids
      and ``SageMakerOutput``. (SageMaker's filters are JSONPath of 63 characters at most, too
      short to list the features by name, so the JSON variant cannot drop the ids on the way in.)
    """
    if not id_columns:
        raise ValueError("a transform job needs at least one id column to join its scores to")
    if content_type == "text/csv":
        keep = ",".join(str(i) for i in range(len(id_columns)))
        filters = {
            "InputFilter": f"$[{len(id_columns)}:]",
            "JoinSource": "Input",
            "OutputFilter": f"$[{keep},-1]",
        }
    elif content_type == "application/jsonlines":
        names = ",".join(f"'{name}'" for name in [*id_columns, "SageMakerOutput"])
        filters = {"InputFilter": "$", "JoinSource": "Input", "OutputFilter": f"$[{names}]"}
    else:
        raise ValueError(
            f"content type {content_type!r} is not supported for batch transform: use one of "
            f"{', '.join(TRANSFORM_CONTENT_TYPES)}"
        )
    too_long = {key: value for key, value in filters.items() if len(value) > 63}
    if too_long:
        raise ValueError(
            f"DataProcessing filters longer than SageMaker's 63 characters: {too_long}; "
            "use fewer or shorter id columns"
        )
    return filters


def build_transform_job_request(
    settings: Settings,
    *,
    job_name: str,
    model_name: str,
    input_uri: str,
    output_uri: str,
    id_columns: Sequence[str],
    content_type: str = "text/csv",
    compression: str = "None",
    instance_type: str = TRANSFORM_INSTANCE_TYPE,
    instance_count: int = 1,
    max_payload_mb: int = TRANSFORM_MAX_PAYLOAD_MB,
    max_concurrent_transforms: int = TRANSFORM_MAX_CONCURRENT,
    environment: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict:
    """CreateTransformJob: score every line under ``input_uri`` with ``model_name``.

    Lines are split (``SplitType`` ``Line``) and sent in mini-batches of up to
    ``max_payload_mb`` (``BatchStrategy`` ``MultiRecord``); the output reassembles them one line
    per record (``AssembleWith`` ``Line``) into ``<output_uri>/<input file>.out``, each line the
    record's id columns and score (:func:`transform_data_processing`). The local runtime
    (:mod:`include.local_transform`) honours the same body.

    :param job_name: the deterministic job name (:mod:`include.job_names`, rule ``sagemaker``).
    :param model_name: a model created by :func:`build_model_request`.
    :param input_uri: the folder of input files: lines of ids then features, no header.
    :param output_uri: where the ``.out`` files go.
    :param id_columns: the leading id columns of each line, joined back to their scores.
    :param content_type: ``text/csv`` or ``application/jsonlines``; the output is the same.
    :param compression: ``None`` or ``Gzip`` (the input files).
    :param max_payload_mb: the largest mini-batch; ``max_concurrent_transforms`` of them in
        flight per instance must fit SageMaker's 100 MB.
    """
    aws = settings.aws
    if content_type not in TRANSFORM_CONTENT_TYPES:
        raise ValueError(
            f"content_type {content_type!r} is not supported for batch transform: use one of "
            f"{', '.join(TRANSFORM_CONTENT_TYPES)}"
        )
    if compression not in ("None", "Gzip"):
        raise ValueError(f"compression {compression!r} must be None or Gzip")
    if not 1 <= max_payload_mb <= 100:
        raise ValueError(f"max_payload_mb={max_payload_mb} must be between 1 and 100")
    if max_concurrent_transforms < 1 or max_concurrent_transforms * max_payload_mb > 100:
        raise ValueError(
            f"max_concurrent_transforms={max_concurrent_transforms} x max_payload_mb="
            f"{max_payload_mb} must be at least 1 and at most 100 MB (SageMaker's limit)"
        )
    output: dict[str, Any] = {
        "S3OutputPath": _check_uri(settings, output_uri, "output_uri"),
        "Accept": content_type,
        "AssembleWith": "Line",
    }
    resources: dict[str, Any] = {"InstanceType": instance_type, "InstanceCount": instance_count}
    if aws is not None:
        output["KmsKeyId"] = aws.kms_key_arn
        resources["VolumeKmsKeyId"] = aws.kms_key_arn
    body: dict[str, Any] = {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "MaxConcurrentTransforms": max_concurrent_transforms,
        "MaxPayloadInMB": max_payload_mb,
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": TRANSFORM_INVOCATION_TIMEOUT_S,
            "InvocationsMaxRetries": 1,
        },
        "BatchStrategy": "MultiRecord",
        "Environment": dict(environment or {}),
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": _prefix(_check_uri(settings, input_uri, "input_uri")),
                }
            },
            "ContentType": content_type,
            "SplitType": "Line",
            "CompressionType": compression,
        },
        "TransformOutput": output,
        "TransformResources": resources,
        "DataProcessing": transform_data_processing(content_type, id_columns),
        "Tags": _tag_list(tags),
    }
    validate_request("sagemaker", "CreateTransformJob", _as_sent(body))
    return body


# --- CreateProcessingJob -----------------------------------------------------------------------

# Where a processing container finds its inputs and leaves its outputs (SageMaker Processing's
# convention). The local runtime (include/local_processing.py) lays out the same folders under the
# job's folder and reads every /opt/ml/processing in the body as that folder.
PROCESSING_ROOT = "/opt/ml/processing"
PROCESSING_ROOT_VARIABLE = "HEADRACE_PROCESSING_ROOT"
PROCESSING_CODE_INPUT = "code"
PROCESSING_INSTANCE_TYPE = "ml.m5.xlarge"
PROCESSING_MAX_RUNTIME_S = 3600
PROCESSING_VOLUME_GB = 30
# CreateProcessingJob requires an image; locally it is only a label (the job runs in the training
# environment this image stands for).
LOCAL_PROCESSING_IMAGE = f"{TRAINING_IMAGE_REPOSITORY}:{TRAINING_IMAGE_TAG}"


def processing_local_path(kind: str, name: str) -> str:
    """The container folder of input or output ``name`` (``kind`` is ``input`` or ``output``)."""
    return f"{PROCESSING_ROOT}/{kind}/{name}"


def processing_entrypoint(entry_point: str, root: str = PROCESSING_ROOT) -> list[str]:
    """The container command: unpack the source tarball (the very one training ships) under
    ``root``, then run ``entry_point`` from it with the job's arguments.

    SageMaker Processing copies inputs but never unpacks them; the SageMaker Python SDK's
    FrameworkProcessor does the same unpack-and-run in a shell script it uploads. ``root`` is
    ``/opt/ml/processing`` in the container.
    """
    code = f"{root}/input/{PROCESSING_CODE_INPUT}/{SOURCE_TARBALL}"
    source = f"{root}/source"
    script = (
        f"set -e; mkdir -p {source}; tar -xzf {code} -C {source}; "
        f'cd {source}; exec python3 {entry_point} "$@"'
    )
    # The last item is the script's $0; the job's ContainerArguments become "$@".
    return ["/bin/sh", "-c", script, "headrace-processing"]


def build_processing_job_request(
    settings: Settings,
    *,
    job_name: str,
    entry_point: str,
    source_uri: str,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    manifest_inputs: Mapping[str, str] | None = None,
    arguments: Sequence[str] = (),
    instance_type: str = PROCESSING_INSTANCE_TYPE,
    instance_count: int = 1,
    volume_size_gb: int = PROCESSING_VOLUME_GB,
    max_runtime_s: int = PROCESSING_MAX_RUNTIME_S,
    environment: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict:
    """CreateProcessingJob: one entry point of the training source tarball, in the training image.

    Network-isolated, with the lake's KMS key on its volume and outputs and the job in the lake's
    VPC on aws, as training is.

    :param job_name: the deterministic job name (:mod:`include.job_names`, rule ``sagemaker``).
    :param entry_point: the script in the tarball to run, e.g. ``process.py``.
    :param source_uri: the ``sourcedir.tar.gz`` (:func:`training_source_artifact`).
    :param inputs: input name → URI of a folder; the container sees it under
        ``/opt/ml/processing/input/<name>``.
    :param outputs: output name → URI of a folder; what the job leaves in
        ``/opt/ml/processing/output/<name>`` is uploaded there when it ends.
    :param manifest_inputs: input name → URI of a manifest file (:func:`channel_manifest`): the
        input holds exactly the objects it lists.
    :param arguments: the entry point's command-line arguments.
    """
    aws = settings.aws
    manifest_inputs = dict(manifest_inputs or {})
    names = [*inputs, *manifest_inputs]
    if PROCESSING_CODE_INPUT in names:
        raise ValueError(f"input name {PROCESSING_CODE_INPUT!r} is reserved for the source tarball")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"input names {duplicated} are given both as folders and as manifests")
    if not outputs:
        raise ValueError("a processing job needs at least one output")
    if not 1 <= instance_count <= 100:
        raise ValueError(f"instance_count={instance_count} must be between 1 and 100")
    if not 1 <= max_runtime_s <= 777600:
        raise ValueError(f"max_runtime_s={max_runtime_s} must be between 1 and 777600 (9 days)")

    def s3_input(name: str, uri: str, data_type: str) -> dict:
        if data_type == S3_PREFIX:
            uri = _prefix(_check_uri(settings, uri, f"input {name!r}"))
        else:
            uri = _channel_uri(settings, uri, name, MANIFEST_FILE)
        return {
            "InputName": name,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": processing_local_path("input", name),
                "S3DataType": data_type,
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
                "S3CompressionType": "None",
            },
        }

    processing_inputs = [
        s3_input(PROCESSING_CODE_INPUT, source_uri.rsplit("/", 1)[0], S3_PREFIX),
        *(s3_input(name, uri, S3_PREFIX) for name, uri in inputs.items()),
        *(s3_input(name, uri, MANIFEST_FILE) for name, uri in manifest_inputs.items()),
    ]
    if not source_uri.endswith(f"/{SOURCE_TARBALL}"):
        raise ValueError(f"source_uri {source_uri!r} must name a {SOURCE_TARBALL}")
    output_config: dict[str, Any] = {
        "Outputs": [
            {
                "OutputName": name,
                "S3Output": {
                    "S3Uri": _prefix(_check_uri(settings, uri, f"output {name!r}")),
                    "LocalPath": processing_local_path("output", name),
                    "S3UploadMode": "EndOfJob",
                },
            }
            for name, uri in outputs.items()
        ]
    }
    cluster: dict[str, Any] = {
        "InstanceCount": instance_count,
        "InstanceType": instance_type,
        "VolumeSizeInGB": volume_size_gb,
    }
    network: dict[str, Any] = {
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
    }
    body: dict[str, Any] = {
        "ProcessingJobName": job_name,
        "ProcessingInputs": processing_inputs,
        "ProcessingOutputConfig": output_config,
        "ProcessingResources": {"ClusterConfig": cluster},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
        "AppSpecification": {
            "ImageUri": settings.training.image_uri or LOCAL_PROCESSING_IMAGE,
            "ContainerEntrypoint": processing_entrypoint(entry_point),
            "ContainerArguments": [str(argument) for argument in arguments],
        },
        # Where the entry point finds its inputs and leaves its outputs: /opt/ml/processing in
        # the container, the job folder under the local runtime.
        "Environment": {PROCESSING_ROOT_VARIABLE: PROCESSING_ROOT, **(environment or {})},
        "NetworkConfig": network,
        "RoleArn": aws.sagemaker_role_arn if aws else LOCAL_ROLE_ARN,
        "Tags": _tag_list(tags),
    }
    if not body["AppSpecification"]["ContainerArguments"]:
        del body["AppSpecification"]["ContainerArguments"]
    if aws is not None:
        output_config["KmsKeyId"] = aws.kms_key_arn
        cluster["VolumeKmsKeyId"] = aws.kms_key_arn
        network["VpcConfig"] = _vpc_config(aws)
    validate_request("sagemaker", "CreateProcessingJob", _as_sent(body))
    return body
