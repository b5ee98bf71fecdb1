"""The quality gate's library: find a curated partition, resolve the rules for it, check it, write the result.

The partition is exactly the files its ``_manifest.json`` lists (``outputs.curated.uri`` +
``outputs.curated.files[].path``): the manifest is ingest's commit marker, so a half-written
partition is never checked. Results go to ``<lake>/reports/<dataset>/quality/ds=<D>/``:
``result.json`` (machine-readable, :data:`include.dq.results.RESULT_FORMAT`) and ``report.html``
(for people), both through :func:`include.storage.storage_for`, so the same code writes
``file://`` and ``s3://``.

The rules over ingestion (``quarantine_rate``, ``rows_in_change``) are no engine's: every engine
checks :func:`include.dq.rules.engine_rules`, and :func:`with_ingestion_rules` adds their outcomes,
evaluated from the manifests, to the engine's result.

:func:`run_local_gate` is the local engine (Great Expectations on pandas); the operator in
``plugins/headrace_operators/quality_gate.py`` chooses between it, Glue Data Quality and Deequ.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from include.config import REPO_ROOT
from include.dq.ingestion import (
    evaluate_ingestion_rules,
    ingestion_summary,
    merge_outcomes,
    read_json,
)
from include.dq.results import GateResult, render_html_report
from include.dq.rules import (
    Rule,
    RuleSet,
    engine_rules,
    load_rules,
    previous_partition,
    resolve_rules,
)
from include.storage import storage_for

if TYPE_CHECKING:
    import pandas as pd

DATASETS_DIR = REPO_ROOT / "include" / "datasets"
MANIFEST_NAME = "_manifest.json"
RESULT_NAME = "result.json"
REPORT_NAME = "report.html"


class GateInputError(RuntimeError):
    """The partition cannot be checked (no manifest, unreadable file); the message names it."""


def load_dataset_rules(dataset: str, datasets_dir: Path = DATASETS_DIR) -> RuleSet:
    """The dataset's ``<dataset>.quality.yaml``, checked against its spec."""
    path = datasets_dir / f"{dataset}.quality.yaml"
    if not path.exists():
        raise GateInputError(
            f"dataset {dataset!r} has no quality rules file {path.name} in {datasets_dir}"
        )
    return load_rules(path)


def check_partition_date(ds: str) -> str:
    try:
        date.fromisoformat(ds)
    except (TypeError, ValueError):
        raise GateInputError(f"partition date ds={ds!r} is not a YYYY-MM-DD date") from None
    return ds


def curated_partition_uri(lake_root: str, dataset: str, ds: str) -> str:
    return f"{lake_root.rstrip('/')}/curated/{dataset}/ds={ds}"


def quality_report_uri(lake_root: str, dataset: str, ds: str) -> str:
    """Where one partition's gate writes ``result.json`` and ``report.html``."""
    return f"{lake_root.rstrip('/')}/reports/{dataset}/quality/ds={ds}"


def read_manifest(partition_uri: str) -> dict[str, Any]:
    """A curated partition's run manifest; :class:`GateInputError` if it was never committed."""
    return load_manifest(partition_uri)[0]


def load_manifest(partition_uri: str) -> tuple[dict[str, Any], str]:
    """A curated partition's run manifest and the digest of what it holds
    (:func:`spark_jobs.ingest.curated_content_digest`), recorded with the gate's verdict so that
    the features job can tell a verdict on other rows of the day (a late file re-ingested it)
    from one on the rows there now."""
    from spark_jobs.ingest import curated_content_digest

    uri = f"{partition_uri}/{MANIFEST_NAME}"
    storage = storage_for(uri)
    if not storage.exists(uri):
        raise GateInputError(
            f"{uri} does not exist: the curated partition was never committed by ingest "
            "(run the ingestion DAG for this date first)"
        )
    try:
        manifest = json.loads(storage.read_bytes(uri))
    except ValueError as error:
        raise GateInputError(f"{uri} is not valid JSON: {error}") from None
    return manifest, curated_content_digest(manifest)


# Another stage will offer one public helper for reading a partition's files from its manifest
# (spark_jobs/ingest.py); this small function is the one place to swap for it.
def manifest_file_uris(manifest: dict[str, Any], manifest_uri: str = "") -> list[str]:
    """URIs of exactly the curated files the manifest lists.

    Paths are joined to the folder of ``manifest_uri`` (so a copied or moved lake reads the
    same, as ``spark_jobs.ingest`` reads partitions); without it, to ``outputs.curated.uri``.
    """
    try:
        curated = manifest["outputs"]["curated"]
        base = manifest_uri.rsplit("/", 1)[0] if manifest_uri else curated["uri"].rstrip("/")
        return [f"{base}/{item['path']}" for item in curated["files"]]
    except (KeyError, TypeError) as error:
        raise GateInputError(
            f"manifest {manifest_uri or '(in memory)'} lacks outputs.curated.uri/files ({error})"
        ) from None


def previous_row_count(lake_root: str, dataset: str, ds: str) -> int | None:
    """Rows accepted into the previous day's partition, from its manifest; ``None`` if absent."""
    uri = f"{curated_partition_uri(lake_root, dataset, previous_partition(ds))}/{MANIFEST_NAME}"
    storage = storage_for(uri)
    if not storage.exists(uri):
        return None
    manifest = json.loads(storage.read_bytes(uri))
    return int(manifest["totals"]["rows_accepted"])


