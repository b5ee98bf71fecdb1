"""Benchmark: what a fresh job process pays before its first row, with and without the start-up
caches that ``make envs`` builds.

Every local job, Airflow task and quality check is a fresh interpreter, so its imports are paid
each time; every local Spark job also starts a JVM. ``make envs`` builds two caches for that:

- each environment's bytecode (compiled after ``uv pip sync``: the Makefile's
  ``COMPILE_PACKAGES``). Baseline, in the same run: the same import with ``-X pycache_prefix``
  set to an empty folder, which makes Python compile every module from source, as it did when
  nothing wrote bytecode (PYTHONDONTWRITEBYTECODE).
- the local Spark driver's class archive (scripts/spark_class_archive.py). Baseline: the same
  driver started without it.

And one setting the end-to-end tests give local Spark jobs: the quick JIT only
(``HEADRACE_SPARK_QUICK_JIT=1``). Measured: a local ingest job (``python -m spark_jobs.ingest``,
start to exit) over a day of 2,000 rows with 1% defects, as the tests' days, against the same job
with the full JIT, interleaved in the same run; and, with no goal, the same at 250,000 rows, the
demo's day, where the full JIT is the faster.

And where local Spark jobs run: a warm driver (include/warm_drivers.py). Measured: the
same job as a later job of a warm driver, against the job in a fresh process (as before the
drivers), at both sizes; the first job of a new driver is printed too.

Goals: the imports at most 0.5x their from-source time; the driver at most 0.85x; the job with
the quick JIT at most 0.9x the full JIT's time at 2,000 rows; the job in a warm driver at most
0.5x its time in a fresh process at 2,000 rows.
Run with `make bench` or `.venv/bin/python bench/job_startup.py [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.local_ingest import local_ingest_command  # noqa: E402
from include.local_envs import spark_python, training_python  # noqa: E402

IMPORT_GOAL = 0.5
DRIVER_GOAL = 0.85
QUICK_JIT_GOAL = 0.9
WARM_DRIVER_GOAL = 0.5
JOB_ROWS = (2_000, 250_000)
JOB_DS = "2026-01-01"
# What each kind of process imports first: a quality check, an Airflow task, a Spark job, a
# training, tuning, transform or processing job.
IMPORTS = [
    ("worker", "import great_expectations"),
    ("worker", "import airflow.sdk, airflow.models"),
    ("spark", "import pyspark.sql, pandas, pyarrow"),
    ("training", "import torch"),
]
DRIVER = (
    "from spark_jobs.spark_session import driver_java_options, get_spark\n"
    "import sys\n"
    "conf = {'spark.driver.extraJavaOptions': driver_java_options(class_archive=sys.argv[1] == 'on')}\n"
    "spark = get_spark('headrace-startup-bench', conf)\n"
    "spark.range(1000).selectExpr('sum(id)').collect()\n"
    "spark.stop()\n"
)


def seconds(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def median_of(repeat: int, command: list[str], env: dict | None = None) -> float:
    seconds(command, env)  # untimed: the page cache, as every later run finds it
    return statistics.median(seconds(command, env) for _ in range(repeat))


def ingest_job(work: Path, rows: int) -> tuple[list[str], dict, Path]:
    """The command, environment and lake of one local ingest job over ``rows`` generated rows."""
    landing, lake = work / f"landing-{rows}", work / f"lake-{rows}"
    subprocess.run(
        [sys.executable, "-m", "include.datagen.churn", "--out", str(landing), "--start", JOB_DS,
         "--days", "1", "--rows-per-day", str(rows), "--seed", "7", "--corrupt-rate", "0.01"],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    command, env = local_ingest_command(spark_python(), landing, lake, JOB_DS)
    return command, {**env, "PYTHONPATH": str(REPO_ROOT)}, lake


def quick_jit_ratios(repeat: int) -> dict[int, tuple[float, float]]:
    """Per row count, the median seconds of the job with the quick JIT and with the full one."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="headrace-quick-jit-") as tmp:
        for rows in JOB_ROWS:
            command, env, lake = ingest_job(Path(tmp), rows)
            times: dict[str, list[float]] = {"1": [], "0": []}
            for attempt in range(repeat + 1):  # the first pair untimed: the page cache
                for quick in times:
                    shutil.rmtree(lake, ignore_errors=True)  # a fresh partition each time
                    took = seconds(command, {**env, "HEADRACE_SPARK_QUICK_JIT": quick})
                    if attempt:
                        times[quick].append(took)
            results[rows] = (statistics.median(times["1"]), statistics.median(times["0"]))
    return results


