"""Run the quality gate's Great Expectations check on this machine as a job of its own: the local
counterpart of a Glue Data Quality evaluation run.

On aws the gate's rules run in Glue Data Quality (or Deequ on EMR), never in the Airflow worker.
Locally they run in Great Expectations, in a process under the one local supervisor
(:mod:`include.local_jobs`), so the worker reads no data file of the partition there either: the
task starts the job, waits, and reads back the result document the job wrote. The job is named by
its task's run key: a retried task re-attaches to the job an earlier try started (or takes its
result), and stopping the task stops the job.

    python -m include.local_quality <job folder> <dataset> <ds> <rules dir> <lake root>
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from include import local_jobs, warm_drivers
from include.config import REPO_ROOT, get_settings

KIND = "quality"
POLL_INTERVAL_S = 0.5
# What the job's result.json (local_jobs.write_result) holds the gate's result document under.
RESULT_KEY = "gate_result"


def job_folder(run_key: str) -> Path:
    """The job's folder: ``<local runs root>/quality-jobs/<run key>``."""
    return local_jobs.job_dir(get_settings().local_runs_root, KIND, run_key)


def start_or_attach(
    run_key: str,
    *,
    dataset: str,
    ds: str,
    rules_dir: Path | str,
    lake_root: str,
    max_runtime_s: float,
) -> tuple[dict, bool]:
    """The check of ``run_key``: the one running or finished, else a new one. Returns its
    description (:func:`include.local_jobs.describe`) and whether this call started it."""
    folder = job_folder(run_key)
    arguments = [str(folder), dataset, ds, str(rules_dir), lake_root]
    steps = local_jobs.JobSteps(
        # The worker's own interpreter (Great Expectations is in the worker environment), in a
        # warm driver: its imports are paid once per driver, not per check.
        command=warm_drivers.job_command(
            sys.executable,
            warm_drivers.pool_of(get_settings().local_runs_root),
            "include.local_quality",
            arguments,
        ),
        env={
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            )
        },
        cwd=REPO_ROOT,
        max_runtime_s=max_runtime_s,
        failure_reason="the Great Expectations check exited with code {exit_code}",
    )
    request = {"dataset": dataset, "ds": ds, "rules_dir": str(rules_dir), "lake_root": lake_root}
    return local_jobs.start(folder, request, steps)


def wait_for_result(run_key: str, *, timeout: float | None) -> dict:
    """The result document of the finished check (:meth:`GateResult.as_dict`).

    :raises include.local_jobs.LocalJobError: the check failed (its reason names the cause, e.g.
        a partition never committed) or was stopped.
    :raises TimeoutError: still running after ``timeout`` seconds (it is left running).
    """
    description = local_jobs.wait(
        job_folder(run_key), timeout=timeout, poll_interval=POLL_INTERVAL_S
    )
    return description["Result"][RESULT_KEY]


def stop(run_key: str) -> bool:
    """Stop the check (its process group). Returns whether a running job was signalled."""
    return local_jobs.stop(job_folder(run_key))


def main(argv: Sequence[str] | None = None) -> int:
    """The job: check one curated partition and record the result document, or why it could not."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 5:
        print(__doc__.splitlines()[-1].strip(), file=sys.stderr)
        return 2
    folder, dataset, ds, rules_dir, lake_root = arguments
    from include.dq.gate import GateInputError, load_dataset_rules, run_local_gate

    try:
        result = run_local_gate(load_dataset_rules(dataset, Path(rules_dir)), lake_root, ds)
    except GateInputError as error:
        local_jobs.write_failure(folder, str(error))
        return 1
    local_jobs.write_result(folder, **{RESULT_KEY: result.as_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
