"""Check one curated partition with Deequ (pydeequ): the data-quality gate's engine on EMR.

The checks arrive compiled, as a JSON document written by ``include/dq/deequ_checks.py`` (this
package ships to EMR on its own and imports nothing from ``include/``): two Deequ ``Check``\\ s,
``Error`` and ``Warning``, each a list of ``{"method", "args", "assertion"}`` calls on pydeequ's
``Check``. The job reads exactly the files the partition's ``_manifest.json`` lists, runs one
``VerificationSuite`` over them, samples the keys of offending rows with the compiled SQL
predicates, and writes ``result.json`` in the gate's result format (the same document the Great
Expectations and Glue Data Quality engines produce; see ``include/dq/results.py``). A failed
rule is a result, not a job failure: the gate operator reads the document and decides.

Deequ is a Scala library: its jar must be on the Spark classpath. On EMR it is provided with the
cluster or application (``--jars s3://<bucket>/artifacts/jars/deequ-2.0.8-spark-3.5.jar``, or
``spark.jars.packages com.amazon.deequ:deequ:2.0.8-spark-3.5`` where Maven Central is
reachable). Without it the job stops with exit code 2 and says so; it never reports a pass it
did not compute.

    python -m spark_jobs.quality_deequ --checks-uri file:///…/deequ_checks.json \\
        --lake-root file:///…/lake --dataset churn --ds 2026-01-01
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from spark_jobs.ingest import MANIFEST_NAME, fs_for, join_uri, read_text, to_uri

log = logging.getLogger("headrace.quality_deequ")

CHECKS_FORMAT = "headrace-deequ-checks/1"
# The gate's result document (include/dq/results.py: RESULT_FORMAT), written here by hand.
RESULT_FORMAT = "headrace-quality-result/1"
DEEQU_CLASS = "com.amazon.deequ.VerificationSuite"
DEEQU_COORDINATE = "com.amazon.deequ:deequ:2.0.8-spark-3.5"
EXIT_DEEQU_MISSING = 2
MISSING_JAR_MESSAGE = (
    f"the Deequ jar is missing from the Spark classpath ({DEEQU_CLASS} not found), so no Deequ "
    "check ran. Deequ is provided on the EMR cluster or EMR Serverless application: add "
    "--jars s3://<bucket>/artifacts/jars/deequ-2.0.8-spark-3.5.jar (or spark.jars.packages "
    f"{DEEQU_COORDINATE} where Maven Central is reachable) to the job's Spark configuration. "
    "Locally, the gate runs Great Expectations instead."
)
# What each pydeequ method reports as its metric: (metric name, instance) for the observed value.
_METRICS = {
    "isComplete": "Completeness",
    "hasCompleteness": "Completeness",
    "hasUniqueness": "Uniqueness",
    "satisfies": "Compliance",
    "isContainedIn": "Compliance",
    "hasSize": "Size",
    "hasMean": "Mean",
    "hasStandardDeviation": "StandardDeviation",
}


class DeequJobError(RuntimeError):
    """The job cannot run; the message says why (a missing jar, a bad checks document)."""


def deequ_on_classpath(spark) -> bool:
    """Whether the JVM can load Deequ (a py4j call on a missing class would fail obscurely later)."""
    from py4j.protocol import Py4JJavaError

    jvm = spark.sparkContext._jvm
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    try:
        jvm.java.lang.Class.forName(DEEQU_CLASS, False, loader)
    except Py4JJavaError:
        return False
    return True


def load_checks(checks_uri: str) -> dict[str, Any]:
    try:
        document = json.loads(read_text(checks_uri))
    except ValueError as error:
        raise DeequJobError(f"--checks-uri {checks_uri}: not valid JSON ({error})") from None
    if document.get("format") != CHECKS_FORMAT:
        raise DeequJobError(
            f"--checks-uri {checks_uri}: format {document.get('format')!r}, expected {CHECKS_FORMAT!r}"
        )
    return document


def partition_files(lake_root: str, dataset: str, ds: str) -> tuple[str, list[str]]:
    """The partition's manifest URI and exactly the curated files it lists."""
    partition = join_uri(to_uri(lake_root), "curated", dataset, f"ds={ds}")
    manifest_uri = join_uri(partition, MANIFEST_NAME)
    if not fs_for(manifest_uri).exists(manifest_uri):
        raise DeequJobError(f"{manifest_uri} does not exist: the partition was never committed")
    manifest = json.loads(read_text(manifest_uri))
    # Joined to the partition's own folder, as ingest's readers do: a moved lake reads the same.
    files = [join_uri(partition, item["path"]) for item in manifest["outputs"]["curated"]["files"]]
    return manifest_uri, files


