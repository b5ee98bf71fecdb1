"""Benchmark: rows/s and peak memory of the ingest job against bare PySpark and pyarrow, same data.

Generates one day of the churn dataset (1M rows of CSV by default, 1% planted defects), then
times each variant in a process of its own (so each peak RSS is its own: a JVM never gives heap
back), after one untimed warm-up run (JIT and codegen warm-up is not throughput):

- ``ingest job``: ``spark_jobs.ingest.run_ingest`` (validation, dedup, PII, quarantine, manifest,
  atomic commit);
- ``bare pyspark``: the same files read as strings, cast to the spec's types, written as Parquet
  (what a job without any of the guarantees would cost);
- ``pyarrow csv``: ``pyarrow.csv.read_csv`` of the same files (the floor: a multi-threaded C++
  reader, no write).

Two more variants bound what any job that keeps the spec's guarantees could reach on this engine
(skipped with ``--no-floors``): each is bare PySpark plus one unavoidable piece of the job and
nothing else:

- ``rules floor``: bare read, the job's own normalization, casts and row rules
  (``spark_jobs.ingest.reason_checks``) folded into one pass/fail flag, the passing rows written.
  No reasons, PII treatment, deduplication, quarantine or manifest: the cheapest way we found to
  evaluate the spec's rules with Spark SQL expressions;
- ``arrow floor``: bare read-cast-write with every row sent through a Python worker and back as
  Arrow (``mapInArrow``, identity). The entry cost of evaluating the rules vectorized in Python
  (pyarrow) instead of as Spark row expressions, before any rule runs.

Each is run ``--repeat`` times and the median reported, with the peak RSS of the processes doing
the work (the Spark JVM plus its Python driver; the Python process for pyarrow) and the ratios
between them. Target: the job within 1.3x of the rules floor.

Beside those warm figures, the cold one: the job once as the local runtime starts it
(``python -m spark_jobs.ingest …`` in a fresh process: interpreter, imports, JVM and Spark
session, then the same ingest), wall time from start to exit. Its excess over the warm median is
what each local Spark job pays before it reads a row (skipped with ``--no-cold``).

    python bench/ingestion.py [--rows 1000000] [--repeat 3] [--work-dir DIR] [--no-floors] [--no-cold]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.local_ingest import BENCH_SALT, local_ingest_command  # noqa: E402
from include.datagen.churn import GeneratorConfig, generate  # noqa: E402
from spark_jobs.dataset_spec import load_spec  # noqa: E402
from spark_jobs.ingest import ingest_sql_conf, run_ingest  # noqa: E402
from spark_jobs.spark_session import get_spark  # noqa: E402

SPEC_PATH = REPO_ROOT / "include" / "datasets" / "churn.yaml"
DS = "2026-01-01"


class PeakRss:
    """Samples the resident memory of some processes every 50 ms; ``peak`` is the maximum."""

    def __init__(self, pids: list[int]):
        self.processes = [psutil.Process(pid) for pid in pids]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for process in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def measure(name: str, run: Callable[[], None], pids: list[int], repeat: int) -> dict:
    seconds, peaks = [], []
    for attempt in range(repeat):
        with PeakRss(pids) as rss:
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        peaks.append(rss.peak)
        print(
            f"  {name} run {attempt + 1}: {seconds[-1]:.2f}s, peak RSS {rss.peak / 2**20:.0f} MiB",
            flush=True,
        )
    return {"name": name, "seconds": statistics.median(seconds), "peak_rss": max(peaks)}


VARIANTS = ("ingest job", "bare pyspark", "pyarrow csv")
FLOOR_VARIANTS = ("rules floor", "arrow floor")


def landing_files(work: Path, rows: int) -> list[str]:
    """The benchmark's CSV files, generated once per row count and reused."""
    day_dir = work / "landing" / "churn" / f"ds={DS}"
    marker = day_dir / f"_rows_{rows}"
    if not marker.exists():
        print(f"generating {rows} rows of churn CSV under {work} …", flush=True)
        start = time.perf_counter()
        config = GeneratorConfig(
            out=work / "landing",
            start=date.fromisoformat(DS),
            rows_per_day=rows,
            seed=7,
            fmt="csv",
            corrupt_rate=0.01,
        )
        generate(config)
        marker.touch()
        print(f"  generated in {time.perf_counter() - start:.1f}s", flush=True)
    return sorted(str(p) for p in day_dir.glob("part-*.csv"))


