"""A dataset added by spec only runs end to end: benefit_claims through its six factory DAGs.

``include/datasets/benefit_claims*.yaml`` is all the repository holds for it: no Python of its
own. Two days of landing files come from the spec-driven generator (the second day drifted on
two features); then the real DAGs of ``dags/`` run through Airflow's task runner
(``dag.test()``) on a temporary lake, in the order the Assets would trigger them: ingestion and
validation (with features) of both days, training on the first day, the approval if the new
version waits for one, scoring of the second day, and its drift check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

DATASET = "benefit_claims"
DAYS = ("2026-03-01", "2026-03-02")
TRAIN_DS, SCORE_DS = DAYS
ROWS_PER_DAY = 4000
DRIFTED = ("claimed_amount", "channel")

# Runs in a fresh interpreter (Airflow reads AIRFLOW_HOME at import): generate the landing
# files, then run each DAG by id from one DagBag of the whole dags/ folder; prints one OUTCOME.
_RUNNER = r"""
import json, sys
from datetime import date
from pathlib import Path
repo, lake_dir = Path(sys.argv[1]), Path(sys.argv[2])
sys.path[:0] = [str(repo), str(repo / "plugins")]
plan = json.loads(sys.argv[3])

from include.datagen.from_spec import GeneratorConfig, generate
summary = generate(GeneratorConfig(
    spec_path=repo / "include" / "datasets" / f"{plan['dataset']}.yaml",
    out=lake_dir / "landing", start=date.fromisoformat(plan["days"][0]), days=len(plan["days"]),
    rows_per_day=plan["rows"], seed=11, drift_columns=tuple(plan["drifted"]),
))

import pendulum
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
bag = DagBag(dag_folder=str(repo / "dags"))
assert not bag.import_errors, bag.import_errors
# What the dag-processor does: store the DAGs and activate their Assets (outlets must be active).
DagBundlesManager().sync_bundles_to_db()
sync_bag_to_db(bag, "dags-folder", None)

runs = []
def run(dag_id, conf):
    dag_run = bag.dags[dag_id].test(
        logical_date=pendulum.datetime(2026, 4, 1, tz="UTC").add(hours=len(runs)), run_conf=conf
    )
    tis = dag_run.get_task_instances()
    outcome = {
        "dag_id": dag_id, "conf": conf, "state": str(dag_run.state),
        "tasks": {ti.task_id: str(ti.state) for ti in tis},
        "xcom": {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in tis},
    }
    runs.append(outcome)
    if outcome["state"] != "success":
        raise SystemExit("OUTCOME " + json.dumps({"runs": runs, "failed": dag_id}, default=str))
    return outcome

name = plan["dataset"]
for ds in plan["days"]:
    run(f"{name}_ingestion", {"ds": ds})
    run(f"{name}_validation", {"ds": ds})
trained = run(f"{name}_training", {"ds": plan["train_ds"], "max_trials": 1, "parallel_trials": 1,
                                   "epochs": 40})
registered = trained["xcom"]["register_model"]
if registered["approval"] != "Approved":
    # The approval DAG waits for a person, which dag.test() cannot answer: record the decision.
    from include.registry import approve_pending_version
    approve_pending_version(name, registered["version"], "e2e test", "first model of the dataset")
run(f"{name}_scoring", {"ds": plan["score_ds"]})
run(f"{name}_monitoring", {"ds": plan["score_ds"]})

