"""Model features and a deterministic train/validation/test split from curated snapshots.

For ``--ds D`` the job reads the curated partitions of the spec's lookback window
(``D - lookback + 1`` … ``D``) that passed the quality gate, takes each entity's snapshot on
``D`` as the row, and derives the features the spec's ``features:`` block declares:

- ``numeric``: as doubles, nulls as 0.0 with a ``<name>_missing`` 0/1 flag for nullable columns;
- ``categorical``: one-hot over the column's allowed values (``plan__premium``…), so the feature
  set is fixed by the spec and never by the data of one day;
- ``boolean``: 0/1; ``days_since``: whole days from the column's date to ``D``;
- ``rolling_mean``: the mean over the window (``<name>_mean_<N>d``), plus ``days_present_<N>d``;
- ``ratios``: numerator / denominator, 0.0 where the denominator is 0 or missing.

The spec's ``audit_attributes`` (say ``sex``) are carried as they are, cast to strings (null
stays null), beside the id columns: they are no features (the manifest's ``features`` omits
them and training never feeds them to the model) and exist only for the fairness audit.

Rows are assigned to splits by a salted hash of the split key (``xxhash64`` of
``split_seed|key``, mod 100, against the spec's percentages): the same entity always lands in
the same split, on every day and every re-run, so no entity leaks between training and test.
Output: ``<lake>/features/<dataset>/ds=D/split=<train|validation|test>/part-*.parquet`` and a
``_manifest.json`` (inputs with their manifests' checksums, the window's days used and left
out with the reason for each, feature list, rows and label rate per split), committed
atomically like the ingest job's partitions.

Validated data only: a day of the window is read only if its curated partition is committed
(``_manifest.json``; exactly the files it lists) and the gate's verdict
``reports/<dataset>/quality/ds=<day>/result.json`` says every error rule passed. A past day
with no partition, no verdict or a failed verdict is left out and named in the manifest's
``window`` (``missing``, ``not_validated``, ``failed_gate``, ``reasons``): rolling features
then cover the days that remain, and ``days_present_<N>d`` shows it. Day ``D`` itself must be
committed and have passed (the validation DAG runs its gate right before this job), else the
job fails.

    python -m spark_jobs.features --spec include/datasets/churn.yaml \\
        --lake-root file:///…/lake --ds 2026-01-07 [--lookback-days 7]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from spark_jobs.dataset_spec import DatasetSpec, FeatureSpec
from spark_jobs.ingest import (
    MANIFEST_NAME,
    IngestError,
    clear_stale_staging,
    commit_partition,
    configure_logging,
    curated_content_digest,
    finalize_output_files,
    fs_for,
    join_uri,
    listed_files,
    load_spec_any,
    staging_uri,
    to_uri,
)

log = logging.getLogger("headrace.features")

MANIFEST_VERSION = 1
# One output file per split per this many rows (a training channel reads them all).
ROWS_PER_FILE = 1_000_000
# The quality gate's result document (include/dq/results.py RESULT_FORMAT and layout): a Spark
# job ships without include/, so the format is named here and read as plain JSON.
QUALITY_RESULT_FORMAT = "headrace-quality-result/1"
QUALITY_RESULT_NAME = "result.json"
# What became of a day of the window.
USED, MISSING, NOT_VALIDATED, FAILED_GATE = "used", "missing", "not_validated", "failed_gate"


class FeaturesError(IngestError):
    """The features job cannot run; the message names the partition or argument."""


@dataclass
class FeaturesResult:
    manifest: dict
    features_uri: str


@dataclass
class GateVerdict:
    """The gate's verdict on one day: ``used`` (passed), ``not_validated`` or ``failed_gate``."""

    status: str
    reason: str = ""
    result_sha256: str | None = None


def _value_name(value) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(value).lower()).strip("_") or "blank"


def feature_columns(spec: DatasetSpec, lookback_days: int) -> list[str]:
    """Every feature column, in output order (what the training job reads)."""
    features = _features_spec(spec)
    names: list[str] = []
    for name in features.numeric:
        names.append(name)
        if spec.column(name).nullable:
            names.append(f"{name}_missing")
    for name in features.categorical:
        names.extend(f"{name}__{_value_name(v)}" for v in spec.column(name).allowed or ())
    names.extend(features.boolean)
    names.extend(f"days_since_{name}" for name in features.days_since)
    names.extend(f"{name}_mean_{lookback_days}d" for name in features.rolling_mean)
    if features.rolling_mean:
        names.append(f"days_present_{lookback_days}d")
    names.extend(ratio.name for ratio in features.ratios)
    return names


def _features_spec(spec: DatasetSpec) -> FeatureSpec:
    if spec.features is None:
        raise FeaturesError(f"spec {spec.source} has no features: block")
    return spec.features


