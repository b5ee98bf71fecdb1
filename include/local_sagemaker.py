"""Run SageMaker training and tuning request bodies on this machine, durably.

The local counterpart of SageMaker: :func:`start_training_job` takes the very CreateTrainingJob
body that :mod:`include.sagemaker_requests` builds for AWS and honours it the way a SageMaker
script-mode container does. It lays out the job folder like ``/opt/ml``
(``input/data/<channel>``, ``input/config/*.json``, ``model``, ``output/data``, ``checkpoints``;
a ``ManifestFile`` channel holds exactly the files its manifest lists, an ``S3Prefix`` one the
whole folder),
sets the ``SM_*`` environment of the sagemaker-training toolkit, runs the entry point with the
request's hyperparameters as ``--name value`` flags, stops it at ``MaxRuntimeInSeconds``
(SIGTERM, then SIGKILL after a grace period), reads the final value of every
``MetricDefinitions`` regex from its log, and packages the model folder into
``<S3OutputPath>/<TrainingJobName>/output/model.tar.gz`` through :mod:`include.storage`.

A job runs under the one local supervisor (:mod:`include.local_jobs`), in a process group of
its own, so it outlives the Airflow worker that started it; everything about it lives in
``<work_root>/training-jobs/<name>/``. A retried task asking for the same job name re-attaches
to a job that is still running or returns the finished one instead of starting a second; a job
that failed, was stopped or was lost (its machine rebooted) starts afresh, the old files kept
under ``history/``.

:func:`start_tuning_job` honours a CreateHyperParameterTuningJob body with Optuna, as a local job
of its own on the same supervisor (``<work_root>/tuning-jobs/<name>/``): the worker starts it,
waits on it, stops it; the search runs in the job. TPE (Bayesian) or random sampling over the
request's parameter ranges with its seed, at most ``MaxParallelTrainingJobs`` (and no more than
this machine's cores) training jobs at once, each one a local training job as above, the
objective read with the objective metric's regex and SageMaker's median rule for
``TrainingJobEarlyStoppingType=Auto`` (:mod:`include.tuning_early_stopping`). The study lives
in a SQLite file in the tuning job's folder, so a tuning job started again after it failed or
was lost resumes the search and re-attaches to its running trials; stopping it stops its trials.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from include import local_jobs
from include.config import REPO_ROOT
from include.local_envs import training_python
from include.local_state import read_json, write_json

# SageMaker's TrainingJobStatus values: the local supervisor's.
IN_PROGRESS = local_jobs.IN_PROGRESS
COMPLETED = local_jobs.COMPLETED
FAILED = local_jobs.FAILED
STOPPING = local_jobs.STOPPING
STOPPED = local_jobs.STOPPED
TERMINAL_STATES = local_jobs.TERMINAL_STATES

# Script mode's own hyperparameters: read by the container, never passed to the entry point
# (sagemaker-training toolkit, params.SAGEMAKER_HYPERPARAMETERS).
_RESERVED_HYPERPARAMETERS = frozenset(
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
CURRENT_HOST = "algo-1"
DEFAULT_ENTRY_POINT = "train.py"
# SageMaker allows an algorithm 120 s after SIGTERM; a local trainer gets less by default.
DEFAULT_STOP_GRACE_S = 30.0

_REQUEST_FILE = "request.json"
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class LocalTrainingJobError(RuntimeError):
    """A local training job did not complete; the message carries its FailureReason."""

    def __init__(self, message: str, description: dict):
        super().__init__(message)
        self.description = description


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def local_file_path(uri: str, what: str) -> Path:
    """The file a file:// URI names (percent-escapes decoded, as ``Path.as_uri`` writes ``=``)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or not parsed.path.startswith("/"):
        raise ValueError(f"{what} {uri!r} must be an absolute file:// URI for the local runtime")
    return Path(unquote(parsed.path))


def training_job_dir(work_root: Path | str, job_name: str) -> Path:
    if not _JOB_NAME.match(job_name):
        raise ValueError(f"training job name {job_name!r} does not match SageMaker's rule")
    return Path(work_root) / "training-jobs" / job_name


# --- metrics -----------------------------------------------------------------------------------


def final_metrics(log_text: str, metric_definitions: Sequence[Mapping[str, str]]) -> list[dict]:
    """SageMaker's ``FinalMetricDataList``: the last value each metric's regex finds in the log.

    Like SageMaker, each regex is applied to each log line and its first group is the value;
    a metric that never appears is left out.
    """
    results = []
    for definition in metric_definitions:
        pattern = re.compile(definition["Regex"])
        value = None
        for line in log_text.splitlines():
            for match in pattern.finditer(line):
                with contextlib.suppress(ValueError, IndexError, TypeError):
                    value = float(match.group(1))
        if value is not None and math.isfinite(value):
            results.append({"MetricName": definition["Name"], "Value": value})
    return results


def metric_series(log_text: str, regex: str) -> list[float]:
    """Every value of one metric in log order (the per-epoch series of the objective)."""
    pattern = re.compile(regex)
    values = []
    for line in log_text.splitlines():
        for match in pattern.finditer(line):
            with contextlib.suppress(ValueError, IndexError, TypeError):
                values.append(float(match.group(1)))
    return [value for value in values if math.isfinite(value)]


# --- training jobs: start, describe, wait, stop ----------------------------------------------------


