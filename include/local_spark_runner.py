"""Run a Spark job entry point on this machine, durably: one process per run key, however often asked.

The local counterpart of Glue/EMR runs. ``python -m spark_jobs.<job> <argv>`` runs in its own
process group (Spark's JVM included), under a small supervisor that records its exit code, so a
job outlives the Airflow worker that started it. Everything about a run lives in a state folder
named by its run key (``<repo>/.local/spark_runs/<run_key>/``): ``run.json`` (what runs, its pid),
``output.log`` (stdout and stderr), ``result.json`` (exit code, once finished) and ``killed.json``
(when stopped on purpose). A retried task asking for the same run key therefore re-attaches to a
job that is still running, or gets the finished result, instead of starting a second one; a run
that failed, was killed or was lost (its machine rebooted) is started afresh, the old files kept
under ``history/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from include.config import REPO_ROOT, get_settings
from include.local_envs import spark_python
from include.local_state import (
    end_process_tree,
    process_matches,
    read_json,
    start_detached,
    write_json,
)

DEFAULT_STATE_ROOT = REPO_ROOT / ".local" / "spark_runs"
# Glue's default job timeout (48 hours), for runs started without one.
DEFAULT_MAX_RUNTIME_S = 48 * 3600.0

RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
KILLED = "KILLED"
# Ran past its maximum runtime and was stopped by its supervisor (Glue's TIMEOUT).
TIMEOUT = "TIMEOUT"
# The supervisor is gone without recording a result: the machine rebooted or it was SIGKILLed.
LOST = "LOST"
# A run in one of these states is never started again for the same run key.
REUSABLE_STATES = frozenset({RUNNING, SUCCEEDED})

_RUN_FILE = "run.json"
_RESULT_FILE = "result.json"
_KILLED_FILE = "killed.json"
_LOG_FILE = "output.log"


class LocalSparkJobError(RuntimeError):
    """A local Spark job did not succeed; the message ends with the tail of its log."""

    def __init__(self, message: str, status: LocalRunStatus):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LocalRunStatus:
    """Where one run stands."""

    run_key: str
    state: str
    module: str
    pid: int | None
    exit_code: int | None
    log_path: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def log_tail(path: Path | str, max_lines: int = 40, max_bytes: int = 16_384) -> str:
    """The last lines of a log, for an error message; empty if there is no log."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - max_bytes))
            data = log.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-max_lines:])


