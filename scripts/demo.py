"""``make demo``: the whole lifecycle through the real local Airflow stack, driven by files landing.

Starts the stack if it is not running (and stops it again at the end unless it was already up
or ``--keep-up`` is given), generates ``--days`` days of churn landing files (``--rows`` rows in
all, 1% planted defects, distribution drift on the last day), and drops them into the landing
inbox one day at a time, the way a producer would. Nobody triggers anything after lake setup:

- the inbox watcher lands each file and starts ``churn_ingestion`` for its day;
- the ``churn_curated`` Asset starts validation and features, ``churn_features`` starts training
  with tuning and registration and batch scoring, ``churn_predictions`` starts the drift check;
- the last day drifts: the drift check emits ``churn_drift``, which starts retraining.

Choreography, so that the story reads in a few minutes on 2 cores: the first day is the
bootstrap — scoring and monitoring are paused while it trains the first model (there is no
model to score with before it). Then training is paused while the other days are scored against
that model (in production every new features partition retrains), and unpaused once the last
day's features exist, so the retraining run is the one the drift event starts.

Prints one row per stage and day — duration, rows, key metric, artifact — and the UI URL; exits
non-zero if any stage failed, if a day before the last shows drift, or if the last day's drift
was missed or its retraining did not run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import airflow_stack
from airflow_api import POLL_S, AirflowApi

sys.path.insert(0, str(airflow_stack.REPO_ROOT))
from include.config import Settings, load_settings

DATASET = "churn"
# Fixed days, so the demo writes the same bytes every time (re-running it re-ingests the same
# data). They are not "yesterday": the daily run the scheduler makes when the ingestion DAG is
# unpaused finds no landing files of its day and is skipped.
DEMO_START = date(2026, 1, 5)
DEFAULT_DAYS = 4
DEFAULT_ROWS = 1_000_000
PIPELINE = {
    "ingestion": f"{DATASET}_ingestion",
    "validation": f"{DATASET}_validation",
    "training": f"{DATASET}_training",
    "scoring": f"{DATASET}_scoring",
    "monitoring": f"{DATASET}_monitoring",
}
OK_STATES = frozenset({"success", "skipped"})
RUN_START_TIMEOUT_S = 300
RUN_TIMEOUT_S = 1200


@dataclass
class StageRow:
    stage: str
    ds: str
    state: str
    duration_s: float | None
    rows: str = ""
    metric: str = ""
    artifact: str = ""
    # Printed under the table: a training run's champion / challenger decision.
    details: list[str] = field(default_factory=list)


def _path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def start_generating(settings: Settings, staging: Path, days: int, rows: int):
    """Generate the landing files in the background (while the stack starts)."""
    shutil.rmtree(staging, ignore_errors=True)
    last = DEMO_START + timedelta(days=days - 1)
    command = [
        sys.executable, "-m", "include.datagen.churn", "--out", str(staging),
        "--start", DEMO_START.isoformat(), "--days", str(days),
        "--rows-per-day", str(max(1, rows // days)), "--format", "mixed", "--gzip",
        "--corrupt-rate", "0.01", "--seed", "7", "--drift-day", last.isoformat(),
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=airflow_stack.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def drop_day(settings: Settings, staging: Path, ds: str) -> int:
    """Move one generated day into the inbox with one rename, so the watcher sees all its files
    at the same look and starts one run for the day; returns the day's bytes."""
    source = staging / DATASET / f"ds={ds}"
    size = sum(part.stat().st_size for part in source.iterdir())
    inbox = _path(settings.landing_inbox_uri) / DATASET / f"ds={ds}"
    inbox.parent.mkdir(parents=True, exist_ok=True)
    if inbox.exists() and not any(inbox.iterdir()):
        inbox.rmdir()  # left empty by the watcher after an earlier demo
    if inbox.exists():
        for part in sorted(source.iterdir()):
            shutil.move(part, inbox / part.name)
    else:
        shutil.move(source, inbox)  # a rename on one filesystem
    return size


