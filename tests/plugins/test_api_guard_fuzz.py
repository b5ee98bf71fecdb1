"""Fuzz of the run-creating endpoints of the real api-server (plugins folder, migrated SQLite
metadata database, the DAGs of dags/): hypothesis derives invalid confs from each real DAG's
Param JSON schemas, as ``GET /api/v2/dags/{dag_id}/details`` gives them, and sends each to
``POST /api/v2/dags/{dag_id}/dagRuns`` or ``POST /api/v2/backfills`` as an admin would. Every
one must be refused with a 4xx and no DAG run or backfill may be created.

Each example is one valid conf (checked to be accepted, below) with one thing made invalid:
a wrong JSON type, a number out of range or not finite, a string too long or too short, off
its enum or pattern (a value the pattern takes plus a final newline; a path out of the lake),
an impossible date, an undeclared key, a value nested past the guard's depth.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date

import pytest
from headrace_api_guard import MAX_BODY_DEPTH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.plugins.fixtures.api_server import api_server

# Slow (fuzzes the API server's guard with many requests): left out of `make test-fast`.
pytestmark = pytest.mark.slow

MAX_EXAMPLES = 1000
BACKFILL_DATES = {"from_date": "2026-01-02T00:00:00Z", "to_date": "2026-01-03T00:00:00Z"}
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]
OUT_OF_THE_LAKE = ["../landing", "/etc/passwd", "landing/../../etc", "landing/./x", "s3://x/landing",
                   "file:///etc", "landing\\..\\x", "landing//x", "curated/churn", "landing/%2e%2e"]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


class Raw(str):
    """A JSON text put into the body as it is (``NaN``, ``1e999``, deep nesting)."""


@pytest.fixture(scope="module")
def server():
    with api_server("simple") as started:
        yield started


@pytest.fixture(scope="module")
def dag_schemas(server) -> dict[str, dict[str, dict]]:
    """Each DAG's Params with their JSON schemas, from the API."""
    dags = server.client.get("/api/v2/dags?limit=100", headers=server.auth()).json()["dags"]
    schemas = {}
    for dag in dags:
        details = server.client.get(f"/api/v2/dags/{dag['dag_id']}/details", headers=server.auth())
        params = details.json()["params"] or {}
        schemas[dag["dag_id"]] = {key: param["schema"] for key, param in params.items()}
    assert len(schemas) >= 10 and any(schemas.values()), schemas
    return schemas


