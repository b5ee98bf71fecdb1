"""Refuses a DAG run whose ``conf`` holds keys the DAG does not declare as Params.

Airflow 3.0 validates every declared Param of a triggered run (type, range, enum, format) but
takes any other ``conf`` key silently: ``{"max_trial": 3}`` (a typo of ``max_trials``) starts a
run with the default instead. This plugin adds a root middleware to the api-server that answers
``POST /api/v2/dags/{dag_id}/dagRuns`` with HTTP 400 naming the undeclared keys, before a run is
created. The UI's trigger form posts to the same endpoint, so it is covered too; so is MWAA's
InvokeRestApi, which forwards to it.

The declared Params are read from the serialized DAG, through the same DagBag the trigger
endpoint uses. The guard only answers callers the endpoint would let trigger the DAG; for
anyone else, and for any request it cannot read, it steps aside and the endpoint answers as
usual (401, 403, 404, 422). Every Airflow component imports the plugins folder, so this module
imports nothing heavy at the top level.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from airflow.plugins_manager import AirflowPlugin

# The trigger endpoint, under any root path the api-server is mounted at.
TRIGGER_PATH = re.compile(r"(?:^|/)api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/?$")

DeclaredParams = Callable[[Any, str], Awaitable[Collection[str] | None]]
MayTrigger = Callable[[Any, Mapping[str, Any], str], Awaitable[bool]]


def undeclared_conf_keys(conf: Mapping[str, Any], declared: Collection[str]) -> list[str]:
    """The keys of ``conf`` that are not declared Params, sorted."""
    return sorted(key for key in conf if key not in declared)


def undeclared_keys_message(dag_id: str, undeclared: list[str], declared: Collection[str]) -> str:
    """The refusal, worded like Airflow's own ("Invalid input for param <name>: ...") so a
    client that looks for the refused field finds it the same way for both kinds of error."""
    names = ", ".join(undeclared)
    noun = "param" if len(undeclared) == 1 else "params"
    accepted = ", ".join(sorted(declared)) or "none"
    return (
        f"Invalid input for {noun} {names}: DAG '{dag_id}' declares no such {noun} "
        f"(its params: {accepted}); nothing was triggered"
    )


async def _declared_params_of_serialized_dag(app: Any, dag_id: str) -> Collection[str] | None:
    """The Param names of ``dag_id``'s serialized DAG, or None when there is no such DAG."""
    from starlette.concurrency import run_in_threadpool

    # The DagBag reads the metadata database: off the event loop, as the endpoint does it.
    dag = await run_in_threadpool(app.state.dag_bag.get_dag, dag_id)
    return None if dag is None else list(dag.params.keys())


async def _may_trigger(app: Any, headers: Mapping[str, str], dag_id: str) -> bool:
    """Whether the caller's token lets it create runs of ``dag_id`` (the endpoint's own rule),
    so that nobody else learns a DAG's Params from the refusal."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )

    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    auth_manager = get_auth_manager()
    try:
        user = await auth_manager.get_user_from_token(token)
    except Exception:  # expired, forged or malformed: the endpoint gives the right answer
        return False
    return auth_manager.is_authorized_dag(
        method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    )


class UndeclaredConfKeysGuard:
    """Pure ASGI middleware (it must read the request body and hand it on unchanged).

    :param app: the ASGI application it wraps.
    :param declared_params: coroutine ``(app, dag_id) -> names | None`` giving a DAG's Params.
    :param may_trigger: coroutine ``(app, headers, dag_id) -> bool``: may this caller trigger it.
    """

    def __init__(
        self,
        app: Any,
        *,
        declared_params: DeclaredParams = _declared_params_of_serialized_dag,
        may_trigger: MayTrigger = _may_trigger,
    ):
        self.app = app
        self.declared_params = declared_params
        self.may_trigger = may_trigger

    async def __call__(self, scope, receive, send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = TRIGGER_PATH.search(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return

        body, more_messages = await _read_body(receive)
        refusal = await self._refusal(scope, match["dag_id"], body)
        if refusal is not None:
            await _send_json(send, 400, {"detail": refusal})
            return
        await self.app(scope, _replay(body, more_messages, receive), send)

    async def _refusal(self, scope, dag_id: str, body: bytes) -> str | None:
        try:
            conf = json.loads(body).get("conf")
        except (ValueError, AttributeError):
            return None  # not a JSON object: the endpoint's own validation answers (422)
        if not isinstance(conf, dict) or not conf:
            return None
        app = scope.get("app")
        declared = await self.declared_params(app, dag_id)
        if declared is None:
            return None  # no such DAG: the endpoint answers 404
        undeclared = undeclared_conf_keys(conf, declared)
        if not undeclared:
            return None
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        if not await self.may_trigger(app, headers, dag_id):
            return None
        return undeclared_keys_message(dag_id, undeclared, declared)


async def _read_body(receive) -> tuple[bytes, list[dict]]:
    """The whole request body, and any non-body message received while reading it (a
    disconnect), which is handed on after the body."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
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
            "name": "Refuse DAG runs with undeclared conf keys",
            "middleware": UndeclaredConfKeysGuard,
            "args": [],
            "kwargs": {},
        }
    ]
