"""The ingest job against generated landing data: what the generator planted is what ingest
quarantines, defect kind by defect kind and column by column, across CSV, JSON lines and gzip."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import date

import pytest
from lake_helpers import TEST_SALT, lake_paths, read_rows

from include.datagen.churn import DriftPlan, GeneratorConfig, generate
from spark_jobs.ingest import run_ingest

pytestmark = pytest.mark.e2e

START = date(2026, 3, 1)
ROWS = 6000


@pytest.fixture(scope="module")
def generated(spark, spec, tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    config = GeneratorConfig(
        out=root / "landing",
        start=START,
        days=2,
        rows_per_day=ROWS,
        rows_per_file=2500,
        chunk_rows=1000,
        seed=11,
        fmt="mixed",
        gzip=True,
        corrupt_rate=0.05,
        drift=DriftPlan(days=(date(2026, 3, 2),), features=("monthly_charge",)),
        schema_drift=((date(2026, 3, 2), "renamed"),),
    )
    summary = generate(config)
    lake = root / "lake"
    results = {
        ds: run_ingest(
            spark, spec, landing_uri=str(config.out), ds=ds, lake_root=str(lake), pii_salt=TEST_SALT
        )
        for ds in summary["days"]
    }
    return summary, results, lake, config


def expected_reasons(day: dict, spec) -> Counter:
    """The quarantine reasons the generator's planted defects must produce."""
    expected = Counter()
    by_column = day["planted_by_column"]
    for column, count in by_column.get("wrong_type", {}).items():
        expected[f"type_mismatch:{column}"] += count
    for column, count in by_column.get("null_required", {}).items():
        expected[f"required_null:{column}"] += count
    for column, count in by_column.get("out_of_range", {}).items():
        code = "not_allowed" if spec.column(column).allowed else "out_of_range"
        expected[f"{code}:{column}"] += count
    expected["duplicate_key"] += day["planted"]["duplicate"]
    expected["malformed_record"] += day["planted"]["malformed"]
    return expected


def test_planted_defects_are_quarantined_exactly(generated, spec):
    summary, results, _, _ = generated
    for ds, day in summary["days"].items():
        manifest = results[ds].manifest
        reasons = Counter(manifest["totals"]["quarantined_by_reason"])
        # Bad bytes: per column in CSV, per line in JSON (the line does not parse).
        bad_encoding = reasons.pop("bad_encoding:device_model", 0) + reasons.pop("bad_encoding", 0)
        assert bad_encoding == day["planted"]["bad_encoding"] > 0
        assert reasons == expected_reasons(day, spec)
        planted_rows = sum(n for kind, n in day["planted"].items() if kind != "duplicate")
        assert (
            manifest["totals"]["rows_read"] == day["records"] == ROWS + day["planted"]["duplicate"]
        )
        assert manifest["totals"]["rows_accepted"] == ROWS - planted_rows


def test_every_file_reads_as_many_records_as_written(generated):
    summary, results, _, config = generated
    for ds, day in summary["days"].items():
        written = {f["path"].rsplit("/", 1)[-1]: f for f in day["files"]}
        inputs = {entry["name"]: entry for entry in results[ds].manifest["inputs"]}
        assert set(inputs) == set(written)
        assert {f["format"] for f in written.values()} == {"csv", "jsonl"}
        for name, entry in inputs.items():
            assert entry["compression"] == "gzip"
            assert entry["rows_read"] == written[name]["records"], name
            assert entry["rows_read"] == entry["rows_accepted"] + entry["rows_quarantined"]
            header = 1 if entry["format"] == "csv" else 0
            assert entry["physical_lines"] == written[name]["records"] + header
            data = (config.out / written[name]["path"]).read_bytes()
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_curated_partition_is_typed_unique_and_treated(generated, spec):
    summary, results, lake, _ = generated
    for ds in summary["days"]:
        rows = read_rows(lake_paths(lake, ds)["curated"])
        assert len(rows) == results[ds].manifest["totals"]["rows_accepted"]
        keys = {(r["customer_id"], r["snapshot_date"]) for r in rows}
        assert len(keys) == len(rows)
        assert {r["snapshot_date"].isoformat() for r in rows} == {ds}
        assert list(rows[0]) == [name for name, _ in spec.curated_columns()]
        assert all(len(r["email_sha256"]) == 64 for r in rows if r["email_sha256"])
        assert all(r["phone"].startswith("+*-***-***-**") for r in rows if r["phone"])
        assert all(0 <= r["tenure_months"] <= 600 for r in rows)
        assert all(r["plan"] in ("basic", "standard", "premium", "family") for r in rows)


def test_schema_drift_and_distribution_drift_come_through(generated):
    summary, results, lake, _ = generated
    drifted = results["2026-03-02"].manifest
    assert len(drifted["schema_drift"]) == len(drifted["inputs"])
    assert all(d["renamed_columns"] == {"tenure": "tenure_months"} for d in drifted["schema_drift"])
    assert results["2026-03-01"].manifest["schema_drift"] == []
    means = {
        ds: sum(r["monthly_charge"] for r in read_rows(lake_paths(lake, ds)["curated"]))
        / results[ds].manifest["totals"]["rows_accepted"]
        for ds in summary["days"]
    }
    # The generator shifts monthly_charge by about one standard deviation (+22) on the drift day.
    assert 18 < means["2026-03-02"] - means["2026-03-01"] < 26
    assert all(
        r["tenure_months"] is not None for r in read_rows(lake_paths(lake, "2026-03-02")["curated"])
    )
