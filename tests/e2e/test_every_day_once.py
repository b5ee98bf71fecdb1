"""Every landed day reaches every stage exactly once, on the real scheduler (a local stack of
this module's own: it trains and approves a real model, which the shared stack's tests must not
find in their registry): five days dropped at once while a validation run is active each get one validation
(+ features), one scoring and one monitoring run; a day that fails the gate does not block the
days after it; re-dropping a day re-runs it with identical outputs.

The timeline (per stage, per day) is written to ``<lake>/reports/churn/e2e_every_day_once.json``
and printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.conftest import _SharedStack

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]
DAYS = [f"2026-02-{day:02d}" for day in range(2, 9)]  # 7 days: bootstrap, active, then five
BOOTSTRAP, ACTIVE, AT_ONCE = DAYS[0], DAYS[1], DAYS[2:]
BAD_DAY = AT_ONCE[2]  # its monthly charges are 2.5 times too high: the gate's mean rule fails
REDROP_DAY = AT_ONCE[0]
ROWS_PER_DAY = 400
STAGES = ("churn_ingestion", "churn_validation", "churn_scoring", "churn_monitoring")
ALL_CHURN_DAGS = (*STAGES, "churn_training", "churn_model_approval", "churn_reconciliation")
SETTLE_TIMEOUT_S = 1500


def generate(staging: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "include.datagen.churn", "--out", str(staging), "--start", DAYS[0],
         "--days", str(len(DAYS)), "--rows-per-day", str(ROWS_PER_DAY), "--format", "csv",
         "--seed", "16"],
        cwd=REPO_ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (bad_file,) = (staging / "churn" / f"ds={BAD_DAY}").glob("*.csv")
    with bad_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["monthly_charge"] not in ("", "NULL", "null"):
            with contextlib.suppress(ValueError):  # a planted defect stays one
                row["monthly_charge"] = f"{float(row['monthly_charge']) * 2.5:.2f}"
    with bad_file.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def drop(staging: Path, inbox: Path, day: str) -> None:
    """Copy a day's files into the inbox the way a producer would: write aside, then rename."""
    target = inbox / "churn" / f"ds={day}"
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted((staging / "churn" / f"ds={day}").iterdir()):
        partial = target / f".{source.name}.partial"
        shutil.copyfile(source, partial)
        partial.rename(target / source.name)


def runs_by_day(api, dag_id: str) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for run in api.dag_runs(dag_id):
        if run.get("partition_key"):
            runs.setdefault(run["partition_key"], []).append(run)
    return runs


def wait_until(predicate, timeout: float, what: str, poll: float = 3.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f}s: {what}")
        time.sleep(poll)


def finished(runs: list[dict]) -> bool:
    return bool(runs) and all(run["state"] in ("success", "failed") for run in runs)


def curated_events_by_day(api) -> Counter:
    asset = api.asset("churn_curated")
    events = api.asset_events(asset_id=asset["id"], limit=1000)
    return Counter(event["partition_key"] for event in events)


def outputs_of(lake: Path, day: str) -> dict:
    """What the stages committed for a day, by content (the manifests' file digests)."""

    def digests(zone: str) -> list:
        manifest = json.loads((lake / zone / "churn" / f"ds={day}" / "_manifest.json").read_text())
        files = manifest.get("outputs") or manifest.get("files") or []
        return sorted(json.dumps(entry, sort_keys=True) for entry in files)

    return {zone: digests(zone) for zone in ("curated", "features", "predictions")}


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    stack = _SharedStack(tmp_path_factory.mktemp("every-day-once-stack"))
    try:
        yield stack.get()
    finally:
        stack.stop()


@pytest.fixture
def churn_dags(own_stack):
    """Every churn DAG paused first: the test unpauses what each step needs."""
    api = own_stack.api()
    for dag_id in ALL_CHURN_DAGS:
        api.pause(dag_id)
    return api


