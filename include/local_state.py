"""What the local runtimes (Spark jobs, SageMaker training and tuning, batch transform) share
about the processes they start: a job folder's start lock, state files written atomically,
whether a recorded process is still the one that was started, and how a job's process tree is
stopped."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Exclusive access to a job's folder: two task attempts never both decide to start it."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_json(path: Path, payload: Any) -> None:
    """Write aside, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` if it was never written."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def start_detached(
    command: Sequence[str],
    *,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen, float | None]:
    """Start ``command`` in a session of its own, output appended to ``log_path``, with ``cwd``
    first on ``PYTHONPATH`` (so ``python -m include.…`` resolves from the repository).

    A session of its own: the job survives the Airflow worker that started it, and ``killpg``
    reaches all of it and nothing else. Returns the process and its create time (``None`` if
    it is already gone), which :func:`process_matches` later checks against pid reuse.
    """
    import psutil

    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(cwd)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        create_time = psutil.Process(process.pid).create_time()
    except psutil.NoSuchProcess:
        create_time = None
    return process, create_time


def process_matches(pid: int, create_time: float | None) -> bool:
    """Whether ``pid`` is still the process we started (pids are reused) and not a zombie."""
    import psutil  # an Airflow dependency; imported late to keep this module cheap to import

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(process.create_time() - create_time) < 1.0
    except psutil.NoSuchProcess:
        return False


def end_process_tree(process: subprocess.Popen, grace: float) -> int:
    """SIGTERM a job's process and its descendants, SIGKILL what is left after ``grace``;
    returns the job's exit code (``-15`` when SIGTERM ended it)."""
    import psutil  # an Airflow dependency; imported late to keep this module cheap to import

    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    process.terminate()
    for member in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    try:
        exit_code = process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        exit_code = process.wait()
    # The job is reaped by Popen (psutil would reap it first and hide its exit code); its
    # descendants are their parents' to reap, only their end matters (a JVM ignoring SIGTERM).
    _, alive = psutil.wait_procs(descendants, timeout=grace)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    return exit_code
