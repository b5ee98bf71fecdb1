"""The lineage our operators report (include/lineage.py), from manifests, gate results and
SageMaker descriptions in the lake's own formats. The events themselves come from the
OpenLineage provider; tests/e2e/test_file_landing.py reads them after a real run."""

from __future__ import annotations

import hashlib
import json

import pytest
from openlineage.client.serde import Serde

from include.config import load_settings
from include.dq.results import FAIL, PASS, SKIPPED, GateResult, RuleOutcome
from include.lineage import (
    drift_verdict_lineage,
    features_lineage,
    ingest_lineage,
    model_version_lineage,
    openlineage_transport,
    partitions_read,
    quality_gate_lineage,
    sagemaker_job_lineage,
)
from include.sagemaker_requests import channel_manifest

DATASET = "churn"


@pytest.fixture
def lake(tmp_path):
    return tmp_path / "lake"


@pytest.fixture
def settings(lake):
    return load_settings({"PIPELINE_TARGET": "local", "HEADRACE_LAKE_ROOT": lake.as_uri()})


def _write(path, document) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    path.write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


def _as_json(lineage) -> dict:
    """The lineage as the event carries it (the provider serializes with the client's Serde)."""
    return {
        "inputs": [json.loads(Serde.to_json(d)) for d in lineage.inputs],
        "outputs": [json.loads(Serde.to_json(d)) for d in lineage.outputs],
        "run": {k: json.loads(Serde.to_json(v)) for k, v in lineage.run_facets.items()},
    }


def test_local_events_go_to_files_in_the_lineage_zone(settings, lake):
    assert openlineage_transport(settings) == {
        "type": "file",
        "log_file_path": f"{lake.as_uri()}/lineage/events/openlineage",
    }


def test_an_ingested_day_reads_its_landing_files_and_writes_curated_and_quarantine(settings, lake):
    ds = "2026-01-07"
    landing = f"{lake.as_uri()}/landing/{DATASET}/ds={ds}"
    manifest = {
        "dataset": DATASET,
        "ds": ds,
        "landing_uri": landing,
        "inputs": [
            {"name": "part-0.csv", "size": 1200, "sha256": "a" * 64},
            {"name": "part-1.csv", "size": 800, "sha256": "b" * 64},
        ],
        "totals": {"files": 2, "rows_read": 30, "rows_accepted": 27, "rows_quarantined": 3},
        "outputs": {
            "curated": {
                "uri": f"{lake.as_uri()}/curated/{DATASET}/ds={ds}",
                "files": [{"path": "part-00000.parquet"}],
            },
            "quarantine": {
                "uri": f"{lake.as_uri()}/quarantine/{DATASET}/ds={ds}",
                "files": [{"path": "part-00000.parquet"}],
            },
        },
    }
    sha = _write(lake / "curated" / DATASET / f"ds={ds}" / "_manifest.json", manifest)

    event = _as_json(ingest_lineage(settings, DATASET, ds))

    (landing_in,) = event["inputs"]
    assert (landing_in["namespace"], landing_in["name"]) == (
        "file",
        f"{lake}/landing/churn/ds={ds}",
    )
    stats = landing_in["inputFacets"]["inputStatistics"]
    assert (stats["rowCount"], stats["size"], stats["fileCount"]) == (30, 2000, 2)
    curated, quarantine = event["outputs"]
    assert curated["name"] == f"{lake}/curated/churn/ds={ds}"
    assert curated["outputFacets"]["outputStatistics"]["rowCount"] == 27
    assert curated["facets"]["version"]["datasetVersion"] == sha
    fields = {f["name"]: f["type"] for f in curated["facets"]["schema"]["fields"]}
    assert fields["customer_id"] == "string" and "churned" in fields
    assert quarantine["name"] == f"{lake}/quarantine/churn/ds={ds}"
    assert quarantine["outputFacets"]["outputStatistics"]["rowCount"] == 3


