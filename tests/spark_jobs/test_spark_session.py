"""The local SparkSession listens on loopback only and carries the jobs' SQL settings."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from spark_jobs.spark_session import JOB_SQL_CONF, get_spark, local_conf

LOOPBACK_ADDRESSES = {"127.0.0.1", "::ffff:127.0.0.1"}


def test_local_conf_binds_loopback_and_sizes_for_the_machine(monkeypatch):
    monkeypatch.delenv("HEADRACE_SPARK_MASTER", raising=False)
    conf = local_conf(cores=2)
    assert conf["spark.master"] == "local[2]"
    assert conf["spark.driver.bindAddress"] == conf["spark.driver.host"] == "127.0.0.1"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.shuffle.partitions"] == "4"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.files.ignoreCorruptFiles"] == "false"


@pytest.mark.e2e
def test_every_listening_socket_of_the_jvm_is_on_loopback(spark):
    jvm_pid = spark.sparkContext._jvm.ProcessHandle.current().pid()
    listening = [
        c
        for c in psutil.Process(jvm_pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening, "the driver RPC and block manager should be listening"
    assert {c.laddr.ip for c in listening} <= LOOPBACK_ADDRESSES
    assert os.environ["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert spark.sparkContext.uiWebUrl is None
    assert spark.conf.get("spark.driver.host") == "127.0.0.1"


@pytest.mark.e2e
def test_a_running_session_is_reused_with_the_job_settings(spark):
    spark.conf.set("spark.sql.session.timeZone", "Europe/Paris")
    try:
        again = get_spark("another-job", {"spark.sql.shuffle.partitions": "3"})
        assert again.sparkContext.applicationId == spark.sparkContext.applicationId
        assert again.conf.get("spark.sql.shuffle.partitions") == "3"
        for key, value in JOB_SQL_CONF.items():
            assert again.conf.get(key) == value
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "2")
        spark.conf.set("spark.sql.session.timeZone", "UTC")


@pytest.mark.e2e
def test_local_jvm_compiles_huge_methods_so_ingest_keeps_stages_fused(spark):
    """Local Spark starts its JVM with the JIT flag, so ingest lifts the huge-method limit; a
    cluster (tasks in other JVMs, whose flags this driver cannot see) keeps it."""
    from spark_jobs import ingest

    assert "-XX:-DontCompileHugeMethods" in local_conf()["spark.driver.extraJavaOptions"]
    assert ingest.ingest_sql_conf(spark) == ingest.INGEST_SQL_CONF

    class ClusterContext:
        master = "yarn"

    class ClusterSession:
        sparkContext = ClusterContext()

    conf = ingest.ingest_sql_conf(ClusterSession())
    assert conf["spark.sql.codegen.hugeMethodLimit"] == "8000"
    assert conf.items() >= ingest.INGEST_SQL_CONF.items()


def test_the_quick_jit_is_asked_for_by_the_environment(monkeypatch):
    from spark_jobs.spark_session import QUICK_JIT, QUICK_JIT_ENV, driver_java_options

    monkeypatch.delenv(QUICK_JIT_ENV, raising=False)
    assert QUICK_JIT not in driver_java_options()
    monkeypatch.setenv(QUICK_JIT_ENV, "0")
    assert QUICK_JIT not in driver_java_options()
    monkeypatch.setenv(QUICK_JIT_ENV, "1")
    assert QUICK_JIT in driver_java_options().split()


@pytest.mark.e2e
def test_a_local_job_driver_runs_with_the_quick_jit_when_asked(tmp_path, monkeypatch):
    """The setting reaches, through the local Spark runner, the driver JVM's own arguments."""
    from include.local_spark_runner import LocalSparkRunner

    monkeypatch.setenv("HEADRACE_SPARK_QUICK_JIT", "1")

    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "jvm_arguments.py").write_text(
        "from spark_jobs.spark_session import get_spark\n"
        "spark = get_spark('quick-jit-probe')\n"
        "bean = spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()\n"
        "print('JVM ARGUMENTS', list(bean.getInputArguments()))\n"
        "spark.stop()\n"
    )
    runner = LocalSparkRunner(tmp_path / "runs")
    runner.start_or_attach("jvm_arguments", [], "quick-jit-probe", env={"PYTHONPATH": str(probe)})
    finished = runner.wait("quick-jit-probe", timeout=180)
    log = Path(finished.log_path).read_text()
    (arguments,) = [line for line in log.splitlines() if line.startswith("JVM ARGUMENTS")]
    assert "'-XX:TieredStopAtLevel=1'" in arguments, arguments


@pytest.mark.e2e
def test_a_fresh_local_driver_loads_spark_from_the_class_archive(tmp_path):
    """The archive `make envs` built is one this JDK maps: a new driver's SparkSession class comes
    from it (the JVM ignores an archive it cannot use, so only its class log tells)."""
    import subprocess
    import sys

    from spark_jobs.spark_session import class_archive_path, driver_java_options

    assert class_archive_path().is_file(), f"no {class_archive_path()}: run make envs"
    classes = tmp_path / "classes.log"
    options = f"{driver_java_options()} -Xlog:class+load=info:file={classes}"
    start = (
        "from spark_jobs.spark_session import get_spark; "
        f"get_spark('archive-check', {{'spark.driver.extraJavaOptions': {options!r}}}).stop()"
    )
    repo_root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", start], cwd=repo_root, check=True, timeout=300)
    sources = {
        line.split()[1]: line.split("source: ", 1)[1]
        for line in classes.read_text().splitlines()
        if "source: " in line
    }
    assert sources["org.apache.spark.sql.SparkSession"] == "shared objects file (top)"
    shared = sum(source.startswith("shared objects file") for source in sources.values())
    assert shared > 0.8 * len(sources), f"{shared} of {len(sources)} classes from the archives"
