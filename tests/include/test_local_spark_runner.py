"""The local runner's durable state: what a retried task finds, whatever happened to the last try."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from include.local_envs import spark_python
from include.local_spark_runner import (
    FAILED,
    LOST,
    RUNNING,
    SUCCEEDED,
    TIMEOUT,
    LocalSparkJobError,
    LocalSparkRunner,
)
from include.local_state import process_matches

MODULE = "tests.plugins.fixtures.sleepy_job"


@pytest.fixture
def runner(tmp_path, repo_root) -> LocalSparkRunner:
    return LocalSparkRunner(work_root=tmp_path / "runs", repo_root=repo_root)


def test_a_run_records_its_process_environment_and_result(runner, tmp_path):
    marker = tmp_path / "marker"
    status, started = runner.start_or_attach(MODULE, ["--marker", str(marker)], "run-a")

    assert started and status.state == RUNNING
    final = runner.wait("run-a", timeout=60, poll_interval=0.05)
    assert final.state == SUCCEEDED
    assert final.exit_code == 0

    state_dir = tmp_path / "runs" / "spark-jobs" / "run-a"
    run = json.loads((state_dir / "request.json").read_text())
    assert run["module"] == MODULE
    assert run["argv"] == ["--marker", str(marker)]
    assert json.loads((state_dir / "process.json").read_text())["pid"] == status.pid
    assert json.loads((state_dir / "status.json").read_text())["ExitCode"] == 0
    log = (state_dir / "output.log").read_text()
    assert f"sleepy job {(marker / 'job.pid').read_text()} started" in log
    # The supervisor leads a process group of its own, which the job runs in.
    assert int((marker / "job.pid").read_text()) != status.pid


def test_the_job_runs_from_the_repo_with_loopback_spark(runner, tmp_path):
    probe = (
        "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
        "('SPARK_LOCAL_IP', 'PYTHONPATH', 'PYSPARK_PYTHON')} | {'cwd': os.getcwd()}))"
    )
    # A probe module in a folder the caller adds to PYTHONPATH, run like any job module.
    (tmp_path / "probe_env.py").write_text(probe)
    runner.start_or_attach("probe_env", [], "probe", env={"PYTHONPATH": str(tmp_path)})
    final = runner.wait("probe", timeout=60, poll_interval=0.05)

    seen = json.loads(Path(final.log_path).read_text().strip().splitlines()[-1])
    assert seen["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert seen["PYTHONPATH"].split(os.pathsep) == [str(runner.repo_root), str(tmp_path)]
    # The Spark environment's interpreter (like Glue 5.1's), not the worker's.
    assert seen["PYSPARK_PYTHON"] == spark_python()
    assert seen["cwd"] == str(runner.repo_root)


def test_a_finished_run_is_returned_not_repeated(runner, tmp_path):
    marker = tmp_path / "marker"
    runner.start_or_attach(MODULE, ["--marker", str(marker)], "run-b")
    runner.wait("run-b", timeout=60, poll_interval=0.05)

    status, started = runner.start_or_attach(MODULE, ["--marker", str(marker)], "run-b")

    assert (started, status.state) == (False, SUCCEEDED)
    assert len((marker / "starts.txt").read_text().split()) == 1


def test_a_lost_run_is_started_again(runner, tmp_path):
    # A supervisor that vanished without a result (a reboot): a pid that no longer exists.
    state_dir = tmp_path / "runs" / "spark-jobs" / "run-c"
    state_dir.mkdir(parents=True)
    (state_dir / "request.json").write_text(json.dumps({"module": MODULE, "argv": []}))
    (state_dir / "process.json").write_text(json.dumps({"pid": 2**22 + 7, "create_time": 1.0}))
    (state_dir / "output.log").write_text("the lost run's log\n")
    assert runner.status("run-c").state == LOST
    with pytest.raises(LocalSparkJobError, match="was lost"):
        runner.wait("run-c", timeout=1)

    marker = tmp_path / "marker"
    status, started = runner.start_or_attach(MODULE, ["--marker", str(marker)], "run-c")

    assert started
    assert runner.wait("run-c", timeout=60, poll_interval=0.05).state == SUCCEEDED
    assert (state_dir / "history" / "1" / "output.log").read_text() == "the lost run's log\n"
    assert status.pid != 2**22 + 7


def test_wait_timeout_leaves_the_run_going_and_kill_stops_it(runner, tmp_path):
    marker = tmp_path / "marker"
    runner.start_or_attach(MODULE, ["--marker", str(marker), "--sleep", "60"], "run-d")

    started_at = time.monotonic()
    with pytest.raises(TimeoutError, match="still running after 0s"):
        runner.wait("run-d", timeout=0.2, poll_interval=0.05)
    assert runner.status("run-d").state == RUNNING
    # The job itself running, not only its supervisor: a stop before the step started ends the
    # run with no exit code (seen once in CI, when interpreters started faster).
    while not (marker / "job.pid").exists():
        assert time.monotonic() - started_at < 30, "the job never started"
        time.sleep(0.05)

    assert runner.kill("run-d", grace_period=5) is True
    assert time.monotonic() - started_at < 30
    status = runner.status("run-d")
    assert status.state == "KILLED"
    assert status.exit_code == -15  # SIGTERM reached the job itself
    # The job ran in a warm driver (include/warm_drivers.py): it ended with the job.
    assert not process_matches(int((marker / "job.pid").read_text()), None)
    assert runner.kill("run-d") is False  # nothing left to stop


def test_a_run_past_its_maximum_runtime_is_stopped_and_reported_with_no_one_waiting(
    runner, tmp_path
):
    marker = tmp_path / "marker"
    runner.start_or_attach(
        MODULE, ["--marker", str(marker), "--sleep", "120"], "run-t", max_runtime_s=1.5
    )
    # Nobody calls wait() or kill(): the supervisor itself ends the job, as Glue would.
    deadline = time.monotonic() + 60
    while runner.status("run-t").state == RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    status = runner.status("run-t")
    assert status.state == TIMEOUT
    assert status.exit_code == -15  # SIGTERM reached the job
    result = json.loads((tmp_path / "runs" / "spark-jobs" / "run-t" / "status.json").read_text())
    assert result["FailureReason"].startswith("MaxRuntimeExceeded")
    with pytest.raises(LocalSparkJobError, match="ran past its maximum runtime and was stopped"):
        runner.wait("run-t", timeout=5, poll_interval=0.05)


def test_a_failed_run_reports_its_exit_code(runner, tmp_path):
    marker = tmp_path / "marker"
    runner.start_or_attach(MODULE, ["--marker", str(marker), "--exit-code", "4"], "run-e")
    with pytest.raises(LocalSparkJobError) as raised:
        runner.wait("run-e", timeout=60, poll_interval=0.05)
    assert raised.value.status.state == FAILED
    assert raised.value.status.exit_code == 4
    assert "boom: bad row 7" in str(raised.value)


def test_run_keys_that_cannot_name_a_folder_are_refused(runner):
    for bad in ("", "../escape", ".hidden"):
        with pytest.raises(ValueError, match="cannot name a state folder"):
            runner.state_dir(bad)
    assert runner.status("never-started") is None


def test_run_state_lives_where_the_settings_say(tmp_path, monkeypatch, fresh_settings):
    """Each Airflow deployment keeps its own run state: run ids repeat across deployments
    (every fresh stack has a scheduled__<date> run), so a shared folder would make one
    deployment re-attach to another's finished run."""
    from include.config import get_settings
    from include.local_spark_runner import LocalSparkRunner

    monkeypatch.setenv("HEADRACE_LOCAL_RUNS_DIR", str(tmp_path / "home-a" / "local_runs"))
    get_settings.cache_clear()
    assert (
        LocalSparkRunner().state_dir("k") == tmp_path / "home-a" / "local_runs" / "spark-jobs" / "k"
    )
