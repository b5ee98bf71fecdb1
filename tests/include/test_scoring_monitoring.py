"""Scoring and monitoring end to end on the local target, with the generator's drift knob.

A model is trained by train.py on day 1 of the churn generator (seed 7), its monitoring baseline
is written from that day's curated partition joined with the model's own scores of it, and it is registered as the approved version in
the local (MLflow) registry. Two days are then scored through the real steps — input prep, the
local transform runtime, the predictions commit — and checked for drift:

- 2026-01-02: seed 7's day 2, with drift planted on ``sessions`` and ``region``;
- 2026-01-03: seed 8's day 1, new customers from the same distributions (no drift).

The drift day reports exactly the planted features at churn.monitoring.yaml's thresholds, plus
the model's score (the model reads ``sessions``, so its prediction distribution moves too), and
the real ``churn_monitoring`` DAG (run by ``dag.test()``) emits a ``churn_drift`` asset event
whose extra lists them; the other day reports nothing and emits no event. The real
``churn_scoring`` DAG re-scores a day to the same predictions bytes and emits the predictions
event. 20,000 rows a day.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from include.datagen.churn import DriftPlan
from include.local_transform import DEFAULT_MAX_RECORDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scoring_helpers as helpers

# Slow (runs the local training and transform runtimes): left out of `make test-fast`.
pytestmark = pytest.mark.slow

ROWS = 20_000
TRAIN_DS, DRIFT_DS, CALM_DS = "2026-01-01", "2026-01-02", "2026-01-03"
PLANTED = ("sessions", "region")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The local lake: curated and features partitions of three days, the approved model."""
    from include.config import get_settings
    from include.registry import APPROVED, MLflowModelRegistry
    from include.training_pipeline import baseline_uri

    root = tmp_path_factory.mktemp("scoring-lake")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIPELINE_TARGET", "local")
        patch.setenv("HEADRACE_LAKE_ROOT", f"file://{root / 'lake'}")
        patch.setenv("HEADRACE_LOCAL_RUNS_DIR", str(root / "runs"))
        get_settings.cache_clear()
        settings = get_settings()
        seed7 = helpers.generate_days(
            root / "seed7", seed=7, days=2, rows=ROWS,
            drift=DriftPlan(days=(pd.Timestamp(DRIFT_DS).date(),), features=PLANTED),
        )  # fmt: skip
        seed8 = helpers.generate_days(root / "seed8", seed=8, days=1, rows=ROWS)
        sources = {TRAIN_DS: seed7[TRAIN_DS], DRIFT_DS: seed7[DRIFT_DS], CALM_DS: seed8[TRAIN_DS]}
        lake_root = root / "lake"
        for ds, path in sources.items():
            curated = helpers.read_landing(path)
            helpers.write_curated_partition(lake_root / "curated", ds, curated)
            helpers.write_features_partition(
                lake_root / "features", ds, helpers.feature_rows(curated)
            )
        model_dir = helpers.train_model(lake_root / "features" / "churn" / f"ds={TRAIN_DS}",
                                        root / "train")  # fmt: skip
        # Laid out as a training job's output: model.tar.gz and output.tar.gz side by side.
        job_output = lake_root / "models" / "churn" / "jobs" / "tiny" / "output"
        model_uri = helpers.package_model(model_dir, job_output / "model.tar.gz")
        helpers.package_model(root / "train" / "output" / "data", job_output / "output.tar.gz")
        job = {"job_name": "tiny", "model_uri": model_uri}
        helpers.write_training_baseline(settings, "churn", TRAIN_DS, job)
        registry = MLflowModelRegistry(settings.zone_uri("models"))
        version = registry.register_version(
            "churn", model_uri=model_uri, metrics={"roc_auc": 0.7}, data_version="test",
            code_version="test", hyperparameters={}, evaluation_uri="",
            baseline_uri=baseline_uri(settings, "churn", TRAIN_DS, "tiny"), approval=APPROVED,
            approval_reason="the test's champion",
        )  # fmt: skip
        yield {"root": root, "settings": settings, "version": version.version,
               "env": {"PIPELINE_TARGET": "local", "HEADRACE_LAKE_ROOT": settings.lake_root,
                       "HEADRACE_LOCAL_RUNS_DIR": str(root / "runs")}}  # fmt: skip
    get_settings.cache_clear()


