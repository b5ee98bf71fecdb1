"""Request bodies for the gate on AWS Glue Data Quality, and the map from its results back to rules.

Glue Data Quality evaluates DQDL rulesets against a Glue Data Catalog table, so the gate keeps a
catalog table over the curated zone (``headrace.<dataset>_curated``, Parquet, partitioned by
``ds``, columns from the dataset spec) and registers each partition before it is checked.

A catalog partition is a folder, and Glue reads every file in it, while a curated partition is
exactly the files its ``_manifest.json`` lists (the folder can also hold files of an earlier or
unfinished commit). So the partition the run checks points at a prefix of its own, named after
the manifest's digest, under the day's quality reports
(``reports/<dataset>/quality/ds=<D>/glue-input/<digest>/``): :func:`stage_manifest_partition`
copies exactly the listed files there (server-side, checksums compared with the manifest's)
and points the catalog partition at it. Symlink tables (``SymlinkTextInputFormat``) would list
files without copying them, but Glue's Spark reader does not read them as Parquet.

The rules become two rulesets per partition (``headrace-<dataset>-ds-<D>-error`` and ``…-warn``,
see :mod:`include.dq.dqdl`): per partition because ``row_count_change`` and ``freshness`` make the
thresholds differ from day to day, so two partitions checked at once never overwrite each
other's ruleset. Both are evaluated in one ``StartDataQualityRulesetEvaluationRun`` restricted
to the partition with a push-down predicate, with a deterministic ``ClientToken``: a retried task
gets the run its first try started.

Every body is checked against botocore's service model before it leaves this module.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

from include.aws_validation import validate_request
from include.config import Settings
from include.dq.dqdl import CompiledRuleset
from include.dq.gate import (
    MANIFEST_NAME,
    GateInputError,
    curated_partition_uri,
    quality_report_uri,
)
from include.dq.results import FAIL, PASS, RuleOutcome, _jsonable, skipped_outcome
from include.dq.rules import Rule, RuleSet, engine_rules
from include.job_tags import PROJECT, check_tags
from include.spark_job_requests import _aws, glue_security_configuration_name, timeout_minutes
from spark_jobs.dataset_spec import DEFAULT_GLUE_DATA_QUALITY_WORKERS

# The Data Catalog database of headrace's tables. A setting would be the place for it if a
# deployment needs another name (include/config.py has none yet).
GLUE_DATABASE = "headrace"
# Hive's names for the spec's types, for the catalog table.
HIVE_TYPES = {
    "string": "string",
    "int": "int",
    "long": "bigint",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}
PARTITION_KEY = "ds"
PARQUET_STORAGE = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    },
}
# The folder, under a day's quality reports, of the manifest-scoped copies Glue reads.
GLUE_INPUT_DIR = "glue-input"
# States of an evaluation run (GetDataQualityRulesetEvaluationRun.Status).
RUNNING_STATES = frozenset({"STARTING", "RUNNING", "STOPPING"})
SUCCEEDED = "SUCCEEDED"


def curated_table_name(dataset: str) -> str:
    return f"{dataset}_curated"


def curated_columns_input(rule_set: RuleSet) -> list[dict[str, str]]:
    return [
        {"Name": name, "Type": HIVE_TYPES[ctype]} for name, ctype in rule_set.spec.curated_columns()
    ]


def build_create_database_request() -> dict:
    body = {
        "DatabaseInput": {
            "Name": GLUE_DATABASE,
            "Description": "headrace lake tables (curated zone), used by Glue Data Quality",
        }
    }
    validate_request("glue", "CreateDatabase", body)
    return body


def build_curated_table_request(settings: Settings, rule_set: RuleSet) -> dict:
    """CreateTable: the curated zone of one dataset as an external Parquet table, by ``ds``."""
    location = f"{settings.zone_uri('curated')}/{rule_set.dataset}/"
    body = {
        "DatabaseName": GLUE_DATABASE,
        "TableInput": {
            "Name": curated_table_name(rule_set.dataset),
            "Description": f"curated {rule_set.dataset} (spec {rule_set.spec.fingerprint[:12]})",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
            "PartitionKeys": [{"Name": PARTITION_KEY, "Type": "string"}],
            "StorageDescriptor": {
                "Columns": curated_columns_input(rule_set),
                "Location": location,
                **PARQUET_STORAGE,
            },
        },
    }
    validate_request("glue", "CreateTable", body)
    return body


def glue_input_uri(settings: Settings, dataset: str, ds: str, manifest: Mapping[str, Any]) -> str:
    """The prefix that holds exactly the manifest's files for Glue: one per committed manifest,
    so a re-ingested day gets a new one and a retried run finds its own."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(canonical).hexdigest()[:16]
    return f"{quality_report_uri(settings.lake_root, dataset, ds)}/{GLUE_INPUT_DIR}/{digest}"