def split_column(features: FeatureSpec):
    """``split`` from a salted hash of the split key: stable per entity, independent of the day."""
    from pyspark.sql import functions as F

    bucket = F.pmod(
        F.xxhash64(
            F.concat(F.lit(features.split_seed + "|"), F.col(features.split_key).cast("string"))
        ),
        F.lit(100),
    )
    expression = None
    for name, lo, hi in features.split_bounds():
        if hi <= lo:
            continue
        condition = (bucket >= lo) & (bucket < hi)
        expression = (
            F.when(condition, F.lit(name))
            if expression is None
            else expression.when(condition, F.lit(name))
        )
    return expression


def build_features(curated, spec: DatasetSpec, ds: date, lookback_days: int):
    """The feature rows of ``ds``: keys, audit columns (strings), features (doubles), the label
    and the split."""
    from pyspark.sql import functions as F

    features = _features_spec(spec)
    key, day = features.split_key, spec.partition_column
    anchor = curated.filter(F.col(day) == F.lit(ds.isoformat()).cast("date"))
    columns = [F.col(key), F.col(day)]
    # Audit columns travel with the ids: never features, only the groups of the fairness audit.
    columns.extend(F.col(name).cast("string").alias(name) for name in features.audit_attributes)
    for name in features.numeric:
        value = F.col(name).cast("double")
        columns.append(F.coalesce(value, F.lit(0.0)).alias(name))
        if spec.column(name).nullable:
            columns.append(F.col(name).isNull().cast("double").alias(f"{name}_missing"))
    for name in features.categorical:
        for value in spec.column(name).allowed or ():
            columns.append(
                (F.col(name) == F.lit(value)).cast("double").alias(f"{name}__{_value_name(value)}")
            )
    for name in features.boolean:
        columns.append(F.coalesce(F.col(name).cast("double"), F.lit(0.0)).alias(name))
    for name in features.days_since:
        since = F.datediff(F.lit(ds.isoformat()).cast("date"), F.to_date(F.col(name)))
        columns.append(F.coalesce(since.cast("double"), F.lit(0.0)).alias(f"days_since_{name}"))
    for ratio in features.ratios:
        denominator = F.col(ratio.denominator).cast("double")
        quotient = F.when(denominator != 0, F.col(ratio.numerator).cast("double") / denominator)
        columns.append(F.coalesce(quotient, F.lit(0.0)).alias(ratio.name))
    columns.append(F.col(spec.label).alias(spec.label))
    rows = anchor.select(*columns)

    if features.rolling_mean:
        window = curated.groupBy(key).agg(
            *(
                F.avg(F.col(n).cast("double")).alias(f"{n}_mean_{lookback_days}d")
                for n in features.rolling_mean
            ),
            F.countDistinct(F.col(day)).cast("double").alias(f"days_present_{lookback_days}d"),
        )
        rows = rows.join(window, key, "left").fillna(
            0.0, subset=[c for c in window.columns if c != key]
        )
    ordered = [
        key,
        day,
        *features.audit_attributes,
        *feature_columns(spec, lookback_days),
        spec.label,
    ]
    return rows.select(*ordered, split_column(features).alias("split"))


def curated_partitions(
    lake_root: str, spec: DatasetSpec, ds: date, lookback_days: int
) -> list[tuple[str, str]]:
    """``[(ds, uri)]`` of the window, oldest first."""
    base = join_uri(lake_root, "curated", spec.dataset)
    days = [ds - timedelta(days=offset) for offset in range(lookback_days - 1, -1, -1)]
    return [(d.isoformat(), join_uri(base, f"ds={d.isoformat()}")) for d in days]


def quality_result_uri(lake_root: str, dataset: str, day: str) -> str:
    """Where the gate writes its verdict on a day (``include.dq.gate.quality_report_uri``)."""
    return join_uri(lake_root, "reports", dataset, "quality", f"ds={day}", QUALITY_RESULT_NAME)


