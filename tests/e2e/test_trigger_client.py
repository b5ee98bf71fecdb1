"""``scripts/trigger.py`` against the real local stack, run as a Lambda function or CI job would
run it: a subprocess with its credentials in the environment, judged by exit status and output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from scripts.airflow_stack import free_port

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = REPO_ROOT / "scripts" / "trigger.py"


def _cli(stack, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the CLI with a clean environment: only what the test hands it, nothing of the
    session's own Airflow settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    environment.update({"AIRFLOW_API_URL": stack.url, **env})
    return subprocess.run(
        [sys.executable, str(CLI), *args],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _delete_run(api, dag_id: str, run_id: str) -> None:
    api.delete(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")


def test_triggers_a_run_and_follows_it_to_success(local_stack, airflow_api):
    """Log in with the simple auth manager's passwords file, trigger, --wait: exit 0, the run id
    alone on stdout, and the run really happened (the lake descriptor lake_setup writes)."""
    airflow_api.unpause("lake_setup")
    passwords = str(local_stack.home / "passwords.json")
    result = _cli(
        local_stack, "--password-file", passwords, "dag", "lake_setup", "--wait",
        "--poll-interval", "1", "--wait-timeout", "240",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    assert run_id.startswith("manual__") and "\n" not in run_id
    assert f"lake_setup run {run_id} finished: success" in result.stderr
    assert airflow_api.dag_run("lake_setup", run_id)["state"] == "success"
    descriptor = json.loads((local_stack.lake / "_lake.json").read_text())
    assert descriptor["lake_root"] == local_stack.lake.as_uri()


def test_a_token_issued_beforehand_triggers_with_params(local_stack, airflow_api):
    """AIRFLOW_API_TOKEN and no password anywhere; conf from --conf and -p (typed as JSON)."""
    token = airflow_api.post("/auth/token", {"username": "admin", "password": local_stack.password})
    airflow_api.pause("churn_training")
    result = _cli(
        local_stack, "--json", "dag", "churn_training", "--conf", '{"ds": "2026-01-07"}',
        "-p", "max_trials=3", "-p", "approval_margin=0.01", "--note", "from CI",
        AIRFLOW_API_TOKEN=token["access_token"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    try:
        assert run["conf"] == {"ds": "2026-01-07", "max_trials": 3, "approval_margin": 0.01}
        assert run["note"] == "from CI"
        assert airflow_api.dag_run("churn_training", run["dag_run_id"])["state"] == "queued"
    finally:
        _delete_run(airflow_api, "churn_training", run["dag_run_id"])


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (
            ["-p", "max_trials=0"],
            "Invalid input for param max_trials: 0 is less than the minimum of 1",
        ),
        (["-p", "ds=2026-13-01"], "Invalid input for param ds: '2026-13-01' is not a 'date'"),
        (
            ["-p", "max_trial=3"],
            "Invalid input for param max_trial: DAG 'churn_training' declares no such param",
        ),
        (["--logical-date", "2026-01-07"], "body.logical_date: Input should have timezone info"),
    ],
    ids=["out-of-range", "bad-date", "undeclared-key", "logical-date-without-zone"],
)
def test_a_refused_trigger_exits_4_with_the_apis_reason(local_stack, airflow_api, args, named):
    before = {run["dag_run_id"] for run in airflow_api.dag_runs("churn_training")}
    result = _cli(
        local_stack, "dag", "churn_training", *args, AIRFLOW_API_PASSWORD=local_stack.password
    )
    assert result.returncode == 4, result.stderr
    assert result.stdout == ""
    assert named in result.stderr
    assert {run["dag_run_id"] for run in airflow_api.dag_runs("churn_training")} == before


def test_an_unknown_dag_exits_4(local_stack):
    result = _cli(local_stack, "dag", "no_such_dag", AIRFLOW_API_PASSWORD=local_stack.password)
    assert result.returncode == 4
    assert "HTTP 404" in result.stderr and "no_such_dag" in result.stderr


def test_wrong_or_missing_credentials_exit_3(local_stack):
    wrong_password = "not-the-password"  # pragma: allowlist secret
    wrong = _cli(local_stack, "dag", "lake_setup", AIRFLOW_API_PASSWORD=wrong_password)
    assert wrong.returncode == 3
    assert "/auth/token -> HTTP 401" in wrong.stderr
    forged = _cli(local_stack, "dag", "lake_setup", AIRFLOW_API_TOKEN="forged.jwt.token")
    assert forged.returncode == 3, forged.stderr
    missing = _cli(local_stack, "dag", "lake_setup")
    assert missing.returncode == 3
    assert "no credentials: set AIRFLOW_API_TOKEN, or AIRFLOW_API_PASSWORD" in missing.stderr


def test_an_unreachable_api_exits_5_so_the_caller_retries(local_stack):
    closed_port = free_port()
    result = _cli(
        local_stack, "--url", f"http://127.0.0.1:{closed_port}", "dag", "lake_setup",
        AIRFLOW_API_PASSWORD="unused",  # pragma: allowlist secret
    )  # fmt: skip
    assert result.returncode == 5
    assert f"cannot reach the Airflow API at http://127.0.0.1:{closed_port}" in result.stderr


def test_posts_an_asset_event_by_asset_name(local_stack, airflow_api):
    """The event lands on the asset with its extra (churn_training, scheduled on churn_drift,
    is paused here, so no training starts)."""
    airflow_api.pause("churn_training")
    extra = {"ds": "2026-01-07", "source": "ci"}
    result = _cli(
        local_stack, "asset", "churn_drift", "--extra", json.dumps(extra),
        AIRFLOW_API_PASSWORD=local_stack.password,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    event_id = int(result.stdout.strip())
    drift = airflow_api.asset("churn_drift")
    events = airflow_api.asset_events(asset_id=drift["id"])
    (event,) = [event for event in events if event["id"] == event_id]
    assert event["extra"] == {**extra, "from_rest_api": True}


def test_posts_an_asset_event_by_asset_uri(local_stack, airflow_api):
    drift = airflow_api.asset("churn_drift")
    result = _cli(local_stack, "asset", drift["uri"], AIRFLOW_API_PASSWORD=local_stack.password)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 0


def test_an_unknown_asset_exits_4_naming_it(local_stack):
    result = _cli(local_stack, "asset", "no_such_asset", AIRFLOW_API_PASSWORD=local_stack.password)
    assert result.returncode == 4
    assert "no asset named 'no_such_asset' (by name or URI)" in result.stderr
