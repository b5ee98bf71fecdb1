"""Holds every request that creates DAG runs with a ``conf`` to the DAG's declared Params.

Airflow validates each declared Param of a triggered run, but takes any other ``conf`` key
silently (``{"max_trial": 3}``, a typo of ``max_trials``, runs with the default), evaluates
Param patterns with Python's ``re`` (``$`` also matches before a final newline), lets ``NaN``
pass a number's bounds, and answers a deeply nested body with HTTP 500. This plugin adds a root
middleware to the api-server that judges ``POST /api/v2/dags/{dag_id}/dagRuns`` (the REST API,
the UI's trigger form and MWAA's InvokeRestApi) and ``POST /api/v2/backfills[/dry_run]`` before
the endpoint runs, and answers what it refuses with HTTP 400 naming the field:

- a body over ``MAX_BODY_BYTES`` (413), nested deeper than ``MAX_BODY_DEPTH``, not decodable,
  or holding a non-finite number (``NaN``, ``Infinity``, ``1e999``);
- a request with more than one credential (two ``Authorization`` headers, or one and a
  ``_token`` cookie), where the guard and the endpoint could judge different callers;
- a ``conf`` key the DAG does not declare, or a value its Param's JSON schema refuses, with
  ``pattern`` read as JSON Schema defines it (ECMA-262: ``$`` is the end of the text, ``\\d`` is
  ``[0-9]``).

Refusals that depend on the DAG's Params are given only to callers the endpoint would let
create the runs (read with Airflow's own ``get_user``), so nobody else learns a DAG's Params;
for them, and for a body the endpoint itself refuses (not JSON: 422), the guard steps aside.
Every Airflow component imports the plugins folder, so nothing heavy is imported at the top.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from include.param_patterns import ecma_regex

# The guarded endpoints, under any root path the api-server is mounted at.
TRIGGER_PATH = re.compile(r"(?:^|/)api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/?\Z")
BACKFILL_PATH = re.compile(r"(?:^|/)api/v2/backfills(?:/dry_run)?/?\Z")

# A run's conf is a flat mapping of Params; this leaves room for nested values and stays far
# below the recursion limit of json.loads and of jsonschema.
MAX_BODY_DEPTH = 32
MAX_BODY_BYTES = 1024 * 1024
JWT_COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN

DagParams = Callable[[Any, str], Awaitable[Mapping[str, Mapping[str, Any]] | None]]
MayCreateRuns = Callable[[Mapping[str, Any], str], Awaitable[bool]]


class Refused(Exception):
    """A request the guard answers itself: ``status`` and ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def undeclared_conf_keys(conf: Mapping[str, Any], declared: Collection) -> list[str]:
    """The keys of ``conf`` that are not declared Params, sorted."""
    return sorted(key for key in conf if key not in declared)


def undeclared_keys_message(dag_id: str, undeclared: list[str], declared: Collection) -> str:
    """The refusal, worded like Airflow's own ("Invalid input for param <name>: ...") so a
    client that looks for the refused field finds it the same way for both kinds of error."""
    names = ", ".join(undeclared)
    noun = "param" if len(undeclared) == 1 else "params"
    accepted = ", ".join(sorted(declared)) or "none"
    return (
        f"Invalid input for {noun} {names}: DAG '{dag_id}' declares no such {noun} "
        f"(its params: {accepted}); nothing was triggered"
    )


def _strict_validator(schema: Mapping[str, Any]):
    """The JSON-schema validator Airflow's Param uses, with ``pattern`` read as ECMA-262."""
    from jsonschema import FormatChecker, ValidationError, validators

    def pattern(validator, regex, instance, schema):
        if validator.is_type(instance, "string") and not ecma_regex(regex).search(instance):
            yield ValidationError(f"{instance!r} does not match {regex!r}")

    strict = validators.extend(validators.validator_for(schema), {"pattern": pattern})
    return strict(schema, format_checker=FormatChecker())