def rules_only(frame, spec):
    """The spec's row rules as the job evaluates them, folded into one flag; passing rows kept."""
    from pyspark.sql import functions as F

    from spark_jobs import ingest

    raw = frame.select(*(F.col(n).alias(f"{ingest.RAW_PREFIX}{n}") for n in spec.column_names))
    normalized = raw.select(*ingest._normalized(spec))
    typed = normalized.select(
        "*",
        *(
            ingest._cast(c).alias(f"{ingest.TYPED_PREFIX}{c.name}")
            for c in spec.columns
            if c.type != "string"
        ),
    )
    # Folded into one flag: the cheapest form we measured. The job's form (one CASE per column,
    # each its own column) took 18.7 s here against 8.3 s: filtering on those columns makes the
    # optimizer inline them all into one predicate, which the JIT compiles poorly.
    any_failed = F.lit(False)
    for _, condition in ingest.reason_checks(spec, date.fromisoformat(DS)):
        # A rule over a null value is null: it passes, as in the job's CASE WHEN.
        any_failed = any_failed | F.coalesce(condition, F.lit(False))
    return typed.filter(~any_failed).select(*(ingest._typed(c).alias(c.name) for c in spec.columns))


def cold_local_job(work: Path) -> float:
    """Seconds of one ingest as a local job: a fresh process of this interpreter running
    ``python -m spark_jobs.ingest`` with the argv the ingestion DAG gives it, start to exit."""
    command, env = local_ingest_command(sys.executable, work / "landing", work / "lake-cold", DS)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the cold ingest exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds


