"""SparkJobOperator on the local target: a real subprocess per run, re-attached to on retry.

The job is ``tests/plugins/fixtures/sleepy_job.py`` (no Spark: the runner's contract is the
process, and Spark's own tests live with ``spark_jobs/``).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.exceptions import AirflowException

from headrace_operators import SparkJobOperator
from include.job_names import TaskRunIdentity
from tests.process_waits import ended, wait_for_file


class FixtureSparkJobOperator(SparkJobOperator):
    """The operator with the test fixtures as its jobs package."""

    jobs_package = "tests.plugins.fixtures"


@pytest.fixture
def local_target(tmp_path, monkeypatch, fresh_settings):
    """``PIPELINE_TARGET=local`` with run state under this test's tmp_path."""
    from include.config import get_settings

    monkeypatch.setenv("PIPELINE_TARGET", "local")
    monkeypatch.setenv("HEADRACE_LOCAL_RUNS_DIR", str(tmp_path / "local_runs"))
    get_settings.cache_clear()
    return tmp_path


def make_operator(marker: Path, *extra_args: str, **overrides) -> FixtureSparkJobOperator:
    arguments = {
        "task_id": "ingest",
        "job": "sleepy_job",
        "job_args": ["--marker", str(marker), *extra_args],
        "timeout": timedelta(minutes=5),
    }
    arguments.update(overrides)
    return FixtureSparkJobOperator(**arguments)


def run_in_thread(operator, context) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = operator.execute(context)
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_retry_reattaches_to_the_running_job(local_target, task_context):
    marker = local_target / "marker"
    context = task_context()
    first_try, first = run_in_thread(make_operator(marker, "--sleep", "2"), context)
    job_pid = int(wait_for_file(marker / "job.pid"))

    # The retry: a new operator instance for the same task instance, while the job still runs.
    result = make_operator(marker, "--sleep", "2").execute(context)
    first_try.join(timeout=60)

    run_key = TaskRunIdentity.from_context(context).run_key
    log_path = local_target / "local_runs" / "spark-jobs" / run_key / "output.log"
    assert result == {
        "engine": "local",
        "job": "sleepy_job",
        "run_key": run_key,
        "run_id": run_key,
        "state": "SUCCEEDED",
        "log_path": str(log_path),
    }
    assert first == {"result": result}
    assert (marker / "starts.txt").read_text().split() == [str(job_pid)]
    assert "sleepy job done" in log_path.read_text()


def test_retry_after_success_returns_the_result_without_running_again(local_target, task_context):
    marker = local_target / "marker"
    context = task_context()
    first = make_operator(marker).execute(context)
    second = make_operator(marker).execute(context)

    assert second == first
    assert len((marker / "starts.txt").read_text().split()) == 1
    # Another map index is another task instance: it runs.
    make_operator(marker).execute(task_context(map_index=1))
    assert len((marker / "starts.txt").read_text().split()) == 2


def test_failed_job_raises_with_the_tail_of_its_log(local_target, task_context):
    marker = local_target / "marker"
    operator = make_operator(marker, "--exit-code", "3")

    with pytest.raises(AirflowException) as raised:
        operator.execute(task_context())

    message = str(raised.value)
    assert "failed with exit code 3" in message
    assert f"boom: bad row 7 in {marker}" in message
    # A retry after a failure runs the job again, keeping the failed run's files.
    with pytest.raises(AirflowException, match="exit code 3"):
        make_operator(marker, "--exit-code", "3").execute(task_context())
    assert len((marker / "starts.txt").read_text().split()) == 2
    run_key = TaskRunIdentity.from_context(task_context()).run_key
    history = local_target / "local_runs" / "spark-jobs" / run_key / "history" / "1"
    assert "boom: bad row 7" in (history / "output.log").read_text()


def test_on_kill_stops_the_whole_process_group(local_target, task_context):
    marker = local_target / "marker"
    operator = make_operator(marker, "--sleep", "120", "--grandchild")
    thread, outcome = run_in_thread(operator, task_context())
    job_pid = int(wait_for_file(marker / "job.pid"))
    grandchild_pid = int(wait_for_file(marker / "grandchild.pid"))

    operator.on_kill()
    thread.join(timeout=30)

    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), AirflowException)
    assert "was killed" in str(outcome["error"])
    assert ended(job_pid)
    assert ended(grandchild_pid)


def test_timeout_stops_the_job(local_target, task_context):
    marker = local_target / "marker"
    operator = make_operator(marker, "--sleep", "120", timeout=timedelta(seconds=1))

    with pytest.raises(AirflowException, match=r"still running after 1s .*stopped it"):
        operator.execute(task_context())

    assert ended(int((marker / "job.pid").read_text()))


def test_job_args_must_be_a_list(local_target, task_context):
    operator = FixtureSparkJobOperator(task_id="ingest", job="sleepy_job", job_args="--ds x")
    with pytest.raises(TypeError, match="job_args must be a list of strings, got str"):
        operator.execute(task_context())


def test_job_and_job_args_are_templated():
    operator = SparkJobOperator(
        task_id="ingest", job="{{ params.job }}", job_args=["--ds", "{{ ds }}"]
    )
    operator.render_template_fields({"ds": "2026-01-02", "params": {"job": "ingest"}})
    assert operator.job == "ingest"
    assert operator.job_args == ["--ds", "2026-01-02"]
