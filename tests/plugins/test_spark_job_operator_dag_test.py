"""SparkJobOperator inside Airflow's own task runner (``dag.test()``), locally and deferred on AWS.

The unit tests call ``execute`` directly; this proves the parts only Airflow exercises: the
real task context, template rendering, XCom push, and the defer → trigger → resume cycle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def outcomes(migrated_airflow_home, tmp_path_factory, repo_root) -> dict:
    """The DAG run on each target, in one subprocess; the outcome per target and the work dir."""
    work_dir = tmp_path_factory.mktemp("spark_job_dag")
    env = {**os.environ, "AIRFLOW_HOME": str(migrated_airflow_home), "PIPELINE_TARGET": "local"}
    completed = subprocess.run(
        [sys.executable, "tests/plugins/fixtures/spark_job_dag.py", str(work_dir), "local",
         "emr_serverless"],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    lines = [line for line in completed.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert lines, f"no outcome (exit {completed.returncode}):\n{completed.stderr[-4000:]}"
    return {**json.loads(lines[-1].removeprefix("OUTCOME ")), "work_dir": work_dir}


def test_local_target_in_the_task_runner(outcomes):
    outcome = outcomes["local"]

    assert (outcome["dag_run_state"], outcome["ti_state"]) == ("success", "success")
    xcom = outcome["xcom"]
    assert (xcom["engine"], xcom["job"], xcom["state"]) == ("local", "sleepy_job", "SUCCEEDED")
    assert xcom["run_key"].startswith("spark-job-check-ingest-")
    log_path = outcomes["work_dir"] / "local_runs" / "spark-jobs" / xcom["run_key"] / "output.log"
    log = log_path.read_text()
    # {{ ds }} was rendered by Airflow before the job saw its argv.
    assert "'--ds', '20" in log
    assert "{{" not in log


def test_emr_serverless_defers_and_resumes_in_the_task_runner(outcomes):
    outcome = outcomes["emr_serverless"]

    assert (outcome["dag_run_state"], outcome["ti_state"]) == ("success", "success")
    xcom = outcome["xcom"]
    assert (xcom["engine"], xcom["state"]) == ("emr_serverless", "SUCCESS")
    assert xcom["run_key"].startswith("spark-job-check-ingest-")
    assert len(xcom["run_id"]) == 16
