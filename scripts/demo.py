"""``make demo``: run the pipeline's DAGs through the real local Airflow stack, print a summary.

Starts the stack if it is not running (and stops it again at the end unless it was already up
or ``--keep-up`` is given), triggers each stage's DAG through the REST API as a person or an
external system would, waits for it, and prints one row per task: stage, state, duration and
its result. Exits non-zero if any stage failed.

Stages: lake setup; ingestion of one generated day of churn landing files (with planted
defects, so the quarantine is not empty); then the stages the Assets drive with nobody
clicking — validation and features (on new curated data), training with tuning and
registration (on new features), batch scoring (on new features) and drift monitoring (on new
predictions). The demo unpauses every DAG first and follows the runs the scheduler creates.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import airflow_stack
from airflow_api import AirflowApi

sys.path.insert(0, str(airflow_stack.REPO_ROOT))
from include.config import Settings, load_settings

# Yesterday (UTC): the interval the scheduler runs a daily DAG for as soon as it is unpaused,
# so the ingestion of the demo's files is the real scheduled run.
DEMO_DAY = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
DEMO_ROWS = 100_000


def generate_landing_day(settings: Settings) -> str:
    """One day of churn landing files, 1% of rows with planted defects, into the landing zone."""
    landing = Path(settings.zone_uri("landing").removeprefix("file://"))
    command = [
        sys.executable, "-m", "include.datagen.churn", "--out", str(landing),
        "--start", DEMO_DAY, "--days", "1", "--rows-per-day", str(DEMO_ROWS),
        "--format", "mixed", "--gzip", "--corrupt-rate", "0.01", "--seed", "7",
    ]  # fmt: skip
    subprocess.run(command, cwd=airflow_stack.REPO_ROOT, check=True, capture_output=True)
    return f"{DEMO_ROWS:,} rows for {DEMO_DAY} in {landing}/churn"


def describe_ingest(settings: Settings) -> str:
    """Rows in / accepted / quarantined, from the run manifest the job wrote."""
    manifest_path = Path(settings.zone_uri("curated").removeprefix("file://"))
    manifest = json.loads(
        (manifest_path / "churn" / f"ds={DEMO_DAY}" / "_manifest.json").read_text()
    )
    totals = manifest["totals"]
    return (
        f"{totals['rows_read']:,} rows: {totals['rows_accepted']:,} curated, "
        f"{totals['rows_quarantined']:,} quarantined ({len(totals['quarantined_by_code'])} reasons)"
    )


@dataclass
class Stage:
    label: str
    dag_id: str
    conf: dict = field(default_factory=dict)
    # Runs before the trigger (e.g. drops landing files); returns a line for the summary.
    prepare: Callable[[Settings], str] | None = None
    # Reads the stage's outputs after success; returns the summary's result for the stage.
    describe: Callable[[Settings], str] | None = None
    # A scheduled DAG runs by itself once unpaused: follow that run rather than trigger another.
    scheduled: bool = False
    # Scheduled by an Asset an earlier stage updates: wait for the run the scheduler makes.
    asset_triggered: bool = False


# In pipeline order.
STAGES: list[Stage] = [
    Stage("lake setup", "lake_setup"),
    Stage(
        "ingest",
        "churn_ingestion",
        conf={"ds": DEMO_DAY},
        prepare=generate_landing_day,
        describe=describe_ingest,
        scheduled=True,
    ),
    Stage("validate + features", "churn_validation", asset_triggered=True),
    Stage("train + tune + register", "churn_training", asset_triggered=True),
    Stage("batch score", "churn_scoring", asset_triggered=True),
    Stage("drift check", "churn_monitoring", asset_triggered=True),
]
# A skipped task is a branch not taken (no drift: no drift event, no alert), not a failure.
OK_STATES = frozenset({"success", "skipped"})
# How long an Asset-triggered stage may take to start, and to finish.
ASSET_RUN_START_TIMEOUT_S = 180
STAGE_TIMEOUT_S = 900


@dataclass
class TaskRow:
    stage: str
    task_id: str
    state: str
    duration_s: float | None
    result: str


def _duration(ti: dict) -> float | None:
    # From the timestamps: the API's ``duration`` of a task that waited on a re-attached run
    # can come out negative.
    if ti.get("start_date") and ti.get("end_date"):
        start = datetime.fromisoformat(ti["start_date"])
        elapsed = (datetime.fromisoformat(ti["end_date"]) - start).total_seconds()
        return elapsed if elapsed >= 0 else None
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


def run_stage(
    api: AirflowApi, stage: Stage, settings: Settings, known_runs: set[str]
) -> list[TaskRow]:
    """Run one stage; ``known_runs`` are the DAG's runs from before the demo started."""
    rows = []
    if stage.prepare:
        started = time.monotonic()
        line = stage.prepare(settings)
        rows.append(TaskRow(stage.label, "(prepare)", "success", time.monotonic() - started, line))
    was_paused = api.get(f"/api/v2/dags/{stage.dag_id}")["is_paused"]
    api.unpause(stage.dag_id)
    run_id = None
    if stage.asset_triggered:
        run_id = api.wait_for_new_run(stage.dag_id, known_runs, ASSET_RUN_START_TIMEOUT_S)
        if run_id is None:
            rows.append(
                TaskRow(stage.label, "(asset trigger)", "failed", None, "no run was scheduled")
            )
            return rows
        print(f"demo: {stage.label}: following the Asset-triggered run {run_id}")
    elif stage.scheduled and was_paused:
        run_id = api.wait_for_new_run(stage.dag_id, known_runs, timeout=60)
        if run_id:
            print(f"demo: {stage.label}: following the scheduler's run {run_id}")
    if run_id is None:
        run_id = api.trigger(stage.dag_id, stage.conf)
        print(f"demo: {stage.label}: triggered {stage.dag_id} run {run_id}")
    run = api.wait_for_run(stage.dag_id, run_id, timeout=STAGE_TIMEOUT_S)
    task_instances = api.task_instances(stage.dag_id, run_id)
    for ti in sorted(task_instances, key=lambda t: t.get("start_date") or ""):
        result = ""
        if ti["state"] == "success":
            try:
                result = _summarize_result(api.xcom(stage.dag_id, run_id, ti["task_id"]))
            except Exception:  # a task without a return value has no XCom entry
                result = ""
        rows.append(
            TaskRow(stage.label, ti["task_id"], ti["state"] or "none", _duration(ti), result)
        )
    if run["state"] == "success" and stage.describe:
        rows[-1].result = stage.describe(settings)
    print(f"demo: {stage.label}: {stage.dag_id} finished {run['state']}")
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
    failed = sum(r.state not in OK_STATES for r in rows)
    print()
    print(f"{len(rows)} tasks, {failed} failed, wall time {wall_s:.1f}s")
    print(
        f"Airflow UI: {airflow_stack.api_url()} (user '{airflow_stack.ADMIN_USER}', password in "
        f"{airflow_stack.airflow_home() / 'passwords.json'})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-up", action="store_true", help="leave the Airflow stack running")
    args = parser.parse_args(argv)

    started = time.monotonic()
    settings = load_settings(airflow_stack.airflow_env())
    was_running = bool(airflow_stack.running_components())
    airflow_stack.up()
    rows: list[TaskRow] = []
    try:
        api = AirflowApi(
            airflow_stack.api_url(), airflow_stack.ADMIN_USER, airflow_stack.admin_password()
        )
        api.wait_for_dags({stage.dag_id for stage in STAGES})
        errors = api.import_errors()
        if errors:
            for error in errors:
                print(
                    f"demo: import error in {error['filename']}:\n{error['stack_trace']}",
                    file=sys.stderr,
                )
            return 1
        known_runs = {
            stage.dag_id: {run["dag_run_id"] for run in api.dag_runs(stage.dag_id)}
            for stage in STAGES
        }
        # Unpaused before anything runs, so no Asset event finds its consumer paused.
        for stage in STAGES:
            if stage.asset_triggered:
                api.unpause(stage.dag_id)
        for stage in STAGES:
            stage_rows = run_stage(api, stage, settings, known_runs[stage.dag_id])
            rows.extend(stage_rows)
            if any(r.state not in OK_STATES for r in stage_rows):
                break  # later stages consume this one's output
    finally:
        if not (was_running or args.keep_up):
            airflow_stack.down()
    print_summary(rows, time.monotonic() - started)
    return 0 if rows and all(r.state in OK_STATES for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