def read_partition_frame(file_uris: Sequence[str], curated_types: dict[str, str]) -> pd.DataFrame:
    """The listed Parquet files as one pandas DataFrame (dates and naive UTC timestamps as datetime64)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for uri in file_uris:
        parsed = urlparse(uri)
        try:
            if parsed.scheme == "file":
                # ParquetFile, not read_table: no hive partition columns from the ds= folder name.
                tables.append(pq.ParquetFile(unquote(parsed.path)).read())
            else:
                tables.append(pq.ParquetFile(io.BytesIO(storage_for(uri).read_bytes(uri))).read())
        except (OSError, pa.ArrowInvalid) as error:
            raise GateInputError(f"cannot read curated file {uri}: {error}") from None
    if not tables:
        return _empty_frame(curated_types)
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    # Dates as datetime64, not Python date objects: GE type-checks a numpy dtype once per column
    # but an object column value by value (measured: seconds per column at 1M rows).
    frame = table.to_pandas(date_as_object=False)
    # Curated timestamps are UTC by contract; naive UTC keeps them a numpy dtype, which every
    # GE expectation compares and type-checks (tz-aware columns are pandas extension types).
    for name, dtype in frame.dtypes.items():
        if getattr(dtype, "tz", None) is not None:
            frame[name] = frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


def _empty_frame(curated_types: dict[str, str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({name: pd.Series([], dtype="object") for name in curated_types})


def resolved_rules_for(rule_set: RuleSet, lake_root: str, ds: str) -> list[Rule]:
    """The dataset's rules with this partition's thresholds filled in (see :func:`resolve_rules`)."""
    return resolve_rules(rule_set.rules, ds, previous_row_count(lake_root, rule_set.dataset, ds))


def run_local_gate(rule_set: RuleSet, lake_root: str, ds: str) -> GateResult:
    """Check one curated partition with Great Expectations (pandas) in this process."""
    from include.dq.great_expectations_suite import validate_dataframe

    check_partition_date(ds)
    partition_uri = curated_partition_uri(lake_root, rule_set.dataset, ds)
    manifest, content_sha256 = load_manifest(partition_uri)
    files = manifest_file_uris(manifest, f"{partition_uri}/{MANIFEST_NAME}")
    rules = resolved_rules_for(rule_set, lake_root, ds)
    frame = read_partition_frame(files, rule_set.curated_types())
    outcomes = validate_dataframe(
        frame, engine_rules(rules), rule_set.key_columns, suite_name=f"{rule_set.dataset}_quality"
    )
    result = GateResult(
        dataset=rule_set.dataset,
        ds=ds,
        engine="great_expectations",
        outcomes=outcomes,
        partition=partition_summary(
            partition_uri, manifest, content_sha256, files, rows=len(frame)
        ),
    )
    return with_ingestion_rules(result, rules, manifest, lake_root)


def rows_in_of_day(lake_root: str, dataset: str, ds: str) -> int | None:
    """The landing rows ingest read on ``ds`` if the gate validated that day, else ``None``.

    Validated: its ``result.json`` passed, on the rows its curated manifest lists now (the
    digest the gate recorded matches, as the features job requires). Reads two small JSON
    documents, never a data file.
    """
    result_uri = f"{quality_report_uri(lake_root, dataset, ds)}/{RESULT_NAME}"
    result = read_json(storage_for(result_uri), result_uri)
    if not result or result.get("passed") is not True or result.get("ds") != ds:
        return None
    manifest_uri = f"{curated_partition_uri(lake_root, dataset, ds)}/{MANIFEST_NAME}"
    manifest = read_json(storage_for(manifest_uri), manifest_uri)
    if manifest is None:
        return None
    from spark_jobs.ingest import curated_content_digest

    checked = (result.get("partition") or {}).get("content_sha256")
    if checked != curated_content_digest(manifest):
        return None
    rows = (manifest.get("totals") or {}).get("rows_read")
    return int(rows) if rows is not None else None


def with_ingestion_rules(
    result: GateResult, rules: Sequence[Rule], manifest: dict[str, Any], lake_root: str
) -> GateResult:
    """``result`` (the engine's outcomes) with the rules over ingestion evaluated from the day's
    ``manifest`` beside them, one outcome per rule in the rules file's order, each with its
    description, and the ingestion summary the report shows. The same for every engine."""
    ingestion = evaluate_ingestion_rules(
        rules,
        result.ds,
        manifest,
        lambda day: rows_in_of_day(lake_root, result.dataset, day),
    )
    result.outcomes = merge_outcomes(rules, result.outcomes, ingestion)
    result.ingestion = ingestion_summary(manifest)
    return result


def partition_summary(
    partition_uri: str,
    manifest: dict[str, Any],
    content_sha256: str,
    files: Sequence[str],
    rows: int | None = None,
) -> dict[str, Any]:
    summary = {
        "uri": partition_uri,
        "manifest_uri": f"{partition_uri}/{MANIFEST_NAME}",
        "content_sha256": content_sha256,
        "files": len(files),
        "spec_fingerprint": manifest.get("spec_fingerprint"),
        "rows_accepted_by_ingest": manifest.get("totals", {}).get("rows_accepted"),
    }
    if rows is not None:
        summary["rows_checked"] = rows
    return summary


def write_gate_outputs(result: GateResult, lake_root: str) -> dict[str, str]:
    """Write ``result.json`` and ``report.html`` for the partition; returns their URIs."""
    folder = quality_report_uri(lake_root, result.dataset, result.ds)
    result_uri, report_uri = f"{folder}/{RESULT_NAME}", f"{folder}/{REPORT_NAME}"
    storage = storage_for(folder)
    storage.write_bytes(result_uri, result.to_json())
    storage.write_bytes(report_uri, render_html_report(result))
    return {"result_uri": result_uri, "report_uri": report_uri}
