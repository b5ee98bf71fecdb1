"""Run a Spark job entry point on this machine, durably: one process per run key, however often asked.

The local counterpart of Glue/EMR runs. ``spark_jobs.<job> <argv>`` runs under the one local
supervisor (:mod:`include.local_jobs`), in a warm driver (:mod:`include.warm_drivers`: a stop or
kill ends the driver with it, Spark's JVM included), so a job outlives the Airflow worker that
started it. Its folder is named by its run key (``<local runs root>/spark-jobs/<run_key>/``). A
retried task asking for the same run key therefore re-attaches to a job that is still running, or
gets the finished result, instead of starting a second one; a run that failed, was killed or was
lost (its machine rebooted) is started afresh, the old files kept under ``history/``.

A run's state is told in Glue's words (``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``STOPPED`` as
``KILLED``, ``TIMEOUT``; ``LOST`` for a run nothing recorded the end of), read from the
supervisor's one vocabulary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from include import local_jobs, warm_drivers
from include.config import REPO_ROOT, get_settings
from include.local_envs import spark_python

KIND = "spark"
# Glue's default job timeout (48 hours), for runs started without one.
DEFAULT_MAX_RUNTIME_S = 48 * 3600.0

RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
KILLED = "KILLED"
# Stopped by the supervisor at its maximum runtime (Glue's TIMEOUT).
TIMEOUT = "TIMEOUT"
# Started, but its supervisor is gone without a result (a reboot, a killed container).
LOST = "LOST"
# How much of a failed run's log its error message quotes.
LOG_TAIL_CHARS = 4_000
# A run in one of these states is returned rather than started again.
REUSABLE_STATES = frozenset({RUNNING, SUCCEEDED})


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


def _glue_state(description: Mapping) -> str:
    """The supervisor's state of a run in Glue's words."""
    status = description["Status"]
    if status in (local_jobs.IN_PROGRESS, local_jobs.STOPPING):
        return RUNNING
    if status == local_jobs.COMPLETED:
        return SUCCEEDED
    if status == local_jobs.STOPPED:
        reason = description.get("FailureReason", "")
        return TIMEOUT if reason.startswith("MaxRuntimeExceeded") else KILLED
    return LOST if description.get("Lost") else FAILED


class LocalSparkRunner:
    """Starts, finds, waits on and stops local Spark job runs, one folder per run key.

    :param work_root: the folder of local jobs; runs live in its ``spark-jobs/`` (default: the
        settings' :attr:`~include.config.Settings.local_runs_root`).
    :param repo_root: the working directory and ``PYTHONPATH`` of every job.
    """

    def __init__(self, work_root: Path | str | None = None, repo_root: Path | str = REPO_ROOT):
        self.work_root = Path(work_root) if work_root else get_settings().local_runs_root
        self.repo_root = Path(repo_root)

    @property
    def spark_local_dir(self) -> Path:
        """Where the jobs' JVMs keep Spark's scratch folders (``blockmgr-*``: shuffle and cached
        blocks, raw values of the day's rows among them), instead of the shared ``/tmp``:
        readable by this user only, and inside the local runs' folder when a JVM killed outright
        cannot remove its own (Spark deletes them at a normal stop)."""
        return self.work_root / "spark-local"

    @property
    def drivers_dir(self) -> Path:
        """The pool of warm drivers the runs start in (:mod:`include.warm_drivers`)."""
        return warm_drivers.pool_of(self.work_root)

    def state_dir(self, run_key: str) -> Path:
        if not run_key or "/" in run_key or run_key.startswith("."):
            raise ValueError(f"run key {run_key!r} cannot name a state folder")
        return local_jobs.job_dir(self.work_root, KIND, run_key)

    def status(self, run_key: str) -> LocalRunStatus | None:
        """The run's state, or ``None`` if it was never started."""
        description = local_jobs.describe(self.state_dir(run_key))
        if description is None:
            return None
        return LocalRunStatus(
            run_key=run_key,
            state=_glue_state(description),
            module=description["Request"].get("module", ""),
            pid=description.get("Pid"),
            exit_code=description.get("ExitCode"),
            log_path=description["LogPath"],
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
        python = spark_python()
        extra = dict(env or {})
        self.spark_local_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        job_env = {
            "SPARK_LOCAL_DIRS": str(self.spark_local_dir),
            **extra,
            # The repository first, then what the caller adds.
            "PYTHONPATH": os.pathsep.join(
                [str(self.repo_root)] + ([extra["PYTHONPATH"]] if extra.get("PYTHONPATH") else [])
            ),
            # Spark binds its driver and block manager to loopback, never the external NIC.
            "SPARK_LOCAL_IP": "127.0.0.1",
            # Driver and executors run the Spark environment's Python (like Glue 5.1's).
            "PYSPARK_PYTHON": python,
            "PYTHONUNBUFFERED": "1",
        }
        steps = local_jobs.JobSteps(
            # Run in a warm driver: the JVM's start-up is paid once per driver, not per job.
            command=warm_drivers.job_command(python, self.drivers_dir, module, argv),
            env=job_env,
            cwd=self.repo_root,
            max_runtime_s=max_runtime_s,
            stop_grace_s=10.0,
        )
        request = {"run_key": run_key, "module": module, "argv": list(argv)}
        _, started = local_jobs.start(self.state_dir(run_key), request, steps)
        status = self.status(run_key)
        assert status is not None  # request.json was written under the lock
        return status, started

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
        tail = local_jobs.log_tail(Path(status.log_path), LOG_TAIL_CHARS) or "(the log is empty)"
        return (
            f"local Spark job {status.module} (run {status.run_key}) {how}; "
            f"last lines of {status.log_path}:\n{tail}"
        )

    def kill(self, run_key: str, *, grace_period: float = 10.0) -> bool:
        """Stop the run: SIGTERM to the job and its children (Spark's JVM), SIGKILL after
        ``grace_period``. Returns whether a running process was signalled."""
        return local_jobs.stop(self.state_dir(run_key), grace_period=grace_period)
