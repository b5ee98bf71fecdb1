"""Benchmark: in-process parse time of every DAG file, after airflow is imported.

Goal: < 200 ms per file. Each file is timed against a baseline measured in the same run: a
minimal DAG with one task, written to a temporary file. Like Airflow 3's dag-processor, which
parses each file in a child forked from a parent that has airflow loaded, every sample forks
from a parent that imported airflow and parsed the baseline once (Airflow's lazy imports), so
a sample includes what the file itself imports (include/, plugins/) but not airflow.
Run with `make bench` or `.venv/bin/python bench/dag_parse_times.py`.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GOAL_MS = 200.0
REPEATS = 5

BASELINE_DAG = """
from airflow.sdk import dag, task
import pendulum

@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def baseline():
    @task
    def noop():
        return None
    noop()

baseline()
"""


def _exec_file(path: Path, name: str) -> float:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    start = time.perf_counter()
    spec.loader.exec_module(module)
    return (time.perf_counter() - start) * 1000


def parse_ms(path: Path, name: str) -> float:
    """Median over REPEATS forked children of the time to execute the file once."""
    samples = []
    for _ in range(REPEATS):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: parse once, report, exit without running atexit handlers
            os.close(read_end)
            os.write(write_end, str(_exec_file(path, name)).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            reported = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not reported:
            raise RuntimeError(f"parsing {path} failed in the child (status {status})")
        samples.append(float(reported))
    return statistics.median(samples)


def main() -> int:
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="headrace-bench-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "plugins")]
    import airflow.sdk  # noqa: F401  (imported before timing, as the goal says)

    with tempfile.TemporaryDirectory() as tmp:
        baseline_path = Path(tmp) / "baseline.py"
        baseline_path.write_text(BASELINE_DAG)
        _exec_file(baseline_path, "warmup")  # the parent pays airflow's lazy imports once
        baseline = parse_ms(baseline_path, "baseline")

        print(f"baseline (1-task DAG): {baseline:.1f} ms")
        print(f"{'dag file':32} {'parse ms':>9} {'x baseline':>11} {'goal':>6}")
        over_goal = []
        for path in sorted((REPO_ROOT / "dags").glob("*.py")):
            ms = parse_ms(path, path.stem)
            verdict = "ok" if ms < GOAL_MS else "SLOW"
            if ms >= GOAL_MS:
                over_goal.append(path.name)
            print(f"{path.name:32} {ms:9.1f} {ms / baseline:11.2f} {verdict:>6}")
    if over_goal:
        print(f"over the {GOAL_MS:.0f} ms goal: {', '.join(over_goal)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