def _user_hyperparameters(request: Mapping[str, Any]) -> dict[str, str]:
    return {
        name: value
        for name, value in (request.get("HyperParameters") or {}).items()
        if name not in _RESERVED_HYPERPARAMETERS and not name.startswith("sagemaker_")
    }


def _decoded(value: str) -> Any:
    # The toolkit JSON-decodes every hyperparameter for SM_HPS ("0.001" → 0.001).
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value


def _count_gpus() -> int:
    """GPUs the way the sagemaker-training toolkit counts them: ``nvidia-smi --list-gpus``."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return 0
    try:
        listing = subprocess.run(
            [nvidia_smi, "--list-gpus"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def link_channel(source: Path, target: Path, channel: str) -> None:
    """Make ``source`` appear at ``target`` (``input/data/<channel>``).

    A symlink instead of a copy: File mode hands the container a read-only snapshot, and the lake
    partitions are written once and never changed in place (writes are atomic per partition), so
    a link gives the trainer the same files without doubling gigabytes of parquet on disk.
    """
    if not source.exists():
        raise FileNotFoundError(f"channel {channel!r}: {source} does not exist")
    if source.is_dir():
        target.symlink_to(source, target_is_directory=True)
    else:
        # A prefix naming one object (the source tarball): the channel folder holds that file.
        target.mkdir(parents=True)
        (target / source.name).symlink_to(source)


def manifest_file_objects(manifest_uri: str, channel: str) -> list[tuple[str, Path]]:
    """``(key, local file)`` of every object a SageMaker manifest file lists.

    The format SageMaker documents: ``[{"prefix": "<uri>/"}, "relative/key", …]``; each object is
    the prefix followed by the key, and lands in the channel folder under its key.
    """
    path = local_file_path(manifest_uri, f"channel {channel!r}")
    where = f"channel {channel!r}: manifest file {path}"
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{where} does not exist") from None
    except ValueError as error:
        raise ValueError(f"{where} is not JSON: {error}") from None
    if not (
        isinstance(entries, list)
        and entries
        and isinstance(entries[0], dict)
        and isinstance(entries[0].get("prefix"), str)
    ):
        raise ValueError(f'{where} does not start with {{"prefix": "<uri>"}}')
    prefix, keys = entries[0]["prefix"], entries[1:]
    if not keys:
        raise ValueError(f"{where} lists no objects after its prefix")
    objects = []
    for index, key in enumerate(keys, start=1):
        if not isinstance(key, str) or not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"{where}: entry {index} ({key!r}) is not a key relative to {prefix}")
        source = local_file_path(prefix + key, f"{where}: entry {index}")
        if not source.is_file():
            raise FileNotFoundError(f"{where}: entry {index} names {source}, which does not exist")
        objects.append((key, source))
    return objects


def fill_manifest_channel(manifest_uri: str, target: Path, channel: str) -> None:
    """Put the objects a manifest file lists into ``target`` (``input/data/<channel>``) by key.

    Hard links rather than symlinks: File mode hands the container a snapshot, and a re-commit of
    the partition while the job runs (a day re-flows after a late file) deletes the files the old
    manifest listed; a link keeps the job's copy without doubling the bytes on disk. Across
    filesystems, where no hard link can be made, a copy.
    """
    objects = manifest_file_objects(manifest_uri, channel)
    target.mkdir(parents=True)
    for key, source in objects:
        destination = target / key
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)


def _prepare_job_dir(job_dir: Path, request: Mapping[str, Any]) -> dict[str, Path]:
    paths = {
        "input": job_dir / "input",
        "data": job_dir / "input" / "data",
        "config": job_dir / "input" / "config",
        "model": job_dir / "model",
        "output": job_dir / "output",
        "output_data": job_dir / "output" / "data",
        "checkpoints": job_dir / "checkpoints",
    }
    for key in ("data", "config", "model", "output_data"):
        paths[key].mkdir(parents=True, exist_ok=True)
    for channel in request.get("InputDataConfig") or []:
        name = channel["ChannelName"]
        source = channel["DataSource"]["S3DataSource"]
        data_type = source.get("S3DataType", "S3Prefix")
        target = paths["data"] / name
        # Left by a start that failed on a later channel (before request.json was written).
        if target.is_symlink():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        if data_type == "S3Prefix":
            link_channel(local_file_path(source["S3Uri"], f"channel {name!r}"), target, name)
        elif data_type == "ManifestFile":
            fill_manifest_channel(source["S3Uri"], target, name)
        else:
            raise ValueError(
                f"channel {name!r}: S3DataType {data_type!r} is not supported by the local "
                "runtime (S3Prefix, ManifestFile)"
            )

    # Checkpoints outlive the job like CheckpointConfig.S3Uri does: a retried job finds the
    # checkpoints of the try before and resumes, as a spot job does on SageMaker.
    checkpoint = request.get("CheckpointConfig") or {}
    if checkpoint.get("S3Uri"):
        kept = local_file_path(checkpoint["S3Uri"], "CheckpointConfig.S3Uri")
        kept.mkdir(parents=True, exist_ok=True)
        if not paths["checkpoints"].is_symlink():
            paths["checkpoints"].symlink_to(kept, target_is_directory=True)
    else:
        paths["checkpoints"].mkdir(exist_ok=True)

    write_json(paths["config"] / "hyperparameters.json", dict(request.get("HyperParameters") or {}))
    write_json(
        paths["config"] / "inputdataconfig.json",
        {
            channel["ChannelName"]: {
                "ContentType": channel.get("ContentType", ""),
                "TrainingInputMode": channel.get("InputMode", "File"),
                "S3DistributionType": channel["DataSource"]["S3DataSource"].get(
                    "S3DataDistributionType", "FullyReplicated"
                ),
                "RecordWrapperType": "None",
            }
            for channel in request.get("InputDataConfig") or []
        },
    )
    write_json(
        paths["config"] / "resourceconfig.json",
        {"current_host": CURRENT_HOST, "hosts": [CURRENT_HOST], "current_instance_type": "local"},
    )
    return paths


def _job_environment(
    request: Mapping[str, Any], paths: Mapping[str, Path], entry_point: str
) -> dict[str, str]:
    """The ``SM_*`` variables of the sagemaker-training toolkit, plus the request's Environment."""
    hyperparameters = _user_hyperparameters(request)
    channels = [channel["ChannelName"] for channel in request.get("InputDataConfig") or []]
    env = {
        "SM_MODEL_DIR": str(paths["model"]),
        "SM_OUTPUT_DIR": str(paths["output"]),
        "SM_OUTPUT_DATA_DIR": str(paths["output_data"]),
        "SM_INPUT_DIR": str(paths["input"]),
        "SM_INPUT_CONFIG_DIR": str(paths["config"]),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps({name: _decoded(value) for name, value in hyperparameters.items()}),
        "SM_CURRENT_HOST": CURRENT_HOST,
        "SM_HOSTS": json.dumps([CURRENT_HOST]),
        "SM_NUM_GPUS": str(_count_gpus()),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_USER_ENTRY_POINT": entry_point,
        "SM_MODULE_NAME": entry_point.removesuffix(".py"),
        "TRAINING_JOB_NAME": request["TrainingJobName"],
        "HEADRACE_CHECKPOINT_DIR": str(paths["checkpoints"]),
        # Metric lines reach the log as they are printed, not when a buffer fills.
        "PYTHONUNBUFFERED": "1",
    }
    for name in channels:
        env[f"SM_CHANNEL_{name.upper()}"] = str(paths["data"] / name)
    for name, value in hyperparameters.items():
        # The toolkit keeps dashes (SM_HP_LEARNING-RATE); underscores keep the name shell-readable.
        env[f"SM_HP_{re.sub(r'[^A-Za-z0-9_]', '_', name).upper()}"] = value
    env.update({str(key): str(value) for key, value in (request.get("Environment") or {}).items()})
    return env


