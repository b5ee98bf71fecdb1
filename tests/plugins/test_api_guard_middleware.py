"""The undeclared-conf-keys guard as ASGI middleware, in front of a small app that records what
reaches it. The DAG's Params and the caller's right to trigger are given to the guard here;
the end-to-end tests (tests/e2e/test_rest_params.py) run it inside the real api-server."""

from __future__ import annotations

import json

import pytest
from headrace_api_guard import (
    HeadraceApiGuardPlugin,
    UndeclaredConfKeysGuard,
    undeclared_conf_keys,
    undeclared_keys_message,
)
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

PARAMS = {"churn_training": ["ds", "max_trials", "epochs"], "lake_setup": []}


@pytest.fixture
def client():
    """A client of the guarded app, its record of what reached the app, and the callers the
    guard was asked about."""
    reached: list[bytes] = []
    asked: list[tuple[str, str]] = []

    async def endpoint(request):
        reached.append(await request.body())
        return JSONResponse({"dag_run_id": "manual__1"})

    async def declared_params(app, dag_id):
        return PARAMS.get(dag_id)

    async def may_trigger(app, headers, dag_id):
        asked.append((headers.get("authorization", ""), dag_id))
        return headers.get("authorization") == "Bearer good"

    app = Starlette(
        routes=[
            Route("/api/v2/dags/{dag_id}/dagRuns", endpoint, methods=["GET", "POST"]),
            Route("/airflow/api/v2/dags/{dag_id}/dagRuns", endpoint, methods=["POST"]),
        ]
    )
    app.add_middleware(
        UndeclaredConfKeysGuard, declared_params=declared_params, may_trigger=may_trigger
    )
    with TestClient(app, headers={"Authorization": "Bearer good"}) as test_client:
        yield test_client, reached, asked


def test_undeclared_keys_are_refused_and_named_and_the_endpoint_never_called(client):
    test_client, reached, _ = client
    body = {"logical_date": None, "conf": {"max_trial": 3, "colour": "red", "epochs": 2}}
    response = test_client.post("/api/v2/dags/churn_training/dagRuns", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid input for params colour, max_trial: DAG 'churn_training' declares "
        "no such params (its params: ds, epochs, max_trials); nothing was triggered"
    }
    assert reached == []


def test_declared_keys_reach_the_endpoint_byte_for_byte(client):
    test_client, reached, _ = client
    raw = b'{"logical_date": null, "conf": {"max_trials": 3, "ds": "2026-01-07"}}'
    response = test_client.post(
        "/api/v2/dags/churn_training/dagRuns",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert reached == [raw]


def test_a_dag_without_params_takes_no_conf_key(client):
    test_client, _, _ = client
    response = test_client.post(
        "/api/v2/dags/lake_setup/dagRuns", json={"logical_date": None, "conf": {"force": True}}
    )
    assert response.status_code == 400
    assert (
        "param force: DAG 'lake_setup' declares no such param (its params: none)"
        in (response.json()["detail"])
    )
    assert test_client.post(
        "/api/v2/dags/lake_setup/dagRuns", json={"logical_date": None, "conf": {}}
    ).json() == {"dag_run_id": "manual__1"}


def test_a_caller_who_may_not_trigger_is_left_to_the_endpoint(client):
    """The endpoint answers 401/403 itself; the guard must not reveal the DAG's Params."""
    test_client, reached, asked = client
    body = {"logical_date": None, "conf": {"max_trial": 3}}
    response = test_client.post(
        "/api/v2/dags/churn_training/dagRuns", json=body, headers={"Authorization": "Bearer bad"}
    )
    assert response.status_code == 200  # this test app has no auth of its own
    assert json.loads(reached[0]) == body
    assert asked == [("Bearer bad", "churn_training")]


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/api/v2/dags/no_such_dag/dagRuns", b'{"logical_date": null, "conf": {"x": 1}}'),
        ("/api/v2/dags/churn_training/dagRuns", b"not json"),
        ("/api/v2/dags/churn_training/dagRuns", b'{"logical_date": null, "conf": ["x"]}'),
        ("/api/v2/dags/churn_training/dagRuns", b"[1, 2]"),
    ],
    ids=["unknown-dag", "not-json", "conf-not-an-object", "body-not-an-object"],
)
def test_what_the_guard_cannot_judge_goes_to_the_endpoint_unchanged(client, path, raw):
    test_client, reached, _ = client
    response = test_client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert reached == [raw]


def test_other_requests_are_not_read(client):
    test_client, _, asked = client
    assert test_client.get("/api/v2/dags/churn_training/dagRuns").status_code == 200
    assert asked == []


def test_the_trigger_path_is_found_under_a_root_path(client):
    test_client, reached, _ = client
    response = test_client.post(
        "/airflow/api/v2/dags/churn_training/dagRuns",
        json={"logical_date": None, "conf": {"max_trial": 3}},
    )
    assert response.status_code == 400
    assert reached == []


def test_helpers_name_the_keys_in_order():
    assert undeclared_conf_keys({"b": 1, "a": 2, "ds": None}, ["ds"]) == ["a", "b"]
    assert undeclared_keys_message("d", ["k"], ["z", "a"]) == (
        "Invalid input for param k: DAG 'd' declares no such param (its params: a, z); "
        "nothing was triggered"
    )


def test_the_plugin_registers_the_guard_as_a_root_middleware():
    (entry,) = HeadraceApiGuardPlugin.fastapi_root_middlewares
    assert entry["middleware"] is UndeclaredConfKeysGuard
    assert (entry["args"], entry["kwargs"]) == ([], {})