def gate_verdict(
    lake_fs, lake_root: str, dataset: str, day: str, content_sha256: str
) -> GateVerdict:
    """Whether the day's gate result says every error rule passed on the curated rows whose
    digest is ``content_sha256`` (:func:`spark_jobs.ingest.curated_content_digest`), and if
    not, why.

    No result, or one that cannot be read as this day's result, is ``not_validated``; a result
    with a failed error rule (or ``passed`` not true) is ``failed_gate``. Failed warn rules do
    not block, as in the gate itself.
    """
    uri = quality_result_uri(lake_root, dataset, day)
    if not lake_fs.exists(uri):
        return GateVerdict(NOT_VALIDATED, f"no quality result {uri}: the gate never checked it")
    with lake_fs.open(uri) as handle:
        data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    try:
        document = json.loads(data)
    except ValueError as error:
        return GateVerdict(NOT_VALIDATED, f"{uri} is not valid JSON: {error}", digest)
    if not isinstance(document, dict) or document.get("format") != QUALITY_RESULT_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        return GateVerdict(
            NOT_VALIDATED,
            f"{uri} is not a quality result (format {found!r}, expected {QUALITY_RESULT_FORMAT!r})",
            digest,
        )
    if (document.get("dataset"), document.get("ds")) != (dataset, day):
        return GateVerdict(
            NOT_VALIDATED,
            f"{uri} holds the result of {document.get('dataset')} ds={document.get('ds')}, "
            f"not {dataset} ds={day}",
            digest,
        )
    results = document.get("results")
    if not isinstance(results, list):
        return GateVerdict(NOT_VALIDATED, f"{uri} lists no rule results", digest)
    blocking = [
        str(item.get("rule"))
        for item in results
        if isinstance(item, dict)
        and item.get("status") == "fail"
        and item.get("severity") == "error"
    ]
    checked = (document.get("partition") or {}).get("content_sha256")
    if checked != content_sha256:
        # The gate checked other rows of the day (a late file re-ingested it since), or the
        # result does not say which: the rows there now are not validated yet.
        return GateVerdict(
            NOT_VALIDATED,
            f"{uri} is the verdict on curated content sha256 {checked}, the day's content is "
            f"now {content_sha256}: the day was re-ingested after the gate checked it",
            digest,
        )
    if blocking or document.get("passed") is not True:
        rules = ", ".join(blocking) if blocking else "none named, but passed is not true"
        return GateVerdict(
            FAILED_GATE,
            f"the quality gate failed on {document.get('engine', '?')}: error rules {rules} ({uri})",
            digest,
        )
    return GateVerdict(USED, "", digest)