def _command(request: Mapping[str, Any], python: str, entry_point: str) -> list[str]:
    argv = [python, entry_point]
    for name, value in _user_hyperparameters(request).items():
        argv += [f"--{name}", value]
    return argv


def start_training_job(
    request: Mapping[str, Any],
    *,
    work_root: Path | str,
    entry_point_dir: Path | str = REPO_ROOT / "training",
    python: str | None = None,
    stop_grace_s: float = DEFAULT_STOP_GRACE_S,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[dict, bool]:
    """The local job named by ``request``: the running or finished one, else a new one.

    Returns its description (:func:`describe_training_job`) and whether this call started it.
    The job runs on the one local supervisor (:mod:`include.local_jobs`): the entry point is its
    command; its ``finalize`` step reads the metrics from the log and packages the model (a
    stopped job's too, as SageMaker does).

    :param request: a CreateTrainingJob body with file:// URIs.
    :param work_root: where job folders live.
    :param entry_point_dir: the source folder the entry point runs from (the repository's
        ``training/``, which SageMaker gets as ``sourcedir.tar.gz``).
    :param python: the interpreter of the entry point (default: the training environment's).
    :param stop_grace_s: how long a stopped job may take to exit after SIGTERM.
    :param extra_env: variables for the entry point beyond the request's Environment.
    """
    name = request["TrainingJobName"]
    job_dir = training_job_dir(work_root, name)
    entry_point = (request.get("HyperParameters") or {}).get(
        "sagemaker_program", DEFAULT_ENTRY_POINT
    )
    entry_point_dir = Path(entry_point_dir).resolve()
    if not (entry_point_dir / entry_point).is_file():
        raise FileNotFoundError(f"entry point {entry_point!r} not found in {entry_point_dir}")

    def lay_out(folder: Path) -> dict[str, str | None]:
        env: dict[str, str | None] = {
            **_job_environment(request, _prepare_job_dir(folder, request), entry_point),
            **(extra_env or {}),
        }
        # The entry point sees only the container's variables, not the Airflow worker's
        # PYTHONPATH: it must import nothing but its own package, as it would in SageMaker.
        env["PYTHONPATH"] = None
        return env

    steps = local_jobs.JobSteps(
        command=_command(request, python or training_python(), entry_point),
        finalize=[sys.executable, "-m", "include.local_sagemaker", "finalize", str(job_dir)],
        cwd=entry_point_dir,
        max_runtime_s=float(request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 86400)),
        stop_grace_s=stop_grace_s,
        failure_reason=f"AlgorithmError: {entry_point} exited with code {{exit_code}}",
    )
    _, started = local_jobs.start(
        job_dir,
        request,
        steps,
        lay_out=lay_out,
        # An earlier try's folders; checkpoints stay for the next try to resume from.
        archived=("input", "model", "output"),
    )
    return describe_training_job(name, work_root=work_root), started


