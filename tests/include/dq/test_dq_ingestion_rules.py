"""The gate's rules over ingestion: quarantine rate (overall, per reason) and rows in against
recent validated days, evaluated from the ingest manifest beside the engine's results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from dq_partitions import (
    DS,
    clean_frame,
    plant_quarantine,
    write_partition,
    write_validated_day,
)

from include.dq.gate import run_local_gate, write_gate_outputs
from include.dq.ingestion import evaluate_ingestion_rules
from include.dq.results import GateResult
from include.dq.rules import QualityRulesError, load_rules, parse_rules

INGESTION_RULES = {
    "quarantine_rate",
    "quarantine_rate_required_null_churned",
    "quarantine_rate_required_null",
    "quarantine_rate_type_mismatch",
    "rows_in_change",
}


def _by_id(result: GateResult) -> dict:
    return {outcome.rule: outcome for outcome in result.outcomes}


@pytest.fixture
def lake(tmp_path) -> str:
    return (tmp_path / "lake").as_uri()


def test_a_clean_day_passes_every_ingestion_rule(churn_rules, curated_types, lake):
    write_partition(lake, clean_frame(curated_types), curated_types)

    result = run_local_gate(churn_rules, lake, DS)

    assert result.passed, result.failure_message()
    outcomes = _by_id(result)
    # One outcome per rule, in the rules file's order, ingestion rules among them.
    assert [o.rule for o in result.outcomes] == [r.id for r in churn_rules.rules]
    assert {o.rule for o in result.outcomes if o.column.startswith("(ingestion)")} == (
        INGESTION_RULES
    )
    assert outcomes["quarantine_rate"].status == "pass"
    assert outcomes["quarantine_rate"].observed == {
        "rows_read": 40,
        "rows_quarantined": 0,
        "quarantined_fraction": 0.0,
        "by_reason": {},
    }
    # No validated day before: passes, saying so.
    rows_in = outcomes["rows_in_change"]
    assert rows_in.status == "pass"
    assert rows_in.observed == {"rows_in": 40, "median_rows_in": None, "ratio": None, "history": {}}
    assert "no validated day in the previous 30 days" in rows_in.detail
    assert result.ingestion["rows_quarantined"] == 0


def test_a_day_with_35_percent_quarantined_fails_naming_the_reasons(
    churn_rules, curated_types, lake
):
    write_partition(lake, clean_frame(curated_types, rows=65), curated_types)
    examples = {
        "required_null:churned": [
            {"source_file": "day.csv", "record_key": f"C90000000{n}|{DS}", "value": None}
            for n in (1, 2, 3)
        ],
        "out_of_range:tenure_months": [
            {"source_file": "day.csv", "record_key": f"C900000050|{DS}", "value": "9999"}
        ],
    }
    plant_quarantine(lake, {"required_null:churned": 30, "out_of_range:tenure_months": 5}, examples)

    result = run_local_gate(churn_rules, lake, DS)

    assert not result.passed
    outcomes = _by_id(result)
    overall = outcomes["quarantine_rate"]
    assert (overall.status, overall.unexpected_count) == ("fail", 35)
    assert overall.observed == {
        "rows_read": 100,
        "rows_quarantined": 35,
        "quarantined_fraction": 0.35,
        "by_reason": {"required_null:churned": 30, "out_of_range:tenure_months": 5},
    }
    assert overall.detail == (
        "ingest quarantined 35 of 100 landing rows (35.0%, above 5.0%); "
        "by reason: required_null:churned 30, out_of_range:tenure_months 5"
    )
    assert overall.offending_keys[:2] == [
        {
            "reason": "required_null:churned",
            "record_key": f"C900000001|{DS}",
            "source_file": "day.csv",
        },
        {
            "reason": "required_null:churned",
            "record_key": f"C900000002|{DS}",
            "source_file": "day.csv",
        },
    ]
    assert overall.offending_keys[3]["reason"] == "out_of_range:tenure_months"
    assert overall.unexpected_values == [None, None, None, "9999"]
    # The label's own rule and the code-wide rule fail too; type mismatches were none.
    label = outcomes["quarantine_rate_required_null_churned"]
    assert (label.status, label.observed["quarantined_fraction"]) == ("fail", 0.3)
    assert outcomes["quarantine_rate_required_null"].status == "fail"
    assert outcomes["quarantine_rate_type_mismatch"].observed["rows_quarantined"] == 0
    assert outcomes["quarantine_rate_type_mismatch"].status == "pass"
    # Every rule over the curated rows still passed: only ingestion's rules block the day.
    blocking = {o.rule for o in result.outcomes if o.blocks}
    assert blocking == {
        "quarantine_rate",
        "quarantine_rate_required_null_churned",
        "quarantine_rate_required_null",
    }
    assert result.counts()["failed_error"] == 3

    message = result.failure_message()
    assert "3 error rule(s) failed" in message
    assert "by reason: required_null:churned 30, out_of_range:tenure_months 5" in message
    assert "rule: A blank label on more than 1% of rows is a producer bug" in message

    uris = write_gate_outputs(result, lake)
    report = Path(uris["report_uri"].removeprefix("file://")).read_text()
    assert "<h2>Ingestion</h2><p>100 landing rows read, 65 accepted, 35 quarantined" in report
    assert "<td>required_null:churned</td><td>30</td><td>30.00%</td>" in report
    assert f"C900000050|{DS}: &quot;9999&quot; (day.csv)" in report
    document = json.loads(Path(uris["result_uri"].removeprefix("file://")).read_text())
    assert document["ingestion"]["quarantined_by_reason"][0] == {
        "reason": "required_null:churned",
        "rows": 30,
        "fraction": 0.3,
        "examples": examples["required_null:churned"],
    }
    # Read back (as the Deequ path does), descriptions and the ingestion summary survive.
    back = GateResult.from_dict(document)
    assert back.ingestion == result.ingestion
    assert _by_id(back)["quarantine_rate_required_null_churned"].description.startswith(
        "A blank label"
    )


def test_a_per_reason_threshold_fails_alone(churn_rules, curated_types, lake):
    # 3% type mismatches: under the overall 5%, over type_mismatch's 2%.
    write_partition(lake, clean_frame(curated_types, rows=97), curated_types)
    plant_quarantine(lake, {"type_mismatch:tenure_months": 2, "type_mismatch:sessions": 1})

    result = run_local_gate(churn_rules, lake, DS)

    outcomes = _by_id(result)
    assert outcomes["quarantine_rate"].status == "pass"
    assert outcomes["quarantine_rate"].observed["quarantined_fraction"] == 0.03
    assert {o.rule for o in result.outcomes if o.blocks} == {"quarantine_rate_type_mismatch"}
    mismatch = outcomes["quarantine_rate_type_mismatch"]
    assert mismatch.observed["by_reason"] == {
        "type_mismatch:tenure_months": 2,
        "type_mismatch:sessions": 1,
    }
    assert "3 of 100 landing rows (3.0%, above 2.0%)" in mismatch.detail
    # The manifest carried no examples: none are invented.
    assert mismatch.offending_keys == [] and mismatch.unexpected_values == []


def _rules(*rules: dict, spec) -> list:
    return list(parse_rules({"dataset": "churn", "rules": list(rules)}, spec).rules)


def test_rows_in_change_against_the_median_of_recent_validated_days(churn_rules, lake):
    rules = _rules(
        {"kind": "rows_in_change", "min_ratio": 0.5, "max_ratio": 2.0, "days": 3},
        spec=churn_rules.spec,
    )
    write_validated_day(lake, "2026-01-09", 500)
    write_validated_day(lake, "2026-01-08", 200, passed=False)  # failed the gate: not history
    write_validated_day(lake, "2026-01-07", 520)
    write_validated_day(lake, "2026-01-05", 480)
    write_validated_day(lake, "2026-01-04", 9000)  # a fourth validated day: beyond days=3
    from include.dq.gate import rows_in_of_day

    def outcome(rows_in: int):
        manifest = {"totals": {"rows_read": rows_in}}
        [result] = evaluate_ingestion_rules(
            rules, DS, manifest, lambda day: rows_in_of_day(lake, "churn", day)
        )
        return result

    low = outcome(200)
    assert low.status == "fail"
    assert low.observed == {
        "rows_in": 200,
        "median_rows_in": 500,
        "ratio": 0.4,
        "history": {"2026-01-09": 500, "2026-01-07": 520, "2026-01-05": 480},
    }
    assert low.expected == {
        "min_ratio": 0.5,
        "max_ratio": 2.0,
        "days": 3,
        "lookback_days": 30,
        "min_rows": 250,
        "max_rows": 1000,
    }
    assert low.detail == (
        "200 landing rows is 0.40x the median 500 of 3 validated day(s) "
        "(2026-01-09, 2026-01-07, 2026-01-05)"
    )
    assert outcome(250).status == "pass"  # the bound is inclusive
    assert outcome(1000).status == "pass"
    assert outcome(1001).status == "fail"


def test_a_re_ingested_day_is_not_history_until_validated_again(churn_rules, lake):
    rules = _rules({"kind": "rows_in_change", "min_ratio": 0.5}, spec=churn_rules.spec)
    write_validated_day(lake, "2026-01-09", 500)
    manifest_path = Path(
        lake.removeprefix("file://") + "/curated/churn/ds=2026-01-09/_manifest.json"
    )
    manifest = json.loads(manifest_path.read_text())
    manifest["outputs"]["curated"]["files"][0]["sha256"] = "other rows"
    manifest_path.write_text(json.dumps(manifest))
    from include.dq.gate import rows_in_of_day

    assert rows_in_of_day(lake, "churn", "2026-01-09") is None
    [result] = evaluate_ingestion_rules(
        rules, DS, {"totals": {"rows_read": 10}}, lambda d: rows_in_of_day(lake, "churn", d)
    )
    assert (result.status, result.observed["history"]) == ("pass", {})


def test_the_gate_fails_a_cut_export_against_recent_days(churn_rules, curated_types, lake):
    for back, rows in ((1, 400), (2, 420), (3, 380)):
        write_validated_day(lake, f"2026-01-{10 - back:02d}", rows)
    write_partition(lake, clean_frame(curated_types), curated_types)  # 40 rows: a tenth

    result = run_local_gate(churn_rules, lake, DS)

    blocking = [o for o in result.outcomes if o.blocks]
    assert [o.rule for o in blocking] == ["rows_in_change"]
    assert blocking[0].observed["median_rows_in"] == 400
    assert blocking[0].observed["ratio"] == 0.1
    assert "rule: A snapshot of every customer a day" in result.failure_message()


def test_every_rule_carries_its_description_into_the_report_and_message(
    churn_rules, curated_types, lake
):
    frame = clean_frame(curated_types)
    # Mean 500, stdev 30: fails only the mean rule (an engine rule with a description).
    frame["monthly_charge"] = [470.0 if i % 2 else 530.0 for i in range(len(frame))]
    write_partition(lake, frame, curated_types)

    result = run_local_gate(churn_rules, lake, DS)

    described = {r.id: r.description for r in churn_rules.rules}
    assert {o.rule: o.description for o in result.outcomes} == described
    assert sum(bool(d) for d in described.values()) == 12
    [failed] = [o for o in result.outcomes if o.blocks]
    assert failed.rule == "mean_monthly_charge"
    assert "rule: Clean data averages about 46" in result.failure_message()
    report = Path(write_gate_outputs(result, lake)["report_uri"].removeprefix("file://"))
    text = report.read_text()
    for description in filter(None, described.values()):
        assert description.replace("'", "&#x27;") in text


def test_ingestion_rule_errors_name_the_file_rule_and_field(tmp_path, churn_rules):
    path = tmp_path / "churn.quality.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dataset": "churn",
                "rules": [
                    {"kind": "quarantine_rate", "max_fraction": 1.5},
                    {"kind": "quarantine_rate", "reason": "required_nul", "max_fraction": 0.1},
                    {"kind": "quarantine_rate", "reason": "type_mismatch:age", "max_fraction": 0.1},
                    {
                        "kind": "quarantine_rate",
                        "id": "q_col",
                        "column": "plan",
                        "max_fraction": 0.1,
                    },
                    {"kind": "rows_in_change", "days": 10, "lookback_days": 5, "min_ratio": 0.5},
                    {"kind": "rows_in_change", "id": "no_ratio", "days": 0},
                    {"kind": "rows_in_change", "id": "flipped", "min_ratio": 3, "max_ratio": 2},
                ],
            }
        )
    )
    with pytest.raises(QualityRulesError) as caught:
        load_rules(path, spec=churn_rules.spec)
    assert caught.value.problems == [
        "rules[0] (quarantine_rate).max_fraction: must be a number in [0, 1], got 1.5",
        "rules[1] (quarantine_rate_required_nul).reason: 'required_nul' is not an ingest reason "
        "code (bad_encoding, malformed_record, header_mismatch, missing_column, type_mismatch, "
        "non_finite, required_null, out_of_range, not_allowed, pattern_mismatch, too_long, "
        "formula_injection, pii_detected, partition_mismatch, duplicate_key) "
        "(did you mean 'required_null'?)",
        "rules[2] (quarantine_rate_type_mismatch_age).reason: 'age' is not a column of the "
        "dataset spec",
        "rules[3] (q_col).column: unknown key",
        "rules[4] (rows_in_change).days: 10 days cannot be found within lookback_days 5",
        "rules[5] (no_ratio).days: must be a whole number of days in [1, 366], got 0",
        "rules[5] (no_ratio): a rows_in_change rule needs min_ratio, max_ratio or both",
        "rules[6] (flipped).min_ratio: 3 is above max_ratio 2",
    ]
    assert (
        str(caught.value)
        .splitlines()[1]
        .startswith("  - churn.quality.yaml: rules[0] (quarantine_rate).max_fraction")
    )
