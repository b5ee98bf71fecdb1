"""Build the class-data-sharing archive that local Spark drivers start with (run by `make envs`).

    .venv-spark/bin/python scripts/spark_class_archive.py

A child process runs the ingest job on 2,000 generated rows, then a window, a join and aggregates
over its output, in a driver started with ``-XX:ArchiveClassesAtExit``: the JVM writes the
classes it loaded when it exits (an archive of a synthetic workload alone saved 1.5 s less per
job than one of the ingest job). The archive is moved into place only after the child has exited
cleanly, so a job never maps a half-written one. Why: spark_jobs/spark_session.py,
CLASS_ARCHIVE_NAME.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from spark_jobs.spark_session import (  # noqa: E402 (after the repository root is on sys.path)
    class_archive_path,
    driver_java_options,
    get_spark,
)

# The generated day of the workload.
DAY = "2026-01-05"


def run_workload(archive: Path, work: Path) -> None:
    """Start a driver that writes ``archive`` at exit, and load the classes the jobs load."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from include.config import load_settings
    from include.datagen.churn import GeneratorConfig, generate
    from include.ingestion import LOCAL_PII_SALT_ENV, ingest_job_args
    from spark_jobs import ingest

    # No archive to read while one is written: a dynamic archive sits on the JDK's own only.
    options = f"{driver_java_options(class_archive=False)} -XX:ArchiveClassesAtExit={archive}"
    # The job below finds this session running and uses it.
    spark = get_spark("headrace-class-archive", {"spark.driver.extraJavaOptions": options})
    generate(
        GeneratorConfig(out=work / "landing", start=date.fromisoformat(DAY), rows_per_day=2000)
    )
    lake = work / "lake"
    settings = load_settings({"PIPELINE_TARGET": "local", "HEADRACE_LAKE_ROOT": lake.as_uri()})
    os.environ[LOCAL_PII_SALT_ENV] = "class-archive-workload-salt"  # pragma: allowlist secret
    argv = ingest_job_args(settings, "churn", DAY, landing_uri=str(work / "landing"))
    if ingest.main(argv) != 0:
        raise SystemExit("the ingest job of the workload failed")
    curated = spark.read.parquet(str(lake / "curated" / "churn"))
    latest = Window.partitionBy("plan").orderBy(F.col("customer_id").desc())
    ranked = curated.withColumn("rank", F.row_number().over(latest))
    totals = ranked.groupBy("plan").agg(F.count("*").alias("rows"), F.avg("rank").alias("rank"))
    ranked.drop("rank").join(totals, "plan").write.parquet(str(work / "joined"))
    spark.stop()


def main() -> int:
    final = class_archive_path()
    if len(sys.argv) == 3 and sys.argv[1] == "--workload":
        with tempfile.TemporaryDirectory(prefix="headrace-class-archive-") as work:
            run_workload(Path(sys.argv[2]), Path(work))
        return 0
    started = time.perf_counter()
    partial = final.with_name(f".{final.name}.{os.getpid()}")
    env = {**os.environ, "HEADRACE_SPARK_LOG_LEVEL": "ERROR"}
    done = subprocess.run(
        [sys.executable, __file__, "--workload", str(partial)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        print(
            f"spark_class_archive: the workload exited {done.returncode} without an archive:\n"
            f"{(done.stdout + done.stderr)[-3000:]}",
            file=sys.stderr,
        )
        return 1
    os.replace(partial, final)
    print(
        f"spark_class_archive: {final} ({final.stat().st_size // 2**20} MiB) "
        f"in {time.perf_counter() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