def find_training_job(name: str, *, work_root: Path | str) -> dict | None:
    """Like DescribeTrainingJob, or ``None`` if no job of that name was ever started here."""
    description = local_jobs.describe(training_job_dir(work_root, name))
    if description is None:
        return None
    request = description["Request"]
    status = description["Status"]
    reason = description.get("FailureReason", "")
    if status == IN_PROGRESS:
        secondary = "Starting" if description.get("Starting") else "Training"
    elif status == STOPPED and reason.startswith("MaxRuntimeExceeded"):
        secondary = "MaxRuntimeExceeded"
    else:
        secondary = status
    out: dict[str, Any] = {
        "TrainingJobName": name,
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "HyperParameters": request.get("HyperParameters", {}),
        "AlgorithmSpecification": request.get("AlgorithmSpecification", {}),
        # The channels the job read, as DescribeTrainingJob names them (lineage reads them).
        "InputDataConfig": request.get("InputDataConfig", []),
        "OutputDataConfig": request.get("OutputDataConfig", {}),
        "StoppingCondition": request.get("StoppingCondition", {}),
        "TrainingStartTime": description.get("StartTime"),
        "LocalJobDir": description["JobDir"],
        "LogPath": description["LogPath"],
        "Pid": description.get("Pid"),
        **description["Result"],
    }
    for key, renamed in (
        ("FailureReason", "FailureReason"),
        ("ExitCode", "ExitCode"),
        ("EndTime", "TrainingEndTime"),
        ("RuntimeInSeconds", "TrainingTimeInSeconds"),
    ):
        if key in description:
            out[renamed] = description[key]
    return out


def describe_training_job(name: str, *, work_root: Path | str) -> dict:
    """Like DescribeTrainingJob; raises ``LookupError`` for a job never started here."""
    description = find_training_job(name, work_root=work_root)
    if description is None:
        raise LookupError(f"no local training job named {name!r} under {work_root}")
    return description


def wait_for_training_job(
    name: str,
    *,
    work_root: Path | str,
    timeout: float | None = None,
    poll_interval: float = 1.0,
    raise_on_failure: bool = True,
) -> dict:
    """Block until the job finishes; return its description.

    :raises LocalTrainingJobError: it failed or was stopped (with ``raise_on_failure``).
    :raises TimeoutError: still running after ``timeout`` seconds (it is left running).
    """
    local_jobs.wait(
        training_job_dir(work_root, name),
        timeout=timeout,
        poll_interval=poll_interval,
        raise_on_failure=False,
    )
    description = describe_training_job(name, work_root=work_root)
    if description["TrainingJobStatus"] != COMPLETED and raise_on_failure:
        raise LocalTrainingJobError(
            f"local training job {name} is {description['TrainingJobStatus']} "
            f"({description['SecondaryStatus']}): {description.get('FailureReason', '')}",
            description,
        )
    return description


def run_training_job(
    request: Mapping[str, Any],
    *,
    work_root: Path | str,
    entry_point_dir: Path | str = REPO_ROOT / "training",
    python: str | None = None,
    stop_grace_s: float = DEFAULT_STOP_GRACE_S,
    poll_interval: float = 1.0,
) -> dict:
    """Start (or re-attach to) the job and wait for it; return its Completed description.

    :raises LocalTrainingJobError: it failed or was stopped, with SageMaker's FailureReason.
    """
    description, _ = start_training_job(
        request,
        work_root=work_root,
        entry_point_dir=entry_point_dir,
        python=python,
        stop_grace_s=stop_grace_s,
    )
    return wait_for_training_job(
        description["TrainingJobName"], work_root=work_root, poll_interval=poll_interval
    )


def stop_training_job(
    name: str,
    *,
    work_root: Path | str,
    grace_period: float = DEFAULT_STOP_GRACE_S,
) -> bool:
    """Stop a running job, like StopTrainingJob: SIGTERM to the trainer, SIGKILL after the grace
    period, the model so far still packaged. Returns whether a running job was signalled."""
    return local_jobs.stop(training_job_dir(work_root, name), grace_period=grace_period)


# --- the finalize step ---------------------------------------------------------------------------


