"""Benchmark: does any Airflow task's memory grow with the rows of a day, on the aws target?

Runs the AWS contract suite's lifecycle on Glue (tests/contract/aws_lifecycle_driver.py: lake
setup, two days ingested and validated, training with tuning twice, scoring and the drift check,
every DAG through ``dag.test()`` against a moto server, the jobs run by the local runtimes) once
per ``--rows`` size, each in a fresh Airflow home. The driver measures what each task adds to
the resident memory of the process that runs it, at its peak (its ``TaskMemory`` listener); the
jobs, moto and the simulated Glue Data Quality run are other processes, so what is measured is
the worker's share.

Printed: each task's figure at every size, its growth from the smallest size to the largest
(goal: no task grows by more than 20 MB from 10k to 500k rows a day), and each lifecycle's wall
time. The baseline is the same task at the smallest size, in the same run of this script.

    .venv/bin/python bench/worker_memory.py [--rows 10000 500000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DRIVER = REPO_ROOT / "tests" / "contract" / "aws_lifecycle_driver.py"
GOAL_GROWTH_MB = 20.0


def run_lifecycle(rows: int, folder: Path) -> tuple[dict, float]:
    """The driver's outcome at ``rows`` rows a day, and its wall seconds."""
    home = folder / f"airflow-{rows}"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "HEADRACE_CONTRACT_ROWS_PER_DAY": str(rows)}  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, str(DRIVER), "glue", str(folder / f"requests-{rows}.jsonl")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    seconds = time.monotonic() - started
    lines = [line for line in completed.stdout.splitlines() if line.startswith("OUTCOME ")]
    if not lines:
        sys.exit(f"no outcome at {rows} rows (exit {completed.returncode}):\n"
                 f"{completed.stderr[-4000:]}")  # fmt: skip
    outcome = json.loads(lines[-1].removeprefix("OUTCOME "))
    if "error" in outcome:
        sys.exit(f"the lifecycle failed at {rows} rows:\n{outcome['error']}")
    return outcome, seconds


def task_memory(outcome: dict) -> dict[str, float]:
    """``"<dag_id>#<run number of that DAG>.<task_id>"`` → what the task added to its
    process's resident memory at its peak, in MB."""
    peaks, seen = {}, {}
    for run in outcome["runs"]:
        number = seen[run["dag_id"]] = seen.get(run["dag_id"], 0) + 1
        for task_id, mb in run["task_rss_added_mb"].items():
            peaks[f"{run['dag_id']}#{number}.{task_id}"] = mb
    return peaks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 500_000])
    args = parser.parse_args()
    sizes = sorted(args.rows)
    with tempfile.TemporaryDirectory(prefix="headrace-worker-memory-") as tmp:
        results = {rows: run_lifecycle(rows, Path(tmp)) for rows in sizes}
    peaks = {rows: task_memory(outcome) for rows, (outcome, _) in results.items()}
    small, large = sizes[0], sizes[-1]
    tasks = [task for task in peaks[small] if task in peaks[large]]
    missing = sorted(set(peaks[small]) ^ set(peaks[large]))
    print(f"{'task (dag#run.task)':60}" + "".join(f"{f'{n:,} rows':>14}" for n in sizes)
          + f"{'growth':>10}")  # fmt: skip
    growths = {}
    for task in tasks:
        growths[task] = peaks[large][task] - peaks[small][task]
        values = "".join(f"{peaks[n].get(task, float('nan')):11.1f} MB" for n in sizes)
        print(f"{task:60}{values}{growths[task]:7.1f} MB")
    for rows, (_, seconds) in results.items():
        print(f"lifecycle at {rows:,} rows a day: {seconds:.0f} s")
    worst = max(growths, key=growths.get)
    met = growths[worst] <= GOAL_GROWTH_MB and not missing
    print(
        f"largest growth from {small:,} to {large:,} rows a day: {growths[worst]:.1f} MB "
        f"({worst}); goal <= {GOAL_GROWTH_MB:.0f} MB: {'met' if met else 'NOT met'}"
    )
    if missing:
        print(f"tasks measured at one size only: {missing}")
    print(json.dumps({"sizes": sizes, "max_growth_mb": round(growths[worst], 1), "task": worst,
                      "seconds": {rows: round(s) for rows, (_, s) in results.items()}}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
