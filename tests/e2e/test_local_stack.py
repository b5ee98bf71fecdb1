"""The local Airflow stack for real: `make up`, the REST API, a DAG run, `make down`.

Uses its own Airflow home, lake and port, so a developer's running stack is left alone.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from scripts.airflow_api import AirflowApi
from scripts.airflow_stack import free_port
from tests.e2e.conftest import stack_environment

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]


def _make(target: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", target], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    lake = tmp_path_factory.mktemp("lake")
    port = free_port()
    env = stack_environment(home, lake, port, HEADRACE_DAGS_PAUSED_AT_CREATION="true")
    started = _make("up", env)
    info = {"home": home, "lake": lake, "port": port, "env": env, "up": started}
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        info["pids"] = {p.stem: int(p.read_text()) for p in (home / "pids").glob("*.pid")}
        yield info
    finally:
        info["down"] = _make("down", env)


@pytest.fixture(scope="module")
def api(stack):
    password = json.loads((stack["home"] / "passwords.json").read_text())["admin"]
    return AirflowApi(f"http://127.0.0.1:{stack['port']}", "admin", password)


def test_up_reports_url_and_login(stack):
    out = stack["up"].stdout
    assert f"healthy at http://127.0.0.1:{stack['port']}" in out
    assert "log in as 'admin'" in out
    assert set(stack["pids"]) == {"api-server", "scheduler", "dag-processor", "triggerer"}


def test_api_server_listens_on_loopback_only(stack):
    with socket.create_connection(("127.0.0.1", stack["port"]), timeout=5):
        pass
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    sockets = [
        line.split()[3]
        for line in listening.splitlines()
        if line.split()[3].endswith(f":{stack['port']}")
    ]
    assert sockets == [f"127.0.0.1:{stack['port']}"]


def test_every_dag_is_listed_with_zero_import_errors(api):
    from airflow.dag_processing.dagbag import DagBag

    # What the dags folder defines when parsed here: hand-written DAGs and the factories' DAGs.
    expected = set(DagBag(dag_folder=str(REPO_ROOT / "dags")).dag_ids)
    assert {"lake_setup", "churn_ingestion", "churn_monitoring"} <= expected
    api.wait_for_dags(expected, timeout=180)
    assert api.import_errors() == []
    assert api.dag_ids() == expected


def test_unauthenticated_requests_are_refused(stack):
    anonymous = AirflowApi(f"http://127.0.0.1:{stack['port']}", "admin", "wrong-password")
    with pytest.raises(Exception, match="HTTP 401"):
        anonymous.dag_ids()


def test_lake_setup_runs_through_the_scheduler(api, stack):
    api.wait_for_dags({"lake_setup"}, timeout=180)
    api.unpause("lake_setup")
    run_id = api.trigger("lake_setup")
    run = api.wait_for_run("lake_setup", run_id, timeout=300)
    states = {ti["task_id"]: ti["state"] for ti in api.task_instances("lake_setup", run_id)}
    assert run["state"] == "success", states
    assert states == {"validate_settings": "success", "initialize_lake": "success"}
    descriptor = json.loads((stack["lake"] / "_lake.json").read_text())
    assert descriptor["lake_root"] == stack["lake"].as_uri()
    assert api.xcom("lake_setup", run_id, "validate_settings") == {
        "target": "local",
        "lake_root": stack["lake"].as_uri(),
    }


def test_a_write_that_meets_the_database_lock_fails_fast_and_reads_go_on(api, stack, monkeypatch):
    """While another process holds SQLite's write lock, an API write is refused with HTTP 500
    "Database error" after the API server's own short lock wait (API_SERVER_LOCK_WAIT_S), having
    written nothing, and the server answers a read while the lock is still held. With the other
    components' 30 s wait, Airflow's audit log held the server's event loop for all of it
    (scripts/airflow_stack.py): the write took 30.4 s, and this test failed.
    """
    from scripts import airflow_api, airflow_stack

    api.wait_for_dags({"lake_setup"}, timeout=180)
    api.unpause("lake_setup")
    monkeypatch.setattr(airflow_api, "DATABASE_ERROR_ATTEMPTS", 1)  # one send: its own answer
    refused = {}

    def pause():
        started = time.monotonic()
        try:
            api.pause("lake_setup")
        except airflow_api.AirflowApiError as error:
            refused["error"] = error
        refused["seconds"] = time.monotonic() - started

    # Waits as long as the stack's components for a lock the scheduler may hold.
    lock = sqlite3.connect(stack["home"] / "airflow.db", timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # SQLite's write lock, as a task's state update holds it
        writer = threading.Thread(target=pause)
        writer.start()
        time.sleep(1)  # the write is waiting for the lock
        health = api.get("/api/v2/monitor/health")
        writer.join(timeout=60)
    finally:
        lock.rollback()
        lock.close()
    assert health["metadatabase"]["status"] == "healthy"
    assert refused["error"].is_database_error, refused["error"]
    # Answered after the API server's lock wait, well before the others' 30 s.
    assert airflow_stack.API_SERVER_LOCK_WAIT_S <= refused["seconds"] < 20, refused
    assert api.get("/api/v2/dags/lake_setup")["is_paused"] is False


def test_the_run_note_requests_are_what_airflows_api_takes(api):
    """include/run_note.py's GET and bulk PATCH, which MWAA's InvokeRestApi carries on aws,
    sent here to the real API server: a person's note stays, the cost lines go under it, and a
    second write of the same key replaces its line."""
    from include.run_note import COST_HEADING, RunNotes

    def call(method, path, query, body):
        if method == "GET":
            return api.get(f"/api/v2{path}", **(query or {}))
        return api.patch(f"/api/v2{path}", body)

    (run, *_) = api.dag_runs("lake_setup")  # the run of the test above
    run_id = run["dag_run_id"]
    api.patch(f"/api/v2/dags/lake_setup/dagRuns/{run_id}", {"note": "Checked by the operator."})
    notes = RunNotes(call)
    notes.set_line("lake_setup", run_id, "run", "$1.00 of the $50.00 run budget")
    notes.set_line("lake_setup", run_id, "glue job-a", "$0.50 of the $25.00 job budget")
    notes.set_line("lake_setup", run_id, "run", "$2.00 of the $50.00 run budget")
    assert api.dag_run("lake_setup", run_id)["note"] == (
        f"Checked by the operator.\n\n{COST_HEADING}\n- run: $2.00 of the $50.00 run budget\n"
        "- glue job-a: $0.50 of the $25.00 job budget"
    )


def test_a_drift_event_posted_to_the_api_schedules_retraining(api, stack):
    """The retraining loop's last link with the real scheduler: an event on the churn_drift
    Asset (what churn_monitoring emits over threshold, or what an external system posts)
    creates a churn_training run that carries the event."""
    api.wait_for_dags({"churn_training"}, timeout=180)
    api.unpause("churn_training")
    known = {run["dag_run_id"] for run in api.dag_runs("churn_training")}
    assets = api.get("/api/v2/assets", name_pattern="churn_drift")["assets"]
    (drift,) = [asset for asset in assets if asset["name"] == "churn_drift"]
    extra = {"ds": "2026-01-07", "model_version": "1", "drifted_features": ["sessions"]}
    api.post_asset_event(drift["id"], extra, partition_key="2026-01-07")

    run_id = api.wait_for_new_run("churn_training", known, timeout=120)
    assert run_id is not None, "no churn_training run was scheduled by the drift event"
    assert run_id.startswith("asset_triggered__")
    # Scheduled per partition: the run is for the event's day.
    assert api.dag_run("churn_training", run_id)["partition_key"] == "2026-01-07"
    (event,) = api.upstream_asset_events("churn_training", run_id)
    assert (event["name"], event["extra"]["drifted_features"]) == ("churn_drift", ["sessions"])


def test_down_leaves_no_process_behind(stack):
    """Runs last in this module: stops the stack and checks every process group is gone."""
    result = _make("down", stack["env"])
    assert result.returncode == 0, result.stderr
    assert all(not _group_alive(pgid) for pgid in stack["pids"].values())
    assert list((stack["home"] / "pids").glob("*.pid")) == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", stack["port"]), timeout=2):
        pass