@pytest.mark.timeout(2400)
def test_five_days_at_once_each_reach_every_stage_once(own_stack, churn_dags, tmp_path):
    api, lake = churn_dags, own_stack.lake
    inbox = lake / "landing" / "_inbox"
    generate(tmp_path)
    started = time.monotonic()

    setup = api.trigger("lake_setup")
    api.unpause("lake_setup")
    assert api.wait_for_run("lake_setup", setup, timeout=300)["state"] == "success"

    # Bootstrap: one day ingested, validated and trained on, so that scoring has a champion.
    for dag_id in ("churn_ingestion", "churn_validation"):
        api.unpause(dag_id)
    drop(tmp_path, inbox, BOOTSTRAP)
    wait_until(
        lambda: finished(runs_by_day(api, "churn_validation").get(BOOTSTRAP, [])),
        600,
        f"validation of {BOOTSTRAP}",
    )
    api.unpause("churn_training")
    training = api.trigger(
        "churn_training", {"ds": BOOTSTRAP, "max_trials": 1, "parallel_trials": 1, "epochs": 3}
    )
    assert api.wait_for_run("churn_training", training, timeout=900)["state"] == "success"
    api.pause("churn_training")  # the drift and features events below retrain nothing
    for dag_id in ("churn_scoring", "churn_monitoring"):
        api.unpause(dag_id)

    # One day in validation, then five at once.
    drop(tmp_path, inbox, ACTIVE)
    wait_until(
        lambda: any(
            run["state"] == "running"
            for run in runs_by_day(api, "churn_validation").get(ACTIVE, [])
        ),
        600,
        f"a running validation of {ACTIVE}",
        poll=1.0,
    )
    dropped_at = time.monotonic()
    for day in AT_ONCE:
        drop(tmp_path, inbox, day)

    good = [day for day in (ACTIVE, *AT_ONCE) if day != BAD_DAY]

    def settled() -> bool:
        validation = runs_by_day(api, "churn_validation")
        monitoring = runs_by_day(api, "churn_monitoring")
        return all(finished(validation.get(day, [])) for day in (ACTIVE, *AT_ONCE)) and all(
            finished(monitoring.get(day, [])) for day in good
        )

    wait_until(settled, SETTLE_TIMEOUT_S, "every day validated, scored and monitored")
    settled_after_s = time.monotonic() - dropped_at

    runs = {dag_id: runs_by_day(api, dag_id) for dag_id in STAGES[1:]}
    for day in (ACTIVE, *AT_ONCE):
        assert len(runs["churn_validation"].get(day, [])) == 1, (day, runs["churn_validation"])
    assert curated_events_by_day(api) == Counter(dict.fromkeys(DAYS, 1))
    for dag_id in ("churn_scoring", "churn_monitoring"):
        for day in good:
            (run,) = runs[dag_id][day]
            assert run["state"] == "success", (dag_id, day, run)
        assert BAD_DAY not in runs[dag_id], f"{dag_id} ran for {BAD_DAY}, which failed the gate"
    # The bad day failed at the gate and said why; the days after it went on.
    (bad_run,) = runs["churn_validation"][BAD_DAY]
    assert bad_run["state"] == "failed"
    verdict = json.loads(
        (lake / "reports" / "churn" / "quality" / f"ds={BAD_DAY}" / "result.json").read_text()
    )
    assert verdict["passed"] is False
    failed = [item["rule"] for item in verdict["results"] if item["status"] == "fail"]
    assert any("monthly_charge" in rule for rule in failed), failed

    # Re-dropping a day re-runs it, once per stage, with identical outputs.
    before = outputs_of(lake, REDROP_DAY)
    drop(tmp_path, inbox, REDROP_DAY)

    def rerun_done() -> bool:
        monitoring = runs_by_day(api, "churn_monitoring").get(REDROP_DAY, [])
        return len(monitoring) == 2 and finished(monitoring)

    wait_until(rerun_done, 900, f"the re-run of {REDROP_DAY}")
    for dag_id in STAGES[1:]:
        reruns = runs_by_day(api, dag_id)[REDROP_DAY]
        assert [run["state"] for run in reruns] == ["success", "success"], (dag_id, reruns)
    assert outputs_of(lake, REDROP_DAY) == before

    # The reconciliation report tells each day's story: the bad day failed at the gate, with
    # the rule; every other day is done.
    api.unpause("churn_reconciliation")
    reconcile = api.trigger("churn_reconciliation")
    assert api.wait_for_run("churn_reconciliation", reconcile, timeout=300)["state"] == "success"
    report = json.loads(
        (lake / "reports" / "churn" / "reconciliation" / "reconciliation.json").read_text()
    )
    rows = {row["ds"]: row for row in report["days"]}
    assert rows[BAD_DAY]["status"] == "failed", rows[BAD_DAY]
    assert "gate failed" in rows[BAD_DAY]["reason"] and "monthly_charge" in rows[BAD_DAY]["reason"]
    for day in good:
        assert rows[day]["status"] == "done", rows[day]
        assert rows[day]["scored"]["rows"] == rows[day]["features"]["rows"], rows[day]

    timeline = {
        "dropped_five_days_after_s": round(dropped_at - started, 1),
        "settled_after_s": round(settled_after_s, 1),
        "runs": {
            dag_id: {
                day: [
                    {key: run[key] for key in ("state", "start_date", "end_date")}
                    for run in day_runs
                ]
                for day, day_runs in sorted(runs_by_day(api, dag_id).items())
            }
            for dag_id in STAGES[1:]
        },
    }
    out = lake / "reports" / "churn" / "e2e_every_day_once.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(timeline, indent=2))
    print(json.dumps(timeline, indent=2))
