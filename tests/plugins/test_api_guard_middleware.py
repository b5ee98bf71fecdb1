"""The api guard: first as ASGI middleware in front of a small app that records what reaches it
(the DAG's Params and the caller's right given to the guard), then inside the real api-server
app (``create_app()``, plugins folder, migrated SQLite metadata database, the DAGs of dags/),
with the simple auth manager and with the FAB auth manager MWAA uses."""

from __future__ import annotations

import json

import pytest
from headrace_api_guard import (
    MAX_BODY_DEPTH,
    HeadraceApiGuardPlugin,
    UndeclaredConfKeysGuard,
    conf_errors,
    credential_count,
    json_depth,
    undeclared_conf_keys,
    undeclared_keys_message,
)
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from include.param_patterns import ecma_regex
from tests.plugins.fixtures.api_server import api_server

INT = {"type": "integer", "minimum": 1, "maximum": 50}
PARAMS = {
    "churn_training": {"ds": {"type": ["null", "string"], "format": "date"}, "max_trials": INT},
    "churn_ingestion": {"path": {"type": ["null", "string"], "pattern": r"^landing(/[a-z]+)+$"}},
    "lake_setup": {},
}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client():
    """A client of the guarded app, its record of what reached the app, and the callers the
    guard was asked about."""
    reached: list[bytes] = []
    asked: list[tuple[str, str]] = []

    async def endpoint(request):
        reached.append(await request.body())
        return JSONResponse({"dag_run_id": "manual__1"})

    async def dag_params(app, dag_id):
        return PARAMS.get(dag_id)

    async def may_create_runs(scope, dag_id):
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode()
        asked.append((authorization, dag_id))
        return authorization == "Bearer good"

    app = Starlette(
        routes=[
            Route("/api/v2/dags/{dag_id}/dagRuns", endpoint, methods=["GET", "POST"]),
            Route("/airflow/api/v2/dags/{dag_id}/dagRuns", endpoint, methods=["POST"]),
            Route("/api/v2/backfills", endpoint, methods=["POST"]),
        ]
    )
    app.add_middleware(
        UndeclaredConfKeysGuard, dag_params=dag_params, may_create_runs=may_create_runs
    )
    with TestClient(app, headers={"Authorization": "Bearer good"}) as test_client:
        yield test_client, reached, asked


def test_undeclared_keys_are_refused_and_named_and_the_endpoint_never_called(client):
    test_client, reached, _ = client
    body = {"logical_date": None, "conf": {"max_trial": 3, "colour": "red", "max_trials": 2}}
    response = test_client.post("/api/v2/dags/churn_training/dagRuns", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid input for params colour, max_trial: DAG 'churn_training' declares "
        "no such params (its params: ds, max_trials); nothing was triggered"
    }
    assert reached == []


def test_declared_keys_reach_the_endpoint_byte_for_byte(client):
    test_client, reached, _ = client
    raw = b'{"logical_date": null, "conf": {"max_trials": 3, "ds": "2026-01-07"}}'
    response = test_client.post("/api/v2/dags/churn_training/dagRuns", content=raw, headers=JSON)
    assert response.status_code == 200
    assert reached == [raw]


@pytest.mark.parametrize(
    ("conf", "detail"),
    [
        ({"path": "landing/churn\n"}, "param path: 'landing/churn\\n' does not match"),
        ({"path": "landing/../etc"}, "param path: 'landing/../etc' does not match"),
        ({"max_trials": 51}, "param max_trials: 51 is greater than the maximum of 50"),
        ({"ds": "2026-02-30"}, "param ds: '2026-02-30' is not a 'date'"),
    ],
    ids=["trailing-newline", "dot-dot", "over-maximum", "impossible-date"],
)
def test_declared_keys_with_values_their_schema_refuses_are_refused(client, conf, detail):
    test_client, reached, _ = client
    dag_id = "churn_ingestion" if "path" in conf else "churn_training"
    response = test_client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"conf": conf})
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"Invalid input for {detail}")
    assert reached == []


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


