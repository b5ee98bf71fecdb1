"""Benchmark: the quality gate's Great Expectations suite at 1M rows, against GE's best configuration
and the same checks in one duckdb pass, all measured in the same run on the same Parquet files.

Builds one curated-like churn partition (1M rows by default, Spark's Parquet types, a few planted
violations so the offending-row paths run), writes it with its ``_manifest.json``, then times:

- ``gate``: :func:`include.dq.gate.run_local_gate` exactly as the operator runs it (read the
  manifest's files with pyarrow into pandas, the suite validated once with BASIC results, then
  the failed row-level expectations again for the keys of offending rows);
- GE configurations, each reading the same files, to find GE's own best on this data: the suite
  on pandas with BASIC results, with SUMMARY plus offending keys for every expectation, with GE's
  cheapest (BOOLEAN_ONLY) format, one ``validate`` per expectation, and the suite on GE's Spark
  datasource (local Spark; the JVM start is not counted);
- ``duckdb``: the same checks as one SQL statement over the same files (aggregates in one scan,
  plus the duplicate-key count) — the floor: no framework.

Each is run ``--repeat`` times after one untimed warm-up (imports, GE's metric registry, JIT);
the median is reported with the ratios. Target: the gate within 2.5x of GE's best.

    python bench/data_quality.py [--rows 1000000] [--repeat 3] [--skip-spark]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from include.dq.gate import (  # noqa: E402
    curated_partition_uri,
    load_dataset_rules,
    manifest_file_uris,
    read_manifest,
    read_partition_frame,
    resolved_rules_for,
    run_local_gate,
)
from include.dq.rules import Rule  # noqa: E402

DS = "2026-01-10"
GATE_BUDGET = 2.5
ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int32(),
    "long": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def build_partition(
    lake_dir: Path, rows: int, curated_types: dict[str, str], files: int = 4
) -> str:
    """A committed curated partition of ``rows`` rows under ``lake_dir``; returns the lake URI."""
    rng = np.random.default_rng(7)
    index = np.arange(rows)
    day = np.datetime64(DS, "D")

    def pick(options: list[str]) -> pa.Array:
        return pa.array(np.asarray(options, dtype=object)[rng.choice(len(options), rows)])

    charge = np.round(
        rng.choice([19.99, 39.99, 69.99, 89.99], rows, p=[0.35, 0.35, 0.2, 0.1])
        + rng.normal(2, 5, rows),
        2,
    )
    minutes = np.round(np.clip(rng.gamma(2.0, 50.0, rows), 0, 1440), 1)
    data_gb = np.round(minutes * 0.015, 3)
    columns = {
        "customer_id": pa.array(
            np.char.add("C", np.char.zfill(index.astype(str), 9)).astype(object)
        ),
        "snapshot_date": pa.array(np.full(rows, day)),
        "event_ts": pa.array(
            day.astype("datetime64[us]")
            + rng.integers(0, 86_400_000_000, rows).astype("timedelta64[us]")
        ),
        "signup_date": pa.array(day - rng.integers(0, 4000, rows).astype("timedelta64[D]")),
        "plan": pick(["basic", "standard", "premium", "family"]),
        "contract": pick(["month-to-month", "one-year", "two-year"]),
        "region": pick(["na-east", "na-west", "eu-west", "eu-central", "apac", "latam"]),
        "payment_method": pick(["card", "bank_transfer", "paypal", "invoice"]),
        "autopay": pa.array(rng.random(rows) < 0.6),
        "tenure_months": pa.array(rng.integers(0, 170, rows).astype(np.int32)),
        "monthly_charge": pa.array(charge),
        "total_charges": pa.array(
            np.where(rng.random(rows) < 0.03, np.nan, charge * 20), from_pandas=True
        ),
        "minutes_used": pa.array(minutes),
        "sessions": pa.array((minutes // 12 + 1).astype(np.int32)),
        "data_gb": pa.array(np.where(rng.random(rows) < 0.02, np.nan, data_gb), from_pandas=True),
        "support_tickets_30d": pa.array(rng.poisson(0.3, rows).astype(np.int32)),
        "payment_failures_90d": pa.array(rng.poisson(0.2, rows).astype(np.int32)),
        "device_model": pick(["Pixel 8", "iPhone 15", "Galaxy S24", "Moto G"]),
        "email_sha256": pa.array(np.char.zfill(index.astype(str), 64).astype(object)),
        "phone": pa.array(np.full(rows, "********12", dtype=object)),
        "churned": pa.array((rng.random(rows) < 0.2).astype(np.int32)),
    }
    # A few planted violations, so the offending-row paths do real work.
    region = columns["region"].to_numpy(zero_copy_only=False).copy()
    region[rng.choice(rows, 100, replace=False)] = "mars"
    columns["region"] = pa.array(region)
    plan = columns["plan"].to_numpy(zero_copy_only=False).copy()
    plan[rng.choice(rows, 50, replace=False)] = None
    columns["plan"] = pa.array(plan, type=pa.string())
    table = pa.table(
        {name: columns[name].cast(ARROW_TYPES[ctype]) for name, ctype in curated_types.items()}
    )

    lake = lake_dir.as_uri()
    partition_uri = curated_partition_uri(lake, "churn", DS)
    folder = Path(partition_uri.removeprefix("file://"))
    folder.mkdir(parents=True)
    step = -(-rows // files)
    entries = []
    for part in range(files):
        name = f"part-{part:05d}.snappy.parquet"
        pq.write_table(table.slice(part * step, step), folder / name, compression="snappy")
        entries.append({"path": name})
    manifest = {
        "spec_fingerprint": "bench",
        "totals": {"rows_accepted": rows},
        "outputs": {"curated": {"uri": partition_uri, "files": entries}},
    }
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    return lake


def time_it(function: Callable[[], object], repeat: int) -> tuple[float, object]:
    function()  # warm-up: imports, GE's registries, caches
    seconds = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


# --- GE configurations ---------------------------------------------------------------------


def ge_pandas_suite(files, types, rules, key_columns, result_format) -> Callable[[], bool]:
    from include.dq.great_expectations_suite import build_suite, ephemeral_context

    def run() -> bool:
        frame = read_partition_frame(files, types)
        context = ephemeral_context()
        suite = build_suite(rules, "bench", context=context)
        batch = (
            context.data_sources.add_or_update_pandas("bench")
            .add_dataframe_asset("bench")
            .add_batch_definition_whole_dataframe("bench")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        return batch.validate(suite, result_format=result_format).success

    return run


def ge_pandas_per_expectation(files, types, rules) -> Callable[[], bool]:
    from include.dq.great_expectations_suite import compile_rule, ephemeral_context

    def run() -> bool:
        frame = read_partition_frame(files, types)
        context = ephemeral_context()
        batch = (
            context.data_sources.add_or_update_pandas("bench")
            .add_dataframe_asset("bench")
            .add_batch_definition_whole_dataframe("bench")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        results = [
            batch.validate(expectation, result_format="BOOLEAN_ONLY").success
            for rule in rules
            for expectation in compile_rule(rule)
        ]
        return all(results)

    return run


def ge_spark_suite(files, rules) -> Callable[[], bool]:
    from include.dq.great_expectations_suite import build_suite, ephemeral_context
    from spark_jobs.spark_session import get_spark

    started = time.perf_counter()
    spark = get_spark("headrace-bench-dq")
    spark.range(1).count()
    # Not in the timings below, but every gate task (a fresh process) would pay it.
    print(f"local Spark session started in {time.perf_counter() - started:.1f}s", flush=True)
    paths = [uri.removeprefix("file://") for uri in files]

    def run() -> bool:
        frame = spark.read.parquet(*paths).cache()
        context = ephemeral_context()
        suite = build_suite(rules, "bench_spark", engine="spark", context=context)
        batch = (
            context.data_sources.add_or_update_spark("bench_spark")
            .add_dataframe_asset("bench")
            .add_batch_definition_whole_dataframe("bench")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        success = batch.validate(suite, result_format="BOOLEAN_ONLY").success
        frame.unpersist()
        return success

    return run


# --- duckdb: the same checks in one statement ----------------------------------------------


def _sql_value(value) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


def _duckdb_source(files: list[str]) -> str:
    # Exactly the manifest's files; no ds column guessed from the ds=… folder name.
    paths = ", ".join(f"'{uri.removeprefix('file://')}'" for uri in files)
    return f"read_parquet([{paths}], hive_partitioning = false)"


def duckdb_checks_sql(rules: list[Rule], files: list[str]) -> str:
    """One SELECT over the files: an aggregate per rule (the schema rule reads DESCRIBE)."""
    source = _duckdb_source(files)
    aggregates = []
    for rule in rules:
        if rule.skip_reason or rule.kind == "schema":
            continue
        column = f'"{rule.column}"' if rule.column else ""
        if rule.kind == "completeness":
            expression = f"count({column})::DOUBLE / count(*) >= {rule.min_fraction}"
        elif rule.kind == "uniqueness":
            keys = ", ".join(f'"{c}"' for c in rule.columns)
            expression = f"(SELECT count(*) FROM (SELECT {keys} FROM {source} GROUP BY ALL HAVING count(*) > 1)) = 0"  # noqa: S608
        elif rule.kind == "range":
            low = f"{column} >= {_sql_value(rule.min)}" if rule.min is not None else "TRUE"
            high = f"{column} <= {_sql_value(rule.max)}" if rule.max is not None else "TRUE"
            expression = (
                f"count(*) FILTER (WHERE {column} IS NOT NULL AND NOT ({low} AND {high})) = 0"
            )
        elif rule.kind == "allowed_values":
            values = ", ".join(_sql_value(v) for v in rule.values)
            expression = f"count(*) FILTER (WHERE {column} NOT IN ({values})) = 0"
        elif rule.kind == "regex":
            expression = (
                f"count(*) FILTER (WHERE NOT regexp_full_match({column}, '{rule.pattern}')) = 0"
            )
        elif rule.kind in ("row_count", "row_count_change"):
            expression = f"count(*) BETWEEN {rule.min} AND {rule.max}"
        elif rule.kind == "freshness":
            expression = f"max({column}) >= TIMESTAMPTZ '{rule.not_before}'"
        elif rule.kind == "mean":
            expression = f"avg({column}) BETWEEN {rule.min} AND {rule.max}"
        else:  # stdev
            expression = f"stddev_samp({column}) BETWEEN {rule.min} AND {rule.max}"
        aggregates.append(f'{expression} AS "{rule.id}"')
    # Built from the checked rules file and the manifest's file names, not from user input.
    return f"SELECT {', '.join(aggregates)} FROM {source}"  # noqa: S608


def duckdb_pass(files, rules, schema_rule: Rule | None) -> Callable[[], dict]:
    import duckdb

    sql = duckdb_checks_sql(rules, files)
    source = _duckdb_source(files)

    def run() -> dict:
        connection = duckdb.connect()
        try:
            cursor = connection.execute(sql)
            names = [d[0] for d in cursor.description]
            outcome = dict(zip(names, cursor.fetchone(), strict=True))
            if schema_rule is not None:
                described = {
                    row[0]: row[1]
                    for row in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()  # noqa: S608
                }
                outcome["schema"] = set(described) == {name for name, _ in schema_rule.schema}
            return outcome
        finally:
            connection.close()

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-spark", action="store_true", help="leave out GE's Spark datasource")
    args = parser.parse_args(argv)

    rule_set = load_dataset_rules("churn")
    types = rule_set.curated_types()
    with tempfile.TemporaryDirectory(prefix="headrace-bench-dq-") as tmp:
        started = time.perf_counter()
        lake = build_partition(Path(tmp) / "lake", args.rows, types)
        print(f"built {args.rows:,} rows in {time.perf_counter() - started:.1f}s", flush=True)
        partition = curated_partition_uri(lake, "churn", DS)
        files = manifest_file_uris(read_manifest(partition), f"{partition}/_manifest.json")
        rules = resolved_rules_for(rule_set, lake, DS)
        keys = list(rule_set.key_columns)
        from include.dq.great_expectations_suite import result_format

        timings: dict[str, float] = {}
        timings["gate (run_local_gate)"], gate_result = time_it(
            lambda: run_local_gate(rule_set, lake, DS), args.repeat
        )
        print(f"gate: {gate_result.counts()}", flush=True)
        ge_variants = {
            "GE pandas, one suite, BASIC": ge_pandas_suite(
                files, types, rules, keys, result_format()
            ),
            "GE pandas, one suite, SUMMARY + keys of every expectation": ge_pandas_suite(
                files, types, rules, keys, result_format(keys)
            ),
            "GE pandas, one suite, BOOLEAN_ONLY": ge_pandas_suite(
                files, types, rules, keys, "BOOLEAN_ONLY"
            ),
            "GE pandas, one validate per expectation": ge_pandas_per_expectation(
                files, types, rules
            ),
        }
        if not args.skip_spark:
            ge_variants["GE spark datasource, one suite, BOOLEAN_ONLY"] = ge_spark_suite(
                files, rules
            )
        for name, run in ge_variants.items():
            timings[name], _ = time_it(run, args.repeat)
            print(f"{name}: {timings[name]:.2f}s", flush=True)
        schema_rule = next((r for r in rules if r.kind == "schema"), None)
        timings["duckdb, one pass"], duck = time_it(
            duckdb_pass(files, rules, schema_rule), args.repeat
        )
        failing = sorted(name for name, ok in duck.items() if not ok)
        print(f"duckdb failing checks: {failing}", flush=True)

    gate = timings["gate (run_local_gate)"]
    ge_names = [name for name in timings if name.startswith("GE ")]
    best_name = min(ge_names, key=timings.__getitem__)
    best, duck_seconds = timings[best_name], timings["duckdb, one pass"]
    print(f"\n{args.rows:,} rows, {len(rules)} rules, median of {args.repeat} after a warm-up")
    print(f"{'configuration':<52} {'seconds':>8} {'x GE best':>10} {'x duckdb':>9}")
    for name, seconds in timings.items():
        print(f"{name:<52} {seconds:8.2f} {seconds / best:10.2f} {seconds / duck_seconds:9.2f}")
    ratio = gate / best
    verdict = "within" if ratio <= GATE_BUDGET else "OVER"
    print(f"\nGE best configuration: {best_name}")
    print(f"gate / GE best = {ratio:.2f} ({verdict} the {GATE_BUDGET}x budget)")
    print(
        f"gate / duckdb = {gate / duck_seconds:.2f}; GE best / duckdb = {best / duck_seconds:.2f}"
    )
    return 0 if ratio <= GATE_BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
