"""Helpers for the Spark job tests: hand-written landing records, and readers of what the jobs
wrote (pyarrow, independent of Spark, so a test never checks Spark with Spark)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pyarrow.parquet as pq

from include.datagen.churn import JSON_BARE_COLUMNS, LANDING_COLUMNS
from spark_jobs.spark_session import QUICK_JIT_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO_ROOT / "include" / "datasets" / "churn.yaml"
# For tests only; never a real salt.
TEST_SALT = "test-only-salt-0123456789abcdef"

# Hand-written records use the generator's landing layout, so the two cannot drift apart.
COLUMNS = LANDING_COLUMNS
NUMBER_COLUMNS = JSON_BARE_COLUMNS
# The shapes of the PII the generator and the records below plant.
PII_PATTERNS = {
    "email": re.compile(rb"[a-z0-9.]+@(?:mail\.)?example\.(?:com|net|org)"),
    "phone": re.compile(rb"\+1-555-\d{3}-\d{4}"),
    "national_id": re.compile(rb"\b9\d\d-\d\d-\d{4}\b"),
}


def record(n: int, ds: str, **overrides: str | None) -> dict[str, str | None]:
    """A valid churn landing record for customer ``n`` (< 1000), as text values."""
    values: dict[str, str | None] = {
        "customer_id": f"C9{n:08d}",
        "snapshot_date": ds,
        "event_ts": f"{ds}T10:00:00Z",
        "signup_date": "2021-03-04",
        "plan": "standard",
        "contract": "one-year",
        "region": "eu-west",
        "payment_method": "card",
        "autopay": "true",
        "tenure_months": "58",
        "monthly_charge": "39.99",
        "total_charges": "2319.42",
        "minutes_used": "120.5",
        "sessions": "11",
        "data_gb": "2.5",
        "support_tickets_30d": "0",
        "payment_failures_90d": "0",
        "device_model": "Pixel 8",
        "email": f"corpus.user{n}@example.com",
        "phone": f"+1-555-{n:03d}-{1000 + n:04d}",
        "national_id": f"9{n % 100:02d}-{10 + n % 89:02d}-{2000 + n:04d}",
        "churned": "0",
    }
    values.update(overrides)
    return values


def ingest_command(landing: str, ds: str, lake_root: str, *extra: str) -> list[str]:
    """``python -m spark_jobs.ingest`` on the churn spec, as a job service starts it, with the
    PII salt read from ``HEADRACE_PII_SALT`` (the caller's environment sets it)."""
    return [
        sys.executable, "-m", "spark_jobs.ingest",
        "--spec", str(REPO_ROOT / "include" / "datasets" / "churn.yaml"),
        "--landing-uri", landing, "--ds", ds, "--lake-root", lake_root,
        "--pii-salt-env", "HEADRACE_PII_SALT", *extra,
    ]  # fmt: skip


def ingest_env(**extra: str) -> dict[str, str]:
    """The environment of an ``ingest_command`` process: the salt, the repository on the path,
    and the quick JIT, as the end-to-end tests' jobs take it (spark_jobs/spark_session.py): a
    fresh process runs one small job, and the lane's cores are shared."""
    return {
        **os.environ,
        "HEADRACE_PII_SALT": TEST_SALT,
        "PYTHONPATH": str(REPO_ROOT),
        QUICK_JIT_ENV: "1",
        **extra,
    }


def csv_field(value: str | None) -> str:
    if value is None:
        return ""
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_line(values: dict, columns=COLUMNS) -> str:
    return ",".join(csv_field(values.get(c)) for c in columns)


def csv_text(records: list[dict], columns=COLUMNS, newline: str = "\n") -> str:
    lines = [",".join(columns)] + [csv_line(r, columns) for r in records]
    return newline.join(lines) + newline


def json_line(values: dict) -> str:
    """A JSON object with numbers and booleans bare, as producers write them."""
    parts = []
    for column in COLUMNS:
        value = values.get(column)
        if value is None:
            rendered = "null"
        elif column in NUMBER_COLUMNS and re.fullmatch(r"-?\d+(\.\d+)?|true|false", value):
            rendered = value
        else:
            rendered = json.dumps(value)
        parts.append(f"{json.dumps(column)}: {rendered}")
    return "{" + ", ".join(parts) + "}"


def read_rows(path: Path) -> list[dict]:
    """Every row of a Parquet folder (or file), via pyarrow."""
    # ParquetFile, not read_table: no hive-partition columns inferred from ds=… folder names.
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    rows: list[dict] = []
    for file in files:
        rows.extend(pq.ParquetFile(file).read().to_pylist())
    return rows


def sorted_rows_hash(path: Path) -> str:
    """SHA-256 of the rows of a Parquet folder, sorted: equal whatever the file layout."""
    lines = sorted(json.dumps(row, sort_keys=True, default=str) for row in read_rows(path))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def tree_digest(path: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``path`` (byte-level comparison)."""
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def planted_pii(landing_dir: Path) -> set[bytes]:
    """Every email, phone and national id in the landing files (decompressed)."""
    found: set[bytes] = set()
    for path in sorted(p for p in landing_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        for pattern in PII_PATTERNS.values():
            found.update(pattern.findall(data))
    return found


def all_text(rows: list[dict]) -> str:
    """Every value of every row as one string, to search for leaks."""
    return "\n".join(json.dumps(row, default=str) for row in rows)


def lake_paths(lake: Path, ds: str, dataset: str = "churn") -> dict[str, Path]:
    return {
        "curated": lake / "curated" / dataset / f"ds={ds}",
        "quarantine": lake / "quarantine" / dataset / f"ds={ds}",
    }


def manifest(lake: Path, ds: str, zone: str = "curated") -> dict:
    return json.loads((lake_paths(lake, ds)[zone] / "_manifest.json").read_text())


def write_quality_result(
    lake: Path, ds: str, *, failed_errors: tuple[str, ...] = (), failed_warns: tuple[str, ...] = ()
) -> Path:
    """The gate's ``result.json`` for a day, written by the gate's own writer: every rule
    passes but ``failed_errors`` (which fail the day) and ``failed_warns`` (which do not)."""
    from include.dq.gate import RESULT_NAME, quality_report_uri, write_gate_outputs
    from include.dq.results import FAIL, PASS, GateResult, RuleOutcome
    from spark_jobs.ingest import curated_content_digest

    def outcome(rule: str, severity: str, status: str) -> RuleOutcome:
        return RuleOutcome(
            rule=rule, kind="range", column="minutes_used", severity=severity, status=status,
            expected={"min": 0}, observed={"min": -1 if status == FAIL else 0},
        )  # fmt: skip

    outcomes = [outcome("schema", "error", PASS), outcome("range_minutes_used", "error", PASS)]
    outcomes += [outcome(rule, "error", FAIL) for rule in failed_errors]
    outcomes += [outcome(rule, "warn", FAIL) for rule in failed_warns]
    # The verdict is on the day's rows as ingested now, named by their content digest.
    checked = curated_content_digest(manifest(lake, ds))
    result = GateResult(
        dataset="churn", ds=ds, engine="great_expectations", outcomes=outcomes,
        partition={"content_sha256": checked},
    )  # fmt: skip
    write_gate_outputs(result, f"file://{lake}")
    return Path(quality_report_uri(str(lake), "churn", ds)) / RESULT_NAME