def run_variant(variant: str, work: Path, rows: int, repeat: int) -> dict:
    """Time one variant in this process; returns seconds (median), peak RSS, rows."""
    files = landing_files(work, rows)
    spec = load_spec(SPEC_PATH)
    result: dict = {"name": variant}

    if variant == "pyarrow csv":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        def run() -> None:
            total = 0
            for path in files:
                # Binary columns and no quoting: the floor is tokenizing, not validating; rows
                # with the wrong field count are skipped (the real job quarantines them).
                table = pacsv.read_csv(
                    path,
                    read_options=pacsv.ReadOptions(use_threads=True),
                    parse_options=pacsv.ParseOptions(
                        quote_char=False, invalid_row_handler=lambda row: "skip"
                    ),
                    convert_options=pacsv.ConvertOptions(
                        column_types=dict.fromkeys(spec.column_names, pa.binary())
                    ),
                )
                total += table.num_rows
            result["rows"] = total

        pids = [os.getpid()]
    else:
        os.environ.setdefault("HEADRACE_SPARK_LOG_LEVEL", "ERROR")
        spark = get_spark("headrace-bench-ingestion")
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        pids = [spark.sparkContext._jvm.ProcessHandle.current().pid(), os.getpid()]
        result["spark"] = f"Spark {spark.version} {spark.sparkContext.master}"
        if variant == "ingest job":

            def run() -> None:
                outcome = run_ingest(
                    spark,
                    spec,
                    landing_uri=str(work / "landing"),
                    ds=DS,
                    lake_root=str(work / "lake"),
                    pii_salt=BENCH_SALT,
                )
                result["rows"] = outcome.manifest["totals"]["rows_read"]
                result["phases"] = {k: round(v, 2) for k, v in outcome.timings.items()}

        else:
            schema = T.StructType([T.StructField(n, T.StringType()) for n in spec.column_names])

            def bare_typed(frame):
                return frame.select(
                    *(
                        F.col(c.name)
                        .cast({"int": "int", "long": "bigint"}.get(c.type, c.type))
                        .alias(c.name)
                        for c in spec.columns
                    )
                )

            def write(frame) -> None:
                out = work / variant.replace(" ", "_")
                shutil.rmtree(out, ignore_errors=True)
                frame.write.parquet(str(out))

            if variant == "bare pyspark":

                def run() -> None:
                    write(bare_typed(spark.read.csv(files, schema=schema, header=True)))

            elif variant == "rules floor":
                # The job's own SQL settings: without them the rules' generated code is too
                # large for the JIT and the floor would be slower than the job's own validation.
                for key, value in ingest_sql_conf(spark).items():
                    spark.conf.set(key, value)

                def run() -> None:
                    write(rules_only(spark.read.csv(files, schema=schema, header=True), spec))

            else:  # arrow floor

                def identity(batches):
                    yield from batches

                def run() -> None:
                    frame = spark.read.csv(files, schema=schema, header=True)
                    write(bare_typed(frame.mapInArrow(identity, frame.schema)))

        run()  # warm-up, untimed
    result.update(measure(variant, run, pids, repeat))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--work-dir", type=Path, help="kept between runs (data is reused); default: a temp dir"
    )
    parser.add_argument(
        "--no-floors", action="store_true", help="skip the rules and arrow floor variants"
    )
    parser.add_argument(
        "--no-cold", action="store_true", help="skip the cold run of the job as a local job"
    )
    parser.add_argument("--variant", choices=VARIANTS + FLOOR_VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="headrace-bench-"))

    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.variant, work, args.rows, args.repeat)))
        return 0

    files = landing_files(work, args.rows)
    input_bytes = sum(os.path.getsize(f) for f in files)
    results = []
    for variant in VARIANTS + (() if args.no_floors else FLOOR_VARIANTS):
        print(f"{variant}: one warm-up run, then {args.repeat} timed runs …", flush=True)
        command = [sys.executable, __file__, "--variant", variant, "--work-dir", str(work)]
        command += ["--rows", str(args.rows), "--repeat", str(args.repeat)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return done.returncode
        for line in done.stdout.splitlines():
            if line.startswith("  "):
                print(line, flush=True)
            elif line.startswith("RESULT "):
                results.append(json.loads(line[len("RESULT ") :]))

    cold = None
    if not args.no_cold:
        print("ingest job as a local job (a fresh process): one cold run …", flush=True)
        cold = cold_local_job(work)
        print(f"  cold run: {cold:.2f}s", flush=True)

    rows = results[0]["rows"]
    print()
    print(
        f"input: {len(files)} CSV files, {input_bytes / 2**20:.0f} MiB, {rows} records "
        f"({args.rows} rows + planted duplicates, 1% defects)"
    )
    print(f"machine: {os.cpu_count()} cores; {results[0]['spark']}")
    print(f"{'':14} {'seconds':>8} {'rows/s':>12} {'peak RSS':>10}")
    for result in results:
        print(
            f"{result['name']:14} {result['seconds']:8.2f} {rows / result['seconds']:12,.0f} "
            f"{result['peak_rss'] / 2**20:8.0f} MiB"
        )
    phases = ", ".join(f"{k} {v:.1f}" for k, v in results[0]["phases"].items())
    print(f"ingest job phases (last run, s): {phases}")
    job, bare, arrow = (r["seconds"] for r in results[:3])
    if cold is not None:
        print(f"ingest job, cold (a local job from start to exit): {cold:.2f}s, that is "
              f"{cold - job:.2f}s of start-up over the warm {job:.2f}s")  # fmt: skip
    print()
    floor = next((r["seconds"] for r in results[3:] if r["name"] == "rules floor"), None)
    if floor is not None:
        print(f"ingest job / rules floor:   {job / floor:.2f}x  (target <= 1.3x)")
    print(f"ingest job / bare pyspark:  {job / bare:.2f}x")
    print(f"bare pyspark / pyarrow:     {bare / arrow:.2f}x")
    print(f"ingest job / pyarrow:       {job / arrow:.2f}x")
    for result in results[3:]:
        print(f"{result['name']} / bare pyspark: {result['seconds'] / bare:.2f}x")
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