def test_features_name_each_curated_day_of_the_window_by_the_version_ingestion_wrote(
    settings, lake
):
    ds = "2026-01-07"
    curated = f"{lake.as_uri()}/curated/{DATASET}"
    manifest = {
        "inputs": [
            {"ds": "2026-01-06", "uri": f"{curated}/ds=2026-01-06", "manifest_sha256": "c" * 64,
             "rows": 10, "files": ["part-00000.parquet"]},
            {"ds": ds, "uri": f"{curated}/ds={ds}", "manifest_sha256": "d" * 64, "rows": 12,
             "files": ["part-00000.parquet", "part-00001.parquet"]},
        ],
        "key": "customer_id",
        "features": ["tenure_days", "plan"],
        "splits": {"train": {"rows": 15}, "validation": {"rows": 3}, "test": {"rows": 4}},
        "outputs": {"uri": f"{lake.as_uri()}/features/{DATASET}/ds={ds}", "files": ["a", "b"]},
    }  # fmt: skip
    sha = _write(lake / "features" / DATASET / f"ds={ds}" / "_manifest.json", manifest)

    event = _as_json(features_lineage(settings, DATASET, ds))

    assert [(i["name"], i["facets"]["version"]["datasetVersion"]) for i in event["inputs"]] == [
        (f"{lake}/curated/churn/ds=2026-01-06", "c" * 64),
        (f"{lake}/curated/churn/ds={ds}", "d" * 64),
    ]
    assert [i["inputFacets"]["inputStatistics"]["fileCount"] for i in event["inputs"]] == [1, 2]
    (output,) = event["outputs"]
    assert output["name"] == f"{lake}/features/churn/ds={ds}"
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 22
    assert output["facets"]["version"]["datasetVersion"] == sha
    assert [f["name"] for f in output["facets"]["schema"]["fields"]] == [
        "customer_id", "tenure_days", "plan"
    ]  # fmt: skip


def test_the_gate_reports_each_judged_rule_as_an_assertion_on_the_curated_day(settings, lake):
    def outcome(rule, status, severity="error", column="plan"):
        return RuleOutcome(
            rule=rule, kind="not_null", column=column, severity=severity, status=status,
            expected={},
        )  # fmt: skip

    result = GateResult(
        dataset=DATASET,
        ds="2026-01-07",
        engine="great_expectations",
        outcomes=[
            outcome("plan_not_null", PASS),
            outcome("tenure_range", FAIL, severity="warn", column="tenure_days"),
            outcome("row_count_vs_recent", SKIPPED, column=""),
        ],
    )
    result_uri = f"{lake.as_uri()}/reports/churn/quality/ds=2026-01-07/result.json"

    event = _as_json(quality_gate_lineage(settings, result, result_uri))

    (checked,) = event["inputs"]
    assert checked["name"] == f"{lake}/curated/churn/ds=2026-01-07"
    assertions = checked["facets"]["dataQualityAssertions"]["assertions"]
    assert [(a["assertion"], a["success"], a.get("column")) for a in assertions] == [
        ("plan_not_null (not_null, error)", True, "plan"),
        ("tenure_range (not_null, warn)", False, "tenure_days"),
    ]
    assert [o["name"] for o in event["outputs"]] == [
        f"{lake}/reports/churn/quality/ds=2026-01-07/result.json"
    ]


def test_a_manifest_channel_names_the_partitions_of_the_objects_it_lists(tmp_path):
    prefix = "s3://lake-bucket/lake/features/churn/"
    keys = [
        "ds=2026-01-06/split=train/part-00000.parquet",
        "ds=2026-01-07/split=train/part-00000.parquet",
        "ds=2026-01-07/split=train/part-00001.parquet",
    ]
    manifest = tmp_path / "train.manifest.json"
    manifest.write_bytes(channel_manifest(prefix, keys))

    assert partitions_read(manifest.as_uri(), "ManifestFile") == [
        "s3://lake-bucket/lake/features/churn/ds=2026-01-06",
        "s3://lake-bucket/lake/features/churn/ds=2026-01-07",
    ]
    assert partitions_read("s3://lake-bucket/lake/x/", "S3Prefix") == ["s3://lake-bucket/lake/x"]


def test_a_training_job_reads_its_channels_but_not_its_code_and_writes_its_model(tmp_path):
    manifest = tmp_path / "train.manifest.json"
    manifest.write_bytes(
        channel_manifest("s3://b/lake/features/churn/", ["ds=2026-01-07/split=train/p.parquet"])
    )

    def channel(name, uri, kind):
        return {"ChannelName": name, "DataSource": {"S3DataSource": {"S3Uri": uri, "S3DataType": kind}}}  # fmt: skip

    description = {
        "TrainingJobName": "churn-train-abc",
        "InputDataConfig": [
            channel("train", manifest.as_uri(), "ManifestFile"),
            channel("code", "s3://b/artifacts/training/sourcedir.tar.gz", "S3Prefix"),
        ],
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/lake/models/churn/churn-train-abc/output/model.tar.gz"},
    }  # fmt: skip

    event = _as_json(sagemaker_job_lineage("training", description))

    assert [(i["namespace"], i["name"]) for i in event["inputs"]] == [
        ("s3://b", "lake/features/churn/ds=2026-01-07")
    ]
    assert [(o["namespace"], o["name"]) for o in event["outputs"]] == [
        ("s3://b", "lake/models/churn/churn-train-abc/output/model.tar.gz")
    ]
    assert event["run"]["externalQuery"]["externalQueryId"] == "churn-train-abc"
    assert event["run"]["externalQuery"]["source"] == "sagemaker-training"

    tuning = {"HyperParameterTuningJobName": "churn-tune-1", "_best_description": description}
    tuned = _as_json(sagemaker_job_lineage("tuning", tuning))
    assert (tuned["inputs"], tuned["outputs"]) == (event["inputs"], event["outputs"])
    assert tuned["run"]["externalQuery"]["externalQueryId"] == "churn-tune-1"