def assertion_function(spec: dict[str, Any] | None):
    """The assertion lambda pydeequ takes, from its JSON form."""
    if spec is None:
        return None
    op = spec["op"]
    if op == "between":
        low, high = spec["min"], spec["max"]
        return lambda value: low <= value <= high
    bound = spec["value"]
    return {
        ">=": lambda value: value >= bound,
        "<=": lambda value: value <= bound,
        ">": lambda value: value > bound,
        "==": lambda value: value == bound,
    }[op]


def _observed_from_message(message: str | None) -> Any:
    match = re.search(r"Value: ([-+0-9.eE]+) does not meet", message or "")
    return float(match.group(1)) if match else None


def run_checks(spark, frame, document: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the document's checks on ``frame``; one result entry per rule, in document order."""
    os.environ.setdefault("SPARK_VERSION", spark.version)  # pydeequ reads it at import
    from pydeequ.checks import Check, CheckLevel
    from pydeequ.verification import VerificationResult, VerificationSuite

    suite = VerificationSuite(spark).onData(frame)
    planned: list[tuple[dict, dict]] = []
    for check_spec in document["checks"]:
        check = Check(spark, getattr(CheckLevel, check_spec["level"]), check_spec["description"])
        for constraint in check_spec["constraints"]:
            if constraint.get("method") in (None, "schema"):
                continue
            method = getattr(check, constraint["method"])
            assertion = assertion_function(constraint.get("assertion"))
            args = list(constraint["args"])
            check = method(*args, assertion) if assertion is not None else method(*args)
            planned.append((check_spec, constraint))
        suite = suite.addCheck(check)
    verification = suite.run()
    rows = VerificationResult.checkResultsAsDataFrame(spark, verification).collect()
    metrics = {
        (row["name"], row["instance"]): row["value"]
        for row in VerificationResult.successMetricsAsDataFrame(spark, verification).collect()
    }
    by_check: dict[str, list] = {}
    for row in rows:
        by_check.setdefault(row["check"], []).append(row)

    key_columns = [c for c in document["key_columns"] if c in frame.columns]
    sample = int(document.get("sample_size", 5))
    outcomes = []
    for check_spec in document["checks"]:
        check_rows = iter(by_check.get(check_spec["description"], []))
        for constraint in check_spec["constraints"]:
            outcome = _base_outcome(constraint)
            if constraint.get("method") is None:
                outcome.update(status="skipped", detail=constraint.get("skip_reason", ""))
            elif constraint["method"] == "schema":
                outcome.update(_schema_outcome(frame, constraint["args"][0]))
            else:
                row = next(check_rows, None)
                status = (
                    "pass" if row is not None and row["constraint_status"] == "Success" else "fail"
                )
                outcome["status"] = status
                outcome["observed"] = _metric(metrics, constraint) or _observed_from_message(
                    row["constraint_message"] if row else None
                )
                if status == "fail":
                    outcome["detail"] = (row["constraint_message"] if row else "") or ""
                    outcome.update(_offending(frame, constraint, key_columns, sample))
            outcomes.append(outcome)
    return outcomes


def _base_outcome(constraint: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": constraint["rule"],
        "kind": constraint["kind"],
        "column": constraint["column"],
        "severity": constraint["severity"],
        "status": "pass",
        "expected": constraint["expected"],
        "observed": None,
        "unexpected_count": None,
        "unexpected_values": [],
        "offending_keys": [],
        "detail": "",
    }


def _metric(metrics: dict, constraint: dict[str, Any]) -> Any:
    name = _METRICS.get(constraint["method"])
    args = constraint["args"]
    if constraint["method"] == "hasSize":
        instance = "*"
    elif constraint["method"] == "hasUniqueness":
        instance = ",".join(args[0])
    elif constraint["method"] == "satisfies":
        instance = args[1]
    elif constraint["method"] == "isContainedIn":
        instance = f"{args[0]} contained in {','.join(map(str, args[1]))}"
    else:
        instance = args[0]
    return metrics.get((name, instance))


def _schema_outcome(frame, expected: dict[str, str]) -> dict[str, Any]:
    observed = {field.name: field.dataType.simpleString() for field in frame.schema.fields}
    wrong = {
        name: observed[name]
        for name, kind in expected.items()
        if name in observed and observed[name] != kind
    }
    missing = sorted(set(expected) - set(observed))
    unexpected = sorted(set(observed) - set(expected))
    return {
        "status": "fail" if wrong or missing or unexpected else "pass",
        "observed": {
            "missing_columns": missing,
            "unexpected_columns": unexpected,
            "wrong_types": wrong,
        },
    }


def _offending(
    frame, constraint: dict[str, Any], key_columns: list[str], sample: int
) -> dict[str, Any]:
    """How many rows break a row-level rule and a few of their keys (never other columns)."""
    from pyspark.sql import functions as F

    if constraint.get("offending_rows_sql"):
        rows = frame.where(constraint["offending_rows_sql"])
        column = constraint["column"]
        picked = rows.select(
            *key_columns,
            *([column] if column in frame.columns and column not in key_columns else []),
        )
        found = picked.limit(sample).collect()
        return {
            "unexpected_count": rows.count(),
            "offending_keys": [{k: _jsonable(r[k]) for k in key_columns} for r in found],
            "unexpected_values": [_jsonable(r[column]) for r in found]
            if column in frame.columns
            else [],
        }
    if constraint.get("duplicate_key_columns"):
        key = constraint["duplicate_key_columns"]
        duplicated = frame.groupBy(*key).count().where(F.col("count") > 1)
        rows = frame.join(duplicated.select(*key), on=key, how="inner")
        found = rows.select(*key_columns).limit(sample).collect()
        return {
            "unexpected_count": rows.count(),
            "offending_keys": [{k: _jsonable(r[k]) for k in key_columns} for r in found],
        }
    return {}


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def result_document(
    outcomes: list[dict[str, Any]], *, dataset: str, ds: str, partition: dict[str, Any]
) -> dict[str, Any]:
    """The gate's result document (the shape of include/dq/results.py's GateResult.as_dict)."""
    for outcome in outcomes:
        outcome["passed"] = outcome["status"] != "fail"
    counts = {
        "rules": len(outcomes),
        "passed": sum(o["status"] == "pass" for o in outcomes),
        "failed_error": sum(o["status"] == "fail" and o["severity"] == "error" for o in outcomes),
        "failed_warn": sum(o["status"] == "fail" and o["severity"] == "warn" for o in outcomes),
        "skipped": sum(o["status"] == "skipped" for o in outcomes),
    }
    return {
        "format": RESULT_FORMAT,
        "dataset": dataset,
        "ds": ds,
        "engine": "deequ",
        "passed": counts["failed_error"] == 0,
        "counts": counts,
        "partition": partition,
        "results": outcomes,
    }


def build_parser() -> argparse.ArgumentParser:
    # Every option takes a value: Glue and EMR pass job arguments as --key value pairs.
    parser = argparse.ArgumentParser(
        prog="python -m spark_jobs.quality_deequ",
        description="Check one curated partition with Deequ.",
    )
    parser.add_argument(
        "--checks-uri", required=True, help="compiled checks JSON (include/dq/deequ_checks.py)"
    )
    parser.add_argument(
        "--lake-root", required=True, help="lake root URI: file:///… or s3://bucket/prefix"
    )
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. churn")
    parser.add_argument("--ds", required=True, help="partition date, YYYY-MM-DD")
    parser.add_argument(
        "--result-uri", help="where to write result.json (default: the gate's report folder)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when a result was written (passed or not), 2 when Deequ is missing."""
    from spark_jobs.ingest import configure_logging

    configure_logging()
    args, unknown = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if unknown:
        log.info(
            "ignoring platform arguments: %s", " ".join(a for a in unknown if a.startswith("--"))
        )
    document = load_checks(args.checks_uri)
    if document.get("dataset") != args.dataset or document.get("ds") != args.ds:
        raise DeequJobError(
            f"--checks-uri {args.checks_uri} was compiled for {document.get('dataset')} "
            f"ds={document.get('ds')}, not {args.dataset} ds={args.ds}"
        )
    from spark_jobs.spark_session import get_spark

    spark = get_spark(f"headrace-quality-deequ-{args.dataset}")
    if not deequ_on_classpath(spark):
        log.error("%s", MISSING_JAR_MESSAGE)
        print(MISSING_JAR_MESSAGE, file=sys.stderr)
        return EXIT_DEEQU_MISSING
    manifest_uri, files = partition_files(args.lake_root, args.dataset, args.ds)
    frame = spark.read.parquet(*files)
    outcomes = run_checks(spark, frame, document)
    result = result_document(
        outcomes,
        dataset=args.dataset,
        ds=args.ds,
        partition={
            "manifest_uri": manifest_uri,
            "files": len(files),
            "rows_checked": frame.count(),
        },
    )
    result_uri = args.result_uri or join_uri(
        to_uri(args.lake_root), "reports", args.dataset, "quality", f"ds={args.ds}", "result.json"
    )
    fs_for(result_uri).write_bytes(
        result_uri, (json.dumps(result, indent=2, sort_keys=True) + "\n").encode()
    )
    log.info("quality result for %s ds=%s: %s", args.dataset, args.ds, result["counts"])
    print(json.dumps({"result_uri": result_uri, "passed": result["passed"], **result["counts"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