class LocalSparkRunner:
    """Starts, finds, waits on and stops local Spark job runs, one state folder per run key.

    :param state_root: where run state folders live (default: ``HEADRACE_LOCAL_RUNS_DIR``,
        which the local stack sets under its Airflow home, else ``<repo>/.local/spark_runs``).
    :param repo_root: the working directory and ``PYTHONPATH`` of every job.
    """

    def __init__(self, state_root: Path | str | None = None, repo_root: Path | str = REPO_ROOT):
        if state_root is None:
            state_root = get_settings().local_runs_dir or DEFAULT_STATE_ROOT
        self.state_root = Path(state_root)
        self.repo_root = Path(repo_root)
        # Supervisors this runner started: polling them reaps their exit, which pid checks alone
        # would see as a zombie that is still "alive".
        self._children: dict[str, subprocess.Popen] = {}

    def state_dir(self, run_key: str) -> Path:
        if not run_key or "/" in run_key or run_key.startswith("."):
            raise ValueError(f"run key {run_key!r} cannot name a state folder")
        return self.state_root / run_key

    @contextlib.contextmanager
    def _locked(self, run_key: str) -> Iterator[Path]:
        """Exclusive access to a run's state: two attempts never both decide to start it."""
        state_dir = self.state_dir(run_key)
        state_dir.mkdir(parents=True, exist_ok=True)
        with open(state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield state_dir
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def status(self, run_key: str) -> LocalRunStatus | None:
        """The run's state, or ``None`` if it was never started."""
        state_dir = self.state_dir(run_key)
        run = read_json(state_dir / _RUN_FILE)
        if run is None:
            return None
        child = self._children.get(run_key)
        if child is not None:
            child.poll()
        result = read_json(state_dir / _RESULT_FILE)
        killed = (state_dir / _KILLED_FILE).exists()
        exit_code = result["exit_code"] if result else None
        if result is not None and result.get("timed_out"):
            state = TIMEOUT
        elif result is not None:
            state = SUCCEEDED if exit_code == 0 and not killed else KILLED if killed else FAILED
        elif process_matches(run["pid"], run.get("create_time")):
            state = RUNNING
        else:
            state = KILLED if killed else LOST
        return LocalRunStatus(
            run_key=run_key,
            state=state,
            module=run["module"],
            pid=run["pid"],
            exit_code=exit_code,
            log_path=str(state_dir / _LOG_FILE),
        )

    def start_or_attach(
        self,
        module: str,
        argv: Sequence[str],
        run_key: str,
        *,
        env: Mapping[str, str] | None = None,
        max_runtime_s: float = DEFAULT_MAX_RUNTIME_S,
    ) -> tuple[LocalRunStatus, bool]:
        """The run of ``run_key``: the running or finished one, else a new one of ``module``.

        Returns the status and whether this call started the process.

        :param module: the entry point's module, e.g. ``spark_jobs.ingest``.
        :param argv: its arguments, passed to ``main(argv)`` through ``sys.argv``.
        :param run_key: the run's deterministic key (:mod:`include.job_names`).
        :param env: variables added to this process's environment for the job.
        :param max_runtime_s: the supervisor stops the job after this long, whoever is waiting
            (Glue's ``Timeout``, EMR Serverless's ``executionTimeoutMinutes``).
        """
        with self._locked(run_key) as state_dir:
            current = self.status(run_key)
            if current is not None and current.state in REUSABLE_STATES:
                return current, False
            if current is not None:
                self._archive(state_dir)
            self._start(module, list(argv), run_key, state_dir, env or {}, max_runtime_s)
        status = self.status(run_key)
        assert status is not None  # run.json was written under the lock
        return status, True

    def _archive(self, state_dir: Path) -> None:
        history = state_dir / "history"
        history.mkdir(exist_ok=True)
        target = history / str(len(list(history.iterdir())) + 1)
        target.mkdir()
        for name in (_RUN_FILE, _RESULT_FILE, _KILLED_FILE, _LOG_FILE):
            if (state_dir / name).exists():
                os.replace(state_dir / name, target / name)

    def _start(
        self,
        module: str,
        argv: list[str],
        run_key: str,
        state_dir: Path,
        extra_env: Mapping,
        max_runtime_s: float,
    ) -> None:
        python = spark_python()
        env = {
            **os.environ,
            **extra_env,
            # Spark binds its driver and block manager to loopback, never the external NIC.
            "SPARK_LOCAL_IP": "127.0.0.1",
            # Driver and executors run the Spark environment's Python (like Glue 5.1's).
            "PYSPARK_PYTHON": python,
            "PYTHONUNBUFFERED": "1",
        }
        command = [python, "-m", module, *argv]
        supervisor = [
            sys.executable,
            "-m",
            "include.local_spark_runner",
            "supervise",
            str(state_dir),
            "--max-runtime-s",
            str(max_runtime_s),
            "--",
            *command,
        ]
        process, create_time = start_detached(
            supervisor, log_path=state_dir / _LOG_FILE, cwd=self.repo_root, env=env
        )
        self._children[run_key] = process
        write_json(
            state_dir / _RUN_FILE,
            {
                "run_key": run_key,
                "module": module,
                "argv": argv,
                "pid": process.pid,
                "create_time": create_time,
                "started_at": _now(),
            },
        )

    def wait(
        self, run_key: str, *, timeout: float | None = None, poll_interval: float = 0.5
    ) -> LocalRunStatus:
        """Block until the run finishes; return it if it succeeded.

        :raises LocalSparkJobError: the run failed, was killed or was lost (with its log tail).
        :raises TimeoutError: still running after ``timeout`` seconds (it is left running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(run_key)
            if status is None:
                raise LookupError(f"no local Spark run with key {run_key!r}")
            if status.state == SUCCEEDED:
                return status
            if status.state != RUNNING:
                raise LocalSparkJobError(self._failure_message(status), status)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"local Spark job {status.module} (run {run_key}) still running after "
                    f"{timeout:.0f}s"
                )
            time.sleep(poll_interval)

    @staticmethod
    def _failure_message(status: LocalRunStatus) -> str:
        how = {
            FAILED: f"failed with exit code {status.exit_code}",
            KILLED: "was killed",
            LOST: "was lost (its supervisor ended without recording a result)",
            TIMEOUT: "ran past its maximum runtime and was stopped",
        }[status.state]
        tail = log_tail(status.log_path) or "(the log is empty)"
        return (
            f"local Spark job {status.module} (run {status.run_key}) {how}; "
            f"last lines of {status.log_path}:\n{tail}"
        )

    def kill(self, run_key: str, *, grace_period: float = 10.0) -> bool:
        """Stop the run's whole process group: SIGTERM, then SIGKILL after ``grace_period``.

        Returns whether a running process was signalled.
        """
        status = self.status(run_key)
        if status is None or status.state != RUNNING or status.pid is None:
            return False
        state_dir = self.state_dir(run_key)
        write_json(state_dir / _KILLED_FILE, {"killed_at": _now()})
        # The supervisor leads the group (start_new_session), so its pid is the group id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(status.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_period
        while time.monotonic() < deadline:
            current = self.status(run_key)
            if current is None or current.state != RUNNING:
                break
            time.sleep(0.1)
        # Whatever is left of the group (a JVM ignoring SIGTERM, a grandchild) goes now.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(status.pid, signal.SIGKILL)
        child = self._children.get(run_key)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=grace_period)
        return True


def _supervise(state_dir: Path, command: list[str], max_runtime_s: float) -> int:
    """Run ``command``, stopping it after ``max_runtime_s``; record the outcome in
    ``result.json``. Returns the job's exit code."""
    child = subprocess.Popen(command)
    # SIGTERM to the group reaches the job directly; the supervisor stays to record the outcome.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        exit_code = child.wait(timeout=max_runtime_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        exit_code = end_process_tree(child, grace=10.0)
        timed_out = True
    result = {"exit_code": exit_code, "finished_at": _now()}
    if timed_out:
        result.update({"timed_out": True, "max_runtime_s": max_runtime_s})
    write_json(state_dir / _RESULT_FILE, result)
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m include.local_spark_runner supervise STATE_DIR --max-runtime-s S -- COMMAND..."
    if len(args) < 6 or args[0] != "supervise" or args[2] != "--max-runtime-s" or args[4] != "--":
        print(usage, file=sys.stderr)
        return 2
    return _supervise(Path(args[1]), args[5:], float(args[3]))


if __name__ == "__main__":
    sys.exit(main())
