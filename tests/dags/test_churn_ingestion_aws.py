"""The churn ingestion DAG on the aws target, run by Airflow's task runner against moto.

moto runs no Spark: an EMR Serverless job run it accepts succeeds at once. What this proves is
the DAG's side of the contract: the rendered argv, the requests sent (each one valid for
botocore's service model), the encryption and timeouts they carry, and the lake bucket they use.
Glue and EMR-on-EC2 request bodies are validated in tests/include/test_spark_job_requests.py;
moto cannot run those engines' full cycle (see tests/plugins/test_spark_job_operator_aws.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_churn_ingestion_completes_on_emr_serverless_against_moto(migrated_airflow_home, repo_root):
    env = {**os.environ, "AIRFLOW_HOME": str(migrated_airflow_home)}
    completed = subprocess.run(
        [sys.executable, "tests/dags/fixtures/run_dag_on_moto.py", "churn_ingestion",
         "emr_serverless", json.dumps({"ds": "2026-01-05"})],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    lines = [line for line in completed.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert lines, f"no outcome (exit {completed.returncode}):\n{completed.stderr[-4000:]}"
    outcome = json.loads(lines[-1].removeprefix("OUTCOME "))

    assert outcome["dag_run_state"] == "success"
    # landing_days picks the day(s); ingest is mapped over them: one day here, the param's.
    assert outcome["task_states"] == {"landing_days": "success", "ingest": "success"}
    assert [run["asset_extra"] for run in outcome["xcom"]["landing_days"]] == [{"ds": "2026-01-05"}]
    assert outcome["invalid_requests"] == []
    operations = [r["operation"] for r in outcome["requests"] if r["service"] == "emr-serverless"]
    assert operations.count("StartJobRun") == 1

    (start,) = outcome["start_requests"]
    argv = start["jobDriver"]["sparkSubmit"]["entryPointArguments"]
    options = dict(zip(argv[::2], argv[1::2], strict=True))
    assert options["--ds"] == "2026-01-05"  # the trigger form's date reached the job
    assert options["--lake-root"] == "s3://headrace-contract-lake/lake"
    assert options["--spec"] == "s3://headrace-contract-lake/artifacts/datasets/churn.yaml"
    assert options["--pii-salt-secret-id"].startswith("arn:aws:secretsmanager:")
    assert "--pii-salt-env" not in options
    assert start["jobDriver"]["sparkSubmit"]["entryPoint"].startswith(
        "s3://headrace-contract-lake/"
    )
    assert start["executionTimeoutMinutes"] > 0
    assert outcome["xcom"]["ingest"]["engine"] == "emr_serverless"
    assert outcome["xcom"]["ingest"]["state"] == "SUCCESS"