def _tar_gz(folder: Path) -> bytes:
    """A deterministic ``.tar.gz`` of the folder's contents (paths relative to it, like SageMaker)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.size = len(data)
            info.mtime = int(path.stat().st_mtime)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _package_outputs(job_dir: Path, request: Mapping[str, Any]) -> dict[str, Any]:
    from include.storage import storage_for

    output_path = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    prefix = f"{output_path}/{request['TrainingJobName']}/output"
    storage = storage_for(prefix)
    model_uri = f"{prefix}/model.tar.gz"
    storage.write_bytes(model_uri, _tar_gz(job_dir / "model"))
    outputs: dict[str, Any] = {"ModelArtifacts": {"S3ModelArtifacts": model_uri}}
    if any((job_dir / "output" / "data").rglob("*")):
        output_uri = f"{prefix}/output.tar.gz"
        storage.write_bytes(output_uri, _tar_gz(job_dir / "output" / "data"))
        outputs["OutputDataUri"] = output_uri
    return outputs


def _finalize(job_dir: Path, outcome: str) -> int:
    """After the entry point: its final metrics from the log, and the model packaged when the job
    completed or was stopped with a model written so far, as SageMaker uploads it."""
    request = read_json(job_dir / "request.json")
    log_text = Path(job_dir / "output.log").read_text(errors="replace")
    metric_definitions = request.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
    result: dict[str, Any] = {
        "FinalMetricDataList": [
            {**metric, "Timestamp": _now()}
            for metric in final_metrics(log_text, metric_definitions)
        ]
    }
    exit_code = 0
    if outcome == COMPLETED or any((job_dir / "model").iterdir()):
        try:
            result.update(_package_outputs(job_dir, request))
        except Exception as error:
            # Any upload failure fails the job, with its reason, as on SageMaker.
            local_jobs.write_failure(job_dir, f"ClientError: uploading the model failed: {error}")
            exit_code = 1
    local_jobs.write_result(job_dir, **result)
    return exit_code


# --- tuning jobs ---------------------------------------------------------------------------------

_DEFINITION_ONLY_MEMBERS = frozenset(
    {
        "StaticHyperParameters",
        "DefinitionName",
        "TuningObjective",
        "HyperParameterRanges",
        "HyperParameterTuningResourceConfig",
    }
)
# SageMaker's ceiling on ResourceLimits.MaxRuntimeInSeconds: a tuning job's bound if it sets none.
_TUNING_MAX_RUNTIME_S = 15_768_000
# What a stopped search needs beyond a trial's grace to stop its trials: local_jobs.stop waits 15 s
# past the grace, and a stopped trial's finalize still packages its model.
_TUNER_STOP_ALLOWANCE_S = 60.0


def tuning_job_dir(work_root: Path | str, tuning_job_name: str) -> Path:
    if not _JOB_NAME.match(tuning_job_name) or len(tuning_job_name) > 32:
        raise ValueError(f"tuning job name {tuning_job_name!r} does not match SageMaker's rule")
    return Path(work_root) / "tuning-jobs" / tuning_job_name


def trial_job_name(tuning_job_name: str, number: int) -> str:
    """The training job of trial ``number``: ``<tuning job>-001`` (SageMaker adds a suffix too)."""
    return f"{tuning_job_name}-{number + 1:03d}"


def _distributions(parameter_ranges: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict:
    import optuna

    distributions: dict[str, Any] = {}
    for spec in parameter_ranges.get("ContinuousParameterRanges", []):
        scaling = spec.get("ScalingType", "Auto")
        if scaling == "ReverseLogarithmic":
            raise ValueError(f"range {spec['Name']!r}: ReverseLogarithmic is not supported locally")
        distributions[spec["Name"]] = optuna.distributions.FloatDistribution(
            float(spec["MinValue"]), float(spec["MaxValue"]), log=scaling == "Logarithmic"
        )
    for spec in parameter_ranges.get("IntegerParameterRanges", []):
        scaling = spec.get("ScalingType", "Auto")
        if scaling == "ReverseLogarithmic":
            raise ValueError(f"range {spec['Name']!r}: ReverseLogarithmic is not supported locally")
        distributions[spec["Name"]] = optuna.distributions.IntDistribution(
            int(spec["MinValue"]), int(spec["MaxValue"]), log=scaling == "Logarithmic"
        )
    for spec in parameter_ranges.get("CategoricalParameterRanges", []):
        distributions[spec["Name"]] = optuna.distributions.CategoricalDistribution(
            [str(value) for value in spec["Values"]]
        )
    if not distributions:
        raise ValueError("the tuning job's ParameterRanges are empty: nothing to tune")
    return distributions


def _as_hyperparameter(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def trial_training_request(
    tuning_request: Mapping[str, Any], job_name: str, tuned: Mapping[str, Any]
) -> dict:
    """The CreateTrainingJob body of one trial: the definition plus the sampled hyperparameters."""
    definition = tuning_request["TrainingJobDefinition"]
    config = tuning_request["HyperParameterTuningJobConfig"]
    body = {key: value for key, value in definition.items() if key not in _DEFINITION_ONLY_MEMBERS}
    body["TrainingJobName"] = job_name
    body["HyperParameters"] = {
        **definition.get("StaticHyperParameters", {}),
        **{name: _as_hyperparameter(value) for name, value in tuned.items()},
        # SageMaker adds this to every training job of a tuning job; script mode hides it.
        "_tuning_objective_metric": config["HyperParameterTuningJobObjective"]["MetricName"],
    }
    checkpoint = body.get("CheckpointConfig")
    if checkpoint and checkpoint.get("S3Uri"):
        # Trials must not resume from each other's checkpoints.
        body["CheckpointConfig"] = {
            **checkpoint,
            "S3Uri": f"{checkpoint['S3Uri'].rstrip('/')}/{job_name}",
        }
    return body


def _objective_regex(tuning_request: Mapping[str, Any]) -> str:
    metric = tuning_request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"][
        "MetricName"
    ]
    definitions = tuning_request["TrainingJobDefinition"]["AlgorithmSpecification"].get(
        "MetricDefinitions", []
    )
    for definition in definitions:
        if definition["Name"] == metric:
            return definition["Regex"]
    raise ValueError(f"objective metric {metric!r} has no MetricDefinition in the request")


def start_tuning_job(
    request: Mapping[str, Any],
    *,
    work_root: Path | str,
    entry_point_dir: Path | str = REPO_ROOT / "training",
    python: str | None = None,
    poll_interval: float = 1.0,
    stop_grace_s: float = DEFAULT_STOP_GRACE_S,
) -> tuple[dict, bool]:
    """The local tuning job ``request`` names: the running or finished one, else a new one.

    Returns its description (:func:`describe_tuning_job`) and whether this call started it. The
    search (:func:`_tune`) is the job's command on the local supervisor, run by this interpreter
    (Optuna is a worker package); its trials are local training jobs. A tuning job started again
    after it failed or was stopped resumes its study: ``study.db`` is not archived.

    :param python: the trials' interpreter (default: the training environment's).
    :param stop_grace_s: how long a stopped trial may take to exit after SIGTERM.
    """
    name = request["HyperParameterTuningJobName"]
    job_dir = tuning_job_dir(work_root, name)
    limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
    command = [
        sys.executable,
        "-m",
        "include.local_sagemaker",
        "tune",
        str(job_dir.resolve()),
        f"--work-root={Path(work_root).resolve()}",
        f"--entry-point-dir={Path(entry_point_dir).resolve()}",
        f"--poll-interval={poll_interval}",
        f"--stop-grace-s={stop_grace_s}",
    ]
    if python:
        command.append(f"--python={python}")
    steps = local_jobs.JobSteps(
        command=command,
        max_runtime_s=float(limits.get("MaxRuntimeInSeconds", _TUNING_MAX_RUNTIME_S)),
        stop_grace_s=stop_grace_s + _TUNER_STOP_ALLOWANCE_S,
        failure_reason="the tuning search exited with code {exit_code}",
    )
    _, started = local_jobs.start(job_dir, request, steps)
    return describe_tuning_job(name, work_root=work_root), started


def find_tuning_job(name: str, *, work_root: Path | str) -> dict | None:
    """Like DescribeHyperParameterTuningJob, or ``None`` if no tuning job of that name was
    started here. The trials' summaries and the best one are there once the search ended."""
    description = local_jobs.describe(tuning_job_dir(work_root, name))
    if description is None:
        return None
    out: dict[str, Any] = {
        **description["Result"],
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobStatus": description["Status"],
        "HyperParameterTuningJobConfig": description["Request"]["HyperParameterTuningJobConfig"],
        "CreationTime": description.get("StartTime"),
        "LocalJobDir": description["JobDir"],
        "LogPath": description["LogPath"],
        "Pid": description.get("Pid"),
    }
    for key, renamed in (
        ("FailureReason", "FailureReason"),
        ("EndTime", "HyperParameterTuningEndTime"),
    ):
        if key in description:
            out[renamed] = description[key]
    return out