def _duration(run: dict) -> float | None:
    if run.get("start_date") and run.get("end_date"):
        start = datetime.fromisoformat(run["start_date"])
        return max(0.0, (datetime.fromisoformat(run["end_date"]) - start).total_seconds())
    return None


def _xcom(api: AirflowApi, dag_id: str, run_id: str, task_id: str, map_index: int = -1):
    try:
        if map_index >= 0:
            import urllib.parse

            quoted = urllib.parse.quote(run_id, safe="")
            return api.get(
                f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}"
                f"/xcomEntries/return_value",
                map_index=map_index,
            )["value"]
        return api.xcom(dag_id, run_id, task_id)
    except Exception:  # a skipped or failed task has no return value
        return None


def decision_text(registered: dict, card: dict) -> list[str]:
    """The champion / challenger decision of a registration, with its interval, as the card
    states it (both AUCs on the shared test rows, the difference, its interval and the rule)."""
    from include.model_card import decision_lines

    head = f"champion / challenger: v{registered['version']} {registered['approval']}"
    return [head, *(f"  {line}" for line in decision_lines(card.get("champion_challenger") or {}))]


def describe(api: AirflowApi, settings: Settings, stage: str, run: dict, ds: str) -> StageRow:
    """The summary row of one run: its rows, key metric and artifact, read from the lake."""
    dag_id, run_id = run["dag_id"], run["dag_run_id"]
    row = StageRow(stage, ds, run["state"], _duration(run))
    lake = _path(settings.lake_root)
    if run["state"] != "success":
        states = {ti["task_id"]: ti["state"] for ti in api.task_instances(dag_id, run_id)}
        row.metric = ", ".join(f"{t}={s}" for t, s in states.items() if s not in OK_STATES)
        return row
    if stage == "ingest":
        partition = lake / "curated" / DATASET / f"ds={ds}"
        totals = json.loads((partition / "_manifest.json").read_text())["totals"]
        row.rows = f"{totals['rows_read']:,}"
        row.metric = f"{totals['rows_quarantined']:,} quarantined"
        row.artifact = str(partition)
    elif stage == "validate + features":
        gate = _xcom(api, dag_id, run_id, "quality_gate") or {}
        row.metric = f"quality gate passed ({gate.get('engine', '?')})"
        row.artifact = str(lake / "features" / DATASET / f"ds={ds}")
    elif stage.startswith(("train", "retrain")):
        registered = _xcom(api, dag_id, run_id, "register_model") or {}
        card = json.loads(_path(registered["card_uri"]).read_text())
        row.metric = (
            f"v{registered['version']} {registered['approval']}, "
            f"test roc_auc {card['metrics']['roc_auc']:.3f}"
        )
        row.artifact = registered["card_uri"].removeprefix("file://")
        row.details = decision_text(registered, card)
    elif stage == "score":
        partition = lake / "predictions" / DATASET / f"ds={ds}"
        manifest = json.loads((partition / "_manifest.json").read_text())
        row.rows = f"{manifest['rows']:,}"
        row.metric = f"model v{manifest['model_version']}"
        row.artifact = str(partition)
    elif stage == "drift check":
        result = _xcom(api, dag_id, run_id, "drift_check") or {}
        drifted = result.get("drifted_features") or []
        row.metric = f"drift: {', '.join(drifted)}" if drifted else "no drift"
        row.artifact = str(lake / "reports" / DATASET / "drift" / f"ds={ds}")
    return row