def run_features(
    spark,
    spec: DatasetSpec,
    *,
    lake_root: str,
    ds: str,
    lookback_days: int | None = None,
) -> FeaturesResult:
    """Build and atomically commit the features partition of ``ds`` from validated days only."""
    from pyspark.sql import functions as F

    features = _features_spec(spec)
    try:
        logical_date = date.fromisoformat(ds)
    except ValueError:
        raise FeaturesError(f"--ds {ds!r} is not a date (YYYY-MM-DD)") from None
    lookback = lookback_days or features.lookback_days
    if lookback < 1:
        raise FeaturesError(f"--lookback-days must be at least 1, got {lookback}")
    lake_root = to_uri(lake_root)
    lake_fs = fs_for(lake_root)

    # Only committed, validated partitions count: the curated manifest is written last by the
    # ingest job, the gate's result after it checked exactly the files that manifest lists.
    inputs, paths = [], []
    window: dict[str, list[str]] = {USED: [], MISSING: [], NOT_VALIDATED: [], FAILED_GATE: []}
    reasons: dict[str, str] = {}
    days = curated_partitions(lake_root, spec, logical_date, lookback)
    for day, uri in days:
        manifest_uri = join_uri(uri, MANIFEST_NAME)
        if not lake_fs.exists(manifest_uri):
            if day == ds:
                raise FeaturesError(
                    f"the curated partition of {spec.dataset} ds={ds} is missing ({manifest_uri} "
                    "does not exist); ingest and validate it first"
                )
            window[MISSING].append(day)
            reasons[day] = f"no committed curated partition ({manifest_uri} does not exist)"
            continue
        with lake_fs.open(manifest_uri) as handle:
            manifest_bytes = handle.read()
        ingest_manifest = json.loads(manifest_bytes)
        verdict = gate_verdict(
            lake_fs, lake_root, spec.dataset, day, curated_content_digest(ingest_manifest)
        )
        if verdict.status != USED:
            if day == ds:
                raise FeaturesError(
                    f"{spec.dataset} ds={ds} has not passed the quality gate: {verdict.reason}; "
                    "features are built from validated days only (run its validation first)"
                )
            window[verdict.status].append(day)
            reasons[day] = verdict.reason
            log.warning(
                "features %s ds=%s: leaving out ds=%s: %s", spec.dataset, ds, day, verdict.reason
            )
            continue
        # Read exactly the files this manifest names (as ingest.partition_files does): on S3 the
        # prefix can also hold files of a commit in flight; stray files are never data.
        files = listed_files(ingest_manifest, uri)
        paths.extend(files)
        window[USED].append(day)
        inputs.append(
            {
                "ds": day,
                "uri": uri,
                "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
                "quality_result_sha256": verdict.result_sha256,
                "schema_version": ingest_manifest.get("schema_version"),
                "rows": ingest_manifest.get("totals", {}).get("rows_accepted"),
                "files": [name[len(uri) + 1 :] for name in files],
            }
        )
    versions = {i["schema_version"] for i in inputs}
    if versions != {spec.schema_version}:
        raise FeaturesError(
            f"curated partitions have schema versions {sorted(map(str, versions))}, "
            f"spec {spec.source} is version {spec.schema_version}; re-ingest them"
        )

    if not paths:
        raise FeaturesError(f"the curated partitions of {spec.dataset} for ds={ds} hold no files")
    curated = spark.read.parquet(*paths)
    table = build_features(curated, spec, logical_date, lookback)
    anchor_rows = sum(i["rows"] or 0 for i in inputs if i["ds"] == ds)
    files = max(1, math.ceil(anchor_rows / ROWS_PER_FILE))
    # Hash-partitioned by key and sorted: the same rows give the same files, run after run.
    table = table.repartition(files, features.split_key).sortWithinPartitions(
        "split", features.split_key
    )

    zone = join_uri(lake_root, "features")
    partition = f"ds={ds}"
    target = join_uri(zone, spec.dataset, partition)
    lake_fs.recover(target)
    clear_stale_staging(lake_fs, zone, spec.dataset, partition)
    staged = staging_uri(zone, spec.dataset, partition, uuid.uuid4().hex)
    table.write.partitionBy("split").mode("overwrite").parquet(staged)

    stats = {
        row["split"]: {"rows": row["rows"], "label_mean": round(row["label_mean"] or 0.0, 6)}
        for row in spark.read.parquet(staged)
        .groupBy("split")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.avg(F.col(spec.label).cast("double")).alias("label_mean"),
        )
        .collect()
    }
    output_files = finalize_output_files(lake_fs, staged)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "job": "spark_jobs.features",
        "dataset": spec.dataset,
        "ds": ds,
        "schema_version": spec.schema_version,
        "spec_fingerprint": spec.fingerprint,
        "lookback_days": lookback,
        "inputs": inputs,
        # Every window day whose rows are not in these features, whatever the reason.
        "missing_days": sorted(reasons),
        "window": {"days": [day for day, _ in days], **window, "reasons": reasons},
        "key": features.split_key,
        "label": spec.label,
        "features": feature_columns(spec, lookback),
        # Carried beside the ids for the fairness audit; not model inputs.
        "audit_attributes": list(features.audit_attributes),
        "split": {
            "key": features.split_key,
            "seed": features.split_seed,
            "rule": "pmod(xxhash64(concat(seed, '|', key)), 100) in [lo, hi)",
            "buckets": {name: [lo, hi] for name, lo, hi in features.split_bounds()},
        },
        "splits": {
            name: stats.get(name, {"rows": 0, "label_mean": 0.0})
            for name, _, _ in features.split_bounds()
        },
        "outputs": {"uri": target, "files": output_files},
    }
    lake_fs.write_bytes(
        join_uri(staged, MANIFEST_NAME),
        (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(),
    )
    commit_partition(lake_fs, staged, target)
    clear_stale_staging(lake_fs, zone, spec.dataset, partition)
    return FeaturesResult(manifest=manifest, features_uri=target)


def build_parser() -> argparse.ArgumentParser:
    # Every option takes a value: Glue passes job arguments only as --key value pairs.
    parser = argparse.ArgumentParser(
        prog="python -m spark_jobs.features", description="Build model features for one date."
    )
    parser.add_argument(
        "--spec", required=True, help="dataset spec YAML: path, file:// or s3:// URI"
    )
    parser.add_argument(
        "--lake-root", required=True, help="lake root URI: file:///… or s3://bucket/prefix"
    )
    parser.add_argument("--ds", required=True, help="logical date, YYYY-MM-DD (the anchor day)")
    parser.add_argument(
        "--lookback-days", type=int, help="window length (default: the spec's lookback_days)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    args, unknown = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if unknown:
        log.info(
            "ignoring platform arguments: %s", " ".join(a for a in unknown if a.startswith("--"))
        )
    spec = load_spec_any(args.spec)
    from spark_jobs.spark_session import get_spark

    spark = get_spark(f"headrace-features-{spec.dataset}")
    result = run_features(
        spark,
        spec,
        lake_root=args.lake_root,
        ds=args.ds,
        lookback_days=args.lookback_days,
    )
    summary = {
        "dataset": spec.dataset,
        "ds": args.ds,
        "features_uri": result.features_uri,
        "manifest_uri": join_uri(result.features_uri, MANIFEST_NAME),
        "splits": result.manifest["splits"],
        "features": len(result.manifest["features"]),
    }
    log.info("features %s ds=%s: %s", spec.dataset, args.ds, summary["splits"])
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
