"""The DAG run's note in the Airflow UI: where a run on aws shows its worst-case cost.

The Task SDK has no call that writes the note of the run a task is in (its execution API sets a
note only on a run it triggers), so a task writes it through Airflow's REST API. On MWAA the
worker reaches that API with MWAA's ``InvokeRestApi`` under its execution role (IAM
``airflow:InvokeRestApi`` on the environment's ``User`` role, which may edit DAG runs; MWAA
names the environment in ``AIRFLOW_ENV_NAME``).

``InvokeRestApi`` takes a path of at most 64 characters, too short for
``/dags/{dag_id}/dagRuns/{run_id}`` with a scheduled or manual run id, so the note is read with
``GET /dags/~/dagRuns`` filtered by dag and run id, and written with the bulk
``PATCH /dags/~/dagRuns`` naming both in the body.

A run's cost section holds one line per key (the run's estimate, each job's), so every job of a
run adds its own line and a retry replaces its line; a person's text above or below it is kept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

# Airflow 3.3's DAGRunPatchBody / BulkDAGRunBody: note max_length.
NOTE_LIMIT = 1000
COST_HEADING = "**Worst-case AWS cost** (details in the task logs)"
MWAA_ENVIRONMENT_VARIABLE = "AIRFLOW_ENV_NAME"
# A line may not crowd out the others: a refusal's whole message stays in the task log.
LINE_LIMIT = 300

# call(method, path, query, body) -> the API's JSON answer; path relative to /api/v2.
ApiCall = Callable[[str, str, dict | None, dict | None], Any]


class RunNoteError(RuntimeError):
    """The API refused the note or did not answer as Airflow does; the message says what."""


def merge_note(note: str | None, key: str, line: str) -> str:
    """``note`` with its cost section's line for ``key`` set to ``line`` (added at the end, or
    replaced in place), cut to :data:`NOTE_LIMIT` by dropping the oldest lines of the section."""
    if "\n" in key or ": " in key:
        raise ValueError(f"a cost line's key must be one line without ': ', got {key!r}")
    text = " ".join(line.split())
    if len(text) > LINE_LIMIT:
        text = text[: LINE_LIMIT - 1] + "…"
    person, _, section = (note or "").partition(COST_HEADING)
    person = person.rstrip()
    # The section is the "- " lines right under the heading; text a person wrote below stays.
    section_lines = section.strip("\n").splitlines()
    ours = 0
    while ours < len(section_lines) and section_lines[ours].startswith("- "):
        ours += 1
    lines, below = section_lines[:ours], "\n".join(section_lines[ours:]).strip()
    entry = f"- {key}: {text}"
    keyed = [i for i, item in enumerate(lines) if item.startswith(f"- {key}: ")]
    if keyed:
        lines[keyed[0]] = entry
    else:
        lines.append(entry)

    def compose(kept: list[str]) -> str:
        head = f"{person}\n\n" if person else ""
        tail = f"\n\n{below}" if below else ""
        return head + "\n".join([COST_HEADING, *kept]) + tail

    while len(compose(lines)) > NOTE_LIMIT and len(lines) > 1:
        lines.pop(0 if lines[0] != entry else 1)
    merged = compose(lines)
    if len(merged) > NOTE_LIMIT:
        raise RunNoteError(
            f"the run's note has {len(person) + len(below)} characters of a person's text: "
            f"no room for the cost line within Airflow's {NOTE_LIMIT}"
        )
    return merged


class RunNotes:
    """Read and write DAG run notes through Airflow's REST API (``call``: one request)."""

    def __init__(self, call: ApiCall):
        self.call = call

    def read(self, dag_id: str, run_id: str) -> str | None:
        # The patterns are SQL LIKE searches ("_" matches any character): the exact run is
        # picked here.
        query = {"dag_id_pattern": dag_id, "run_id_pattern": run_id, "limit": 100}
        answer = self.call("GET", "/dags/~/dagRuns", query, None)
        runs = [
            run
            for run in (answer or {}).get("dag_runs", [])
            if run.get("dag_id") == dag_id and run.get("dag_run_id") == run_id
        ]
        if not runs:
            raise RunNoteError(f"the API lists no run {run_id} of {dag_id}")
        return runs[0].get("note")

    def write(self, dag_id: str, run_id: str, note: str) -> None:
        entity = {"dag_id": dag_id, "dag_run_id": run_id, "note": note}
        body = {"actions": [{"action": "update", "entities": [entity]}]}
        answer = self.call("PATCH", "/dags/~/dagRuns", None, body) or {}
        update = answer.get("update") or {}
        # Airflow answers 200 with the errors inside; a run it set is listed as "dag_id.run_id".
        if update.get("errors") or f"{dag_id}.{run_id}" not in (update.get("success") or []):
            raise RunNoteError(
                f"the API did not set the note of {dag_id} run {run_id}: {update or answer}"
            )

    def set_line(self, dag_id: str, run_id: str, key: str, line: str) -> str:
        """Set one line of the run's cost section; the note as written."""
        note = merge_note(self.read(dag_id, run_id), key, line)
        self.write(dag_id, run_id, note)
        return note


def mwaa_api_call(environment: str, client: Any = None) -> ApiCall:
    """One Airflow REST API request through MWAA's InvokeRestApi on ``environment``."""
    if client is None:
        import boto3

        client = boto3.client("mwaa")

    def call(method: str, path: str, query: dict | None, body: dict | None) -> Any:
        request: dict[str, Any] = {"Name": environment, "Path": path, "Method": method}
        if query:
            request["QueryParameters"] = query
        if body is not None:
            request["Body"] = body
        return client.invoke_rest_api(**request).get("RestApiResponse")

    return call


def note_this_run(key: str, line: str, log: logging.Logger) -> None:
    """From a running task on MWAA, set ``key``'s line of its DAG run's cost section.

    Outside MWAA (no ``AIRFLOW_ENV_NAME``) nothing is written. A failure to write is logged as
    a warning and does not fail the task: the note repeats what the task log already holds.
    """
    environment = os.environ.get(MWAA_ENVIRONMENT_VARIABLE)
    if not environment:
        log.info(
            "Not on MWAA (%s is unset): the run's note is not written", MWAA_ENVIRONMENT_VARIABLE
        )
        return
    from airflow.sdk import get_current_context
    from botocore.exceptions import BotoCoreError, ClientError

    run = get_current_context()["dag_run"]
    try:
        RunNotes(mwaa_api_call(environment)).set_line(run.dag_id, run.run_id, key, line)
    except (BotoCoreError, ClientError, RunNoteError) as error:
        log.warning(
            "The run's note was not written (%s); the estimate is in this log. MWAA's execution "
            "role needs airflow:InvokeRestApi on the environment's User role.",
            error,
        )
        return
    log.info("The run's note shows: %s: %s", key, line)
