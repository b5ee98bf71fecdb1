"""Every rule kind compiles to the expected GE expectation, Deequ check and DQDL rule.

The rules are churn's own, resolved for ds=2026-01-10 with a previous partition of 1001 rows, plus
a few variants (single-column key, date freshness) built from them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from include.dq.deequ_checks import build_deequ_checks, deequ_constraint
from include.dq.dqdl import compile_rulesets, dqdl_rules
from include.dq.great_expectations_suite import build_suite, compile_rule
from include.dq.rules import INGESTION_KINDS, RULE_KINDS, engine_rules, resolve_rules

DS = "2026-01-10"

# rule id → (GE expectation type, its kwargs), (Deequ method, args, assertion), DQDL rules
EXPECTED = {
    "completeness_plan": (
        ("expect_column_values_to_not_be_null", {"column": "plan"}),
        ("isComplete", ["plan"], None),
        ['IsComplete "plan"'],
    ),
    "completeness_data_gb": (
        ("expect_column_values_to_not_be_null", {"column": "data_gb", "mostly": 0.9}),
        ("hasCompleteness", ["data_gb"], {"op": ">=", "value": 0.9}),
        ['Completeness "data_gb" >= 0.9'],
    ),
    "primary_key_unique": (
        ("expect_compound_columns_to_be_unique", {"column_list": ["customer_id", "snapshot_date"]}),
        ("hasUniqueness", [["customer_id", "snapshot_date"]], {"op": "==", "value": 1.0}),
        ['IsPrimaryKey "customer_id" "snapshot_date"'],
    ),
    "range_tenure_months": (
        (
            "expect_column_values_to_be_between",
            {"column": "tenure_months", "min_value": 0, "max_value": 600},
        ),
        (
            "satisfies",
            [
                "`tenure_months` IS NULL OR (`tenure_months` >= 0 AND `tenure_months` <= 600)",
                "range_tenure_months: tenure_months in range",
            ],
            {"op": "==", "value": 1.0},
        ),
        [
            '(ColumnValues "tenure_months" >= 0 where "tenure_months IS NOT NULL") and '
            '(ColumnValues "tenure_months" <= 600 where "tenure_months IS NOT NULL")'
        ],
    ),
    "range_signup_date": (
        (
            "expect_column_values_to_be_between",
            # Midnight timestamps: the gate's frame holds dates as datetime64.
            {
                "column": "signup_date",
                "min_value": dt.datetime(2000, 1, 1),
                "max_value": dt.datetime(2026, 1, 10),
            },
        ),
        (
            "satisfies",
            [
                "`signup_date` IS NULL OR (`signup_date` >= DATE '2000-01-01' AND "
                "`signup_date` <= DATE '2026-01-10')",
                "range_signup_date: signup_date in range",
            ],
            {"op": "==", "value": 1.0},
        ),
        [
            '(ColumnValues "signup_date" >= "2000-01-01" where "signup_date IS NOT NULL") and '
            '(ColumnValues "signup_date" <= "2026-01-10" where "signup_date IS NOT NULL")'
        ],
    ),
    "allowed_values_plan": (
        (
            "expect_column_values_to_be_in_set",
            {"column": "plan", "value_set": ["basic", "standard", "premium", "family"]},
        ),
        ("isContainedIn", ["plan", ["basic", "standard", "premium", "family"]], None),
        ['ColumnValues "plan" in ["basic", "standard", "premium", "family", NULL]'],
    ),
    "allowed_values_churned": (
        ("expect_column_values_to_be_in_set", {"column": "churned", "value_set": [0, 1]}),
        (
            "satisfies",
            ["`churned` IS NULL OR `churned` IN (0, 1)", "allowed_values_churned: allowed values"],
            {"op": "==", "value": 1.0},
        ),
        ['ColumnValues "churned" in [0, 1, NULL]'],
    ),
    "regex_customer_id": (
        ("expect_column_values_to_match_regex", {"column": "customer_id", "regex": "^C[0-9]{9}$"}),
        (
            "satisfies",
            [
                "`customer_id` IS NULL OR `customer_id` RLIKE '^C[0-9]{9}$'",
                "regex_customer_id: customer_id matches pattern",
            ],
            {"op": "==", "value": 1.0},
        ),
        ['ColumnValues "customer_id" matches "^C[0-9]{9}$" where "customer_id IS NOT NULL"'],
    ),
    "row_count": (
        ("expect_table_row_count_to_be_between", {"min_value": 1, "max_value": 50000000}),
        ("hasSize", [], {"op": "between", "min": 1, "max": 50000000}),
        ["(RowCount >= 1) and (RowCount <= 50000000)"],
    ),
    "row_count_change": (
        ("expect_table_row_count_to_be_between", {"min_value": 501, "max_value": 2002}),
        ("hasSize", [], {"op": "between", "min": 501, "max": 2002}),
        ["(RowCount >= 501) and (RowCount <= 2002)"],
    ),
    "freshness_event_ts": (
        (
            "expect_column_max_to_be_between",
            {"column": "event_ts", "min_value": dt.datetime(2026, 1, 10, 12)},
        ),
        (
            "satisfies",
            [
                "`event_ts` >= TIMESTAMP '2026-01-10 12:00:00'",
                "freshness_event_ts: newest event_ts is fresh",
            ],
            {"op": ">", "value": 0.0},
        ),
        [
            "CustomSql \"select count(*) from primary where event_ts >= TIMESTAMP '2026-01-10 12:00:00'\" > 0"
        ],
    ),
    "mean_monthly_charge": (
        (
            "expect_column_mean_to_be_between",
            {"column": "monthly_charge", "min_value": 30, "max_value": 70},
        ),
        ("hasMean", ["monthly_charge"], {"op": "between", "min": 30, "max": 70}),
        ['(Mean "monthly_charge" >= 30) and (Mean "monthly_charge" <= 70)'],
    ),
    "stdev_monthly_charge": (
        (
            "expect_column_stdev_to_be_between",
            {"column": "monthly_charge", "min_value": 10, "max_value": 40},
        ),
        ("hasStandardDeviation", ["monthly_charge"], {"op": "between", "min": 10, "max": 40}),
        [
            '(StandardDeviation "monthly_charge" >= 10) and (StandardDeviation "monthly_charge" <= 40)'
        ],
    ),
}


@pytest.fixture(scope="module")
def resolved(churn_rules):
    return {rule.id: rule for rule in resolve_rules(churn_rules.rules, DS, 1001)}


def test_the_table_covers_every_kind(resolved):
    covered = {resolved[rule_id].kind for rule_id in EXPECTED} | {"schema"}
    # Rules over ingestion are the gate's, evaluated from the manifest: no engine compiles them.
    assert covered == set(RULE_KINDS) - INGESTION_KINDS
    for rule in resolved.values():
        if rule.kind in INGESTION_KINDS:
            assert compile_rule(rule) == [] and dqdl_rules(rule) == []


def _ge_kwargs(expectation) -> dict:
    return {k: v for k, v in expectation.configuration.kwargs.items() if k != "batch_id"}


@pytest.mark.parametrize("rule_id", sorted(EXPECTED))
def test_rule_compiles_for_each_engine(rule_id, resolved):
    rule = resolved[rule_id]
    (ge_type, ge_kwargs), (method, args, assertion), dqdl = EXPECTED[rule_id]

    [expectation] = compile_rule(rule)
    assert expectation.expectation_type == ge_type
    assert _ge_kwargs(expectation) == ge_kwargs
    assert expectation.meta == {"rule": rule.id, "kind": rule.kind, "severity": rule.severity}
    assert expectation.severity.value == {"error": "critical", "warn": "warning"}[rule.severity]

    constraint = deequ_constraint(rule)
    assert (constraint["method"], constraint["args"], constraint["assertion"]) == (
        method,
        args,
        assertion,
    )
    assert constraint["rule"] == rule.id and constraint["severity"] == rule.severity

    assert dqdl_rules(rule) == dqdl


def test_single_column_uniqueness_and_date_freshness(resolved):
    unique = replace(resolved["primary_key_unique"], columns=("email_sha256",))
    [expectation] = compile_rule(unique)
    assert (expectation.expectation_type, _ge_kwargs(expectation)) == (
        "expect_column_values_to_be_unique",
        {"column": "email_sha256"},
    )
    assert dqdl_rules(unique) == ['IsUnique "email_sha256"']

    fresh = replace(resolved["freshness_event_ts"], column="snapshot_date", column_type="date")
    [expectation] = compile_rule(fresh)
    assert _ge_kwargs(expectation)["min_value"] == dt.datetime(2026, 1, 10)
    assert compile_rule(fresh, "spark")[0].configuration.kwargs["min_value"] == dt.date(2026, 1, 10)
    assert dqdl_rules(fresh) == [
        "CustomSql \"select count(*) from primary where snapshot_date >= DATE '2026-01-10'\" > 0"
    ]
    assert deequ_constraint(fresh)["args"][0] == "`snapshot_date` >= DATE '2026-01-10'"


def test_schema_compiles_to_columns_and_types(resolved):
    schema = resolved["schema"]
    expectations = compile_rule(schema)
    assert expectations[0].expectation_type == "expect_table_columns_to_match_set"
    assert expectations[0].exact_match is True
    assert len(_ge_kwargs(expectations[0])["column_set"]) == 21
    types = {
        e.configuration.kwargs["column"]: e.configuration.kwargs["type_list"]
        for e in expectations[1:]
    }
    assert types["tenure_months"] == ["int32"]
    assert types["customer_id"] == ["str"]
    assert types["event_ts"] == ["datetime64[us]", "datetime64[ns]"]
    assert types["snapshot_date"] == ["datetime64[ms]", "datetime64[s]", "datetime64[ns]"]
    assert compile_rule(schema, "spark")[1].configuration.kwargs["type_list"] == ["StringType"]

    constraint = deequ_constraint(schema)
    assert constraint["method"] == "schema"
    assert constraint["args"][0]["tenure_months"] == "int"
    assert constraint["args"][0]["event_ts"] == "timestamp"

    lines = dqdl_rules(schema)
    assert lines[0] == "ColumnCount = 21"
    assert 'ColumnExists "email_sha256"' in lines
    assert 'ColumnDataType "tenure_months" = "INTEGER"' in lines
    # Strings have no DQDL type check: 21 exists + 13 typed columns.
    assert len(lines) == 1 + 21 + 13


def test_skipped_rules_compile_to_nothing(churn_rules):
    rules = {r.id: r for r in resolve_rules(churn_rules.rules, DS, None)}
    change = rules["row_count_change"]
    assert compile_rule(change) == []
    assert dqdl_rules(change) == []
    assert deequ_constraint(change)["method"] is None


def test_severities_split_into_rulesets_and_checks(churn_rules):
    rules = resolve_rules(churn_rules.rules, DS, 1001)
    checked = engine_rules(rules)
    assert len(rules) - len(checked) == 5  # churn's quarantine_rate x4 and rows_in_change
    rulesets = compile_rulesets(rules)
    assert set(rulesets) == {"error", "warn"}
    warn = rulesets["warn"]
    assert warn.text.startswith("Rules = [\n    ") and warn.text.endswith("\n]")
    assert [rule_id for _, rule_id in warn.lines] == [
        "completeness_data_gb",
        "row_count_change",
        "mean_minutes_used",
        "mean_churned",
    ]
    assert warn.rule_for('Mean "churned" >= 0.02') is None
    assert warn.rule_for('(Mean "churned" >= 0.02) and (Mean "churned" <= 0.6)') == "mean_churned"

    checks = build_deequ_checks(rules, dataset="churn", ds=DS, key_columns=churn_rules.key_columns)
    assert [(c["level"], len(c["constraints"])) for c in checks["checks"]] == [
        ("Error", len(checked) - 4),
        ("Warning", 4),
    ]
    assert checks["key_columns"] == ["customer_id", "snapshot_date"]

    suite = build_suite(rules, "churn_quality")
    # One expectation per rule, schema's 1 + 21 types.
    assert len(suite.expectations) == len(checked) - 1 + 22
