"""The API client's read of asset events through Airflow 3.3.1's HTTP 500 on queued runs
(apache/airflow#71360), against a local HTTP server that answers like the API does."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from scripts.airflow_api import AirflowApi, AirflowApiError


@pytest.fixture
def server():
    """A server on 127.0.0.1 answering each GET with the next (status, body) of ``answers``."""
    answers: list[tuple[int, dict]] = []
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            paths.append(self.path)
            status, body = answers.pop(0) if answers else (500, {"detail": "Internal"})
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