def describe_tuning_job(name: str, *, work_root: Path | str) -> dict:
    """Like DescribeHyperParameterTuningJob; raises ``LookupError`` for a job never started here."""
    description = find_tuning_job(name, work_root=work_root)
    if description is None:
        raise LookupError(f"no local tuning job named {name!r} under {work_root}")
    return description


def wait_for_tuning_job(
    name: str,
    *,
    work_root: Path | str,
    timeout: float | None = None,
    poll_interval: float = 1.0,
) -> dict:
    """Block until the tuning job ends; its Completed description.

    :raises local_jobs.LocalJobError: it failed or was stopped, with its FailureReason.
    :raises TimeoutError: still running after ``timeout`` seconds (it is left running).
    """
    local_jobs.wait(tuning_job_dir(work_root, name), timeout=timeout, poll_interval=poll_interval)
    return describe_tuning_job(name, work_root=work_root)


def run_tuning_job(
    request: Mapping[str, Any],
    *,
    work_root: Path | str,
    entry_point_dir: Path | str = REPO_ROOT / "training",
    python: str | None = None,
    poll_interval: float = 1.0,
    stop_grace_s: float = DEFAULT_STOP_GRACE_S,
) -> dict:
    """Start (or re-attach to) the tuning job and wait for it; return its Completed description
    (``BestTrainingJob``, ``TrainingJobStatusCounters``, ``TrainingJobSummaries``).

    :raises local_jobs.LocalJobError: it failed or was stopped, with its FailureReason.
    """
    start_tuning_job(
        request,
        work_root=work_root,
        entry_point_dir=entry_point_dir,
        python=python,
        poll_interval=poll_interval,
        stop_grace_s=stop_grace_s,
    )
    return wait_for_tuning_job(
        request["HyperParameterTuningJobName"], work_root=work_root, poll_interval=poll_interval
    )


def stop_tuning_job(
    name: str,
    *,
    work_root: Path | str,
    grace_period: float = DEFAULT_STOP_GRACE_S,
) -> bool:
    """Stop a tuning job, like StopHyperParameterTuningJob: the search starts no more trials and
    stops its running ones, and the job ends Stopped. ``grace_period`` is a trial's. Returns
    whether a running tuning job was signalled."""
    signalled = local_jobs.stop(
        tuning_job_dir(work_root, name), grace_period=grace_period + _TUNER_STOP_ALLOWANCE_S
    )
    # A search that could not stop its trials (killed when its grace ran out, or failed before
    # the stop) leaves them running: they are stopped here.
    trials = sorted(Path(work_root).glob(f"training-jobs/{name}-[0-9][0-9][0-9]"))
    _stop_trials([trial.name for trial in trials], work_root=work_root, grace_period=grace_period)
    return signalled