def conf_errors(conf: Mapping[str, Any], schemas: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Each declared Param of ``conf`` whose value its schema refuses, as Airflow words it."""
    errors = []
    for key in sorted(conf):
        if key in schemas:
            for error in _strict_validator(schemas[key]).iter_errors(conf[key]):
                errors.append(f"Invalid input for param {key}: {error.message}")
                break
    return errors


def parse_body(body: bytes) -> Any:
    """The JSON body as the endpoint parses it (``json.loads``), or :class:`Refused` where the
    endpoint would answer 500 or take a value it cannot judge; ``ValueError`` where the endpoint
    answers 422 itself (not JSON)."""
    if len(body) > MAX_BODY_BYTES:
        raise Refused(413, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode(json.detect_encoding(body))
    except (UnicodeDecodeError, LookupError) as error:
        raise Refused(400, f"request body is not valid UTF-8/16/32 text: {error}") from None
    if (depth := json_depth(text)) > MAX_BODY_DEPTH:
        raise Refused(400, f"request body nested {depth} levels deep (at most {MAX_BODY_DEPTH})")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError:
        raise
    except ValueError as error:  # an integer over Python's digit limit: a 500 in the endpoint
        raise Refused(400, f"request body is not acceptable JSON: {error}") from None


def _refuse_constant(name: str) -> float:
    raise Refused(400, f"request body holds {name}: numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused(400, f"request body holds {text}, which is not a finite number")
    return value


_JSON_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (strings skipped), without
    parsing it: a body nested 100,000 deep must not reach ``json.loads``'s recursion."""
    depth = deepest = 0
    for match in _JSON_STRING_OR_BRACKET.finditer(text):
        bracket = match.group()
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in "]}":
            depth -= 1
    return deepest


def credential_count(scope: Mapping[str, Any]) -> int:
    """How many credentials the request carries: ``Authorization`` headers and ``_token``
    cookies (of every ``Cookie`` header, parsed as Starlette does)."""
    count = 0
    for name, value in scope["headers"]:
        name = name.lower()
        if name == b"authorization":
            count += 1
        elif name == b"cookie":
            chunks = value.decode("latin-1").split(";")
            count += sum(1 for c in chunks if "=" in c and c.split("=", 1)[0].strip() == JWT_COOKIE)
    return count


async def _params_of_serialized_dag(app: Any, dag_id: str) -> dict[str, dict] | None:
    """Each Param of ``dag_id``'s latest serialized DAG with its JSON schema (what the trigger
    endpoint validates against), or None when there is no such DAG."""
    from starlette.concurrency import run_in_threadpool

    def read() -> dict[str, dict] | None:
        from airflow.utils.session import create_session

        with create_session() as session:
            dag = app.state.dag_bag.get_latest_version_of_dag(dag_id, session=session)
            if dag is None:
                return None
            return {key: dict(dag.params.get_param(key).schema) for key in dag.params}

    # The DagBag reads the metadata database: off the event loop, as the endpoint does it.
    return await run_in_threadpool(read)


async def _may_create_runs(scope: Mapping[str, Any], dag_id: str) -> bool:
    """Whether the caller may create runs of ``dag_id``: the user Airflow's ``get_user`` reads
    (the trusted middleware's, the bearer token, or the ``_token`` cookie), checked with the
    trigger and backfill endpoints' own rule."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, oauth2_scheme
    from airflow.models.dag import DagModel
    from fastapi import HTTPException
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request

    request = Request(scope)
    try:
        user = await get_user(request, await oauth2_scheme(request), await bearer_scheme(request))
    except (HTTPException, ValueError):  # no, expired, forged token; unknown user: the
        return False  # endpoint gives the right answer (401, 403)

    def authorized() -> bool:
        details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
        return get_auth_manager().is_authorized_dag(
            method="POST", access_entity=DagAccessEntity.RUN, details=details, user=user
        )

    return await run_in_threadpool(authorized)


class UndeclaredConfKeysGuard:
    """Pure ASGI middleware (it must read the request body and hand it on unchanged).

    :param app: the ASGI application it wraps.
    :param dag_params: coroutine ``(app, dag_id) -> {param: json schema} | None``.
    :param may_create_runs: coroutine ``(scope, dag_id) -> bool``: may this caller create runs.
    """

    def __init__(
        self,
        app: Any,
        *,
        dag_params: DagParams = _params_of_serialized_dag,
        may_create_runs: MayCreateRuns = _may_create_runs,
    ):
        self.app = app
        self.dag_params = dag_params
        self.may_create_runs = may_create_runs

    async def __call__(self, scope, receive, send) -> None:
        trigger = backfill = None
        if scope["type"] == "http" and scope["method"] == "POST":
            trigger = TRIGGER_PATH.search(scope["path"])
            backfill = BACKFILL_PATH.search(scope["path"])
        if trigger is None and backfill is None:
            await self.app(scope, receive, send)
            return

        try:
            body, more_messages = await _read_body(receive)
            dag_id = trigger["dag_id"] if trigger else None
            refusal = await self._refusal(scope, dag_id, body)
        except Refused as refused:
            await _send_json(send, refused.status, {"detail": refused.detail})
            return
        if refusal is not None:
            await _send_json(send, 400, {"detail": refusal})
            return
        await self.app(scope, _replay(body, more_messages, receive), send)

    async def _refusal(self, scope, dag_id: str | None, body: bytes) -> str | None:
        if credential_count(scope) > 1:
            raise Refused(
                400,
                "more than one credential (Authorization headers, _token cookies): "
                "send exactly one, so that one caller is judged",
            )
        try:
            payload = parse_body(body)
        except ValueError:
            return None  # not JSON: the endpoint answers 422
        if not isinstance(payload, dict):
            return None  # the endpoint answers 422
        if dag_id is None:  # a backfill names its DAG in the body
            dag_id, conf = payload.get("dag_id"), payload.get("dag_run_conf")
            if not isinstance(dag_id, str):
                return None  # the endpoint answers 400/422
        else:
            conf = payload.get("conf")
        if not isinstance(conf, dict) or not conf:
            return None
        schemas = await self.dag_params(scope.get("app"), dag_id)
        if schemas is None:
            return None  # no such DAG: the endpoint answers 404
        undeclared = undeclared_conf_keys(conf, schemas)
        errors = conf_errors(conf, schemas)
        if not undeclared and not errors:
            return None
        if not await self.may_create_runs(scope, dag_id):
            return None
        if undeclared:
            errors.insert(0, undeclared_keys_message(dag_id, undeclared, schemas))
        return "; ".join(errors)


async def _read_body(receive) -> tuple[bytes, list[dict]]:
    """The whole request body (refused past ``MAX_BODY_BYTES``), and any non-body message
    received while reading it (a disconnect), which is handed on after the body."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY_BYTES:
            raise Refused(413, f"request body over {MAX_BODY_BYTES} bytes")
        if not message.get("more_body", False):
            return b"".join(chunks), []


def _replay(body: bytes, more_messages: list[dict], receive):
    """A ``receive`` that first gives the body already read, then what the server sends."""
    pending = [{"type": "http.request", "body": body, "more_body": False}, *more_messages]

    async def replayed_receive():
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed_receive


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HeadraceApiGuardPlugin(AirflowPlugin):
    name = "headrace_api_guard"
    fastapi_root_middlewares = [
        {
            "name": "Hold run-creating requests to the DAG's declared Params",
            "middleware": UndeclaredConfKeysGuard,
            "args": [],
            "kwargs": {},
        }
    ]