def valid_value(schema: dict):
    """A value the schema takes (the least one), for Params that have no default."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if "enum" in schema:
        return schema["enum"][0]
    if "null" in types:
        return None
    if types[0] in ("integer", "number"):
        return schema.get("minimum", 0)
    return "x" * max(schema.get("minLength", 0), 1)


def valid_base(schemas: dict[str, dict], defaults: dict[str, object]) -> dict:
    return {key: valid_value(schema) for key, schema in schemas.items() if defaults[key] is None}


def invalid_values(schema: dict) -> list[tuple[str, st.SearchStrategy]]:
    """``(kind, strategy)`` of values the schema refuses (by construction, not by asking the
    code under test)."""
    types = set(schema["type"] if isinstance(schema["type"], list) else [schema["type"]])
    numeric = bool(types & {"integer", "number"})
    wrong = [
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=4), st.integers()),
    ]
    if not numeric:
        wrong.append(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
    elif "number" not in types:  # JSON Schema counts 3.0 as an integer
        wrong.append(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f % 1))
    wrong += [s for t, s in (("string", st.text(max_size=10)), ("boolean", st.booleans()),
                             ("null", st.none())) if t not in types]  # fmt: skip
    kinds = [("wrong-type", st.one_of(wrong))]
    if "minimum" in schema:
        low = schema["minimum"]
        kinds.append(("below-minimum", st.integers(max_value=int(low) - 1) if "integer" in types
                      else st.floats(max_value=low, exclude_max=True, allow_infinity=False)))  # fmt: skip
    if "maximum" in schema:
        high = schema["maximum"]
        kinds.append(("above-maximum", st.integers(min_value=int(high) + 1) if "integer" in types
                      else st.floats(min_value=high, exclude_min=True, allow_infinity=False)))  # fmt: skip
    if numeric:
        kinds.append(("non-finite", st.sampled_from(NON_FINITE).map(Raw)))
    if "enum" in schema:
        kinds.append(
            ("not-in-enum", st.text(max_size=12).filter(lambda v: v not in schema["enum"]))
        )
    if "maxLength" in schema:
        n = schema["maxLength"]
        kinds.append(("over-long", st.text(min_size=n + 1, max_size=n + 40)))
    if schema.get("minLength", 0) > 0:
        kinds.append(("too-short", st.text(max_size=schema["minLength"] - 1)))
    if pattern := schema.get("pattern"):
        kinds.append(("pattern-mismatch", (st.text(max_size=30) | st.sampled_from(OUT_OF_THE_LAKE))
                      .filter(lambda v: not re.search(pattern, v))))  # fmt: skip
        if pattern.endswith(("$", "$(?!\\n)")):  # anchored at the end: no final newline
            taken = st.from_regex(pattern, fullmatch=True).filter(
                lambda v: "\n" not in v and re.fullmatch(pattern, v)
            )
            kinds.append(("trailing-newline", taken.map(lambda v: v + "\n")))
    if schema.get("format") == "date":
        impossible = st.builds("{:04d}-{:02d}-{:02d}".format, st.integers(1, 9999),
                               st.integers(0, 99), st.integers(0, 99)).filter(_not_a_date)  # fmt: skip
        shapes = st.sampled_from(["20260107", "2026-1-7", "07/01/2026", "2026-01-07T00:00:00",
                                  "2026-01-07\n", "\u0662\u0660\u0662\u0666-01-07", " 2026-01-07"])  # fmt: skip
        kinds.append(("impossible-date", impossible | shapes))
    depth = st.integers(MAX_BODY_DEPTH + 1, 20_000)
    kinds.append(("deep-nesting", depth.map(lambda n: Raw("[" * n + "]" * n))))
    return kinds


def _not_a_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return True
    return False


def encoded(body: dict) -> bytes:
    """``body`` as JSON, with each :class:`Raw` value written as it is."""
    raws = {}

    def mark(value):
        if isinstance(value, Raw):
            raws[f'"@@raw{len(raws)}@@"'] = str(value)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        return value

    text = json.dumps(mark(body))
    for marker, raw in raws.items():
        text = text.replace(marker, raw)
    return text.encode()


@st.composite
def invalid_requests(draw, dag_schemas: dict[str, dict[str, dict]], bases: dict[str, dict]):
    """``(endpoint, dag_id, kind, body)``: one valid conf with one thing made invalid."""
    dag_id = draw(st.sampled_from(sorted(dag_schemas)))
    schemas = dag_schemas[dag_id]
    conf = dict(bases[dag_id])
    key = draw(st.sampled_from(sorted(schemas))) if schemas else None
    if key is None or draw(st.integers(0, 4)) == 0:
        undeclared = draw(st.text(min_size=1, max_size=16).filter(lambda k: k not in schemas))
        kind, conf[undeclared] = "undeclared-key", draw(JSON_VALUES)
    else:
        kind, values = draw(st.sampled_from(invalid_values(schemas[key])))
        conf[key] = draw(values)
    if draw(st.booleans()):
        return "trigger", dag_id, kind, {"logical_date": None, "conf": conf}
    return "backfill", dag_id, kind, {"dag_id": dag_id, **BACKFILL_DATES, "dag_run_conf": conf}


def test_every_invalid_conf_is_refused_with_4xx_and_nothing_runs(server, dag_schemas):
    details = {
        dag_id: server.client.get(f"/api/v2/dags/{dag_id}/details", headers=server.auth()).json()
        for dag_id in dag_schemas
    }
    bases = {
        dag_id: valid_base(schemas, {k: p["value"] for k, p in details[dag_id]["params"].items()})
        if schemas else {}
        for dag_id, schemas in dag_schemas.items()
    }  # fmt: skip
    # The control: each base conf is accepted, so a refusal below is the mutation's doing.
    for dag_id, base in bases.items():
        response = server.client.post(
            f"/api/v2/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": base},
            headers=server.auth(),
        )
        assert response.status_code == 200, (dag_id, base, response.text)

    before = server.run_count()
    outcomes: Counter = Counter()
    accepted: list = []

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large],
    )  # fmt: skip
    @given(invalid_requests(dag_schemas, bases))
    def send(request):
        endpoint, dag_id, kind, body = request
        path = f"/api/v2/dags/{dag_id}/dagRuns" if endpoint == "trigger" else "/api/v2/backfills"
        response = server.client.post(
            path, content=encoded(body), headers={"Content-Type": "application/json",
                                                  **server.auth()}
        )  # fmt: skip
        outcomes[(endpoint, kind, response.status_code)] += 1
        if not 400 <= response.status_code < 500:
            accepted.append((endpoint, dag_id, kind, body, response.status_code, response.text))
        assert 400 <= response.status_code < 500, accepted[-1]

    send()
    sent = sum(outcomes.values())
    by_status = Counter()
    by_kind = Counter()
    for (endpoint, kind, status), count in outcomes.items():
        by_status[status] += count
        by_kind[(endpoint, kind)] += count
    print(f"\napi fuzz: {sent} invalid requests sent, {sent - len(accepted)} refused with 4xx, "
          f"{server.run_count() - before} runs/backfills created; by status {dict(by_status)}")  # fmt: skip
    for (endpoint, kind), count in sorted(by_kind.items()):
        print(f"  {endpoint:8} {kind:18} {count}")
    assert accepted == []
    assert server.run_count() == before
    assert sent >= MAX_EXAMPLES * 0.9
    # Every kind was tried on both endpoints.
    assert {kind for _, kind in by_kind} >= {"undeclared-key", "wrong-type", "non-finite",
                                             "over-long", "trailing-newline", "impossible-date",
                                             "deep-nesting", "pattern-mismatch"}  # fmt: skip