def score_day(settings, ds: str, job_name: str) -> dict:
    """The scoring DAG's steps: the input job, the local transform (the operator's request
    bodies), the predictions job and the commit."""
    from include.local_transform import run_transform_job
    from include.sagemaker_requests import build_model_request, build_transform_job_request
    from include.scoring_pipeline import champion_model, transform_output_uri

    model = champion_model(settings, "churn")
    plan, prepared = helpers.write_scoring_input(settings, "churn", ds, model, f"in-{job_name}")
    output_uri = f"{transform_output_uri(settings, 'churn', ds)}/{job_name}"
    request = build_transform_job_request(
        settings, job_name=job_name, model_name=model["model_name"],
        input_uri=plan["input_uri"], output_uri=output_uri, id_columns=model["id_columns"],
    )  # fmt: skip
    model_request = build_model_request(
        settings, model_name=model["model_name"], model_uri=model["model_uri"]
    )
    # The operator's mini-batch size: the same model, data and mini-batches give the same bytes
    # (another mini-batch size moves a few scores by a float32 rounding step).
    run_transform_job(
        request,
        model_request,
        work_root=settings.local_runs_root,
        max_records=DEFAULT_MAX_RECORDS,
    )
    committed = helpers.commit_transform_output(
        settings, "churn", ds, output_uri=output_uri, model=model, scoring_input=plan,
        job_name=f"out-{job_name}",
    )  # fmt: skip
    return {"model": model, "plan": plan, "prepared": prepared, "committed": committed,
            "output_uri": output_uri}  # fmt: skip


@pytest.fixture(scope="module")
def scored(lake):
    return {ds: score_day(lake["settings"], ds, f"score-{ds}") for ds in (DRIFT_DS, CALM_DS)}


def test_every_customer_of_the_day_is_scored_once_with_the_champion(lake, scored):
    from include.scoring_pipeline import read_predictions

    for ds in (DRIFT_DS, CALM_DS):
        assert scored[ds]["prepared"] == {"rows": ROWS, "files": ["part-00000.csv"]}
        manifest, predictions = read_predictions(lake["settings"], "churn", ds)
        assert manifest["rows"] == len(predictions) == ROWS
        assert manifest["model_version"] == lake["version"]
        assert list(predictions.columns) == ["customer_id", "snapshot_date", "score",
                                             "model_version"]  # fmt: skip
        assert predictions["customer_id"].is_unique
        assert predictions["score"].between(0, 1).all()
        assert (predictions["model_version"] == lake["version"]).all()


def test_scoring_input_lines_are_ids_then_the_models_features_and_layouts_never_mix(lake, scored):
    model = scored[CALM_DS]["model"]
    small, facts = helpers.write_scoring_input(
        lake["settings"], "churn", CALM_DS, model, "in-small", rows_per_file=7000
    )

    # Another file size is another folder: a re-run never leaves stale parts beside new ones.
    assert small["input_uri"] != scored[CALM_DS]["plan"]["input_uri"]
    assert facts == {"rows": ROWS, "files": ["part-00000.csv", "part-00001.csv", "part-00002.csv"]}
    files = sorted(Path(small["input_uri"].removeprefix("file://")).iterdir())
    assert [f.name for f in files] == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    lines = pd.concat(
        [pd.read_csv(f, header=None, names=[*model["id_columns"], *model["features"]])
         for f in files], ignore_index=True,
    )  # fmt: skip
    features = pd.read_parquet(
        Path(lake["settings"].zone_uri("features").removeprefix("file://")) / "churn"
        / f"ds={CALM_DS}"
    )  # fmt: skip
    assert len(lines) == facts["rows"] == ROWS
    assert sorted(lines["customer_id"]) == sorted(features["customer_id"])
    expected = features.set_index("customer_id").loc[lines["customer_id"], model["features"]]
    assert (lines[model["features"]].to_numpy() == expected.to_numpy()).all()


def test_only_the_files_the_features_manifest_lists_are_scored(lake):
    from include.scoring_pipeline import champion_model

    settings = lake["settings"]
    features_root = Path(settings.zone_uri("features").removeprefix("file://"))
    calm = pd.read_parquet(features_root / "churn" / f"ds={CALM_DS}").drop(columns="split")
    ds = "2026-01-04"
    partition = helpers.write_features_partition(features_root, ds, calm.iloc[:500])
    # A file of an earlier or unfinished commit, beside the committed ones: not in the manifest.
    calm.iloc[500:800].to_parquet(partition / "split=train" / "part-00001.parquet", index=False)

    model = champion_model(settings, "churn")
    plan, facts = helpers.write_scoring_input(settings, "churn", ds, model, "in-listed")

    assert facts["rows"] == 500
    files = sorted(Path(plan["input_uri"].removeprefix("file://")).iterdir())
    lines = pd.concat(
        [pd.read_csv(f, header=None, names=[*model["id_columns"], *model["features"]])
         for f in files], ignore_index=True,
    )  # fmt: skip
    assert sorted(lines["customer_id"]) == sorted(calm["customer_id"].iloc[:500])


