"""Glue Data Quality request bodies: each validates against botocore's model and carries the
settings; results map back to rules by their DQDL text."""

from __future__ import annotations

from datetime import timedelta

import pytest

from include.aws_validation import RequestValidationError, validate_request
from include.config import load_settings
from include.dq import glue_data_quality as gdq
from include.dq.dqdl import compile_rulesets
from include.dq.rules import resolve_rules

AWS_ENV = {
    "PIPELINE_TARGET": "aws",
    "AWS_REGION": "eu-west-1",
    "HEADRACE_BUCKET": "headrace-test-lake",
    "HEADRACE_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-sagemaker",
    "HEADRACE_GLUE_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-glue",
    "HEADRACE_EMR_SERVERLESS_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-emr",
    "HEADRACE_KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    "HEADRACE_SUBNET_IDS": "subnet-0123456789abcdef0",
    "HEADRACE_SECURITY_GROUP_IDS": "sg-0123456789abcdef0",
    "HEADRACE_PII_SALT_SECRET_ARN": (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:headrace/pii-salt-AbCdEf"
    ),
}
SETTINGS = load_settings(AWS_ENV)
DS = "2026-01-10"


@pytest.fixture(scope="module")
def rulesets(churn_rules):
    rules = resolve_rules(churn_rules.rules, DS, 1000)
    return rules, compile_rulesets(rules)


def test_catalog_table_and_partition_over_the_curated_zone(churn_rules):
    table = gdq.build_curated_table_request(SETTINGS, churn_rules)
    validate_request("glue", "CreateTable", table)
    descriptor = table["TableInput"]["StorageDescriptor"]
    assert table["DatabaseName"] == "headrace" and table["TableInput"]["Name"] == "churn_curated"
    assert descriptor["Location"] == "s3://headrace-test-lake/lake/curated/churn/"
    assert {"Name": "tenure_months", "Type": "int"} in descriptor["Columns"]
    assert {"Name": "event_ts", "Type": "timestamp"} in descriptor["Columns"]
    assert table["TableInput"]["PartitionKeys"] == [{"Name": "ds", "Type": "string"}]

    partition = gdq.build_create_partition_request(SETTINGS, churn_rules, DS)
    assert partition["PartitionInput"]["Values"] == [DS]
    assert (
        partition["PartitionInput"]["StorageDescriptor"]["Location"]
        == f"s3://headrace-test-lake/lake/curated/churn/ds={DS}/"
    )


def test_rulesets_per_partition_and_severity(rulesets):
    _, compiled = rulesets
    create = gdq.build_create_ruleset_request(SETTINGS, "churn", DS, compiled["error"])
    assert create["Name"] == f"headrace-churn-ds-{DS}-error"
    assert create["Ruleset"] == compiled["error"].text
    assert create["TargetTable"] == {"DatabaseName": "headrace", "TableName": "churn_curated"}
    assert create["DataQualitySecurityConfiguration"].startswith("headrace-kms-")
    update = gdq.build_update_ruleset_request("churn", DS, compiled["error"])
    # Same text, same description: an unchanged ruleset needs no update.
    assert update["Description"] == create["Description"]
    other = gdq.build_update_ruleset_request("churn", DS, compiled["warn"])
    assert other["Description"] != create["Description"]


def test_evaluation_run_reads_one_partition_with_a_deterministic_token(rulesets):
    body = gdq.build_start_evaluation_run_request(
        SETTINGS,
        "churn",
        DS,
        ["headrace-churn-ds-2026-01-10-error", "headrace-churn-ds-2026-01-10-warn"],
        client_token="churn-validation-quality-gate-run-key",
        results_prefix="s3://headrace-test-lake/lake/reports/churn/quality/ds=2026-01-10/glue-row-level/",
        timeout=timedelta(minutes=45),
    )
    assert body["DataSource"]["GlueTable"]["AdditionalOptions"] == {
        "pushDownPredicate": f"ds='{DS}'"
    }
    assert body["Role"] == AWS_ENV["HEADRACE_GLUE_ROLE_ARN"]
    assert body["Timeout"] == 45
    assert body["ClientToken"] == "churn-validation-quality-gate-run-key"


def test_a_bad_body_fails_naming_the_parameter():
    with pytest.raises(RequestValidationError, match="ClientToken"):
        gdq.build_start_evaluation_run_request(
            SETTINGS,
            "churn",
            DS,
            ["x"],
            client_token="t" * 300,
            results_prefix="s3://b/p/",
            timeout=timedelta(minutes=5),
        )


def test_results_map_back_to_rules_and_missing_ones_fail(rulesets):
    rules, compiled = rulesets
    error = compiled["error"]
    rule_results = [
        {
            "Description": line,
            "Result": "FAIL" if rule_id == "range_tenure_months" else "PASS",
            "EvaluationMessage": "Value: 700.0 does not meet the constraint requirement!",
            "EvaluatedMetrics": {"Column.tenure_months.Maximum": 700.0}
            if rule_id == "range_tenure_months"
            else {},
        }
        for line, rule_id in error.lines
    ]
    results = [{"RulesetName": f"headrace-churn-ds-{DS}-error", "RuleResults": rule_results}]
    outcomes = {o.rule: o for o in gdq.outcomes_from_glue_results(rules, compiled, results)}
    assert outcomes["range_tenure_months"].status == "fail"
    assert outcomes["range_tenure_months"].observed == {"Column.tenure_months.Maximum": 700.0}
    assert outcomes["schema"].status == "pass"  # its 35 DQDL rules all passed
    # The warn ruleset returned nothing: its rules fail, saying so, rather than pass silently.
    assert outcomes["mean_churned"].status == "fail"
    assert outcomes["mean_churned"].detail == "Glue Data Quality returned no result for this rule"
