"""Curated churn partitions for the quality-gate tests: a clean frame, planted violations, and a
writer that lays a frame out as ingest commits it (Parquet with Spark's types + ``_manifest.json``).

Written with pyarrow, not Spark, so the GE and operator tests stay fast; the Deequ job test
reads the same layout with Spark, which proves the two agree on it.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from include.dq.gate import curated_partition_uri

DS = "2026-01-10"
ROWS = 40
# Spark's Parquet types for the spec's types (what ingest writes).
ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int32(),
    "long": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def clean_frame(curated_types: dict[str, str], ds: str = DS, rows: int = ROWS) -> pd.DataFrame:
    """A partition that passes every rule of churn.quality.yaml."""
    day = date.fromisoformat(ds)
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    n = range(rows)
    values = {
        "customer_id": [f"C{100000000 + i:09d}" for i in n],
        "snapshot_date": [day] * rows,
        # Spread over the day; the newest at 23:00, well inside the 12-hour freshness window.
        "event_ts": [start + timedelta(minutes=10 + i * 1380 // rows) for i in n],
        "signup_date": [date(2020, 1, 1) + timedelta(days=i) for i in n],
        "plan": [("basic", "standard", "premium", "family")[i % 4] for i in n],
        "contract": [("month-to-month", "one-year", "two-year")[i % 3] for i in n],
        "region": [("na-east", "eu-west", "apac")[i % 3] for i in n],
        "payment_method": ["card"] * rows,
        "autopay": [i % 2 == 0 for i in n],
        "tenure_months": [i % 60 for i in n],
        # Mean 45, standard deviation 25: inside the mean and stdev rules.
        "monthly_charge": [20.0 if i % 2 else 70.0 for i in n],
        "total_charges": [None if i == 0 else 100.0 * i for i in n],
        "minutes_used": [100.0 + i for i in n],
        "sessions": [5 + i % 7 for i in n],
        "data_gb": [None if i == 1 else 1.5 for i in n],
        "support_tickets_30d": [i % 3 for i in n],
        "payment_failures_90d": [0] * rows,
        "device_model": ["Pixel 8"] * rows,
        "email_sha256": [f"{i:064x}" for i in n],
        "phone": ["**********" + f"{i % 100:02d}" for i in n],
        "churned": [1 if i % 5 == 0 else 0 for i in n],
    }
    assert set(values) == set(curated_types), set(values) ^ set(curated_types)
    return pd.DataFrame({name: values[name] for name in curated_types})


def arrow_table(frame: pd.DataFrame, curated_types: dict[str, str]) -> pa.Table:
    """``frame`` with Spark's Parquet types; columns not in the spec keep pandas' types."""
    fields = []
    arrays = []
    for name in frame.columns:
        values = frame[name].tolist()
        values = [None if isinstance(v, float) and v != v else v for v in values]
        arrow_type = ARROW_TYPES.get(curated_types.get(name, ""))
        arrays.append(pa.array(values, type=arrow_type) if arrow_type else pa.array(values))
        fields.append(name)
    return pa.Table.from_arrays(arrays, names=fields)


def write_partition(
    lake_root: str,
    frame: pd.DataFrame,
    curated_types: dict[str, str],
    ds: str = DS,
    dataset: str = "churn",
    files: int = 2,
    table: pa.Table | None = None,
) -> Path:
    """Write ``frame`` as a committed curated partition (``files`` Parquet parts + manifest)."""
    partition_uri = curated_partition_uri(lake_root, dataset, ds)
    folder = Path(partition_uri.removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    table = table if table is not None else arrow_table(frame, curated_types)
    step = max(1, -(-table.num_rows // files))
    entries = []
    for part in range(files):
        name = f"part-{part:05d}.snappy.parquet"
        chunk = table.slice(part * step, step)
        pq.write_table(chunk, folder / name, compression="snappy")
        entries.append({"path": name, "rows": chunk.num_rows})
    # A stray file the manifest does not list: the gate must not read it.
    pq.write_table(table.slice(0, 1), folder / "part-99999.stray.parquet")
    manifest = {
        "dataset": dataset,
        "ds": ds,
        "spec_fingerprint": "test",
        # The curated schema the features job checks it can read (churn.yaml's schema_version).
        "schema_version": 1,
        "totals": {
            "rows_accepted": table.num_rows,
            "rows_read": table.num_rows,
            "rows_quarantined": 0,
            "quarantined_by_reason": {},
        },
        "quarantine_examples": {},
        "outputs": {"curated": {"uri": partition_uri, "files": entries}},
    }
    (folder / "_manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def write_previous_manifest(
    lake_root: str, rows: int, ds: str = DS, dataset: str = "churn"
) -> None:
    """Only the manifest of the day before ``ds``: what ``row_count_change`` reads."""
    previous = (date.fromisoformat(ds) - timedelta(days=1)).isoformat()
    folder = Path(curated_partition_uri(lake_root, dataset, previous).removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_manifest.json").write_text(
        json.dumps(
            {"totals": {"rows_accepted": rows}, "outputs": {"curated": {"uri": "", "files": []}}}
        )
    )


def plant_quarantine(
    lake_root: str,
    quarantined_by_reason: dict[str, int],
    examples: dict[str, list[dict]] | None = None,
    ds: str = DS,
    dataset: str = "churn",
) -> dict:
    """Record in a written partition's manifest that ingest also quarantined these rows, as the
    ingest job records it (rows read = accepted + quarantined); returns the manifest."""
    path = Path(curated_partition_uri(lake_root, dataset, ds).removeprefix("file://"))
    manifest = json.loads((path / "_manifest.json").read_text())
    totals = manifest["totals"]
    totals["rows_quarantined"] = sum(quarantined_by_reason.values())
    totals["rows_read"] = totals["rows_accepted"] + totals["rows_quarantined"]
    totals["quarantined_by_reason"] = dict(sorted(quarantined_by_reason.items()))
    manifest["quarantine_examples"] = examples or {}
    (path / "_manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def write_validated_day(
    lake_root: str, ds: str, rows_read: int, passed: bool = True, dataset: str = "churn"
) -> None:
    """An earlier day as the gate leaves it: the ingest manifest (no data files needed) and the
    gate's result for exactly that manifest, passed or not."""
    from include.dq.gate import quality_report_uri
    from spark_jobs.ingest import curated_content_digest

    folder = Path(curated_partition_uri(lake_root, dataset, ds).removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "dataset": dataset,
        "ds": ds,
        "totals": {"rows_read": rows_read, "rows_accepted": rows_read, "rows_quarantined": 0},
        "outputs": {"curated": {"uri": "", "files": [{"path": "p.parquet", "sha256": ds}]}},
    }
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    report = Path(quality_report_uri(lake_root, dataset, ds).removeprefix("file://"))
    report.mkdir(parents=True, exist_ok=True)
    result = {
        "format": "headrace-quality-result/1",
        "dataset": dataset,
        "ds": ds,
        "passed": passed,
        "partition": {"content_sha256": curated_content_digest(manifest)},
        "results": [],
    }
    (report / "result.json").write_text(json.dumps(result))