def test_a_features_manifest_without_a_file_list_fails_naming_it(lake):
    from include.scoring_pipeline import ScoringError, champion_model, scoring_input_plan

    settings = lake["settings"]
    features_root = Path(settings.zone_uri("features").removeprefix("file://"))
    partition = features_root / "churn" / "ds=2026-01-05"
    (partition / "split=train").mkdir(parents=True)
    pd.DataFrame({"customer_id": ["C1"]}).to_parquet(partition / "split=train" / "part-0.parquet")
    (partition / "_manifest.json").write_text(json.dumps({"dataset": "churn"}))
    with pytest.raises(ScoringError, match=r"ds=2026-01-05/_manifest.json: .*has no outputs"):
        scoring_input_plan(settings, "churn", "2026-01-05", champion_model(settings, "churn"))


def test_recommitting_the_same_output_writes_identical_bytes(lake, scored):
    settings = lake["settings"]
    manifest_path = Path(scored[CALM_DS]["committed"]["manifest_uri"].removeprefix("file://"))
    before = manifest_path.read_bytes()
    helpers.commit_transform_output(
        settings, "churn", CALM_DS, output_uri=scored[CALM_DS]["output_uri"],
        model=scored[CALM_DS]["model"], scoring_input=scored[CALM_DS]["plan"],
        job_name="out-again",
    )  # fmt: skip
    assert manifest_path.read_bytes() == before
    # One folder: the re-run did not add a second copy of the rows.
    assert len([p for p in manifest_path.parent.iterdir() if p.is_dir()]) == 1


