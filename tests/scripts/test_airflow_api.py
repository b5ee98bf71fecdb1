"""The API client through Airflow 3.3.1's HTTP 500s, against a local HTTP server that answers like
the API does: the read of asset events while a run is queued (apache/airflow#71360), a write
answered "Database error" (a local stack's SQLite lock wait), and a look at a run answered late."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from scripts.airflow_api import AirflowApi, AirflowApiError


@pytest.fixture
def server():
    """A server on 127.0.0.1 answering each request with the next (status, body) of ``answers``;
    ``paths`` records each request's path, and a POST's or PATCH's body after it."""
    answers: list[tuple[int, dict]] = []
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.answer(json.loads(body))

        do_PATCH = do_POST

        def do_GET(self):
            self.answer(None)

        def answer(self, sent):
            # Recorded before the answer goes out: once it has, the client may send again (or
            # the test assert) before this thread would append.
            paths.append(self.path)
            if sent is not None:
                paths.append(sent)
            status, body, *delay = answers.pop(0) if answers else (500, {"detail": "Internal"})
            if delay:  # an answer may come late: (status, body, seconds)
                time.sleep(delay[0])
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    api = AirflowApi(f"http://127.0.0.1:{httpd.server_address[1]}", token="test-token")
    yield api, answers, paths
    httpd.shutdown()
    httpd.server_close()


def test_a_500_while_a_created_run_is_queued_is_read_again_until_the_events_come(server):
    api, answers, paths = server
    events = [{"id": 7, "name": "churn_curated"}]
    answers += [(500, {"detail": "Internal Server Error"})] * 2 + [(200, {"asset_events": events})]
    assert api.asset_events(source_run_id="run 1") == events
    assert paths == ["/api/v2/assets/events?source_run_id=run+1"] * 3


def test_the_upstream_events_of_a_run_are_read_the_same_way(server):
    api, answers, paths = server
    answers += [(500, {}), (200, {"asset_events": []})]
    assert api.upstream_asset_events("churn_training", "asset_triggered__a/b") == []
    assert (
        paths[-1]
        == "/api/v2/dags/churn_training/dagRuns/asset_triggered__a%2Fb/upstreamAssetEvents"
    )
    assert len(paths) == 2


def test_other_errors_are_raised_at_once(server):
    api, answers, paths = server
    answers += [(404, {"detail": "no such run"})]
    with pytest.raises(AirflowApiError, match="HTTP 404: no such run"):
        api.asset_events(settle_timeout=60, asset_id=3)
    assert len(paths) == 1


def test_a_500_that_outlasts_the_settle_time_is_raised(server):
    api, _answers, paths = server
    with pytest.raises(AirflowApiError, match="HTTP 500"):
        api.asset_events(settle_timeout=1.5, asset_id=3)
    assert 2 <= len(paths) <= 4


# What the API answers for a SQLAlchemy error (airflow.api_fastapi.common.exceptions), here the
# audit log's INSERT that waited out the local stack's SQLite lock wait.
DATABASE_ERROR = {
    "detail": {
        "reason": "Database error",
        "statement": "hidden",
        "orig_error": "hidden",
        "message": "Serious error when handling your request. Check logs for more details - you "
        "will find it in api server when you look for ID 1iNs4bxy",
    }
}


def test_a_write_answered_database_error_is_sent_again_and_taken(server):
    api, answers, paths = server
    answers += [(500, DATABASE_ERROR), (200, {"dag_run_id": "manual__1", "state": "queued"})]
    assert api.trigger("lake_setup", {"ds": "2026-01-05"}) == "manual__1"
    sent = {"logical_date": None, "conf": {"ds": "2026-01-05"}}
    assert paths == ["/api/v2/dags/lake_setup/dagRuns", sent] * 2


def test_a_database_error_that_lasts_is_raised_after_six_attempts(server):
    api, answers, paths = server
    answers += [(500, DATABASE_ERROR)] * 7
    with pytest.raises(AirflowApiError, match="HTTP 500") as raised:
        api.unpause("churn_ingestion")
    assert raised.value.is_database_error
    assert paths == ["/api/v2/dags/churn_ingestion", {"is_paused": False}] * 6
    assert len(answers) == 1


def test_other_500s_of_a_write_are_raised_at_once(server):
    api, answers, _paths = server
    answers += [(500, {"detail": "Internal Server Error"}), (200, {"dag_run_id": "manual__1"})]
    with pytest.raises(AirflowApiError, match="HTTP 500: Internal Server Error") as raised:
        api.trigger("lake_setup")
    assert not raised.value.is_database_error
    assert len(answers) == 1


def test_a_look_at_a_run_answered_too_late_is_taken_again(server):
    api, answers, paths = server
    impatient = AirflowApi(api.base_url, token="test-token", timeout=0.5)
    answers += [(200, {"state": "running"}, 2.0), (200, {"state": "success"})]
    run = impatient.wait_for_run("lake_setup", "manual__1", timeout=30, poll_interval=0.05)
    assert run == {"state": "success"}
    assert paths == ["/api/v2/dags/lake_setup/dagRuns/manual__1"] * 2


def test_a_run_never_answered_in_time_still_ends_the_wait_at_its_deadline(server):
    api, answers, paths = server
    impatient = AirflowApi(api.base_url, token="test-token", timeout=0.3)
    answers += [(200, {"state": "running"}, 1.0)] * 20
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="lake_setup run manual__1: the API server did not"):
        impatient.wait_for_run("lake_setup", "manual__1", timeout=1.0, poll_interval=0.05)
    assert 1.0 <= time.monotonic() - started < 5
    assert 3 <= len(paths) <= 6