def warm_driver_times(repeat: int) -> dict[int, tuple[float, float, float]]:
    """Per row count: the median seconds of the job in a fresh process, of its first run in a warm
    driver's pool (which starts the driver), and the median of the next ``repeat`` there."""
    from include.warm_drivers import job_command, pool_of, stop_drivers

    results = {}
    with tempfile.TemporaryDirectory(prefix="headrace-warm-driver-") as tmp:
        pool = pool_of(tmp)
        for rows in JOB_ROWS:
            command, env, lake = ingest_job(Path(tmp), rows)
            shutil.rmtree(lake, ignore_errors=True)
            seconds(command, env)  # untimed: the page cache
            fresh = []
            for _ in range(repeat):
                shutil.rmtree(lake, ignore_errors=True)
                fresh.append(seconds(command, env))
            in_driver = []
            for _ in range(repeat + 1):
                shutil.rmtree(lake, ignore_errors=True)
                in_driver.append(
                    seconds(job_command(command[0], pool, command[2], command[3:]), env)
                )
            stop_drivers(pool)
            results[rows] = (
                statistics.median(fresh),
                in_driver[0],
                statistics.median(in_driver[1:]),
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    pythons = {"worker": sys.executable, "spark": spark_python(), "training": training_python()}
    missed = []
    print(f"{'environment':<10} {'import':<42} {'cached':>8} {'source':>8} {'ratio':>6}")
    for environment, statement in IMPORTS:
        python = pythons[environment]
        with tempfile.TemporaryDirectory(prefix="headrace-no-bytecode-") as empty:
            cached = median_of(args.repeat, [python, "-c", statement])
            source = median_of(
                args.repeat, [python, "-X", f"pycache_prefix={empty}", "-c", statement]
            )
        ratio = cached / source
        if ratio > IMPORT_GOAL:
            missed.append(statement)
        print(f"{environment:<10} {statement:<42} {cached:>7.2f}s {source:>7.2f}s {ratio:>6.2f}")
    env = {**os.environ, "HEADRACE_SPARK_LOG_LEVEL": "ERROR"}
    with_archive = median_of(args.repeat, [pythons["spark"], "-c", DRIVER, "on"], env)
    without = median_of(args.repeat, [pythons["spark"], "-c", DRIVER, "off"], env)
    ratio = with_archive / without
    print(
        f"local Spark driver, start to first result and stop: {with_archive:.2f}s with the class "
        f"archive, {without:.2f}s without, ratio {ratio:.2f}"
    )
    if ratio > DRIVER_GOAL:
        missed.append("the Spark driver")
    for rows, (quick, full) in quick_jit_ratios(args.repeat).items():
        print(
            f"local ingest job of {rows:,} rows, start to exit: {quick:.2f}s with the quick JIT, "
            f"{full:.2f}s with the full JIT, ratio {quick / full:.2f}"
        )
        if rows == JOB_ROWS[0] and quick / full > QUICK_JIT_GOAL:
            missed.append(f"the quick JIT at {rows:,} rows")
    for rows, (fresh, first, warm) in warm_driver_times(args.repeat).items():
        print(
            f"local ingest job of {rows:,} rows, start to exit: {fresh:.2f}s in a fresh process, "
            f"{first:.2f}s as a new warm driver's first job, {warm:.2f}s as a later job there, "
            f"ratio {warm / fresh:.2f}"
        )
        if rows == JOB_ROWS[0] and warm / fresh > WARM_DRIVER_GOAL:
            missed.append(f"the warm driver at {rows:,} rows")
    print(
        f"goals (imports <= {IMPORT_GOAL}x from source, driver <= {DRIVER_GOAL}x without the "
        f"archive, job <= {QUICK_JIT_GOAL}x with the full JIT and <= {WARM_DRIVER_GOAL}x in a "
        f"fresh process when in a warm driver, at {JOB_ROWS[0]:,} rows): "
        f"{'met' if not missed else 'missed for ' + ', '.join(missed)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
