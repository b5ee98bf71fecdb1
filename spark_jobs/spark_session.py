"""The SparkSession every headrace job runs in: the platform's on Glue/EMR, a loopback-only one locally.

On Glue, EMR and EMR Serverless the job is started by ``spark-submit`` (a py4j gateway already
exists and its configuration is the platform's), so :func:`get_spark` takes that session as is
and only sets the few SQL options the jobs rely on for identical output. Anywhere else it starts
local Spark that listens on 127.0.0.1 only: by default Spark binds its driver and block manager
to the machine's external interface and serves its UI on all interfaces.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

# SQL options that make output portable and byte-stable, set on every session (they are runtime
# options, so setting them on a platform session is allowed and scoped to this application).
JOB_SQL_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    # Validation relies on casts returning null for bad input (ANSI mode would throw instead).
    "spark.sql.ansi.enabled": "false",
    # INT96 timestamps are deprecated; micros read the same in Spark, pyarrow and Athena.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # Write ancient dates as they are (the proleptic calendar) instead of failing the job.
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    "spark.sql.parquet.compression.codec": "snappy",
    # Never skip unreadable input: a corrupt file must fail the job, naming it.
    "spark.sql.files.ignoreCorruptFiles": "false",
    "spark.sql.files.ignoreMissingFiles": "false",
    # Wide datasets otherwise log a warning each time Spark abbreviates a plan.
    "spark.sql.debug.maxToStringFields": "500",
}

LOOPBACK = "127.0.0.1"
# Lets the JIT compile generated methods over 8000 bytes of bytecode (see local_conf).
COMPILE_HUGE_METHODS = "-XX:-DontCompileHugeMethods"
# A class-data-sharing archive of the classes a local driver loads, built into the Spark
# environment by `make envs` (scripts/spark_class_archive.py): the JVM maps them instead of
# loading and verifying each one. Measured on 2 cores, a local ingest job from start to exit: 17.9 s
# to 13.4 s at 2,000 rows, 28.4 s to 24.9 s at 250,000. A missing archive, or one a different JDK
# build wrote, is ignored by the JVM (-Xshare:auto), which then loads classes as before.
CLASS_ARCHIVE_NAME = "headrace-spark-driver.jsa"
# A local job's JVM lives for a few jobs (a warm driver's, include/warm_drivers.py): with
# HEADRACE_SPARK_QUICK_JIT=1 it compiles with the quick compiler only (C1), not spending two cores
# on optimizing code it will not run long. That pays for small days only. Measured on 2 cores, a
# local ingest job from start to exit: 13.67 s to 10.58 s at 2,000 rows in a fresh process
# (bench/job_startup.py), but 21.8 s to 25.3 s on a 250,000-row demo day with 1% defects (the
# validate phase 10.2 s to 14.3 s). Six 2,000-row jobs in one warm driver: 33.3-34.4 s and
# 39.8-41.0 CPU-s with it, 30.8-32.4 s and 54.8-58.0 CPU-s without: fewer cores' time, which the
# suite's lanes share. So a local job takes it only from an environment that sets it (a job
# inherits its starter's; the end-to-end tests set it, Makefile, and the Spark tests for the jobs
# they start in a process of their own), and a session that runs many jobs (the Spark tests' own:
# 197.5 s and 317 CPU-s with the full JIT, 244.8 s and 309 CPU-s with the quick one) gains
# nothing from it.
QUICK_JIT = "-XX:TieredStopAtLevel=1"
QUICK_JIT_ENV = "HEADRACE_SPARK_QUICK_JIT"


def class_archive_path() -> Path:
    """Where the Spark environment running this interpreter keeps the driver's class archive."""
    return Path(sys.prefix) / CLASS_ARCHIVE_NAME


def driver_java_options(*, class_archive: bool = True) -> str:
    """The local driver JVM's options: IPv4 sockets, the JIT flags (the quick JIT when
    ``HEADRACE_SPARK_QUICK_JIT`` is 1), and the class archive if built."""
    options = ["-Djava.net.preferIPv4Stack=true", COMPILE_HUGE_METHODS]
    if os.environ.get(QUICK_JIT_ENV) == "1":
        options.append(QUICK_JIT)
    archive = class_archive_path()
    if class_archive and archive.is_file():
        # Quoted: Spark splits these options like a shell, and the path may hold a space.
        options.append(f'"-XX:SharedArchiveFile={archive}"')
    return " ".join(options)


def is_platform_managed() -> bool:
    """True under spark-submit (Glue, EMR, EMR Serverless): the py4j gateway is already up."""
    from pyspark import SparkContext

    return (
        bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
        or SparkContext._active_spark_context is not None
    )


def local_conf(cores: int | None = None) -> dict[str, str]:
    """The configuration of a local session: loopback only, no UI, sized for a small machine."""
    cores = cores or os.cpu_count() or 2
    return {
        "spark.master": os.environ.get("HEADRACE_SPARK_MASTER", f"local[{cores}]"),
        "spark.driver.bindAddress": LOOPBACK,
        "spark.driver.host": LOOPBACK,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # A few tasks per core: the default 200 shuffle partitions are 200 tiny tasks here.
        "spark.sql.shuffle.partitions": str(max(2, 2 * cores)),
        "spark.default.parallelism": str(max(2, 2 * cores)),
        "spark.driver.memory": os.environ.get("HEADRACE_SPARK_DRIVER_MEMORY", "4g"),
        # The generated classes a session keeps (Spark's default is 100). A day's ingest job
        # compiles 69 and its features job 28, so in a warm driver each evicted the other's and
        # every later job compiled about 40 classes again, then ran them before the JIT had: at
        # 2,000 rows, alternated in one session, ingest 2.72-3.82 s and features 1.02-1.21 s a
        # job with 100, 2.16-3.16 s and 0.83-1.02 s (nothing compiled again) with 2,000.
        "spark.sql.codegen.cache.maxEntries": "2000",
        # Out of the working directory: jobs use no tables, but Spark creates the folder anyway.
        "spark.sql.warehouse.dir": os.path.join(tempfile.gettempdir(), "headrace-spark-warehouse"),
        # Compile generated methods over 8000 bytes too: validation's fused stage is one (see
        # spark_jobs/ingest.py, HUGE_METHOD_LIMIT); without the JIT it would run interpreted.
        "spark.driver.extraJavaOptions": driver_java_options(),
        **JOB_SQL_CONF,
    }


def get_spark(app_name: str = "headrace", conf: Mapping[str, str] | None = None):
    """The session to run a job in.

    :param app_name: the application name shown by the platform (and in local logs).
    :param conf: extra settings; on a platform session only runtime (SQL) options take effect.
    """
    from pyspark.sql import SparkSession

    extra = dict(conf or {})
    active = SparkSession.getActiveSession()
    if active is not None or is_platform_managed():
        spark = active or SparkSession.builder.appName(app_name).getOrCreate()
        for key, value in {**JOB_SQL_CONF, **extra}.items():
            spark.conf.set(key, value)
        return spark

    # Read by spark-class when the JVM starts: every socket Spark opens binds to loopback.
    os.environ["SPARK_LOCAL_IP"] = LOOPBACK
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    for key, value in {**local_conf(), **extra}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("HEADRACE_SPARK_LOG_LEVEL", "WARN"))
    return spark