def _stop_trials(names: Sequence[str], *, work_root: Path | str, grace_period: float) -> None:
    """Stop trials at once, not one after another: one trial's grace bounds them all."""
    if not names:
        return
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        list(
            pool.map(
                lambda name: stop_training_job(
                    name, work_root=work_root, grace_period=grace_period
                ),
                names,
            )
        )


def _start_disowned(start: Callable[[], object]) -> None:
    """Call ``start`` in a child that exits at once, so what it starts is not this process's
    descendant. The supervisor ends the search's whole process tree when the tuning job is
    stopped; a trial in it would be signalled beside its own stop, its trainer ending ``Failed``
    instead of ``Stopped``. The search stops its trials itself."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        # The child: nothing of this process's state is cleaned up (os._exit), only reported.
        os.close(read_end)
        try:
            start()
            os._exit(0)
        except BaseException as error:
            os.write(write_end, f"{type(error).__name__}: {error}".encode()[:4096])
            os._exit(1)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        error = pipe.read().decode(errors="replace")
    _, wait_status = os.waitpid(pid, 0)
    if wait_status != 0:
        raise RuntimeError(error or f"starting a trial failed (wait status {wait_status})")


# --- the tuning job's command ------------------------------------------------------------------


def _tune(
    job_dir: Path,
    *,
    work_root: Path,
    entry_point_dir: Path,
    python: str | None,
    poll_interval: float,
    stop_grace_s: float,
) -> int:
    """The search: Optuna's study in ``study.db`` (resumed if there is one), each trial a local
    training job (re-attached to if it runs), the result in ``result.json``. SIGTERM (a stop, or
    MaxRuntimeInSeconds) ends it: no new trials, the running ones stopped and recorded."""
    stop_requested = False

    def on_sigterm(signum, frame):
        nonlocal stop_requested
        stop_requested = True

    # Before anything else: the default action would end the search with its trials running.
    signal.signal(signal.SIGTERM, on_sigterm)

    import optuna

    from include.tuning_early_stopping import SageMakerEarlyStopping

    request = read_json(job_dir / _REQUEST_FILE)
    name = request["HyperParameterTuningJobName"]
    config = request["HyperParameterTuningJobConfig"]
    objective = config["HyperParameterTuningJobObjective"]
    limits = config["ResourceLimits"]
    max_jobs = int(limits.get("MaxNumberOfTrainingJobs", 1))
    # No more trainers at once than this machine has cores: they would only slow each other.
    parallel = max(1, min(int(limits["MaxParallelTrainingJobs"]), os.cpu_count() or 1, max_jobs))
    distributions = _distributions(config.get("ParameterRanges", {}))
    objective_regex = _objective_regex(request)
    seed = int(config.get("RandomSeed", 0))
    strategy = config.get("Strategy", "Bayesian")
    if strategy == "Bayesian":
        # constant_liar: trials asked while others run are steered away from those.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    elif strategy == "Random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        raise ValueError(
            f"tuning strategy {strategy!r} is not supported locally (Bayesian, Random)"
        )
    early_stopping = config.get("TrainingJobEarlyStoppingType", "Off") == "Auto"
    # A trial's first epoch is not judged: it says more about how a learning rate starts than
    # where it goes (SageMaker documents no such grace; the rule is otherwise its own).
    pruner = (
        SageMakerEarlyStopping(warmup_steps=1) if early_stopping else optuna.pruners.NopPruner()
    )
    # Each trainer gets its share of the cores instead of one thread pool per core each.
    threads = str(max(1, (os.cpu_count() or 1) // parallel))
    trial_env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{job_dir / 'study.db'}",
        sampler=sampler,
        pruner=pruner,
        direction="maximize" if objective["Type"] == "Maximize" else "minimize",
        load_if_exists=True,
    )

    def start(job_name: str, params: Mapping[str, Any]) -> None:
        print(f"[local-tuning] starting trial {job_name}: {dict(params)}", flush=True)
        _start_disowned(
            lambda: start_training_job(
                trial_training_request(request, job_name, params),
                work_root=work_root,
                entry_point_dir=entry_point_dir,
                python=python,
                stop_grace_s=stop_grace_s,
                extra_env=trial_env,
            )
        )

    # trial number → (job name, the live Trial when this search asked for it, steps reported)
    running: dict[int, tuple[str, Any, int]] = {}
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        job_name = frozen.user_attrs.get("training_job_name") or trial_job_name(name, frozen.number)
        if find_training_job(job_name, work_root=work_root) is None:
            start(job_name, frozen.params)
        else:
            print(f"[local-tuning] re-attached to trial {job_name}", flush=True)
        running[frozen.number] = (job_name, None, 0)

    while True:
        # Read once a round: a stop arriving mid-round is acted on in the next.
        stopping = stop_requested
        if stopping:
            _stop_trials(
                [job_name for job_name, _, _ in running.values()],
                work_root=work_root,
                grace_period=stop_grace_s,
            )
        for number, (job_name, trial, reported) in list(running.items()):
            description = describe_training_job(job_name, work_root=work_root)
            state = description["TrainingJobStatus"]
            if trial is not None and state == IN_PROGRESS and early_stopping:
                series = metric_series(
                    Path(description["LogPath"]).read_text(errors="replace"), objective_regex
                )
                for step in range(reported, len(series)):
                    trial.report(series[step], step)
                running[number] = (job_name, trial, len(series))
                if len(series) > reported and trial.should_prune():
                    stop_training_job(job_name, work_root=work_root, grace_period=stop_grace_s)
                    state = describe_training_job(job_name, work_root=work_root)[
                        "TrainingJobStatus"
                    ]
                    # It may have finished on its own meanwhile; then it counts in full.
                    if state == STOPPED:
                        trial.set_user_attr("early_stopped", True)
            if state not in TERMINAL_STATES:
                continue
            final = describe_training_job(job_name, work_root=work_root)
            _tell(study, number, final, objective["MetricName"])
            del running[number]
        if not stopping:
            while len(running) < parallel and len(study.trials) < max_jobs:
                trial = study.ask(distributions)
                job_name = trial_job_name(name, trial.number)
                trial.set_user_attr("training_job_name", job_name)
                start(job_name, trial.params)
                running[trial.number] = (job_name, trial, 0)
        if not running:
            break
        time.sleep(poll_interval)

    result = _tuning_result(study, request, work_root)
    local_jobs.write_result(job_dir, **result)
    if stopping or result["ObjectiveStatusCounters"]["Succeeded"]:
        return 0
    summaries = result["TrainingJobSummaries"]
    local_jobs.write_failure(
        job_dir,
        f"no training job reported the objective metric {objective['MetricName']!r}; "
        + "; ".join(
            f"{s['TrainingJobName']}: {s.get('FailureReason', s['TrainingJobStatus'])}"
            for s in summaries[:3]
        ),
    )
    return 1


def _tell(study, number: int, description: Mapping[str, Any], metric_name: str) -> None:
    import optuna

    state = description["TrainingJobStatus"]
    values = {
        metric["MetricName"]: metric["Value"]
        for metric in description.get("FinalMetricDataList", [])
    }
    trial = study.get_trials(deepcopy=False)[number]
    if state == COMPLETED and metric_name in values:
        study.tell(number, values[metric_name])
    elif state == STOPPED and trial.user_attrs.get("early_stopped"):
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(number, state=optuna.trial.TrialState.FAIL)


def _tuning_result(study, request: Mapping[str, Any], work_root) -> dict:
    """What a finished search records: its trials' summaries and counters, and the best trial."""
    import optuna

    config = request["HyperParameterTuningJobConfig"]
    metric_name = config["HyperParameterTuningJobObjective"]["MetricName"]
    objective_type = config["HyperParameterTuningJobObjective"]["Type"]
    status_counts = {
        "Completed": 0,
        "InProgress": 0,
        "RetryableError": 0,
        "NonRetryableError": 0,
        "Stopped": 0,
    }
    objective_counts = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    summaries = []
    for trial in study.get_trials(deepcopy=False):
        job_name = trial.user_attrs.get("training_job_name") or trial_job_name(
            request["HyperParameterTuningJobName"], trial.number
        )
        description = find_training_job(job_name, work_root=work_root) or {}
        state = description.get("TrainingJobStatus", FAILED)
        status_counts["NonRetryableError" if state == FAILED else state] += 1
        summary: dict[str, Any] = {
            "TrainingJobName": job_name,
            "TrainingJobStatus": state,
            "TunedHyperParameters": {
                name: _as_hyperparameter(value) for name, value in trial.params.items()
            },
            "ObjectiveStatus": "Succeeded"
            if trial.state == optuna.trial.TrialState.COMPLETE
            else "Failed",
        }
        if trial.state == optuna.trial.TrialState.COMPLETE:
            objective_counts["Succeeded"] += 1
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": objective_type,
                "MetricName": metric_name,
                "Value": trial.value,
            }
        else:
            objective_counts["Failed"] += 1
        if trial.user_attrs.get("early_stopped"):
            summary["EarlyStopped"] = True
        if description.get("FailureReason"):
            summary["FailureReason"] = description["FailureReason"]
        if description.get("ModelArtifacts"):
            summary["ModelArtifacts"] = description["ModelArtifacts"]
        summaries.append(summary)

    result: dict[str, Any] = {
        "TrainingJobStatusCounters": status_counts,
        "ObjectiveStatusCounters": objective_counts,
        "TrainingJobSummaries": summaries,
    }
    if objective_counts["Succeeded"]:
        # get_trials lists trials by number, so a trial's number is its summary's index.
        result["BestTrainingJob"] = summaries[study.best_trial.number]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """The steps the local supervisor runs: a training job's ``finalize``, a tuning job's
    ``tune``."""
    parser = argparse.ArgumentParser(prog="python -m include.local_sagemaker")
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("finalize").add_argument("job_dir", type=Path)
    tune = steps.add_parser("tune")
    tune.add_argument("job_dir", type=Path)
    tune.add_argument("--work-root", type=Path, required=True)
    tune.add_argument("--entry-point-dir", type=Path, required=True)
    tune.add_argument("--python")
    tune.add_argument("--poll-interval", type=float, required=True)
    tune.add_argument("--stop-grace-s", type=float, required=True)
    args = parser.parse_args(argv)
    if args.step == "finalize":
        return _finalize(args.job_dir, os.environ.get(local_jobs.OUTCOME_VARIABLE, ""))
    return _tune(
        args.job_dir,
        work_root=args.work_root,
        entry_point_dir=args.entry_point_dir,
        python=args.python,
        poll_interval=args.poll_interval,
        stop_grace_s=args.stop_grace_s,
    )


if __name__ == "__main__":
    sys.exit(main())
