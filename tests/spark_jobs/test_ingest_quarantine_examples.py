"""The ingest manifest records what the quality gate's rules over ingestion read: quarantined
rows per reason and a few example rows per reason (key and offending value, PII treated)."""

from __future__ import annotations

import json
import re

from lake_helpers import TEST_SALT, csv_text, record

from spark_jobs.ingest import run_ingest

DS = "2026-04-02"


def test_manifest_counts_and_shows_examples_per_reason(spark, spec, tmp_path):
    records = [record(n, DS) for n in range(10)]
    # Four blank labels, two impossible tenures, one record re-sent earlier (loses dedup).
    records += [record(n, DS, churned=None) for n in (14, 11, 13, 12)]
    records += [record(n, DS, tenure_months="9999") for n in (21, 20)]
    records.append(record(3, DS, event_ts=f"{DS}T09:00:00Z"))
    day = tmp_path / "landing" / "churn" / f"ds={DS}"
    day.mkdir(parents=True)
    (day / "day.csv").write_text(csv_text(records))

    result = run_ingest(
        spark,
        spec,
        landing_uri=str(tmp_path / "landing"),
        ds=DS,
        lake_root=str(tmp_path / "lake"),
        pii_salt=TEST_SALT,
    )

    totals = result.manifest["totals"]
    assert (totals["rows_read"], totals["rows_accepted"], totals["rows_quarantined"]) == (17, 10, 7)
    assert totals["quarantined_by_reason"] == {
        "duplicate_key": 1,
        "out_of_range:tenure_months": 2,
        "required_null:churned": 4,
    }
    examples = result.manifest["quarantine_examples"]
    # The first three per reason by file and key, whatever order the rows came in.
    assert examples == {
        "duplicate_key": [
            {"source_file": "day.csv", "record_key": f"C900000003|{DS}", "value": None}
        ],
        "out_of_range:tenure_months": [
            {"source_file": "day.csv", "record_key": f"C900000020|{DS}", "value": "9999"},
            {"source_file": "day.csv", "record_key": f"C900000021|{DS}", "value": "9999"},
        ],
        "required_null:churned": [
            {"source_file": "day.csv", "record_key": f"C9000000{n}|{DS}", "value": None}
            for n in (11, 12, 13)
        ],
    }
    on_disk = json.loads(
        (tmp_path / "lake" / "curated" / "churn" / f"ds={DS}" / "_manifest.json").read_text()
    )
    assert on_disk["quarantine_examples"] == examples
    # The manifest is read widely: no PII of the quarantined records in the clear.
    text = json.dumps(result.manifest)
    assert "example.com" not in text and "+1-555-" not in text


def test_a_pii_column_example_is_treated_as_in_quarantine(spark, spec, tmp_path):
    assert spec.column("email").curated_name == "email_sha256"
    records = [record(n, DS) for n in range(3)]
    records.append(record(5, DS, email="not-an-email"))  # fails email's pattern
    day = tmp_path / "landing" / "churn" / f"ds={DS}"
    day.mkdir(parents=True)
    (day / "day.csv").write_text(csv_text(records))

    result = run_ingest(
        spark,
        spec,
        landing_uri=str(tmp_path / "landing"),
        ds=DS,
        lake_root=str(tmp_path / "lake"),
        pii_salt=TEST_SALT,
    )

    assert result.manifest["totals"]["quarantined_by_reason"] == {"pattern_mismatch:email": 1}
    [example] = result.manifest["quarantine_examples"]["pattern_mismatch:email"]
    assert example["record_key"] == f"C900000005|{DS}"
    # The salted hash quarantine keeps, never the value itself.
    assert re.fullmatch(r"[0-9a-f]{64}", example["value"])
    assert "not-an-email" not in json.dumps(result.manifest)