def test_a_backfill_is_held_to_the_same_params(client):
    test_client, reached, _ = client
    body = {"dag_id": "churn_training", "from_date": "2026-01-02T00:00:00Z"}
    for conf in ({"max_trial": 3}, {"ds": "2026-13-01"}):
        response = test_client.post("/api/v2/backfills", json={**body, "dag_run_conf": conf})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("Invalid input for param")
    assert reached == []
    assert test_client.post(
        "/api/v2/backfills", json={**body, "dag_run_conf": {"max_trials": 3}}
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
        ("/api/v2/backfills", b'{"dag_id": 7, "dag_run_conf": {"x": 1}}'),
    ],
    ids=["unknown-dag", "not-json", "conf-not-an-object", "body-not-an-object", "dag-id-not-str"],
)
def test_what_the_guard_cannot_judge_goes_to_the_endpoint_unchanged(client, path, raw):
    test_client, reached, _ = client
    response = test_client.post(path, content=raw, headers=JSON)
    assert response.status_code == 200
    assert reached == [raw]


@pytest.mark.parametrize(
    ("raw", "status", "detail"),
    [
        (b'{"conf": {"max_trials": NaN}}', 400, "request body holds NaN: numbers must be finite"),
        (b'{"conf": {"max_trials": -Infinity}}', 400, "request body holds -Infinity"),
        (b'{"conf": {"max_trials": 1e999}}', 400, "request body holds 1e999, which is not a"),
        (b'{"conf": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", 400, "request body nes"),
        (b'{"conf": {"max_trials": ' + b"9" * 5000 + b"}}", 400, "request body is not accep"),
        (b'{"conf": {"max_trials": "\xff"}}', 400, "request body is not valid UTF-8/16/32"),
        (b'{"conf": "' + b"x" * (1024 * 1024) + b'"}', 413, "request body over 1048576 bytes"),
    ],
    ids=["nan", "infinity", "overflow", "deep", "huge-int", "not-utf8", "too-large"],
)
def test_bodies_the_endpoint_would_take_or_answer_with_500_are_refused(client, raw, status, detail):
    """Refused whoever sends them: the refusal tells nothing about the DAG."""
    test_client, reached, asked = client
    response = test_client.post(
        "/api/v2/dags/churn_training/dagRuns",
        content=raw,
        headers={**JSON, "Authorization": "Bearer bad"},
    )
    assert (response.status_code, response.json()["detail"][: len(detail)]) == (status, detail)
    assert reached == [] and asked == []


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", "Bearer good"), ("Authorization", "Bearer bad")],
        [("Authorization", "Bearer bad"), ("Authorization", "Bearer good")],
        [("Authorization", "Bearer good"), ("Cookie", "_token=other")],
        [("Authorization", "Basic YTpi"), ("Cookie", "theme=dark; _token=other")],
        [("Cookie", "_token=one; _token=two")],
        [("Cookie", "_token=one"), ("Cookie", "_token=two")],
    ],
    ids=["two-headers", "two-headers-reversed", "header-and-cookie", "basic-and-cookie",
         "two-cookies", "two-cookie-headers"],
)  # fmt: skip
def test_a_request_with_more_than_one_credential_is_refused(client, headers):
    test_client, reached, asked = client
    test_client.headers.pop("Authorization")
    response = test_client.post(
        "/api/v2/dags/churn_training/dagRuns",
        json={"conf": {"max_trials": 3}},
        headers=headers,
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("more than one credential")
    assert reached == [] and asked == []


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


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (r"^[a-z]+$", "abc", True),
        (r"^[a-z]+$", "abc\n", False),  # Python's re.search says True
        (r"^[a-z]+$(?!\n)", "abc\n", False),
        (r"^[$]+$", "$$", True),  # a '$' in a class is a literal
        (r"^[]$]+$", "]$", True),
        (r"^\$$", "$", True),
        (r"^\d+$", "\u0663", False),  # an Arabic-Indic digit: Python's \d says True
        (r"^\w+$", "\u00e9", False),
        (r"^[\d]+$", "12", True),
        (r"\S", " \u00a0x ", True),
    ],
)
def test_patterns_are_read_as_json_schema_defines_them(pattern, text, matches):
    assert bool(ecma_regex(pattern).search(text)) is matches


