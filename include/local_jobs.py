"""One supervisor for local jobs: a job outlives the Airflow worker that started it, a retried task
finds it again by name, and stopping it ends all of it.

A job is a folder named by the job's deterministic name (:mod:`include.job_names`; each
runtime places it, e.g. ``<work_root>/training-jobs/<name>/``), and everything about it lives
there: ``request.json`` (the service request it honours),
``spec.json`` (what runs), ``process.json`` (the supervisor's pid), ``output.log``, ``result.json``
(what the job's steps report: output URIs, counts), ``status.json`` once it ended and
``stop.json`` when stopped on purpose. A job runs as up to three steps, each a command in its own
process under the supervisor: ``prepare`` (lay out inputs), ``command`` (the work) and ``finalize``
(upload outputs; it runs after the others whatever their outcome, with the outcome in
``HEADRACE_JOB_OUTCOME``). ``MaxRuntimeInSeconds`` bounds prepare and command together, as
SageMaker's stopping condition bounds a job.

States are SageMaker's words (``InProgress``, ``Stopping``, ``Completed``, ``Failed``,
``Stopped``) for every kind. Starting a name that is in progress or completed returns that job;
one that failed or was stopped starts afresh, the old files kept under ``history/``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.config import REPO_ROOT
from include.local_state import (
    end_process_tree,
    locked,
    process_matches,
    read_json,
    start_detached,
    write_json,
)

IN_PROGRESS = "InProgress"
STOPPING = "Stopping"
COMPLETED = "Completed"
FAILED = "Failed"
STOPPED = "Stopped"
TERMINAL_STATES = frozenset({COMPLETED, FAILED, STOPPED})
# A job in one of these states is never started again under the same name.
REUSABLE_STATES = frozenset({IN_PROGRESS, STOPPING, COMPLETED})

OUTCOME_VARIABLE = "HEADRACE_JOB_OUTCOME"
DEFAULT_STOP_GRACE_S = 30.0
# SageMaker's FailureReason holds at most 1024 characters.
FAILURE_REASON_MAX = 1024

_REQUEST_FILE = "request.json"
_SPEC_FILE = "spec.json"
_PROCESS_FILE = "process.json"
_RESULT_FILE = "result.json"
_STATUS_FILE = "status.json"
_STOP_FILE = "stop.json"
_LOG_FILE = "output.log"
# Like SageMaker's /opt/ml/output/failure: what a failing step writes here becomes the job's
# FailureReason, instead of the log's tail.
_FAILURE_FILE = "failure"
_STATE_FILES = (
    _REQUEST_FILE,
    _SPEC_FILE,
    _PROCESS_FILE,
    _RESULT_FILE,
    _STATUS_FILE,
    _STOP_FILE,
    _FAILURE_FILE,
)

# Supervisors this process started: polling them reaps their exit, which a pid check alone would
# take for a live process (a zombie).
_CHILDREN: dict[str, subprocess.Popen] = {}


class LocalJobError(RuntimeError):
    """A local job did not complete; the message carries its FailureReason."""

    def __init__(self, message: str, description: dict):
        super().__init__(message)
        self.description = description


@dataclass(frozen=True)
class JobSteps:
    """What a job runs: commands (argv lists), and the environment and folder of ``command``.

    ``command`` is the job's own work (the container's, on AWS): ``env`` adds to the supervisor's
    environment for it (a ``None`` value removes that variable) and it runs in ``cwd``.
    ``prepare`` and ``finalize`` are the platform's part (what SageMaker's agent does around the
    container): they run in the repository with the supervisor's environment.
    ``failure_reason`` says how a failed ``command`` is reported (``{exit_code}`` filled in, the
    log's tail after it) unless the command wrote its own (:func:`write_failure`).
    """

    command: Sequence[str]
    prepare: Sequence[str] = ()
    finalize: Sequence[str] = ()
    env: Mapping[str, str | None] | None = None
    cwd: Path = REPO_ROOT
    max_runtime_s: float = 24 * 3600.0
    stop_grace_s: float = DEFAULT_STOP_GRACE_S
    failure_reason: str = "command step exited with code {exit_code}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def job_dir(work_root: Path | str, kind: str, name: str) -> Path:
    """The usual folder of local job ``name`` of ``kind``: ``<work_root>/<kind>-jobs/<name>``."""
    return Path(work_root) / f"{kind}-jobs" / name


def log_tail(path: Path, max_chars: int) -> str:
    """The last lines of a log that fit in ``max_chars`` (blank lines left out)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 4 * max_chars))
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    tail: list[str] = []
    for line in reversed([line for line in text.splitlines() if line.strip()]):
        if sum(len(kept) + 1 for kept in tail) + len(line) > max_chars:
            break
        tail.insert(0, line)
    return "\n".join(tail)


