"""A dataset whose files carry no date column (``day_from: landing_folder``): the ingest job gives
every row the day of its landing folder, every row is still accounted for, a key's duplicates are
settled by content without an event time, and the features job reads the result unchanged."""

from __future__ import annotations

import json
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lake_helpers import TEST_SALT, read_rows

from spark_jobs.dataset_spec import parse_spec
from spark_jobs.features import build_features
from spark_jobs.ingest import LocalFS, partition_files, run_ingest

DS = "2026-05-04"
SPEC = """\
dataset: meter_readings
schema_version: 1
primary_key: [meter_id, reading_date]
partition_column: reading_date
day_from: landing_folder
label: faulty
columns:
  - {name: meter_id, type: string, nullable: false, pattern: '^M[0-9]{4}$'}
  - {name: kwh, type: double, nullable: true, min: 0, max: 1000}
  - {name: site, type: string, nullable: false, allowed: [north, south]}
  - {name: faulty, type: int, nullable: false, allowed: [0, 1]}
features:
  split_key: meter_id
  split_seed: meter-readings-split-v1
  split: {train: 70, validation: 15, test: 15}
  numeric: [kwh]
  categorical: [site]
"""
HEADER = "meter_id,kwh,site,faulty"


def write_day(landing, first_m7: str, second_m7: str) -> None:
    """Three files of one day, none with a date column the spec reads: ``a.csv`` (five valid
    rows, a bad number and one of two versions of M0007), ``b.jsonl`` (the other M0007, one
    valid row, a line that is not JSON) and ``c.csv``, whose stray ``reading_date`` column
    names another day."""
    day = landing / "meter_readings" / f"ds={DS}"
    day.mkdir(parents=True)
    a = [f"M000{n},{n}.5,north,0" for n in range(1, 6)]
    a += ["M0006,abc,south,0", f"M0007,{first_m7},south,1"]
    (day / "a.csv").write_text("\n".join([HEADER, *a]) + "\n")
    b = [
        json.dumps({"meter_id": "M0007", "kwh": float(second_m7), "site": "south", "faulty": 1}),
        json.dumps({"meter_id": "M0008", "kwh": 8.0, "site": "north", "faulty": 0}),
        '{"meter_id": "M0009", "kwh": ',
    ]
    (day / "b.jsonl").write_text("\n".join(b) + "\n")
    c = ["M0010,1.0,north,1,2026-05-01", "M0011,2.0,south,0,2026-05-01"]
    (day / "c.csv").write_text("\n".join([f"{HEADER},reading_date", *c]) + "\n")


def ingest(spark, spec, root, first_m7: str, second_m7: str):
    landing = root / "landing"
    write_day(landing, first_m7, second_m7)
    return run_ingest(
        spark,
        spec,
        landing_uri=str(landing),
        ds=DS,
        lake_root=str(root / "lake"),
        pii_salt=TEST_SALT,
    )


@pytest.fixture(scope="module")
def spec():
    return parse_spec(SPEC, source="meter_readings.yaml")


@pytest.fixture(scope="module")
def day(spark, spec, tmp_path_factory):
    root = tmp_path_factory.mktemp("day_from_folder")
    return ingest(spark, spec, root, "10.0", "20.0"), root / "lake"


def test_every_curated_row_carries_the_day_of_its_landing_folder(day):
    _, lake = day
    curated = lake / "curated" / "meter_readings" / f"ds={DS}"
    rows = read_rows(curated)
    assert sorted(r["meter_id"] for r in rows) == [
        "M0001", "M0002", "M0003", "M0004", "M0005", "M0007", "M0008", "M0010", "M0011"
    ]  # fmt: skip
    # The folder's day, also for c.csv's rows, whose own column said 2026-05-01.
    assert {r["reading_date"] for r in rows} == {date.fromisoformat(DS)}
    schema = pq.ParquetFile(next(curated.glob("*.parquet"))).schema_arrow
    assert schema.names == ["meter_id", "kwh", "site", "faulty", "reading_date"]
    assert schema.field("reading_date").type == pa.date32()
    by_id = {r["meter_id"]: r for r in rows}
    assert (by_id["M0003"]["kwh"], by_id["M0010"]["kwh"]) == (3.5, 1.0)


def test_every_row_is_accounted_for(day):
    result, lake = day
    totals = result.manifest["totals"]
    assert (totals["rows_read"], totals["rows_accepted"], totals["rows_quarantined"]) == (12, 9, 3)
    assert totals["quarantined_by_reason"] == {
        "duplicate_key": 1,
        "malformed_record": 1,
        "type_mismatch:kwh": 1,
    }
    inputs = {entry["name"]: entry for entry in result.manifest["inputs"]}
    counts = {
        name: (e["rows_read"], e["rows_accepted"], e["rows_quarantined"])
        for name, e in inputs.items()
    }
    # M0007's loser is one of a.csv's or b.jsonl's rows; the job's check already held per file.
    assert counts["c.csv"] == (2, 2, 0)
    assert counts["a.csv"][0] == 7 and counts["b.jsonl"][0] == 3
    assert counts["a.csv"][1] + counts["b.jsonl"][1] == 7
    # No file misses a column: the day is not one of the files' columns.
    assert all(entry["layout"]["missing_columns"] == [] for entry in inputs.values())
    assert result.manifest["schema_drift"] == [
        {
            "file": "c.csv",
            "columns": ["meter_id", "kwh", "site", "faulty", "reading_date"],
            "extra_columns": ["reading_date"],
            "missing_columns": [],
            "renamed_columns": {},
            "header_mismatch": False,
        }
    ]
    quarantine = read_rows(lake / "quarantine" / "meter_readings" / f"ds={DS}")
    assert sorted(r["reason"] for r in quarantine) == [
        "duplicate_key", "malformed_record", "type_mismatch:kwh"
    ]  # fmt: skip
    keys = {r["reason"]: r["record_key"] for r in quarantine}
    assert keys["type_mismatch:kwh"] == f"M0006|{DS}" and keys["duplicate_key"] == f"M0007|{DS}"


def test_without_an_event_time_the_records_content_picks_the_winner(spark, spec, tmp_path, day):
    """The same two versions of M0007 with their files swapped keep the same winner: no event
    time, so the hash of the record decides, not which file or position it came from."""
    first, lake = day
    swapped = ingest(spark, spec, tmp_path, "20.0", "10.0")

    def m0007(lake) -> float:
        rows = read_rows(lake / "curated" / "meter_readings" / f"ds={DS}")
        return next(r["kwh"] for r in rows if r["meter_id"] == "M0007")

    def losing_file(result) -> str:
        inputs = result.manifest["inputs"]
        return next(e["name"] for e in inputs if e["quarantined_by_reason"].get("duplicate_key"))

    assert m0007(tmp_path / "lake") == m0007(lake)
    # The winning version moved to the other file, and won there.
    assert {losing_file(first), losing_file(swapped)} == {"a.csv", "b.jsonl"}


def test_the_features_job_reads_the_day_like_any_partition_column(spark, spec, day):
    result, _ = day
    fs = LocalFS()
    curated = spark.read.parquet(*partition_files(fs, result.curated_uri))
    rows = build_features(curated, spec, date.fromisoformat(DS), 1).collect()
    assert len(rows) == 9
    assert {row["reading_date"] for row in rows} == {date.fromisoformat(DS)}
    assert {row["split"] for row in rows} <= {"train", "validation", "test"}
