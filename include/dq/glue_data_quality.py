"""Request bodies for the gate on AWS Glue Data Quality, and the map from its results back to rules.

Glue Data Quality evaluates DQDL rulesets against a Glue Data Catalog table, so the gate keeps a
catalog table over the curated zone (``headrace.<dataset>_curated``, Parquet, partitioned by
``ds``, columns from the dataset spec) and registers each partition before it is checked. The
rules become two rulesets per partition (``headrace-<dataset>-ds-<D>-error`` and ``…-warn``,
see :mod:`include.dq.dqdl`): per partition because ``row_count_change`` and ``freshness`` make the
thresholds differ from day to day, so two partitions checked at once never overwrite each
other's ruleset. Both are evaluated in one ``StartDataQualityRulesetEvaluationRun`` restricted
to the partition with a push-down predicate, with a deterministic ``ClientToken``: a retried task
gets the run its first try started.

Every body is checked against botocore's service model before it leaves this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from include.aws_validation import validate_request
from include.config import Settings
from include.dq.dqdl import CompiledRuleset
from include.dq.results import FAIL, PASS, RuleOutcome, _jsonable, skipped_outcome
from include.dq.rules import Rule, RuleSet
from include.spark_job_requests import _aws, glue_security_configuration_name, timeout_minutes

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
DEFAULT_WORKERS = 2
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


def build_create_partition_request(settings: Settings, rule_set: RuleSet, ds: str) -> dict:
    """CreatePartition: register ``ds=<D>`` (its folder holds exactly the manifest's files on S3)."""
    body = {
        "DatabaseName": GLUE_DATABASE,
        "TableName": curated_table_name(rule_set.dataset),
        "PartitionInput": {
            "Values": [ds],
            "StorageDescriptor": {
                "Columns": curated_columns_input(rule_set),
                "Location": f"{settings.zone_uri('curated')}/{rule_set.dataset}/{PARTITION_KEY}={ds}/",
                **PARQUET_STORAGE,
            },
        },
    }
    validate_request("glue", "CreatePartition", body)
    return body


def ruleset_name(dataset: str, ds: str, severity: str) -> str:
    return f"headrace-{dataset}-ds-{ds}-{severity}"


def _ruleset_description(dataset: str, ds: str, ruleset: CompiledRuleset) -> str:
    # The digest says whether an existing ruleset already holds this text (no Update needed).
    digest = hashlib.sha256(ruleset.text.encode()).hexdigest()[:16]
    return f"headrace {dataset} ds={ds} {ruleset.severity} rules (ruleset {digest})"


def build_create_ruleset_request(
    settings: Settings, dataset: str, ds: str, ruleset: CompiledRuleset
) -> dict:
    body = {
        "Name": ruleset_name(dataset, ds, ruleset.severity),
        "Description": _ruleset_description(dataset, ds, ruleset),
        "Ruleset": ruleset.text,
        "TargetTable": {"DatabaseName": GLUE_DATABASE, "TableName": curated_table_name(dataset)},
        "DataQualitySecurityConfiguration": glue_security_configuration_name(settings),
        "Tags": {"project": "headrace", "dataset": dataset, "severity": ruleset.severity},
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
    number_of_workers: int = DEFAULT_WORKERS,
) -> dict:
    """StartDataQualityRulesetEvaluationRun over one partition of the curated table."""
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
    for rule in rules:
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
