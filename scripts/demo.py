"""``make demo``: run the pipeline's DAGs through the real local Airflow stack, print a summary.

Starts the stack if it is not running (and stops it again at the end unless it was already up
or ``--keep-up`` is given), triggers each stage's DAG through the REST API as a person or an
external system would, waits for it, and prints one row per task: stage, state, duration and
its result. Exits non-zero if any stage failed.

Stages that exist so far: lake setup. Later stages are appended to ``STAGES``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime

import airflow_stack
from airflow_api import AirflowApi

# (stage label, dag_id, conf) in pipeline order.
STAGES: list[tuple[str, str, dict]] = [
    ("lake setup", "lake_setup", {}),
]


@dataclass
class TaskRow:
    stage: str
    task_id: str
    state: str
    duration_s: float | None
    result: str


def _duration(ti: dict) -> float | None:
    if ti.get("duration") is not None:
        return float(ti["duration"])
    if ti.get("start_date") and ti.get("end_date"):
        start = datetime.fromisoformat(ti["start_date"])
        return (datetime.fromisoformat(ti["end_date"]) - start).total_seconds()
    return None


def _summarize_result(value) -> str:
    """A short, human line for a task's XCom result (ids and paths, never data)."""
    if isinstance(value, dict):
        for key in ("descriptor_uri", "artifact", "uri", "lake_root"):
            if key in value:
                extra = ""
                if "created_zones" in value:
                    extra = f" (zones created: {len(value['created_zones'])})"
                return f"{value[key]}{extra}"
        return json.dumps(value)[:80]
    return "" if value is None else str(value)[:80]


def run_stage(api: AirflowApi, stage: str, dag_id: str, conf: dict) -> list[TaskRow]:
    api.unpause(dag_id)
    run_id = api.trigger(dag_id, conf)
    print(f"demo: {stage}: triggered {dag_id} run {run_id}")
    run = api.wait_for_run(dag_id, run_id)
    rows = []
    for ti in sorted(api.task_instances(dag_id, run_id), key=lambda t: t.get("start_date") or ""):
        result = ""
        if ti["state"] == "success":
            try:
                result = _summarize_result(api.xcom(dag_id, run_id, ti["task_id"]))
            except Exception:  # a task without a return value has no XCom entry
                result = ""
        rows.append(TaskRow(stage, ti["task_id"], ti["state"] or "none", _duration(ti), result))
    print(f"demo: {stage}: {dag_id} finished {run['state']}")
    return rows


def print_summary(rows: list[TaskRow], wall_s: float) -> None:
    headers = ("stage", "task", "state", "duration", "result")
    table = [
        (
            r.stage,
            r.task_id,
            r.state,
            "-" if r.duration_s is None else f"{r.duration_s:.1f}s",
            r.result,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print()
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    failed = sum(r.state != "success" for r in rows)
    print()
    print(f"{len(rows)} tasks, {failed} not successful, wall time {wall_s:.1f}s")
    print(
        f"Airflow UI: {airflow_stack.api_url()} (user '{airflow_stack.ADMIN_USER}', password in "
        f"{airflow_stack.airflow_home() / 'passwords.json'})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-up", action="store_true", help="leave the Airflow stack running")
    args = parser.parse_args(argv)

    started = time.monotonic()
    was_running = bool(airflow_stack.running_components())
    airflow_stack.up()
    rows: list[TaskRow] = []
    try:
        api = AirflowApi(
            airflow_stack.api_url(), airflow_stack.ADMIN_USER, airflow_stack.admin_password()
        )
        api.wait_for_dags({dag_id for _, dag_id, _ in STAGES})
        errors = api.import_errors()
        if errors:
            for error in errors:
                print(
                    f"demo: import error in {error['filename']}:\n{error['stack_trace']}",
                    file=sys.stderr,
                )
            return 1
        for stage, dag_id, conf in STAGES:
            stage_rows = run_stage(api, stage, dag_id, conf)
            rows.extend(stage_rows)
            if any(r.state != "success" for r in stage_rows):
                break  # later stages consume this one's output
    finally:
        if not (was_running or args.keep_up):
            airflow_stack.down()
    print_summary(rows, time.monotonic() - started)
    return 0 if rows and all(r.state == "success" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