def test_a_transform_that_lost_a_record_fails_the_predictions_job(lake, scored, tmp_path):
    from include.local_jobs import LocalJobError
    from include.scoring_pipeline import transform_output_uri

    settings = lake["settings"]
    source = Path(scored[CALM_DS]["output_uri"].removeprefix("file://"))
    short = Path(transform_output_uri(settings, "churn", CALM_DS).removeprefix("file://")) / "cut"
    short.mkdir(parents=True)
    for out in source.glob("*.out"):
        (short / out.name).write_text("".join(out.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(LocalJobError, match=rf"wrote {ROWS - 1} predictions for {ROWS} input"):
        helpers.commit_transform_output(
            settings, "churn", CALM_DS, output_uri=short.as_uri(),
            model=scored[CALM_DS]["model"], scoring_input=scored[CALM_DS]["plan"],
            job_name="out-cut",
        )  # fmt: skip


def test_planted_drift_reports_exactly_the_planted_features(lake, scored, caplog):
    with caplog.at_level(logging.INFO, logger="headrace.scoring"):
        result = helpers.run_drift_check(lake["settings"], "churn", DRIFT_DS, "drift-planted")

    # The model reads sessions, so its score moves with it: prediction drift is reported too.
    assert sorted(result["drifted_features"]) == sorted([*PLANTED, "score"])
    assert result["model_version"] == lake["version"]
    uris = result["uris"]
    violations = json.loads(Path(uris["constraint_violations"].removeprefix("file://")).read_text())
    assert {v["feature_name"] for v in violations["violations"]} == {*PLANTED, "score"}
    assert uris["constraint_violations"].endswith(
        f"/monitoring/churn/model_version={lake['version']}/ds={DRIFT_DS}/constraint_violations.json"
    )
    statistics = json.loads(Path(uris["statistics"].removeprefix("file://")).read_text())
    assert statistics["dataset"]["item_count"] == ROWS
    html = Path(uris["html"].removeprefix("file://")).read_text()
    assert f"/reports/churn/drift/ds={DRIFT_DS}/" in uris["html"]
    assert html.count("data:image/png;base64,") == len(PLANTED) + 1  # a plot per drifted column
    (verdict,) = [r.getMessage() for r in caplog.records if "drift churn" in r.getMessage()]
    assert "drift: 3 of" in verdict and "sessions" in verdict and "region" in verdict
    assert "score psi=" in verdict


def test_no_drift_reports_nothing(lake, scored):
    result = helpers.run_drift_check(lake["settings"], "churn", CALM_DS, "drift-calm")
    assert result["drifted_features"] == []
    assert result["verdict"].startswith("no drift: 0 of")
    violations = json.loads(
        Path(result["uris"]["constraint_violations"].removeprefix("file://")).read_text()
    )
    assert violations == {"violations": []}


def test_local_alert_is_a_log_line_and_a_file(lake, scored, caplog):
    from include.scoring_pipeline import raise_drift_alert

    result = helpers.run_drift_check(lake["settings"], "churn", DRIFT_DS, "drift-alert")
    with caplog.at_level(logging.WARNING, logger="headrace.scoring"):
        alert = raise_drift_alert(lake["settings"], result)
    alert_file = json.loads(Path(alert["alert_uri"].removeprefix("file://")).read_text())
    assert sorted(alert_file["drifted_features"]) == sorted([*PLANTED, "score"])
    assert alert_file["ds"] == DRIFT_DS and alert["sns_message_id"] is None
    assert any(
        "ALERT headrace: churn drift on 2026-01-02" in r.getMessage() for r in caplog.records
    )


@pytest.fixture(scope="module")
def dag_runs(lake, scored, migrated_airflow_home, repo_root) -> dict:
    """``dag.test()`` of the real scoring DAG for the calm day, then of the monitoring DAG for
    both days, in one subprocess (Airflow's start-up paid once); the outcome per DAG and day, and
    the calm day's predictions manifest as it was before."""
    manifest_path = Path(scored[CALM_DS]["committed"]["manifest_uri"].removeprefix("file://"))
    before = manifest_path.read_bytes()
    env = {**os.environ, **lake["env"], "AIRFLOW_HOME": str(migrated_airflow_home)}
    runs = [
        f"churn_scoring:{CALM_DS}",
        f"churn_monitoring:{DRIFT_DS}",
        f"churn_monitoring:{CALM_DS}",
    ]
    completed = subprocess.run(
        [sys.executable, "tests/include/scoring_dag_run.py", *runs],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    lines = [line for line in completed.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert lines, f"no outcome (exit {completed.returncode}):\n{completed.stderr[-4000:]}"
    outcome = json.loads(lines[-1].removeprefix("OUTCOME "))
    return {**outcome, "manifest_path": manifest_path, "manifest_before": before}


@pytest.mark.e2e
def test_the_scoring_dag_rescores_a_day_to_the_same_bytes_and_emits_the_predictions_event(
    lake, dag_runs
):
    outcome = dag_runs["churn_scoring"][CALM_DS]

    assert outcome["dag_run_state"] == "success", outcome["tasks"]
    assert outcome["events"] == [
        {"asset": "churn_predictions", "extra": {"ds": CALM_DS, "model_version": lake["version"]}}
    ]
    assert outcome["xcom"]["transform"]["job_name"].startswith("headrace-churn-scoring-transform-")
    assert outcome["xcom"]["commit_predictions"]["rows"] == ROWS
    assert outcome["tasks"] == dict.fromkeys(
        ["champion", "scoring_plan", "scoring_input", "transform", "predictions_plan", "predictions",
         "commit_predictions"], "success",
    )  # fmt: skip
    # A new transform job, the same model and data: the committed partition is byte-identical.
    assert dag_runs["manifest_path"].read_bytes() == dag_runs["manifest_before"]


@pytest.mark.e2e
def test_the_monitoring_dag_emits_the_drift_event_only_for_the_drifted_day(lake, dag_runs):
    drifted, calm = dag_runs["churn_monitoring"][DRIFT_DS], dag_runs["churn_monitoring"][CALM_DS]

    assert drifted["dag_run_state"] == calm["dag_run_state"] == "success"
    assert drifted["tasks"] == {"drift_plan": "success", "drift_job": "success",
                                "drift_check": "success", "drift_found": "success",
                                "emit_drift_event": "success", "alert": "success"}  # fmt: skip
    assert drifted["xcom"]["drift_job"]["job_name"].startswith("headrace-churn-monitoring-drift-")
    (event,) = drifted["events"]
    assert event["asset"] == "churn_drift"
    assert event["extra"]["ds"] == DRIFT_DS
    assert event["extra"]["model_version"] == lake["version"]
    assert sorted(event["extra"]["drifted_features"]) == sorted([*PLANTED, "score"])
    # Without drift the tasks after the check are skipped, and a skipped task emits no event.
    assert calm["tasks"]["emit_drift_event"] == calm["tasks"]["alert"] == "skipped"
    assert calm["events"] == []


def test_scoring_waits_for_a_first_model_instead_of_failing(tmp_path, monkeypatch, lake):
    """With no approved version yet the DAG's first task is not done (it pokes again later);
    with one it hands the champion's facts on."""
    from include.config import get_settings
    from include.pipelines.scoring import scoring_dag

    sensor = scoring_dag("churn").get_task("champion")
    monkeypatch.setenv("HEADRACE_LAKE_ROOT", f"file://{tmp_path / 'empty-lake'}")
    get_settings.cache_clear()
    try:
        waiting = sensor.python_callable()
    finally:
        get_settings.cache_clear()
    assert waiting.is_done is False
    assert sensor.mode == "reschedule"

    monkeypatch.setenv("HEADRACE_LAKE_ROOT", lake["settings"].lake_root)
    try:
        found = sensor.python_callable()
    finally:
        get_settings.cache_clear()
    assert found.is_done is True and found.xcom_value["version"] == lake["version"]