class Follower:
    """Waits for the runs the scheduler creates by itself, one DAG at a time."""

    def __init__(self, api: AirflowApi):
        self.api = api
        self.seen = {dag_id: self._run_ids(dag_id) for dag_id in PIPELINE.values()}

    def _run_ids(self, dag_id: str) -> set[str]:
        return {run["dag_run_id"] for run in self.api.dag_runs(dag_id)}

    def next_run(self, dag_id: str, run_type: str = "asset_triggered") -> dict | None:
        """The next new run of ``dag_id`` of ``run_type``, once it has finished."""
        deadline = time.monotonic() + RUN_START_TIMEOUT_S
        while time.monotonic() < deadline:
            new = [
                run
                for run in self.api.dag_runs(dag_id)
                if run["dag_run_id"] not in self.seen[dag_id] and run["run_type"] == run_type
            ]
            if new:
                run_id = new[0]["dag_run_id"]
                self.seen[dag_id].add(run_id)
                return {"dag_id": dag_id, **self.api.wait_for_run(dag_id, run_id, RUN_TIMEOUT_S)}
            time.sleep(POLL_S)
        return None


def run_lifecycle(api: AirflowApi, settings: Settings, staging: Path, days: list[str]) -> list:
    rows: list[StageRow] = []

    def follow(stage: str, key: str, ds: str) -> dict | None:
        run = follower.next_run(PIPELINE[key])
        if run is None:
            rows.append(StageRow(stage, ds, "not started", None, metric="no run was scheduled"))
            return None
        rows.append(describe(api, settings, stage, run, ds))
        print(f"demo: {stage} {ds}: {run['dag_run_id']} {run['state']}", flush=True)
        return run

    def set_paused(key: str, paused: bool) -> None:
        api.patch(f"/api/v2/dags/{PIPELINE[key]}", {"is_paused": paused})

    follower = Follower(api)
    ingestion_was_paused = api.get(f"/api/v2/dags/{PIPELINE['ingestion']}")["is_paused"]
    for key in ("scoring", "monitoring"):
        set_paused(key, True)
    for key in ("ingestion", "validation", "training"):
        set_paused(key, False)
    if ingestion_was_paused:
        # Unpausing makes the scheduler run the day that has just ended at once; it has no
        # landing files and is skipped. Waited for: the DAG runs one run at a time.
        follower.next_run(PIPELINE["ingestion"], run_type="scheduled")
    for index, ds in enumerate(days):
        first, last = index == 0, index == len(days) - 1
        size = drop_day(settings, staging, ds)
        print(f"demo: dropped {ds} ({size:,} bytes) into the landing inbox", flush=True)
        if not (
            follow("ingest", "ingestion", ds) and follow("validate + features", "validation", ds)
        ):
            return rows
        if last:
            set_paused("training", False)  # the drift event, not these features, retrains
        if first:
            trained = follow("train + tune + register", "training", ds)
            set_paused("training", True)
            for key in ("scoring", "monitoring"):
                set_paused(key, False)
            if not trained or trained["state"] != "success":
                return rows
            continue
        if not follow("score", "scoring", ds) or not follow("drift check", "monitoring", ds):
            return rows
        if last and rows[-1].metric != "no drift":
            follow("retrain (drift)", "training", ds)
    return rows


def check_story(rows: list[StageRow], days: list[str]) -> list[str]:
    """What must hold beyond every run succeeding: drift on the last day only, and retraining."""
    problems = []
    drift = {row.ds: row.metric for row in rows if row.stage == "drift check"}
    for ds in days[1:-1]:
        if drift.get(ds) != "no drift":
            problems.append(f"{ds} should show no drift, got {drift.get(ds, 'no drift check')!r}")
    if not drift.get(days[-1], "").startswith("drift:"):
        problems.append(f"the drift of {days[-1]} was not detected")
    if not any(row.stage == "retrain (drift)" and row.state == "success" for row in rows):
        problems.append("no successful retraining run after the drift")
    return problems


