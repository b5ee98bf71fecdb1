"""The rules file: loading churn's, errors that name file/rule/field, resolution per partition."""

from __future__ import annotations

import pytest
import yaml

from include.dq.rules import (
    RULE_KINDS,
    QualityRulesError,
    load_rules,
    parse_rules,
    require_resolved,
    resolve_rules,
)


def test_churn_rules_cover_every_kind_and_both_severities(churn_rules):
    kinds = {rule.kind for rule in churn_rules.rules}
    assert kinds == set(RULE_KINDS)
    assert {rule.severity for rule in churn_rules.rules} == {"error", "warn"}
    assert churn_rules.key_columns == ("customer_id", "snapshot_date")


def test_schema_rule_takes_curated_columns_and_types_from_the_spec(churn_rules):
    schema = next(rule for rule in churn_rules.rules if rule.kind == "schema")
    columns = dict(schema.schema)
    # PII: hashed email under its output name, masked phone kept, national_id dropped.
    assert columns["email_sha256"] == "string"
    assert "email" not in columns and "national_id" not in columns
    assert columns["tenure_months"] == "int" and columns["event_ts"] == "timestamp"
    assert len(columns) == 21


def _raw(*rules: dict) -> dict:
    return {"dataset": "churn", "rules": list(rules)}


def test_errors_name_the_file_rule_index_id_and_field(tmp_path, churn_rules):
    path = tmp_path / "churn.quality.yaml"
    path.write_text(
        yaml.safe_dump(
            _raw(
                {"kind": "completeness", "column": "email"},
                {"kind": "allowed_values", "id": "plan_allowed", "column": "plan", "values": []},
                {"kind": "range", "column": "tenure_months", "min": "zero"},
                {"kind": "regex", "column": "sessions", "pattern": "[0-9]+"},
                {"kind": "row_count", "min": 10, "max": 5},
                {"kind": "freshnes", "column": "event_ts"},
                {"kind": "mean", "column": "plan", "min": 1, "severity": "fatal"},
                {"kind": "uniqueness", "columns": ["customer_id"], "colums": []},
            )
        )
    )
    with pytest.raises(QualityRulesError) as caught:
        load_rules(path, spec=churn_rules.spec)
    problems = caught.value.problems
    text = str(caught.value)
    assert (
        "churn.quality.yaml: rules[0] (completeness_email).column: 'email' is not a curated column"
        in text
    )
    assert "rules[1] (plan_allowed).values: must be a non-empty list" in problems
    assert (
        "rules[2] (range_tenure_months).min: must be a number for a int column, got 'zero'"
        in problems
    )
    assert (
        "rules[3] (regex_sessions).column: regex rules apply to string columns, not int" in problems
    )
    assert (
        "rules[3] (regex_sessions).pattern: must be anchored with ^ and $, got '[0-9]+'" in problems
    )
    assert "rules[4] (row_count).min: 10 is above max 5" in problems
    assert any(
        p.startswith("rules[5] (freshnes_event_ts).kind: 'freshnes' is not one of")
        and "did you mean 'freshness'" in p
        for p in problems
    )
    assert "rules[6] (mean_plan).severity: must be one of error, warn, got 'fatal'" in problems
    assert "rules[6] (mean_plan).column: mean needs a numeric column, not string" in problems
    assert (
        "rules[7] (uniqueness_customer_id).colums: unknown key (did you mean 'columns'?)"
        in problems
    )
    assert len(problems) == 10


def test_duplicate_ids_and_wrong_dataset_are_refused(churn_rules):
    with pytest.raises(QualityRulesError) as caught:
        parse_rules(
            {"dataset": "other", "rules": [{"kind": "completeness", "column": "plan"}] * 2},
            churn_rules.spec,
            source="x.quality.yaml",
        )
    assert caught.value.problems == [
        "dataset: 'other' does not match the dataset spec's 'churn'",
        "rules[1] (completeness_plan).id: already used by rules[0]; give one of them an explicit id",
    ]


def test_resolution_makes_relative_rules_concrete(churn_rules):
    resolved = {rule.id: rule for rule in resolve_rules(churn_rules.rules, "2026-01-10", 1001)}
    change = resolved["row_count_change"]
    # 0.5 and 2.0 times 1001 rows, rounded inwards to whole rows.
    assert (change.min, change.max, change.skip_reason) == (501, 2002, None)
    assert resolved["freshness_event_ts"].not_before == "2026-01-10T12:00:00+00:00"
    assert resolved["range_signup_date"].max == "2026-01-10"
    assert resolved["range_signup_date"].min == "2000-01-01"
    assert all(rule.resolved for rule in resolved.values())


def test_without_a_previous_partition_the_change_rule_is_skipped(churn_rules):
    resolved = {rule.id: rule for rule in resolve_rules(churn_rules.rules, "2026-01-10", None)}
    assert (
        resolved["row_count_change"].skip_reason
        == "no previous partition ds=2026-01-09 to compare with"
    )
    assert resolved["row_count_change"].min is None


def test_compilers_refuse_unresolved_rules(churn_rules):
    with pytest.raises(ValueError, match="not resolved for a partition"):
        require_resolved(churn_rules.rules)
    with pytest.raises(ValueError, match="'2026-13-01' is not a YYYY-MM-DD date"):
        resolve_rules(churn_rules.rules, "2026-13-01", None)