def test_conf_errors_use_the_json_schema_reading_of_patterns():
    schemas = {"p": {"type": "string", "pattern": "^[a-z]+$"}, "n": {"type": "number"}}
    assert conf_errors({"p": "abc\n", "n": 1.5, "x": 1}, schemas) == [
        r"Invalid input for param p: 'abc\n' does not match '^[a-z]+$'"
    ]


def test_json_depth_skips_strings():
    assert json_depth('{"a": "[[[{{", "b": [[1], {"c": "\\"]"}]}') == 3
    assert json_depth("[" * (MAX_BODY_DEPTH + 1)) == MAX_BODY_DEPTH + 1


def test_credentials_are_counted_as_starlette_parses_cookies():
    def scope(*headers):
        return {"headers": [(k.encode(), v.encode()) for k, v in headers]}

    assert credential_count(scope(("authorization", "Bearer a"))) == 1
    assert credential_count(scope(("cookie", "theme=dark; _token=a"))) == 1
    assert credential_count(scope(("cookie", "x_token=a; _tokens=b"))) == 0
    assert credential_count(scope(("Authorization", "a"), ("cookie", " _token =a"))) == 2


def test_the_plugin_registers_the_guard_as_a_root_middleware():
    (entry,) = HeadraceApiGuardPlugin.fastapi_root_middlewares
    assert entry["middleware"] is UndeclaredConfKeysGuard
    assert (entry["args"], entry["kwargs"]) == ([], {})


# ---- inside the real api-server ----------------------------------------------------------

TRIGGER = "/api/v2/dags/churn_training/dagRuns"
BACKFILL = {"dag_id": "churn_ingestion", "from_date": "2026-01-02T00:00:00Z"}
BACKFILL["to_date"] = "2026-01-03T00:00:00Z"


@pytest.fixture(scope="module", params=["simple", "fab"])
def server(request):
    with api_server(request.param) as started:
        yield started


def test_the_api_server_runs_the_guard_as_its_innermost_root_middleware(server):
    """Inside Airflow's own middlewares, so the caller it reads is the one they settled."""
    # Outermost first; Airflow's plugins manager imports the plugin as a module of its own.
    names = [entry.cls.__qualname__ for entry in server.client.app.user_middleware]
    assert names[-1] == "UndeclaredConfKeysGuard"
    assert names.index("JWTRefreshMiddleware") < names.index("UndeclaredConfKeysGuard")