def print_summary(
    rows: list[StageRow], problems: list[str], wall_s: float, total_rows: int, stack_up: bool
):
    headers = ("stage", "ds", "state", "duration", "rows", "key metric", "artifact")
    table = [
        (r.stage, r.ds, r.state, "-" if r.duration_s is None else f"{r.duration_s:.1f}s",
         r.rows, r.metric, r.artifact)
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print()
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    failed = sum(r.state not in OK_STATES for r in rows)
    for row in rows:
        if row.details:
            print()
            print(f"{row.stage} {row.ds}:")
            for detail in row.details:
                print(f"  {detail}")
    print()
    for problem in problems:
        print(f"demo: {problem}")
    print(
        f"{len(rows)} runs, {failed} failed, {total_rows:,} rows generated, wall time {wall_s:.1f}s"
    )
    ui = (
        f"{airflow_stack.api_url()} (user '{airflow_stack.ADMIN_USER}', password in "
        f"{airflow_stack.airflow_home() / 'passwords.json'})"
    )
    if stack_up:
        print(f"Airflow UI: {ui}")
    else:
        print(f"The stack is stopped: `make up` serves these runs in the Airflow UI at {ui}")


def reset_dataset(settings: Settings) -> None:
    """Start from an empty churn lake and registry, so every run tells the same story.

    A previous run leaves its champion behind: the model retrained on the drifted last day, which
    would judge the calm days as drift and the drifted one as calm. The demo's data is generated,
    so nothing of value is lost; other datasets are left alone.
    """
    from include.config import LAKE_ZONES
    from include.registry import MLflowModelRegistry

    removed = []
    for zone in LAKE_ZONES:
        folder = Path(settings.zone_uri(zone).removeprefix("file://")) / DATASET
        if folder.exists():
            shutil.rmtree(folder)
            removed.append(zone)
    versions = MLflowModelRegistry(settings.zone_uri("models")).remove_dataset(DATASET)
    if removed or versions:
        print(
            f"demo: starting afresh: removed the previous run's {DATASET} data "
            f"({', '.join(removed) or 'no zones'}) and {versions} registered model version(s)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-up", action="store_true", help="leave the Airflow stack running")
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help="rows generated in all, split over the days"
    )
    parser.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help="days of data; the last one drifts (>= 3)"
    )
    args = parser.parse_args(argv)
    if args.days < 3 or args.rows < args.days * 100:
        parser.error("--days must be at least 3 and --rows at least 100 per day")

    started = time.monotonic()
    settings = load_settings(airflow_stack.airflow_env())
    reset_dataset(settings)
    staging = airflow_stack.airflow_home() / "demo-staging"
    days = [(DEMO_START + timedelta(days=i)).isoformat() for i in range(args.days)]
    generator = start_generating(settings, staging, args.days, args.rows)
    keep_up = args.keep_up or bool(airflow_stack.running_components())
    rows: list[StageRow] = []
    problems: list[str] = []
    try:
        airflow_stack.up()
        api = AirflowApi(
            airflow_stack.api_url(), airflow_stack.ADMIN_USER, airflow_stack.admin_password()
        )
        api.wait_for_dags({"lake_setup", *PIPELINE.values()}, timeout=240)
        errors = api.import_errors()
        if errors:
            for error in errors:
                print(f"demo: import error in {error['filename']}:\n{error['stack_trace']}")
            return 1
        api.unpause("lake_setup")
        setup_run = api.trigger("lake_setup")
        setup = api.wait_for_run("lake_setup", setup_run, timeout=300)
        rows.append(StageRow("lake setup", "-", setup["state"], _duration(setup),
                             artifact=f"{settings.lake_root}/_lake.json"))  # fmt: skip
        output, _ = generator.communicate(timeout=900)
        if generator.returncode != 0:
            print(output.decode(errors="replace")[-3000:])
            return 1
        if setup["state"] == "success":
            rows.extend(run_lifecycle(api, settings, staging, days))
            problems = check_story(rows, days)
    finally:
        if generator.poll() is None:
            generator.kill()
        if not keep_up:
            airflow_stack.down()
    print_summary(rows, problems, time.monotonic() - started, args.rows, stack_up=keep_up)
    ok = rows and all(r.state in OK_STATES for r in rows) and not problems
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