from include.config import get_settings
from include.registry import registry_for
champion = registry_for(get_settings()).approved_version(name)
print("OUTCOME " + json.dumps({
    "runs": runs, "generated": summary,
    "champion": {"version": champion.version, "metrics": champion.metrics},
}, default=str))
"""


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory, migrated_airflow_home, repo_root) -> dict:
    work = tmp_path_factory.mktemp("second_dataset")
    lake = work / "lake"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(migrated_airflow_home),
        "PIPELINE_TARGET": "local",
        "HEADRACE_LAKE_ROOT": lake.as_uri(),
        "HEADRACE_LOCAL_RUNS_DIR": str(work / "runs"),
        "HEADRACE_PII_SALT": "e2e-test-only-salt-0123456789",  # pragma: allowlist secret
    }
    plan = {
        "dataset": DATASET, "days": list(DAYS), "rows": ROWS_PER_DAY, "drifted": list(DRIFTED),
        "train_ds": TRAIN_DS, "score_ds": SCORE_DS,
    }  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(repo_root), str(lake), json.dumps(plan)],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    lines = [line for line in completed.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert lines, f"no outcome (exit {completed.returncode}):\n{completed.stderr[-6000:]}"
    outcome = json.loads(lines[-1].removeprefix("OUTCOME "))
    assert "failed" not in outcome, (
        f"{outcome['failed']} failed: {outcome['runs'][-1]['tasks']}\n{completed.stderr[-6000:]}"
    )
    return {"outcome": outcome, "lake": lake}


def runs_of(lifecycle: dict, dag_id: str) -> list[dict]:
    return [run for run in lifecycle["outcome"]["runs"] if run["dag_id"] == dag_id]


def test_every_stage_ran_from_the_factories(lifecycle):
    ran = {run["dag_id"] for run in lifecycle["outcome"]["runs"]}
    assert {f"{DATASET}_{stage}" for stage in
            ("ingestion", "validation", "training", "scoring", "monitoring")} <= ran  # fmt: skip
    assert all(run["state"] == "success" for run in lifecycle["outcome"]["runs"])


def test_ingestion_loses_no_row(lifecycle):
    for ds in DAYS:
        manifest = json.loads(
            (lifecycle["lake"] / "curated" / DATASET / f"ds={ds}" / "_manifest.json").read_text()
        )
        totals = manifest["totals"]
        assert totals["rows_read"] == ROWS_PER_DAY
        assert totals["rows_read"] == totals["rows_accepted"] + totals["rows_quarantined"]
        # The generator writes only valid rows: everything is accepted.
        assert totals["rows_accepted"] == ROWS_PER_DAY, totals["quarantined_by_code"]


def test_the_quality_gate_passed_and_features_were_built(lifecycle):
    for run, ds in zip(runs_of(lifecycle, f"{DATASET}_validation"), DAYS, strict=True):
        gate = run["xcom"]["quality_gate"]
        assert (gate["ds"], gate["passed"]) == (ds, True)
        assert run["tasks"]["features"] == "success"


def test_a_model_was_registered_that_beats_chance(lifecycle):
    (training,) = runs_of(lifecycle, f"{DATASET}_training")
    registered = training["xcom"]["register_model"]
    champion = lifecycle["outcome"]["champion"]
    assert champion["version"] == registered["version"]
    # A model that learned nothing scores 0.5; the generated label depends on the features.
    assert champion["metrics"]["roc_auc"] > 0.7, champion["metrics"]
    card = json.loads(Path(registered["card_uri"].removeprefix("file://")).read_text())
    # The fairness groups come from the spec's features.sensitive_groups.
    assert set(card["fairness"]) >= {"region", "employment_status"}, card["fairness"].keys()


def test_every_features_row_was_scored(lifecycle):
    features = json.loads(
        (lifecycle["lake"] / "features" / DATASET / f"ds={SCORE_DS}" / "_manifest.json").read_text()
    )
    features_rows = sum(split["rows"] for split in features["splits"].values())
    (scoring,) = runs_of(lifecycle, f"{DATASET}_scoring")
    assert scoring["xcom"]["commit_predictions"]["rows"] == features_rows == ROWS_PER_DAY


def test_the_drift_check_wrote_its_report_and_caught_the_planted_drift(lifecycle):
    (monitoring,) = runs_of(lifecycle, f"{DATASET}_monitoring")
    result = monitoring["xcom"]["drift_check"]
    assert set(DRIFTED) <= set(result["drifted_features"]), result["drifted_features"]
    report = lifecycle["lake"] / "reports" / DATASET / "drift" / f"ds={SCORE_DS}"
    assert (report / "drift_report.html").stat().st_size > 1000
    assert monitoring["tasks"]["emit_drift_event"] == "success"