def test_real_app_refuses_an_undeclared_key_and_creates_nothing(server):
    before = server.run_count()
    response = server.client.post(
        TRIGGER, json={"logical_date": None, "conf": {"max_trial": 3}}, headers=server.auth()
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith(
        "Invalid input for param max_trial: DAG 'churn_training' declares no such param"
    )
    assert server.run_count() == before


def test_real_app_leaves_a_caller_who_may_not_trigger_to_the_endpoint(server):
    before = server.run_count()
    body = {"logical_date": None, "conf": {"max_trial": 3}}
    for headers, status in [
        (server.auth(server.viewer_token), 403),
        ({"Authorization": "Bearer forged"}, 403),
        ({}, 401),
    ]:
        response = server.client.post(TRIGGER, json=body, headers=headers)
        assert response.status_code == status, response.text
        assert "max_trial" not in response.text
    assert server.run_count() == before


@pytest.mark.parametrize("order", ["admin-first", "viewer-first"])
def test_real_app_refuses_two_callers_in_one_request(server, order):
    """Airflow reads the first Authorization header; a guard reading another could be fooled."""
    tokens = [server.admin_token, server.viewer_token]
    if order == "viewer-first":
        tokens.reverse()
    before = server.run_count()
    for headers in (
        [("Authorization", f"Bearer {token}") for token in tokens],
        # The UI's cookie is honoured before the header (JWTRefreshMiddleware).
        [("Authorization", f"Bearer {tokens[0]}"), ("Cookie", f"_token={tokens[1]}")],
    ):
        response = server.client.post(
            TRIGGER, json={"logical_date": None, "conf": {"max_trial": 3}}, headers=headers
        )
        assert response.status_code == 400
        assert response.json()["detail"].startswith("more than one credential")
    assert server.run_count() == before


def test_real_app_takes_the_ui_cookie_as_the_one_caller(server):
    response = server.client.post(
        TRIGGER,
        json={"logical_date": None, "conf": {"max_trial": 3}},
        headers={"Cookie": f"_token={server.admin_token}"},
    )
    assert response.status_code == 400
    assert "declares no such param" in response.json()["detail"]


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"logical_date": null, "conf": {"approval_margin": NaN}}', "request body holds NaN"),
        (b'{"logical_date": null, "conf": {"approval_margin": Infinity}}', "request body holds"),
        (b'{"conf": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "request body nested 100001"),
    ],
    ids=["nan", "infinity", "deep"],
)
def test_real_app_refuses_bodies_it_would_take_or_fail_on(server, raw, detail):
    before = server.run_count()
    response = server.client.post(TRIGGER, content=raw, headers={**JSON, **server.auth()})
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)
    assert server.run_count() == before


@pytest.mark.parametrize(
    ("conf", "detail"),
    [
        ({"ds": "2026-01-05", "colour": "red"}, "param colour: DAG 'churn_ingestion' declares"),
        ({"ds": "2026-02-30"}, "param ds: '2026-02-30' is not a 'date'"),
        ({"ds": "2026-01-05", "path": "landing/churn\n"}, "param path: 'landing/churn\\n' does"),
        ({"ds": "2026-01-05", "path": "landing/../../etc"}, "param path: 'landing/../../etc'"),
        ({"ds": "2026-01-05", "path": "/etc/passwd"}, "param path: '/etc/passwd' does not"),
    ],
    ids=["undeclared", "impossible-date", "trailing-newline", "dot-dot", "absolute"],
)
def test_real_app_holds_a_backfill_to_the_triggers_param_rules(server, conf, detail):
    before = server.run_count()
    for path in ("/api/v2/backfills", "/api/v2/backfills/dry_run"):
        response = server.client.post(
            path, json={**BACKFILL, "dag_run_conf": conf}, headers=server.auth()
        )
        assert response.status_code == 400, response.text
        assert response.json()["detail"].startswith(f"Invalid input for {detail}")
    assert server.run_count() == before


def test_real_app_accepts_a_valid_trigger_and_backfill(server):
    """The control: what the guard lets through, the endpoints carry out."""
    before = server.run_count()
    response = server.client.post(
        TRIGGER, json={"logical_date": None, "conf": {"max_trials": 3}}, headers=server.auth()
    )
    assert response.status_code == 200, response.text
    assert response.json()["conf"] == {"max_trials": 3}
    conf = {"ds": "2026-01-05", "path": "landing/redelivered"}
    response = server.client.post(
        "/api/v2/backfills", json={**BACKFILL, "dag_run_conf": conf}, headers=server.auth()
    )
    assert response.status_code == 200, response.text
    assert response.json()["dag_run_conf"] == conf
    assert server.run_count() > before + 1
    # One running backfill per DAG: the next auth manager's run of this test starts another.
    cancel = f"/api/v2/backfills/{response.json()['id']}/cancel"
    assert server.client.put(cancel, headers=server.auth()).status_code == 200
