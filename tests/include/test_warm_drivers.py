"""Warm job drivers: a second Spark job reuses the JVM and sees nothing else of the first; a
stopped or killed job ends its driver with it; an idle driver goes away; a stopped driver's JVM
removes its directories."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from include.local_spark_runner import FAILED, SUCCEEDED, LocalSparkRunner
from include.local_state import process_matches
from include.warm_drivers import pool_of, stop_drivers
from tests.process_waits import ended, wait_for_file

SLEEPY = "tests.plugins.fixtures.sleepy_job"
PROBE = "tests.plugins.fixtures.spark_probe_job"


@pytest.fixture
def runner(tmp_path, repo_root):
    runner = LocalSparkRunner(work_root=tmp_path / "runs", repo_root=repo_root)
    yield runner
    stop_drivers(runner.drivers_dir)


def test_a_second_job_runs_in_the_same_jvm_and_sees_nothing_else_of_the_first(runner, tmp_path):
    # Where the JVM keeps its blockmgr-* directory: the runner's own folder, not /tmp.
    spark_local = runner.spark_local_dir
    found = []
    for tag in ("one", "two"):
        out = tmp_path / f"{tag}.json"
        env = {
            # What Airflow sets per task process: it differs between the two jobs.
            "AIRFLOW_CTX_TASK_ID": f"task-{tag}",
            "__AIRFLOW_SUPERVISOR_FD": str(len(found) + 7),
            "HEADRACE_SPARK_QUICK_JIT": "1",
        }
        runner.start_or_attach(PROBE, ["--out", str(out), "--tag", tag], tag, env=env)
        assert runner.wait(tag, timeout=180, poll_interval=0.1).state == SUCCEEDED
        found.append(json.loads(out.read_text()))
    first, second = found

    # The same driver and JVM: Airflow's per-task variables do not split the pool.
    assert second["pid"] == first["pid"]
    assert second["application_id"] == first["application_id"]
    # Nothing the first job left: its SQL option, its temporary view, its module's state.
    assert (first["option"], first["view"], first["main_calls"]) == (None, False, 1)
    assert (second["option"], second["view"], second["main_calls"]) == (None, False, 1)
    # Each job has its own environment and the jobs' SQL options.
    assert (first["task_id"], second["task_id"]) == ("task-one", "task-two")
    assert second["timezone"] == "UTC"
    # Each job's log holds its own output, the JVM's included, and none of the other's.
    logs = {tag: Path(runner.status(tag).log_path).read_text() for tag in ("one", "two")}
    assert "the JVM says one" in logs["one"] and "probe one done" in logs["one"]
    assert "the JVM says two" in logs["two"] and "probe two done" in logs["two"]
    assert "says one" not in logs["two"] and "probe one" not in logs["two"]

    # `make down` gives the JVM the time its shutdown hook takes to delete Spark's directories.
    assert spark_local.stat().st_mode & 0o077 == 0  # no other user reads the jobs' scratch files
    assert len(list(spark_local.glob("blockmgr-*"))) == 1
    assert stop_drivers(runner.drivers_dir) == 1
    assert not process_matches(first["pid"], None)
    assert list(spark_local.iterdir()) == []


def test_jobs_at_once_or_of_another_environment_get_drivers_of_their_own(runner, tmp_path):
    def run(key: str, sleep: str, env: dict | None = None) -> int:
        marker = tmp_path / key
        runner.start_or_attach(SLEEPY, ["--marker", str(marker), "--sleep", sleep], key, env=env)
        return int(wait_for_file(marker / "job.pid"))

    long_pid = run("long", "3")
    short_pid = run("short", "0")
    assert runner.wait("short", timeout=60, poll_interval=0.05).state == SUCCEEDED
    assert runner.wait("long", timeout=60, poll_interval=0.05).state == SUCCEEDED
    assert short_pid != long_pid

    # Both drivers are free again: the next job of that environment takes one of them.
    assert run("again", "0") in (long_pid, short_pid)
    # Another environment never shares a driver.
    other_pid = run("other", "0", env={"HEADRACE_PROBE": "another environment"})
    assert other_pid not in (long_pid, short_pid)
    assert runner.wait("other", timeout=60, poll_interval=0.05).state == SUCCEEDED


def test_a_killed_job_process_ends_its_driver_and_the_next_job_gets_a_new_one(runner, tmp_path):
    marker = tmp_path / "killed"
    args = ["--marker", str(marker), "--sleep", "60", "--grandchild"]
    runner.start_or_attach(SLEEPY, args, "killed")
    driver_pid = int(wait_for_file(marker / "job.pid"))
    grandchild_pid = int(wait_for_file(marker / "grandchild.pid"))
    # The job's process is the supervisor's child; SIGKILL leaves it no time to stop the driver.
    (client,) = psutil.Process(runner.status("killed").pid).children()
    os.kill(client.pid, signal.SIGKILL)

    assert ended(driver_pid, timeout=15), "the driver outlived its job's process"
    assert ended(grandchild_pid, timeout=15), "what the job started outlived it"
    deadline = time.monotonic() + 30
    while runner.status("killed").state != FAILED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.status("killed").exit_code == -signal.SIGKILL

    marker = tmp_path / "next"
    runner.start_or_attach(SLEEPY, ["--marker", str(marker)], "next")
    assert runner.wait("next", timeout=60, poll_interval=0.05).state == SUCCEEDED
    assert int((marker / "job.pid").read_text()) != driver_pid


def test_an_idle_driver_exits_and_make_down_stops_a_waiting_one(runner, tmp_path):
    marker = tmp_path / "idle"
    env = {"HEADRACE_WARM_DRIVER_IDLE_S": "1"}
    runner.start_or_attach(SLEEPY, ["--marker", str(marker)], "idle", env=env)
    runner.wait("idle", timeout=60, poll_interval=0.05)
    assert ended(int((marker / "job.pid").read_text()), timeout=15), "the idle driver did not exit"
    (slot,) = pool_of(runner.work_root).glob("*/slot-0")
    assert not (slot / "driver.json").exists() and not (slot / "driver.sock").exists()

    marker = tmp_path / "waiting"
    runner.start_or_attach(SLEEPY, ["--marker", str(marker)], "waiting")
    runner.wait("waiting", timeout=60, poll_interval=0.05)
    driver_pid = int((marker / "job.pid").read_text())
    assert process_matches(driver_pid, None)
    assert stop_drivers(runner.drivers_dir) == 1
    assert ended(driver_pid, timeout=1)