def describe(folder: Path) -> dict | None:
    """The job's state, like a Describe call, or ``None`` if no job of that name was started.

    Keys: ``Name``, ``Kind``, ``Status``, ``FailureReason`` (unless completed), ``StartTime``,
    ``EndTime``, ``JobDir``, ``LogPath``, ``Pid``, ``Request``, ``Result`` (what the steps
    reported in ``result.json``).
    """
    request = read_json(folder / _REQUEST_FILE)
    if request is None:
        return None
    child = _CHILDREN.get(str(folder))
    if child is not None:
        child.poll()
    process = read_json(folder / _PROCESS_FILE) or {}
    stop_requested = (folder / _STOP_FILE).exists()
    description: dict[str, Any] = {
        "Name": folder.name,
        "StartTime": process.get("started_at"),
        "JobDir": str(folder),
        "LogPath": str(folder / _LOG_FILE),
        "Pid": process.get("pid"),
        "Request": request,
        "Result": read_json(folder / _RESULT_FILE) or {},
    }
    status = read_json(folder / _STATUS_FILE)
    running = (
        status is None
        and bool(process)
        and process_matches(process["pid"], process.get("create_time"))
    )
    if status is None and not running:
        # The supervisor writes its status, then exits: one that ended between the two looks
        # above has written it by now (read once, the job would pass for lost; seen in CI).
        status = read_json(folder / _STATUS_FILE)
    if status is not None and "Status" not in status:
        # The local tuning job kept a status of its own here before it ran on this supervisor.
        raise RuntimeError(
            f"{folder / _STATUS_FILE} is not a local job's status (an older version of headrace "
            f"wrote it): delete {folder} and start the job again"
        )
    if status is not None:
        description.update(status)
    elif running:
        description["Status"] = STOPPING if stop_requested else IN_PROGRESS
    elif not process and not stop_requested:
        # Between request.json and process.json: a start is under way under the start lock (or
        # its caller died there, which start() sees under the lock).
        description["Status"] = IN_PROGRESS
        description["Starting"] = True
    else:
        description["Status"] = STOPPED if stop_requested else FAILED
        # Lost: nothing recorded how it ended (the machine restarted, or the supervisor was killed).
        description["Lost"] = not stop_requested
        description["FailureReason"] = (
            "stopped"
            if stop_requested
            else "the local supervisor ended without recording a result (the machine restarted "
            "or it was killed)"
        )
    return description


