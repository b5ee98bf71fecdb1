"""The reconciliation report: every day of a dataset with how far it came, and stuck or failed
days with the reason — on a small lake written the way the stages write it (the gate's, the
scoring's and the drift check's own writers; the ingest and features manifests as their Spark
jobs lay them out), with commit times set back to make days old."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.config import ConfigError, load_settings

DATASET = "churn"
ONE_FILE = ("files", 1)
KNOWN = ["churn", "benefit_claims"]


@pytest.fixture
def lake(tmp_path):
    return tmp_path / "lake"


@pytest.fixture
def settings(lake):
    return load_settings({"HEADRACE_LAKE_ROOT": lake.as_uri()})


def set_age(path: Path, hours: float) -> None:
    """Make ``path`` look committed ``hours`` ago (the report reads objects' modification times)."""
    when = (datetime.now(UTC) - timedelta(hours=hours)).timestamp()
    os.utime(path, (when, when))


def land(lake: Path, ds: str, name: str = "part-0.csv", data: str = "a,b\n1,2\n", *,
         hours: float = 30, dataset: str = DATASET) -> Path:  # fmt: skip
    path = lake / "landing" / dataset / f"ds={ds}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    set_age(path, hours)
    return path


def ingest(lake: Path, ds: str, *, accepted: int = 98, quarantined: int = 2, hours: float = 29):
    """The curated manifest the ingest job commits (spark_jobs/ingest.py build_manifest's keys),
    naming the day's landing files as its inputs."""
    landing = lake / "landing" / DATASET / f"ds={ds}"
    inputs = [
        {"name": p.name, "size_bytes": p.stat().st_size, "rows_read": accepted + quarantined}
        for p in sorted(landing.iterdir())
        if not p.name.startswith(("_", "."))
    ]
    manifest = {
        "job": "spark_jobs.ingest",
        "dataset": DATASET,
        "ds": ds,
        "inputs": inputs,
        "totals": {
            "files": len(inputs),
            "rows_read": accepted + quarantined,
            "rows_accepted": accepted,
            "rows_quarantined": quarantined,
            "quarantined_by_code": {"type_mismatch": quarantined},
        },
    }
    path = lake / "curated" / DATASET / f"ds={ds}" / "_manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    set_age(path, hours)


def validate(lake: Path, ds: str, *, failing: str | None = None, hours: float = 28):
    """The gate's result.json and report.html, by the gate's own writer."""
    from include.dq.gate import quality_report_uri, write_gate_outputs
    from include.dq.results import FAIL, PASS, GateResult, RuleOutcome

    outcomes = [
        RuleOutcome(rule="unique_customer_id", kind="unique", column="customer_id",
                    severity="error", status=PASS, expected={}),
        RuleOutcome(rule="allowed_values_region", kind="allowed_values", column="region",
                    severity="error", status=FAIL if failing else PASS, expected={},
                    unexpected_count=1 if failing else None),
        RuleOutcome(rule="row_count_vs_previous", kind="row_count", column="*",
                    severity="warn", status=FAIL, expected={}),
    ]  # fmt: skip
    write_gate_outputs(GateResult(DATASET, ds, "great_expectations", outcomes), lake.as_uri())
    folder = Path(quality_report_uri(lake.as_uri(), DATASET, ds).removeprefix("file://"))
    for path in folder.iterdir():
        set_age(path, hours)


def featurize(lake: Path, ds: str, *, hours: float = 27):
    """The features manifest the features job commits (spark_jobs/features.py's keys)."""
    manifest = {
        "job": "spark_jobs.features",
        "dataset": DATASET,
        "ds": ds,
        "splits": {
            "train": {"rows": 70, "label_mean": 0.2},
            "validation": {"rows": 15, "label_mean": 0.2},
            "test": {"rows": 13, "label_mean": 0.2},
        },
        "missing_days": ["2025-12-31"],
        "window": {
            "days": ["2025-12-31", ds],
            "used": [ds],
            "missing": ["2025-12-31"],
            "not_validated": [],
            "failed_gate": [],
            "reasons": {"2025-12-31": "no committed curated partition"},
        },
        "outputs": {"uri": "", "files": []},
    }
    path = lake / "features" / DATASET / f"ds={ds}" / "_manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    set_age(path, hours)


def score(settings, lake: Path, ds: str, *, version: str = "3", hours: float = 26):
    """The predictions partition by the scoring's own steps: the predictions job's body over a
    transform's ``.out`` lines (run here, its upload a copy), then the worker's commit."""
    from include.scoring_job import (
        FACTS_OUTPUT,
        PLAN_FILE,
        PLAN_INPUT,
        PREDICTIONS_OUTPUT,
        TRANSFORM_OUTPUT_INPUT,
        predictions_plan,
        run_predictions_job,
    )
    from include.scoring_pipeline import commit_predictions, predictions_partition_uri

    root = lake.parent / "processing" / ds
    (root / "input" / PLAN_INPUT).mkdir(parents=True)
    (root / "input" / PLAN_INPUT / PLAN_FILE).write_bytes(
        predictions_plan(model_version=version, id_columns=["customer_id"], expected_rows=98)
    )
    (root / "input" / TRANSFORM_OUTPUT_INPUT).mkdir()
    out = root / "input" / TRANSFORM_OUTPUT_INPUT / "part-00000.csv.out"
    out.write_text("".join(f"C{i:09d},0.{i % 10}\n" for i in range(98)))
    run_predictions_job(root)
    folder = f"{predictions_partition_uri(settings, DATASET, ds)}/j1"
    shutil.copytree(root / "output" / PREDICTIONS_OUTPUT, folder.removeprefix("file://"))
    model = {"version": version, "model_uri": "file:///models/3", "id_columns": ["customer_id"]}
    plan = {"outputs": {PREDICTIONS_OUTPUT: folder,
                        FACTS_OUTPUT: (root / "output" / FACTS_OUTPUT).as_uri()}}  # fmt: skip
    committed = commit_predictions(settings, DATASET, ds, model=model, plan=plan)
    set_age(Path(committed["manifest_uri"].removeprefix("file://")), hours)


def monitor(settings, ds: str, *, version: str = "3", hours: float = 25):
    """The drift check's files by its own writer (a report with no monitored column)."""
    from include.monitoring.drift import DriftReport
    from include.monitoring.job import write_drift_files
    from include.monitoring.report import write_drift_html
    from include.scoring_pipeline import drift_report_uri, monitoring_uri

    report = DriftReport(item_count=98, reference_item_count=1000, features=[], statistics={})
    folder = Path(monitoring_uri(settings, DATASET, version, ds).removeprefix("file://"))
    paths = [*write_drift_files(report, folder).values()]
    html = write_drift_html(report, drift_report_uri(settings, DATASET, ds))
    for path in [*paths, Path(html.removeprefix("file://"))]:
        set_age(path, hours)


def through_every_stage(settings, lake: Path, ds: str) -> None:
    land(lake, ds, hours=30)
    ingest(lake, ds, hours=29)
    validate(lake, ds, hours=28)
    featurize(lake, ds, hours=27)
    score(settings, lake, ds, hours=26)
    monitor(settings, ds, hours=25)


def report_of(settings, **kwargs):
    from include.reconciliation import build_report

    kwargs.setdefault("rule", ONE_FILE)
    kwargs.setdefault("stuck_after_hours", 6)
    return build_report(settings, DATASET, known_datasets=KNOWN, **kwargs)


def rows(report) -> dict[str, dict]:
    return {row["ds"]: row for row in report["days"]}


# --- days ----------------------------------------------------------------------------------


def test_a_day_through_every_stage_is_done_with_every_stages_facts(settings, lake):
    through_every_stage(settings, lake, "2026-01-05")
    report = report_of(settings)
    (row,) = report["days"]
    assert (row["ds"], row["stage"], row["status"], row["reason"]) == (
        "2026-01-05", "monitored", "done", ""
    )  # fmt: skip
    assert row["landed"]["files"] == 1 and row["landed"]["bytes"] == len("a,b\n1,2\n")
    assert row["landed"]["complete"] is True
    assert (row["curated"]["rows_accepted"], row["curated"]["rows_quarantined"]) == (98, 2)
    assert row["gate"] == {
        "verdict": "pass",
        "engine": "great_expectations",
        "failed_error_rules": [],
        "failed_warn_rules": ["row_count_vs_previous"],
    }
    assert row["features"]["rows"] == 98
    assert row["features"]["left_out_days"] == {"2025-12-31": "no committed curated partition"}
    assert row["scored"] == {"rows": 98, "model_version": "3"}
    assert row["drift"]["verdict"].startswith("no drift: 0 of 0 features")
    assert row["model_version"] == "3"
    # At its last stage since the drift check committed, 25 hours ago.
    assert row["hours_at_stage"] == pytest.approx(25, abs=0.2)
    assert row["links"] == {
        "quality_report": "../quality/ds=2026-01-05/report.html",
        "drift_report": "../drift/ds=2026-01-05/drift_report.html",
    }
    assert report["counts"] == {"days": 1, "done": 1, "waiting": 0, "stuck": 0, "failed": 0}
    assert report["attention"] == []


def test_a_day_that_failed_the_gate_is_failed_naming_the_rule(settings, lake):
    land(lake, "2026-01-06")
    ingest(lake, "2026-01-06")
    validate(lake, "2026-01-06", failing="allowed_values_region")
    row = rows(report_of(settings))["2026-01-06"]
    assert (row["stage"], row["status"]) == ("curated", "failed")
    # The warn rule that also failed does not block, and is not named as the reason.
    assert row["reason"] == "gate failed: allowed_values_region"
    assert row["gate"]["verdict"] == "fail"


def test_a_day_that_never_completes_is_waiting_then_stuck_with_what_it_waits_for(settings, lake):
    marker = ("marker", "_SUCCESS")
    land(lake, "2026-01-07", "part-0.csv", hours=8)
    land(lake, "2026-01-08", "part-0.csv", hours=1)
    days = rows(report_of(settings, rule=marker, stuck_after_hours=6))
    stuck, waiting = days["2026-01-07"], days["2026-01-08"]
    assert (stuck["stage"], stuck["status"]) == ("landed", "stuck")
    assert stuck["reason"].startswith(
        "landing incomplete: the producer's completion marker _SUCCESS has not landed (8.0 h"
    )
    assert stuck["landed"]["complete"] is False
    assert (waiting["status"], waiting["hours_at_stage"]) == ("waiting", 1.0)
    # With the marker, the day is complete, and then waits for (or is stuck before) ingestion.
    land(lake, "2026-01-07", "_SUCCESS", data="", hours=7)
    row = rows(report_of(settings, rule=marker))["2026-01-07"]
    assert (row["status"], row["reason"]) == (
        "stuck", "landed, not ingested after 7.0 h (ingestion failed or never ran)"
    )  # fmt: skip


def test_a_day_key_that_is_not_a_date_is_failed_with_the_reason(settings, lake):
    land(lake, "2026-13-45")
    land(lake, "20260107")
    days = rows(report_of(settings))
    assert days["2026-13-45"]["status"] == "failed"
    assert days["2026-13-45"]["reason"].startswith("not a date: ")
    assert "is not a date" in days["2026-13-45"]["reason"]
    assert days["20260107"]["reason"] == "not a date: ds=20260107 is not YYYY-MM-DD"


def test_a_day_curated_but_never_validated_is_stuck_after_the_threshold(settings, lake):
    land(lake, "2026-01-09", hours=10)
    ingest(lake, "2026-01-09", hours=7.5)
    land(lake, "2026-01-10", hours=3)
    ingest(lake, "2026-01-10", hours=2)
    days = rows(report_of(settings, stuck_after_hours=6))
    assert (days["2026-01-09"]["stage"], days["2026-01-09"]["status"]) == ("curated", "stuck")
    assert days["2026-01-09"]["reason"] == (
        "ingested, no quality verdict after 7.5 h (validation failed or never ran)"
    )
    assert days["2026-01-10"]["status"] == "waiting"
    assert days["2026-01-10"]["reason"] == "ingested 2.0 h ago, waiting for the quality gate"


def test_a_day_re_ingested_after_its_verdict_waits_for_a_new_verdict(settings, lake):
    through_every_stage(settings, lake, "2026-01-05")
    ingest(lake, "2026-01-05", hours=1)  # a re-run: the manifest is newer than the verdict
    row = rows(report_of(settings))["2026-01-05"]
    assert (row["stage"], row["status"]) == ("curated", "waiting")
    assert row["reason"] == "re-ingested 1.0 h ago, waiting for the quality gate"


def test_a_late_landing_file_waits_for_re_ingestion(settings, lake):
    through_every_stage(settings, lake, "2026-01-05")
    land(lake, "2026-01-05", "part-1.csv", hours=9)
    row = rows(report_of(settings))["2026-01-05"]
    assert (row["stage"], row["status"]) == ("curated", "stuck")
    assert row["reason"].startswith("landing files changed since ingestion, not re-ingested")


def test_scored_days_not_monitored_and_featurized_days_before_any_model(settings, lake):
    # 01-03 featurized before the first scored day; 01-04 scored, never monitored; 01-05 done.
    for ds in ("2026-01-03", "2026-01-04", "2026-01-05"):
        land(lake, ds)
        ingest(lake, ds)
        validate(lake, ds)
        featurize(lake, ds)
    score(settings, lake, "2026-01-04", hours=12)
    score(settings, lake, "2026-01-05")
    monitor(settings, "2026-01-05")
    days = rows(report_of(settings))
    assert days["2026-01-03"]["status"] == "done"
    assert days["2026-01-03"]["reason"].startswith("featurized before the first scored day")
    assert (days["2026-01-04"]["stage"], days["2026-01-04"]["status"]) == ("scored", "stuck")
    assert days["2026-01-04"]["reason"] == (
        "scored, no drift verdict after 12.0 h (monitoring failed or never ran)"
    )
    assert days["2026-01-05"]["status"] == "done"


def test_an_unreadable_manifest_fails_the_day_naming_the_file(settings, lake):
    land(lake, "2026-01-05")
    path = lake / "curated" / DATASET / "ds=2026-01-05" / "_manifest.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    row = rows(report_of(settings))["2026-01-05"]
    assert row["status"] == "failed"
    assert row["reason"].startswith(f"{path.as_uri().replace('%3D', '=')} is unreadable: ")


# --- the lake ------------------------------------------------------------------------------


def test_folders_of_datasets_without_a_spec_are_reported_from_landing_and_inbox(settings, lake):
    land(lake, "2026-01-05", dataset="orders")
    inbox = Path(settings.landing_inbox_uri.removeprefix("file://"))
    (inbox / "invoices").mkdir(parents=True)
    (inbox / "invoices" / "invoices_2026-01-05.csv").write_text("a\n1\n")
    (lake / "landing" / "stray.csv").write_text("a\n1\n")
    report = report_of(settings)
    unknown = {(e["where"], e["name"]): e for e in report["lake"]["unknown_datasets"]}
    assert set(unknown) == {("landing", "orders"), ("inbox", "invoices"), ("landing", "stray.csv")}
    assert unknown[("landing", "orders")]["reason"].startswith(
        "no dataset spec include/datasets/orders.yaml: no pipeline reads these files"
    )
    assert unknown[("landing", "stray.csv")]["reason"] == (
        "a file directly in the landing, outside any dataset folder"
    )
    # The inbox under the landing zone is the inbox's, not a dataset "_inbox"; churn's own
    # days are not reported as unknown.
    assert report["days"] == []
    kinds = sorted(item["kind"] for item in report["attention"])
    assert kinds == ["unknown_dataset_inbox", "unknown_dataset_landing", "unknown_dataset_landing"]


def test_files_no_stage_will_take_are_reported(settings, lake):
    land(lake, "2026-01-05")
    (lake / "landing" / DATASET / "loose.csv").write_text("a\n1\n")
    inbox = Path(settings.landing_inbox_uri.removeprefix("file://")) / DATASET
    parked = inbox / "_parked" / "no-day" / "export.csv"
    parked.parent.mkdir(parents=True)
    parked.write_text("a\n1\n")
    left = inbox / "crm_2026-01-06.csv.part"
    left.write_text("a\n1\n")
    set_age(left, 7)
    lake_report = report_of(settings)["lake"]
    assert [e["uri"].rsplit("/", 1)[1] for e in lake_report["stray_files"]] == ["loose.csv"]
    assert lake_report["inbox"]["parked"][0]["reason"] == "parked by the inbox watcher: no-day"
    (pending,) = lake_report["inbox"]["pending"]
    assert pending["status"] == "stuck" and pending["reason"].startswith("in the inbox for 7.0 h")


def test_rejected_landing_events_are_listed_with_the_reason(settings, lake):
    from include.ingestion import quarantine_rejected_events

    rejected = [{"asset": "churn_landing", "event": {"id": 7}, "reason": "ds='soon' is not a date"}]
    quarantine_rejected_events(settings, DATASET, "asset_triggered__2026-01-05", rejected)
    (entry,) = report_of(settings)["rejected_events"]
    assert (entry["run_id"], entry["event"], entry["reason"]) == (
        "asset_triggered__2026-01-05", {"id": 7}, "ds='soon' is not a date"
    )  # fmt: skip


# --- outputs and the alert -----------------------------------------------------------------


def test_the_report_is_written_as_json_html_and_a_dated_copy(settings, lake):
    from include.reconciliation import render_markdown, write_report

    through_every_stage(settings, lake, "2026-01-05")
    land(lake, "2026-01-06")
    ingest(lake, "2026-01-06")
    validate(lake, "2026-01-06", failing="allowed_values_region")
    report = report_of(settings)
    uris = write_report(settings, report)
    folder = lake / "reports" / DATASET / "reconciliation"
    assert (
        uris["json"] == f"{settings.zone_uri('reports')}/churn/reconciliation/reconciliation.json"
    )
    assert json.loads((folder / "reconciliation.json").read_text()) == report
    today = report["generated_at"][:10]
    assert json.loads((folder / "history" / f"{today}.json").read_text()) == report
    page = (folder / "reconciliation.html").read_text()
    assert "gate failed: allowed_values_region" in page
    assert "href='../quality/ds=2026-01-06/report.html'" in page
    markdown = render_markdown(report)
    assert "2 days: 1 done, 0 waiting, 0 stuck, 1 failed" in markdown
    assert "- failed: ds=2026-01-06: gate failed: allowed_values_region" in markdown
    assert (
        "| 2026-01-06 | curated | failed | 1 files, 8 B | 98 | 2 | fail (allowed_values_region)"
        in (markdown)
    )


def test_stuck_days_raise_one_alert_written_to_the_lake_and_logged(settings, lake, caplog):
    from include.reconciliation import raise_stuck_days_alert

    land(lake, "2026-01-09", hours=10)
    ingest(lake, "2026-01-09", hours=7.5)
    land(lake, "2026-01-11", hours=1)
    report = report_of(settings)
    with caplog.at_level(logging.WARNING, logger="headrace.alerts"):
        outcome = raise_stuck_days_alert(settings, report)
    today = report["generated_at"][:10]
    path = lake / "monitoring" / DATASET / "alerts" / "reconciliation" / f"{today}.json"
    assert outcome == {"alert_uri": path.as_uri().replace("%3D", "="), "sns_message_id": None}
    alert = json.loads(path.read_text())
    assert [(i["subject"], i["status"]) for i in alert["attention"]] == [("ds=2026-01-09", "stuck")]
    assert alert["attention"][0]["reason"].startswith("ingested, no quality verdict after 7.5 h")
    assert alert["report"].endswith("/reports/churn/reconciliation/reconciliation.html")
    assert any(
        "ALERT headrace: churn: 1 stuck, 0 failed days, 0 other: ds=2026-01-09: ingested, no "
        "quality verdict" in record.getMessage()
        for record in caplog.records
    )


# --- settings and storage ------------------------------------------------------------------


def test_the_stuck_threshold_is_a_validated_setting():
    assert load_settings({}).stuck_after_hours == 6.0
    assert load_settings({"HEADRACE_STUCK_AFTER_HOURS": "1.5"}).stuck_after_hours == 1.5
    for raw, message in (
        ("soon", "HEADRACE_STUCK_AFTER_HOURS='soon' is not a number of hours"),
        ("0", r"HEADRACE_STUCK_AFTER_HOURS=0\.0 must be between 0\.1 and 720\.0 hours"),
        ("nan", "HEADRACE_STUCK_AFTER_HOURS=nan must be between"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_settings({"HEADRACE_STUCK_AFTER_HOURS": raw})


def test_both_backends_list_objects_with_size_and_utc_modification_time(moto_s3, tmp_path):
    from include.storage import LocalStorage, S3Storage

    before = datetime.now(UTC) - timedelta(seconds=2)
    for storage, root in (
        (LocalStorage(), f"file://{tmp_path.as_posix()}/lake"),
        (S3Storage(region_name="eu-west-1"), f"s3://{moto_s3}/lake"),
    ):
        storage.write_bytes(f"{root}/curated/churn/ds=2026-01-05/_manifest.json", b"{}")
        storage.write_bytes(f"{root}/curated/churn/ds=2026-01-06/_manifest.json", b"{ }")
        listed = storage.list_objects(f"{root}/curated")
        assert [(o.uri, o.size) for o in listed] == [
            (f"{root}/curated/churn/ds=2026-01-05/_manifest.json", 2),
            (f"{root}/curated/churn/ds=2026-01-06/_manifest.json", 3),
        ]
        assert all(o.modified.tzinfo is not None and o.modified >= before for o in listed)
        assert storage.list_uris(f"{root}/curated") == [o.uri for o in listed]


# --- the DAG in Airflow's own task runner --------------------------------------------------

_DAG_TEST = r"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/plugins"]
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
bag = DagBag(dag_folder=sys.argv[1] + "/dags/reconciliation_dags.py")
DagBundlesManager().sync_bundles_to_db()
sync_bag_to_db(bag, "dags-folder", None)
run = bag.dags["churn_reconciliation"].test(run_conf={"stuck_after_hours": 6})
tis = {t.task_id: t for t in run.get_task_instances()}
print("OUTCOME " + json.dumps({
    "dag_run_state": str(run.state),
    "states": {task_id: str(ti.state) for task_id, ti in tis.items()},
    "xcom": tis["reconcile"].xcom_pull(task_ids="reconcile"),
}))
"""


@pytest.mark.e2e
def test_the_reconciliation_dag_writes_the_report_and_alerts_on_a_stuck_day(
    migrated_airflow_home, repo_root, tmp_path
):
    lake = tmp_path / "lake"
    settings = load_settings({"HEADRACE_LAKE_ROOT": lake.as_uri()})
    through_every_stage(settings, lake, "2026-01-05")
    land(lake, "2026-01-06", ".part-0.csv.tmp", hours=9)  # only an in-flight file: incomplete
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(migrated_airflow_home),
        "PIPELINE_TARGET": "local",
        "HEADRACE_LAKE_ROOT": lake.as_uri(),
    }
    completed = subprocess.run(
        [sys.executable, "-c", _DAG_TEST, str(repo_root)],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in completed.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert lines, f"no outcome (exit {completed.returncode}):\n{completed.stderr[-4000:]}"
    outcome = json.loads(lines[-1].removeprefix("OUTCOME "))
    assert outcome["dag_run_state"] == "success", outcome
    assert outcome["states"] == {
        "reconcile": "success", "needs_attention": "success", "alert": "success"
    }  # fmt: skip
    assert outcome["xcom"]["counts"] == {
        "days": 2,
        "done": 1,
        "waiting": 0,
        "stuck": 1,
        "failed": 0,
    }

    folder = lake / "reports" / DATASET / "reconciliation"
    report = json.loads((folder / "reconciliation.json").read_text())
    days = {row["ds"]: row for row in report["days"]}
    assert days["2026-01-05"]["status"] == "done"
    assert days["2026-01-06"]["status"] == "stuck"
    assert days["2026-01-06"]["reason"].startswith("landing incomplete: no data file has landed")
    assert (folder / "reconciliation.html").exists()
    alerts = list((lake / "monitoring" / DATASET / "alerts" / "reconciliation").glob("*.json"))
    (alert,) = (json.loads(path.read_text()) for path in alerts)
    assert [item["subject"] for item in alert["attention"]] == ["ds=2026-01-06"]
    # The Markdown summary is in the task log, where a person reads it in the UI.
    assert "| 2026-01-06 | landed | stuck |" in completed.stdout + completed.stderr


def test_the_dags_stuck_threshold_param_refuses_bad_values_naming_the_field(repo_root):
    import copy

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamValidationError

    bag = DagBag(dag_folder=str(repo_root / "dags" / "reconciliation_dags.py"), safe_mode=True)
    assert bag.import_errors == {}
    params = bag.dags["churn_reconciliation"].params
    assert params.validate() == {"stuck_after_hours": 6.0}
    for bad, reason in ((0, "less than the minimum of 0.1"), ("soon", "is not of type 'number'")):
        conf = copy.deepcopy(params)
        with pytest.raises(ParamValidationError, match=reason):
            conf.update({"stuck_after_hours": bad})  # as the trigger form merges a run's conf
            conf.validate()
