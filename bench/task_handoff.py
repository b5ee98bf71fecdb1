"""Benchmark: how long the local stack takes to hand a DAG run's tasks on, on a busy machine.

A local stack (``scripts/airflow_stack.py``) in a home of its own runs ``lake_setup`` (two short
tasks in sequence) ``--runs`` times, one run after another, while ``--busy`` processes keep the
cores busy as the test suite and the demo's jobs do. Measured: each run's wall time, from the
trigger to its success, and how long each task's supervisor lived on after its task ended (Airflow
logs its "Workload finished"). Airflow 3.3.1's supervisor may sleep out a whole wait on sockets
after its task ended; the executor's slot is held meanwhile, and with the stack's two slots the
next task waits in the queue. The wait is ``[workers] min_heartbeat_interval``: the stack's 1 s,
against Airflow's default 5 s as the baseline, in the same run.

Goal: the runs after the first take at most 0.8x the baseline's time.
Run with `make bench` or `.venv/bin/python bench/task_handoff.py [--runs 10] [--busy 2]`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from scripts.airflow_api import AirflowApi  # noqa: E402
from scripts.airflow_stack import free_port, own_stack_env  # noqa: E402

SETTING = "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"
GOAL = 0.8


@contextlib.contextmanager
def _busy(processes: int):
    """``processes`` interpreters spinning until the block ends."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def _timestamp(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text[:26])


def measure(interval: str, runs: int, busy: int) -> dict:
    """Run ``lake_setup`` ``runs`` times on a fresh stack; the walls and the supervisors' lingers."""
    stack = [sys.executable, str(REPO_ROOT / "scripts" / "airflow_stack.py")]
    with tempfile.TemporaryDirectory(prefix="headrace-bench-handoff-") as tmp:
        base, port = Path(tmp), free_port()
        home = base / "airflow"
        env = own_stack_env(
            home,
            base / "lake",
            port,
            HEADRACE_DAGS_PAUSED_AT_CREATION="true",
            **{SETTING: interval},
        )
        started = subprocess.run([*stack, "up"], env=env, capture_output=True, text=True)
        try:
            if started.returncode != 0:
                raise SystemExit(f"the stack did not start:\n{started.stdout}{started.stderr}")
            password = json.loads((home / "passwords.json").read_text())["admin"]
            api = AirflowApi(f"http://127.0.0.1:{port}", "admin", password)
            api.wait_for_dags({"lake_setup"}, timeout=180)
            api.unpause("lake_setup")
            walls = []
            with _busy(busy):
                for _ in range(runs):
                    begun = time.monotonic()
                    run_id = api.trigger("lake_setup")
                    run = api.wait_for_run("lake_setup", run_id, timeout=300)
                    if run["state"] != "success":
                        raise SystemExit(f"lake_setup run {run_id} ended {run['state']}")
                    walls.append(time.monotonic() - begun)
                time.sleep(int(interval) + 2)  # the last supervisor's wait
        finally:
            subprocess.run([*stack, "down"], env=env, capture_output=True)
        with contextlib.closing(sqlite3.connect(home / "airflow.db")) as db:
            ended = {
                ti_id.replace("-", ""): _timestamp(end)
                for ti_id, end in db.execute(
                    "SELECT id, end_date FROM task_instance "
                    "WHERE dag_id = 'lake_setup' AND end_date IS NOT NULL"
                )
            }
        lingers = []
        for line in (home / "logs" / "scheduler.out").read_text().splitlines():
            if "Workload finished" in line and (found := re.search(r"workload_id=(\S+)", line)):
                ti_id = found.group(1).replace("-", "")
                if ti_id in ended:
                    lingers.append((_timestamp(line) - ended[ti_id]).total_seconds())
    return {"walls": walls, "lingers": sorted(lingers)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="lake_setup runs per stack")
    parser.add_argument("--busy", type=int, default=2, help="spinning processes beside them")
    args = parser.parse_args(argv)
    baseline = measure("5", args.runs, args.busy)
    stack = measure("1", args.runs, args.busy)
    for name, result in (("Airflow's default, 5 s", baseline), ("the stack's 1 s", stack)):
        walls, lingers = result["walls"], result["lingers"]
        late = [s for s in lingers if s > 0.5]
        print(
            f"{name}: runs after the first {sum(walls[1:]):.1f} s "
            f"({', '.join(f'{w:.1f}' for w in walls[1:])}); "
            f"{len(late)} of {len(lingers)} supervisors ended over 0.5 s after their task"
            + (f" ({min(late):.1f}-{max(late):.1f} s)" if late else "")
        )
    ratio = sum(stack["walls"][1:]) / sum(baseline["walls"][1:])
    verdict = "met" if ratio <= GOAL else "NOT met"
    print(f"runs after the first, 1 s / 5 s: {ratio:.2f}x (goal <= {GOAL}x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