def test_a_processing_job_reads_its_inputs_and_writes_its_outputs():
    description = {
        "ProcessingJobName": "churn-drift-1",
        "ProcessingInputs": [
            {"InputName": "code", "S3Input": {"S3Uri": "s3://b/artifacts/training/src.tar.gz", "S3DataType": "S3Prefix"}},
            {"InputName": "plan", "S3Input": {"S3Uri": "s3://b/lake/monitoring/churn/plans/x/plan", "S3DataType": "S3Prefix"}},
        ],
        "ProcessingOutputConfig": {"Outputs": [
            {"OutputName": "report", "S3Output": {"S3Uri": "s3://b/lake/reports/churn/drift/ds=2026-01-08"}}
        ]},
    }  # fmt: skip

    event = _as_json(sagemaker_job_lineage("processing", description))

    assert [i["name"] for i in event["inputs"]] == ["lake/monitoring/churn/plans/x/plan"]
    assert [o["name"] for o in event["outputs"]] == ["lake/reports/churn/drift/ds=2026-01-08"]
    with pytest.raises(ValueError, match="no lineage for SageMaker job type 'endpoint'"):
        sagemaker_job_lineage("endpoint", description)


def test_a_registered_version_names_its_model_with_version_approval_and_test_metrics(lake):
    model = lake / "models" / "churn" / "jobs" / "tune-1" / "output" / "model.tar.gz"
    evaluation = {"metrics": {"roc_auc": 0.788, "log_loss": 0.41, "rows": 300, "ok": True}}
    _write(model.parent / "evaluation.json", evaluation)
    registered = {"version": 2, "approval": "Approved", "champion_version": "1"}

    (output,) = [
        json.loads(Serde.to_json(d)) for d in model_version_lineage(model.as_uri(), registered)
    ]

    assert output["name"] == str(model)  # the dataset the tuning job reported writing
    assert output["facets"]["version"]["datasetVersion"] == "2"
    facet = output["facets"]["headrace_modelVersion"]
    assert (facet["version"], facet["approval"], facet["championVersion"]) == ("2", "Approved", "1")
    assert facet["metrics"] == {"roc_auc": 0.788, "log_loss": 0.41, "rows": 300.0}
    assert facet["_schemaURL"].endswith("docs/lineage.md#model-version-facet")


def test_a_drift_check_puts_its_verdict_on_the_drift_jobs_output_folder():
    folder = "s3://b/lake/monitoring/churn/model_version=1/ds=2026-01-08"
    result = {
        "ds": "2026-01-08", "model_version": "1", "drifted": True,
        "drifted_features": ["minutes_used", "score"], "verdict": "drift on 2 features",
        "uris": {"drift_report": f"{folder}/drift_report.json"},
    }  # fmt: skip

    (output,) = [json.loads(Serde.to_json(d)) for d in drift_verdict_lineage(result)]

    assert (output["namespace"], output["name"]) == ("s3://b", folder.removeprefix("s3://b/"))
    facet = output["facets"]["headrace_driftVerdict"]
    assert facet["drifted"] is True
    assert facet["driftedFeatures"] == ["minutes_used", "score"]
    assert (facet["ds"], facet["modelVersion"]) == ("2026-01-08", "1")


def test_a_task_whose_lineage_cannot_be_built_goes_on_with_a_warning(tmp_path):
    """emit_task_outputs with OpenLineage on (the file transport, as make up configures it) and
    a builder that fails: the warning names the error and the caller goes on."""
    import os
    import subprocess
    import sys

    transport = json.dumps({"type": "file", "log_file_path": str(tmp_path / "events")})
    script = (
        "from include.lineage import emit_task_outputs\n"
        "from airflow.providers.openlineage.api import is_openlineage_active\n"
        "assert is_openlineage_active()\n"
        "emit_task_outputs(lambda: {}['evaluation.json'])\n"
        "print('went on')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "AIRFLOW__OPENLINEAGE__TRANSPORT": transport},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("went on")
    assert "Lineage of this task not reported: 'evaluation.json'" in done.stdout + done.stderr
