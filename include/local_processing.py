"""Run a CreateProcessingJob body on this machine: the local runtime of the processing job kind.

It takes the very body :func:`include.sagemaker_requests.build_processing_job_request` builds and
honours it as SageMaker Processing does, under the one local supervisor
(:mod:`include.local_jobs`): ``prepare`` lays out ``/opt/ml/processing`` under the job folder
(``input/<name>`` holds each input: a folder's files, or exactly the objects a manifest lists),
``command`` runs the body's ``ContainerEntrypoint`` and ``ContainerArguments`` with the training
environment's ``python3`` first on ``PATH`` (the image processing runs in is the training image),
and ``finalize`` uploads each ``output/<name>`` folder to its URI when the job completed
(``S3UploadMode=EndOfJob``). Every ``/opt/ml/processing`` in the entry point, its arguments and
its environment names the job folder's ``processing/`` instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from include import local_jobs
from include.config import REPO_ROOT
from include.local_envs import training_python
from include.local_sagemaker import fill_manifest_channel, link_channel, local_file_path
from include.local_state import read_json
from include.sagemaker_requests import PROCESSING_ROOT

KIND = "processing"


def _root(folder: Path) -> Path:
    return folder / "processing"


def _localized(value: str, folder: Path) -> str:
    return value.replace(PROCESSING_ROOT, str(_root(folder)))


def start_processing_job(
    request: Mapping[str, Any],
    *,
    work_root: Path | str,
    stop_grace_s: float = local_jobs.DEFAULT_STOP_GRACE_S,
) -> tuple[dict, bool]:
    """The local job the body names: the one in progress or completed, else a new one.

    Returns its description (:func:`describe_processing_job`) and whether this call started it.
    """
    name = request["ProcessingJobName"]
    folder = local_jobs.job_dir(work_root, KIND, name)
    app = request["AppSpecification"]
    environment: dict[str, str | None] = {
        key: _localized(value, folder) for key, value in request.get("Environment", {}).items()
    }
    # The container's PATH puts the image's python3 first; its code imports only what the
    # tarball and the image hold, never the worker's PYTHONPATH.
    environment["PATH"] = os.pathsep.join(
        [str(Path(training_python()).parent), os.environ.get("PATH", "")]
    )
    environment["PYTHONPATH"] = None
    own = [sys.executable, "-m", "include.local_processing"]
    steps = local_jobs.JobSteps(
        prepare=[*own, "prepare", str(folder)],
        command=[
            _localized(part, folder)
            for part in [*app["ContainerEntrypoint"], *app.get("ContainerArguments", [])]
        ],
        finalize=[*own, "finalize", str(folder)],
        env=environment,
        cwd=REPO_ROOT,
        max_runtime_s=float(request["StoppingCondition"]["MaxRuntimeInSeconds"]),
        stop_grace_s=stop_grace_s,
    )
    description, started = local_jobs.start(folder, request, steps)
    return _as_processing(description), started


def describe_processing_job(name: str, *, work_root: Path | str) -> dict:
    """Like DescribeProcessingJob; raises ``LookupError`` for a job never started here."""
    description = local_jobs.describe(local_jobs.job_dir(work_root, KIND, name))
    if description is None:
        raise LookupError(f"no local processing job named {name!r} under {work_root}")
    return _as_processing(description)


def wait_for_processing_job(
    name: str,
    *,
    work_root: Path | str,
    timeout: float | None = None,
    poll_interval: float = 0.5,
) -> dict:
    """Block until the job ends; its Completed description, else :class:`local_jobs.LocalJobError`."""
    local_jobs.wait(
        local_jobs.job_dir(work_root, KIND, name), timeout=timeout, poll_interval=poll_interval
    )
    return describe_processing_job(name, work_root=work_root)


def stop_processing_job(
    name: str,
    *,
    work_root: Path | str,
    grace_period: float = local_jobs.DEFAULT_STOP_GRACE_S,
) -> bool:
    """Like StopProcessingJob; returns whether a running job was signalled."""
    return local_jobs.stop(local_jobs.job_dir(work_root, KIND, name), grace_period=grace_period)


def _as_processing(description: Mapping[str, Any]) -> dict:
    """A local job's description in DescribeProcessingJob's words."""
    request = description["Request"]
    out = {
        "ProcessingJobName": description["Name"],
        "ProcessingJobStatus": description["Status"],
        "ProcessingStartTime": description.get("StartTime"),
        "ProcessingEndTime": description.get("EndTime"),
        "ProcessingInputs": request.get("ProcessingInputs", []),
        "ProcessingOutputConfig": request.get("ProcessingOutputConfig", {}),
        "LocalJobDir": description["JobDir"],
        "LogPath": description["LogPath"],
        "Pid": description.get("Pid"),
        **description["Result"],
    }
    if "FailureReason" in description:
        out["FailureReason"] = description["FailureReason"]
    if "ExitCode" in description:
        out["ExitMessage"] = f"exit code {description['ExitCode']}"
    return out


# --- the job's steps -------------------------------------------------------------------------------


def prepare(folder: Path) -> None:
    """Lay out every input under ``processing/input/<name>`` and an empty folder per output."""
    request = read_json(folder / "request.json")
    for item in request.get("ProcessingInputs", []):
        source = item["S3Input"]
        name = item["InputName"]
        target = Path(_localized(source["LocalPath"], folder))
        target.parent.mkdir(parents=True, exist_ok=True)
        if source["S3DataType"] == "ManifestFile":
            fill_manifest_channel(source["S3Uri"], target, name)
        else:
            link_channel(local_file_path(source["S3Uri"], f"input {name!r}"), target, name)
    for output in request["ProcessingOutputConfig"]["Outputs"]:
        Path(_localized(output["S3Output"]["LocalPath"], folder)).mkdir(parents=True, exist_ok=True)


def finalize(folder: Path, outcome: str) -> None:
    """Upload each output folder to its URI if the job completed (``S3UploadMode=EndOfJob``)."""
    from include.storage import storage_for

    if outcome != local_jobs.COMPLETED:
        print(f"[local-processing] job {outcome}: outputs not uploaded", flush=True)
        return
    request = read_json(folder / "request.json")
    uploaded = []
    for output in request["ProcessingOutputConfig"]["Outputs"]:
        source = Path(_localized(output["S3Output"]["LocalPath"], folder))
        prefix = output["S3Output"]["S3Uri"].rstrip("/")
        storage = storage_for(prefix)
        files = sorted(path for path in source.rglob("*") if path.is_file())
        for path in files:
            storage.write_bytes(
                f"{prefix}/{path.relative_to(source).as_posix()}", path.read_bytes()
            )
        uploaded.append({"OutputName": output["OutputName"], "S3Uri": prefix, "Files": len(files)})
    local_jobs.write_result(folder, UploadedOutputs=uploaded)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] not in ("prepare", "finalize"):
        print(
            "usage: python -m include.local_processing prepare|finalize <job dir>", file=sys.stderr
        )
        return 2
    folder = Path(argv[1])
    if argv[0] == "prepare":
        prepare(folder)
    else:
        finalize(folder, os.environ.get(local_jobs.OUTCOME_VARIABLE, ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
