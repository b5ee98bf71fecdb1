"""The churn landing-data generator: deterministic bytes, streamed in chunks, and every planted
defect recounted independently from the files it wrote."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

import include.datagen.churn as churn
from include.datagen.churn import (
    LANDING_COLUMNS,
    NULL_REQUIRED_COLUMNS,
    WRONG_TYPE_VALUES,
    DriftPlan,
    GeneratorConfig,
    generate,
    main,
)

START = date(2026, 1, 1)


def config(out: Path, **overrides) -> GeneratorConfig:
    settings = {
        "out": out,
        "start": START,
        "rows_per_day": 6000,
        "rows_per_file": 2500,
        "chunk_rows": 1000,
        "seed": 7,
        "corrupt_rate": 0.06,
    }
    settings.update(overrides)
    return GeneratorConfig(**settings)


def file_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def lines_of(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.splitlines()


def test_same_config_same_bytes_other_seed_other_bytes(tmp_path):
    first = generate(config(tmp_path / "a", fmt="mixed", gzip=True))
    second = generate(config(tmp_path / "b", fmt="mixed", gzip=True))
    other = generate(config(tmp_path / "c", fmt="mixed", gzip=True, seed=8))
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")
    assert file_bytes(tmp_path / "a") != file_bytes(tmp_path / "c")
    assert first["days"] == second["days"]
    assert first["totals"]["planted"] != other["totals"]["planted"]
    names = sorted(file_bytes(tmp_path / "a"))
    assert names == [
        "churn/ds=2026-01-01/part-00000.csv.gz",
        "churn/ds=2026-01-01/part-00001.jsonl.gz",
        "churn/ds=2026-01-01/part-00002.csv.gz",
    ]


def test_csv_defects_recount_exactly(tmp_path):
    summary = generate(config(tmp_path))
    day = summary["days"]["2026-01-01"]
    planted = day["planted"]
    assert all(planted[kind] > 0 for kind in planted)
    counted = Counter()
    by_column = Counter()
    ids = Counter()
    records = 0
    for entry in day["files"]:
        lines = lines_of(tmp_path / entry["path"])
        assert lines[0].decode() == ",".join(LANDING_COLUMNS)
        assert len(lines) - 1 == entry["records"]
        records += entry["records"]
        for raw in lines[1:]:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                counted["bad_encoding"] += 1
                continue
            fields = next(csv.reader([line]))
            if len(fields) != len(LANDING_COLUMNS):
                counted["malformed"] += 1
                continue
            row = dict(zip(LANDING_COLUMNS, fields, strict=True))
            for column in NULL_REQUIRED_COLUMNS:
                if row[column] == "":
                    by_column[("null_required", column)] += 1
            for column, values in WRONG_TYPE_VALUES.items():
                if row[column] in values:
                    by_column[("wrong_type", column)] += 1
            if row["customer_id"]:
                ids[row["customer_id"]] += 1
    counted["duplicate"] = sum(n - 1 for n in ids.values() if n > 1)
    assert records == day["records"] == 6000 + planted["duplicate"]
    for kind in ("bad_encoding", "malformed", "duplicate"):
        assert counted[kind] == planted[kind], kind
    for (kind, column), count in by_column.items():
        assert day["planted_by_column"][kind][column] == count, (kind, column)
    assert (
        sum(by_column[k] for k in by_column if k[0] == "null_required") == planted["null_required"]
    )
    assert sum(by_column[k] for k in by_column if k[0] == "wrong_type") == planted["wrong_type"]


def test_jsonl_defects_recount_exactly(tmp_path):
    summary = generate(config(tmp_path, fmt="jsonl", gzip=True))
    day = summary["days"]["2026-01-01"]
    unparsable = 0
    wrong_types = Counter()
    for entry in day["files"]:
        assert entry["path"].endswith(".jsonl.gz")
        for raw in lines_of(tmp_path / entry["path"]):
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                unparsable += 1
                continue
            assert list(record) == list(LANDING_COLUMNS)
            assert isinstance(record["sessions"], int | str)
            for column, values in WRONG_TYPE_VALUES.items():
                if record[column] in values and isinstance(record[column], str):
                    wrong_types[column] += 1
    assert unparsable == day["planted"]["malformed"] + day["planted"]["bad_encoding"]
    assert dict(wrong_types) == day["planted_by_column"]["wrong_type"]


def test_distribution_and_schema_drift(tmp_path):
    summary = generate(
        config(
            tmp_path,
            days=4,
            corrupt_rate=0.0,
            drift=DriftPlan(
                days=(date(2026, 1, 2),), features=("monthly_charge", "minutes_used"), strength=1.0
            ),
            schema_drift=((date(2026, 1, 3), "extra"), (date(2026, 1, 4), "missing")),
        )
    )
    days = summary["days"]
    base, drifted = days["2026-01-01"]["feature_means"], days["2026-01-02"]["feature_means"]
    assert 20 < drifted["monthly_charge"] - base["monthly_charge"] < 24
    assert 1.6 < drifted["minutes_used"] / base["minutes_used"] < 2.0
    assert days["2026-01-02"]["drifted_features"] == ["monthly_charge", "minutes_used"]
    assert days["2026-01-03"]["feature_means"]["monthly_charge"] == pytest.approx(
        base["monthly_charge"], abs=1
    )
    header = lambda ds: lines_of(tmp_path / days[ds]["files"][0]["path"])[0].decode().split(",")  # noqa: E731
    assert header("2026-01-03") == [*LANDING_COLUMNS, "promo_code"]
    assert "data_gb" not in header("2026-01-04")
    assert days["2026-01-04"]["schema_drift"] == {"kind": "missing", "column": "data_gb"}
    # A labelled dataset worth training on: a churn rate far from 0 and 1.
    assert 0.1 < days["2026-01-01"]["churn_rate"] < 0.35


def test_generation_streams_in_bounded_chunks(tmp_path, monkeypatch):
    """Chunks never exceed chunk_rows, and the memory held per chunk does not grow with size."""
    peaks = {}
    real_write_chunk = churn._write_chunk

    def measured(config, ds, day_index, lo, hi, *rest):
        assert hi - lo <= config.chunk_rows
        result = real_write_chunk(config, ds, day_index, lo, hi, *rest)
        peaks[config.rows_per_day] = max(
            peaks.get(config.rows_per_day, 0), pa.total_allocated_bytes()
        )
        return result

    monkeypatch.setattr(churn, "_write_chunk", measured)
    for rows in (20_000, 80_000):
        generate(
            config(tmp_path / str(rows), rows_per_day=rows, rows_per_file=rows, chunk_rows=5000)
        )
    assert peaks[80_000] < 1.5 * peaks[20_000]


def test_the_cli_prints_the_summary(tmp_path, capsys):
    summary_path = tmp_path / "summary.json"
    code = main(
        [
            "--out", str(tmp_path / "landing"), "--start", "2026-01-01", "--days", "2",
            "--rows-per-day", "500", "--format", "jsonl", "--gzip", "--corrupt-rate", "0.1",
            "--corrupt-kinds", "malformed,duplicate", "--drift-day", "2026-01-02",
            "--schema-drift", "2026-01-02:renamed", "--summary-json", str(summary_path),
        ]
    )  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(summary_path.read_text())
    planted = printed["totals"]["planted"]
    assert planted["malformed"] > 0 and planted["duplicate"] > 0
    assert planted["wrong_type"] == planted["bad_encoding"] == 0
    assert printed["days"]["2026-01-02"]["schema_drift"]["renamed_to"] == "tenure"
    assert (tmp_path / "landing" / "churn" / "ds=2026-01-02" / "part-00000.jsonl.gz").exists()


def test_bad_arguments_are_refused_with_their_name(tmp_path, capsys):
    assert (
        main(["--out", str(tmp_path), "--start", "2026-01-01", "--corrupt-kinds", "gremlins"]) == 2
    )
    assert "unknown corrupt kinds ['gremlins']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--start", "01/02/2026"])
    with pytest.raises(ValueError, match="unknown drift features"):
        GeneratorConfig(out=tmp_path, start=START, drift=DriftPlan(features=("shoe_size",)))


def test_timestamps_and_dates_are_iso_and_in_the_day(tmp_path):
    summary = generate(config(tmp_path, corrupt_rate=0.0, rows_per_day=500))
    lines = lines_of(tmp_path / summary["days"]["2026-01-01"]["files"][0]["path"])
    rows = list(csv.DictReader(line.decode() for line in lines))
    assert len(rows) == 500
    for row in rows:
        stamp = datetime.fromisoformat(row["event_ts"].replace("Z", "+00:00"))
        assert stamp.date() == START
        assert date.fromisoformat(row["signup_date"]) <= START
        assert row["customer_id"].startswith("C") and len(row["customer_id"]) == 10