def _bucket_and_key(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise GateInputError(f"Glue Data Quality reads s3:// partitions, got {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def manifest_files(manifest: Mapping[str, Any], partition_uri: str) -> list[dict[str, Any]]:
    """The curated files the manifest lists: ``{path, uri, sha256}`` (``sha256`` may be None)."""
    try:
        entries = manifest["outputs"]["curated"]["files"]
        return [
            {
                "path": entry["path"],
                "uri": f"{partition_uri}/{entry['path']}",
                "sha256": entry.get("sha256"),
            }
            for entry in entries
        ]
    except (KeyError, TypeError) as error:
        raise GateInputError(
            f"manifest {partition_uri}/{MANIFEST_NAME} lacks outputs.curated.files ({error})"
        ) from None


def build_copy_requests(
    settings: Settings, manifest: Mapping[str, Any], partition_uri: str, input_uri: str
) -> list[dict]:
    """CopyObject bodies: each file the manifest lists, into ``input_uri`` under its own path
    (server-side, with the lake's KMS key and an SHA-256 checksum to compare)."""
    aws = _aws(settings)
    bodies = []
    for item in manifest_files(manifest, partition_uri):
        source_bucket, source_key = _bucket_and_key(item["uri"])
        bucket, key = _bucket_and_key(f"{input_uri}/{item['path']}")
        body = {
            "Bucket": bucket,
            "Key": key,
            # "bucket/key", the model's type (botocore percent-encodes the key when sending).
            "CopySource": f"{source_bucket}/{source_key}",
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": aws.kms_key_arn,
            "ChecksumAlgorithm": "SHA256",
        }
        validate_request("s3", "CopyObject", body)
        bodies.append(body)
    return bodies


def _partition_input(rule_set: RuleSet, ds: str, location: str) -> dict:
    return {
        "Values": [ds],
        "StorageDescriptor": {
            "Columns": curated_columns_input(rule_set),
            "Location": location.rstrip("/") + "/",
            **PARQUET_STORAGE,
        },
    }


PARTITION_OPERATIONS = ("CreatePartition", "UpdatePartition")


def build_partition_request(operation: str, rule_set: RuleSet, ds: str, location: str) -> dict:
    """``CreatePartition`` (register ``ds=<D>``) or ``UpdatePartition`` (point the existing one)
    at ``location`` (:func:`glue_input_uri`): the same partition either way."""
    if operation not in PARTITION_OPERATIONS:
        raise ValueError(f"operation must be one of {PARTITION_OPERATIONS}, got {operation!r}")
    body: dict[str, Any] = {
        "DatabaseName": GLUE_DATABASE,
        "TableName": curated_table_name(rule_set.dataset),
        "PartitionInput": _partition_input(rule_set, ds, location),
    }
    if operation == "UpdatePartition":
        body["PartitionValueList"] = [ds]
    validate_request("glue", operation, body)
    return body


def stage_manifest_partition(
    glue, s3, settings: Settings, rule_set: RuleSet, ds: str, manifest: Mapping[str, Any]
) -> str:
    """Copy exactly the files the curated manifest of ``ds`` lists to the run's input prefix
    and point the catalog partition ``ds=<D>`` at it; returns the prefix.

    ``glue`` and ``s3`` are boto3 clients. Idempotent: a retry copies the same bytes to the
    same keys. A copy whose SHA-256 differs from the manifest's fails the gate's input.
    """
    partition_uri = curated_partition_uri(settings.lake_root, rule_set.dataset, ds)
    input_uri = glue_input_uri(settings, rule_set.dataset, ds, manifest)
    files = manifest_files(manifest, partition_uri)
    requests = build_copy_requests(settings, manifest, partition_uri, input_uri)
    for item, body in zip(files, requests, strict=True):
        copied = s3.copy_object(**body)["CopyObjectResult"].get("ChecksumSHA256")
        digest = base64.b64decode(copied).hex() if copied else None
        if item["sha256"] and digest and digest != item["sha256"]:
            raise GateInputError(
                f"{item['uri']} does not match its manifest (sha256 {digest}, manifest "
                f"{item['sha256']}): the file changed after the partition was committed"
            )
    try:
        glue.create_partition(**build_partition_request("CreatePartition", rule_set, ds, input_uri))
    except glue.exceptions.AlreadyExistsException:
        glue.update_partition(**build_partition_request("UpdatePartition", rule_set, ds, input_uri))
    return input_uri + "/"


def ruleset_name(dataset: str, ds: str, severity: str) -> str:
    return f"headrace-{dataset}-ds-{ds}-{severity}"


def _ruleset_description(dataset: str, ds: str, ruleset: CompiledRuleset) -> str:
    # The digest says whether an existing ruleset already holds this text (no Update needed).
    digest = hashlib.sha256(ruleset.text.encode()).hexdigest()[:16]
    return f"headrace {dataset} ds={ds} {ruleset.severity} rules (ruleset {digest})"


def build_create_ruleset_request(
    settings: Settings,
    dataset: str,
    ds: str,
    ruleset: CompiledRuleset,
    tags: Mapping[str, str] | None = None,
) -> dict:
    """CreateDataQualityRuleset of one day's rules of one severity.

    :param tags: the cost allocation tags of the run that creates it
        (:func:`include.job_tags.job_tags`); ``severity`` is added. They go on the ruleset
        because StartDataQualityRulesetEvaluationRun takes no tags; a later run that finds the
        ruleset (UpdateDataQualityRuleset takes none either) leaves the first run's.
    """
    body = {
        "Name": ruleset_name(dataset, ds, ruleset.severity),
        "Description": _ruleset_description(dataset, ds, ruleset),
        "Ruleset": ruleset.text,
        "TargetTable": {"DatabaseName": GLUE_DATABASE, "TableName": curated_table_name(dataset)},
        "DataQualitySecurityConfiguration": glue_security_configuration_name(settings),
        "Tags": check_tags(
            {"project": PROJECT, "dataset": dataset, **(tags or {}), "severity": ruleset.severity}
        ),
    }
    validate_request("glue", "CreateDataQualityRuleset", body)
    return body


def build_update_ruleset_request(dataset: str, ds: str, ruleset: CompiledRuleset) -> dict:
    body = {
        "Name": ruleset_name(dataset, ds, ruleset.severity),
        "Description": _ruleset_description(dataset, ds, ruleset),
        "Ruleset": ruleset.text,
    }
    validate_request("glue", "UpdateDataQualityRuleset", body)
    return body


def build_start_evaluation_run_request(
    settings: Settings,
    dataset: str,
    ds: str,
    ruleset_names: Sequence[str],
    *,
    client_token: str,
    results_prefix: str,
    timeout: timedelta,
    number_of_workers: int = DEFAULT_GLUE_DATA_QUALITY_WORKERS,
) -> dict:
    """StartDataQualityRulesetEvaluationRun over one partition of the curated table. It takes no
    tags: the rulesets carry them (:func:`build_create_ruleset_request`).

    :param number_of_workers: G.1X workers of the run (the dataset spec's
        ``capacity.quality.glue_data_quality.number_of_workers``).
    """
    aws = _aws(settings)
    body = {
        "DataSource": {
            "GlueTable": {
                "DatabaseName": GLUE_DATABASE,
                "TableName": curated_table_name(dataset),
                # Only the partition under test is read, not the whole table.
                "AdditionalOptions": {"pushDownPredicate": f"{PARTITION_KEY}='{ds}'"},
            }
        },
        "Role": aws.glue_role_arn,
        "NumberOfWorkers": number_of_workers,
        "Timeout": timeout_minutes(timeout),
        "ClientToken": client_token,
        "AdditionalRunOptions": {
            "CloudWatchMetricsEnabled": True,
            # Row-level outcomes land beside the gate's report (KMS via the bucket's settings).
            "ResultsS3Prefix": results_prefix,
        },
        "RulesetNames": list(ruleset_names),
    }
    validate_request("glue", "StartDataQualityRulesetEvaluationRun", body)
    return body


def outcomes_from_glue_results(
    rules: Sequence[Rule],
    rulesets: Mapping[str, CompiledRuleset],
    results: Sequence[Mapping[str, Any]],
) -> list[RuleOutcome]:
    """GetDataQualityResult documents → one outcome per rule (schema's several DQDL rules fold in).

    Glue names rules ``Rule_<n>`` and puts the DQDL text in ``Description``; the text is what
    maps a result back to its rule. A rule Glue returned nothing for fails, saying so.
    """
    by_rule: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        severity = next(
            (s for s, r in rulesets.items() if result.get("RulesetName", "").endswith(f"-{s}")),
            None,
        )
        candidates = [rulesets[severity]] if severity else list(rulesets.values())
        for rule_result in result.get("RuleResults", []):
            text = rule_result.get("Description", "")
            rule_id = next((c.rule_for(text) for c in candidates if c.rule_for(text)), None)
            if rule_id:
                by_rule.setdefault(rule_id, []).append(rule_result)
    outcomes = []
    # Rules over ingestion are the gate's (include/dq/ingestion.py), never in a Glue ruleset.
    for rule in engine_rules(rules):
        if rule.skip_reason:
            outcomes.append(skipped_outcome(rule))
            continue
        found = by_rule.get(rule.id, [])
        outcome = RuleOutcome(
            rule=rule.id,
            kind=rule.kind,
            column=rule.target,
            severity=rule.severity,
            status=PASS,
            expected=_jsonable(rule.expected()),
        )
        if not found:
            outcome.status = FAIL
            outcome.detail = "Glue Data Quality returned no result for this rule"
        else:
            failed = [r for r in found if r.get("Result") != "PASS"]
            if failed:
                outcome.status = FAIL
                outcome.detail = "; ".join(
                    f"{r.get('Result')}: {r.get('EvaluationMessage', '')}".strip() for r in failed
                )
            metrics: dict[str, Any] = {}
            for r in found:
                metrics.update(r.get("EvaluatedMetrics") or {})
            outcome.observed = _jsonable(metrics)
        outcomes.append(outcome)
    return outcomes
