"""``make new-pipeline``: the scaffold passes every check a dataset's files get, a bad or taken
name is refused with nothing written, and the scaffolded spec generates landing data.

That a spec in include/datasets/ becomes DAGs is proven by tests/dags/test_dag_integrity.py
(every dataset gets every stage) and tests/e2e/test_second_dataset.py (one runs end to end)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "new_pipeline.py"
STAGES = ("ingestion", "validation", "training", "model_approval", "scoring", "monitoring")


def new_pipeline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_scaffold_validates_and_prints_the_next_steps(tmp_path):
    completed = new_pipeline("meter_readings", "--datasets-dir", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "meter_readings.monitoring.yaml",
        "meter_readings.quality.yaml",
        "meter_readings.yaml",
    ]
    out = completed.stdout
    assert "python -m include.datagen.from_spec --spec" in out
    assert ", ".join(f"meter_readings_{stage}" for stage in STAGES) in out
    # Placeholders are marked for the engineer to replace.
    assert "TODO" in (tmp_path / "meter_readings.yaml").read_text()

    from include.dq.rules import load_rules
    from include.monitoring.thresholds import load_monitoring_config
    from include.pipelines.datasets import pipeline_dataset, pipeline_datasets

    assert pipeline_datasets(tmp_path) == ["meter_readings"]
    info = pipeline_dataset("meter_readings", tmp_path)
    assert (info.label, info.spec_file) == ("label", "include/datasets/meter_readings.yaml")
    rules = load_rules(tmp_path / "meter_readings.quality.yaml")
    assert {rule.kind for rule in rules.rules} >= {"schema", "uniqueness", "row_count"}
    # Rules over ingestion, with error thresholds: the gate sees what ingest refused.
    ingestion = {
        rule.id: (rule.severity, rule.max_fraction, rule.reason, rule.min_ratio, rule.max_ratio)
        for rule in rules.rules
        if rule.kind in ("quarantine_rate", "rows_in_change")
    }
    assert ingestion == {
        "quarantine_rate": ("error", 0.05, None, None, None),
        "quarantine_rate_required_null_label": ("error", 0.01, "required_null:label", None, None),
        "rows_in_change": ("error", None, None, 0.25, 4.0),
    }
    assert all(rule.description for rule in rules.rules if rule.id in ingestion)
    load_monitoring_config(tmp_path / "meter_readings.monitoring.yaml")


def test_the_scaffolded_spec_generates_landing_data(tmp_path):
    from datetime import date

    from include.datagen.from_spec import GeneratorConfig, generate

    assert new_pipeline("meter_readings", "--datasets-dir", str(tmp_path)).returncode == 0
    summary = generate(
        GeneratorConfig(
            spec_path=tmp_path / "meter_readings.yaml", out=tmp_path / "landing",
            start=date(2026, 1, 1), days=1, rows_per_day=100,
        )
    )  # fmt: skip
    assert summary["days"][0]["files"] == ["meter_readings/ds=2026-01-01/part-00000.csv"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Meter", "NAME='Meter' is not a lowercase identifier"),
        ("meter-readings", "NAME='meter-readings' is not a lowercase identifier"),
        ("1meter", "NAME='1meter' is not a lowercase identifier"),
        ("m" * 41, "is 41 characters; 40 at most"),
    ],
)
def test_a_bad_name_is_refused_and_nothing_written(tmp_path, name, message):
    completed = new_pipeline(name, "--datasets-dir", str(tmp_path))
    assert completed.returncode == 2
    assert message in completed.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_dataset_is_refused_and_left_alone(tmp_path):
    spec = tmp_path / "churn.yaml"
    spec.write_text("dataset: churn  # someone's work\n")
    completed = new_pipeline("churn", "--datasets-dir", str(tmp_path))
    assert completed.returncode == 2
    assert "dataset 'churn' exists already: churn.yaml" in completed.stderr
    assert spec.read_text() == "dataset: churn  # someone's work\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["churn.yaml"]
    # The repository's own datasets are refused too (the default --datasets-dir).
    assert "exists already" in new_pipeline("benefit_claims").stderr


def test_the_scaffold_states_todays_capacity(tmp_path):
    from spark_jobs.dataset_spec import Capacity, load_spec

    assert new_pipeline("meter_readings", "--datasets-dir", str(tmp_path)).returncode == 0
    text = (tmp_path / "meter_readings.yaml").read_text()
    # The block is there to edit, with the basis of its sizes, and says what runs today.
    assert "capacity:" in text and "bench/ingestion.py" in text
    assert load_spec(tmp_path / "meter_readings.yaml").capacity == Capacity()


def test_the_scaffold_offers_a_day_from_the_landing_folder(tmp_path):
    """Following the commented day_from line's instructions gives a spec every check accepts,
    with the partition column the quality rules name; uncommenting it alone names the fix."""
    from include.dq.rules import load_rules
    from include.pipelines.datasets import pipeline_dataset
    from spark_jobs.dataset_spec import SpecError, load_spec, parse_spec

    assert new_pipeline("meter_readings", "--datasets-dir", str(tmp_path)).returncode == 0
    path = tmp_path / "meter_readings.yaml"
    text = path.read_text()
    assert load_spec(path).day_from == "column"
    uncommented = text.replace("# day_from: landing_folder", "day_from: landing_folder", 1)
    assert uncommented != text
    with pytest.raises(SpecError, match=r"columns\[1\] \(record_date\): 'record_date' is the part"):
        parse_spec(uncommented, source=str(path))
    # Delete record_date from columns, and (files without a time either) the event time.
    followed = (
        uncommented.replace("  - name: record_date\n    type: date\n    nullable: false\n", "", 1)
        .replace("\nevent_time: event_ts\n", "\n", 1)
        .replace("  - name: event_ts\n    type: timestamp\n    nullable: false\n", "", 1)
    )
    path.write_text(followed)
    spec = load_spec(path)
    assert (spec.day_from, spec.event_time) == ("landing_folder", None)
    assert spec.landing_column_names == ("record_id", "category", "amount", "label")
    assert ("record_date", "date") in spec.curated_columns()
    pipeline_dataset("meter_readings", tmp_path)
    assert {rule.kind for rule in load_rules(tmp_path / "meter_readings.quality.yaml").rules} >= {
        "schema",
        "uniqueness",
    }