def start(
    folder: Path,
    request: Mapping[str, Any],
    steps: JobSteps,
    *,
    lay_out: Callable[[Path], Mapping[str, str | None] | None] | None = None,
    archived: Sequence[str] = (),
) -> tuple[dict, bool]:
    """The job ``name``: the one in progress or completed, else a new one running ``steps``.

    Returns its description and whether this call started it.

    :param lay_out: called with the job folder before a new job starts, under the start lock; an
        error it raises (an input that does not exist) stops the start and reaches the caller.
        What it returns is added to ``steps.env`` (variables that name what it laid out).
    :param archived: the kind's own files and folders in the job folder that an earlier try's
        ``history/<n>/`` keeps, beside the supervisor's.
    """
    with locked(folder):
        current = describe(folder)
        if (
            current is not None
            and current["Status"] in REUSABLE_STATES
            and not current.get("Starting")
        ):
            return current, False
        if current is not None:
            _archive(folder, archived)
        env = dict(steps.env or {})
        if lay_out is not None:
            env.update(lay_out(folder) or {})
        write_json(folder / _REQUEST_FILE, dict(request))
        write_json(
            folder / _SPEC_FILE,
            {
                "command": list(steps.command),
                "prepare": list(steps.prepare),
                "finalize": list(steps.finalize),
                "env": env,
                "cwd": str(steps.cwd),
                "max_runtime_s": steps.max_runtime_s,
                "stop_grace_s": steps.stop_grace_s,
                "failure_reason": steps.failure_reason,
            },
        )
        process, create_time = start_detached(
            [sys.executable, "-m", "include.local_jobs", "supervise", str(folder)],
            log_path=folder / _LOG_FILE,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        _CHILDREN[str(folder)] = process
        write_json(
            folder / _PROCESS_FILE,
            {"pid": process.pid, "create_time": create_time, "started_at": now()},
        )
    description = describe(folder)
    assert description is not None  # request.json was written under the lock
    return description, True


def wait(
    folder: Path,
    *,
    timeout: float | None = None,
    poll_interval: float = 0.5,
    raise_on_failure: bool = True,
) -> dict:
    """Block until the job ends; its description.

    :raises LocalJobError: it failed or was stopped (with ``raise_on_failure``).
    :raises TimeoutError: still running after ``timeout`` seconds (it is left running).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        description = describe(folder)
        if description is None:
            raise LookupError(f"no local job was started in {folder}")
        state = description["Status"]
        if state in TERMINAL_STATES:
            if state != COMPLETED and raise_on_failure:
                raise LocalJobError(
                    f"local job {folder.name} is {state}: {description.get('FailureReason', '')}",
                    description,
                )
            return description
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"local job {folder.name} still {state} after {timeout:.0f}s")
        time.sleep(poll_interval)


def stop(folder: Path, *, grace_period: float = DEFAULT_STOP_GRACE_S) -> bool:
    """Stop a running job: SIGTERM to its supervisor, which ends the running step (SIGKILL after
    the job's grace period), runs ``finalize`` and records ``Stopped``. Signals go to the recorded
    supervisor only, never to processes found by name. Returns whether a running job was signalled.
    """
    description = describe(folder)
    if description is None or description["Status"] not in (IN_PROGRESS, STOPPING):
        return False
    write_json(folder / _STOP_FILE, {"requested_at": now()})
    pid = description.get("Pid")
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_period + 15
    while time.monotonic() < deadline:
        if describe(folder)["Status"] in TERMINAL_STATES:
            break
        time.sleep(0.1)
    else:
        # The supervisor itself did not finish: end its whole group and record it here.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        write_json(
            folder / _STATUS_FILE,
            {
                "Status": STOPPED,
                "FailureReason": "stopped: the job did not exit in time and was killed",
                "EndTime": now(),
            },
        )
    child = _CHILDREN.get(str(folder))
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace_period)
    return True


def _archive(folder: Path, archived: Sequence[str]) -> None:
    """Move an ended job's files under ``history/<n>/`` so a new start begins clean."""
    history = folder / "history"
    target = history / str(len(list(history.glob("*"))) + 1 if history.exists() else 1)
    target.mkdir(parents=True)
    for name in (*_STATE_FILES, _LOG_FILE, *archived):
        if (folder / name).exists() or (folder / name).is_symlink():
            os.replace(folder / name, target / name)


# --- the supervisor ------------------------------------------------------------------------------


def _supervise(folder: Path) -> int:
    """Run the job's steps under its stopping condition and record the outcome."""
    spec = read_json(folder / _SPEC_FILE)
    max_runtime = float(spec["max_runtime_s"])
    grace = float(spec["stop_grace_s"])
    stop_signalled = False

    def on_sigterm(signum, frame):
        nonlocal stop_signalled
        stop_signalled = True

    signal.signal(signal.SIGTERM, on_sigterm)
    platform_env = dict(os.environ)
    # A variable set to None in the spec is removed (e.g. the worker's PYTHONPATH for code that
    # must import only its own package, as in a container).
    command_env = {**os.environ, **spec["env"]}
    command_env = {key: value for key, value in command_env.items() if value is not None}
    started = time.monotonic()

    def run(step: str, bounded: bool) -> tuple[int, str | None]:
        """A step's exit code, and why it was ended early (``None`` if it was not)."""
        print(f"[local-job] {step}: {' '.join(spec[step])}", flush=True)
        own = step == "command"
        process = subprocess.Popen(
            spec[step],
            cwd=spec["cwd"] if own else REPO_ROOT,
            env=command_env if own else platform_env,
            stdin=subprocess.DEVNULL,
        )
        while process.poll() is None:
            ended = None
            if bounded and (stop_signalled or (folder / _STOP_FILE).exists()):
                ended = STOPPED
            elif bounded and time.monotonic() - started > max_runtime:
                ended = "MaxRuntimeExceeded"
            if ended is not None:
                print(f"[local-job] ending {step}: {ended}", flush=True)
                end_process_tree(process, grace)
                return process.wait(), ended
            time.sleep(0.2)
        return process.returncode, None

    status: dict[str, Any] = {"Status": COMPLETED}
    for step in ("prepare", "command"):
        if not spec[step]:
            continue
        exit_code, ended = run(step, bounded=True)
        status["ExitCode"] = exit_code
        if ended == STOPPED:
            status.update(Status=STOPPED, FailureReason="stopped")
        elif ended is not None:
            status.update(
                Status=STOPPED,
                FailureReason=f"MaxRuntimeExceeded: the job ran longer than "
                f"MaxRuntimeInSeconds={max_runtime:g}",
            )
        elif exit_code != 0:
            template = spec["failure_reason"] if step == "command" else _STEP_FAILED
            status.update(
                Status=FAILED, FailureReason=_failure_reason(folder, template, step, exit_code)
            )
        if status["Status"] != COMPLETED:
            break
    if spec["finalize"]:
        platform_env[OUTCOME_VARIABLE] = status["Status"]
        exit_code, _ = run("finalize", bounded=False)
        if exit_code != 0 and status["Status"] == COMPLETED:
            status.update(
                Status=FAILED,
                FailureReason=_failure_reason(folder, _STEP_FAILED, "finalize", exit_code),
            )
    status["EndTime"] = now()
    status["RuntimeInSeconds"] = int(time.monotonic() - started)
    write_json(folder / _STATUS_FILE, status)
    return 0 if status["Status"] == COMPLETED else 1


_STEP_FAILED = "{step} step exited with code {exit_code}"


def _failure_reason(folder: Path, template: str, step: str, exit_code: int) -> str:
    """What the failed step wrote with :func:`write_failure`, else ``template`` and the log tail."""
    written = folder / _FAILURE_FILE
    if written.exists():
        return written.read_text(errors="replace")[:FAILURE_REASON_MAX]
    reason = template.format(step=step, exit_code=exit_code) + "; log tail:\n"
    return reason + log_tail(folder / _LOG_FILE, FAILURE_REASON_MAX - len(reason))


def write_failure(folder: Path | str, reason: str) -> None:
    """Record why the job fails (called by a step before it exits non-zero)."""
    (Path(folder) / _FAILURE_FILE).write_text(reason[:FAILURE_REASON_MAX])


def write_result(folder: Path | str, **fields: Any) -> None:
    """Merge ``fields`` into the job's ``result.json`` (called by a job's steps)."""
    path = Path(folder) / _RESULT_FILE
    write_json(path, {**(read_json(path) or {}), **fields})


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] != "supervise":
        print("usage: python -m include.local_jobs supervise <job dir>", file=sys.stderr)
        return 2
    return _supervise(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main())
