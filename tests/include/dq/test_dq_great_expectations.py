"""Great Expectations finds exactly the planted violations: each plant fails its rule(s) and no other.

Frames go through Parquet with Spark's types and back through the gate's own reader, so GE sees
what it sees in a real run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dq_partitions import DS, arrow_table, clean_frame

from include.dq.gate import read_partition_frame
from include.dq.great_expectations_suite import validate_dataframe
from include.dq.rules import resolve_rules


def gate_frame(frame: pd.DataFrame, curated_types, tmp_path, table: pa.Table | None = None):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(table if table is not None else arrow_table(frame, curated_types), path)
    return read_partition_frame([path.as_uri()], curated_types)


def run(frame, churn_rules, previous_rows=None, rules=None):
    rules = rules or resolve_rules(churn_rules.rules, DS, previous_rows)
    outcomes = validate_dataframe(frame, rules, churn_rules.key_columns, suite_name="test")
    return {o.rule: o for o in outcomes}


def failing(outcomes) -> set[str]:
    return {rule for rule, outcome in outcomes.items() if outcome.status == "fail"}


def test_clean_partition_passes_every_rule(churn_rules, curated_types, tmp_path):
    outcomes = run(
        gate_frame(clean_frame(curated_types), curated_types, tmp_path),
        churn_rules,
        previous_rows=40,
    )
    assert failing(outcomes) == set()
    assert {o.status for o in outcomes.values()} == {"pass"}
    assert outcomes["row_count"].observed == 40
    assert outcomes["mean_monthly_charge"].observed == pytest.approx(45.0)
    assert outcomes["stdev_monthly_charge"].observed == pytest.approx(25.318484, rel=1e-5)
    assert outcomes["completeness_data_gb"].observed == {"non_null_fraction": 0.975, "null_rows": 1}
    assert outcomes["freshness_event_ts"].observed == "2026-01-10T22:35:00"


def key(n: int) -> dict:
    return {"customer_id": f"C{100000000 + n:09d}", "snapshot_date": DS}


def test_completeness(churn_rules, curated_types, tmp_path):
    frame = clean_frame(curated_types)
    frame.loc[3, "plan"] = None
    outcomes = run(gate_frame(frame, curated_types, tmp_path), churn_rules)
    assert failing(outcomes) == {"completeness_plan"}
    outcome = outcomes["completeness_plan"]
    assert outcome.observed == {"non_null_fraction": 0.975, "null_rows": 1}
    assert outcome.offending_keys == [key(3)]


def test_uniqueness(churn_rules, curated_types, tmp_path):
    frame = clean_frame(curated_types)
    frame.loc[5, "customer_id"] = frame.loc[4, "customer_id"]
    outcomes = run(gate_frame(frame, curated_types, tmp_path), churn_rules)
    assert failing(outcomes) == {"primary_key_unique"}
    outcome = outcomes["primary_key_unique"]
    assert outcome.unexpected_count == 2
    assert outcome.offending_keys == [key(4), key(4)]


def test_range_on_numbers_and_dates(churn_rules, curated_types, tmp_path):
    frame = clean_frame(curated_types)
    frame.loc[6, "tenure_months"] = 700
    # One day after the partition: signed up in the future.
    frame.loc[7, "signup_date"] = date.fromisoformat(DS) + timedelta(days=1)
    outcomes = run(gate_frame(frame, curated_types, tmp_path), churn_rules)
    assert failing(outcomes) == {"range_tenure_months", "range_signup_date"}
    assert outcomes["range_tenure_months"].unexpected_values == [700]
    assert outcomes["range_tenure_months"].offending_keys == [key(6)]
    assert outcomes["range_signup_date"].unexpected_values == ["2026-01-11"]
    assert outcomes["range_signup_date"].offending_keys == [key(7)]


def test_allowed_values(churn_rules, curated_types, tmp_path):
    frame = clean_frame(curated_types)
    frame.loc[8, "region"] = "mars"
    frame.loc[9, "churned"] = 2
    outcomes = run(gate_frame(frame, curated_types, tmp_path), churn_rules)
    assert failing(outcomes) == {"allowed_values_region", "allowed_values_churned"}
    assert outcomes["allowed_values_region"].unexpected_values == ["mars"]
    assert outcomes["allowed_values_churned"].offending_keys == [key(9)]


def test_regex(churn_rules, curated_types, tmp_path):
    frame = clean_frame(curated_types)
    frame.loc[10, "customer_id"] = "X123"
    outcomes = run(gate_frame(frame, curated_types, tmp_path), churn_rules)
    assert failing(outcomes) == {"regex_customer_id"}
    assert outcomes["regex_customer_id"].offending_keys == [
        {"customer_id": "X123", "snapshot_date": DS}
    ]


def test_row_count_absolute_and_relative(churn_rules, curated_types, tmp_path):
    frame = gate_frame(clean_frame(curated_types), curated_types, tmp_path)
    rules = resolve_rules(churn_rules.rules, DS, previous_row_count=100)
    # The absolute bounds of churn are far from 40 rows; tighten them for this plant.
    rules = [replace(r, max=30) if r.id == "row_count" else r for r in rules]
    outcomes = run(frame, churn_rules, rules=rules)
    assert failing(outcomes) == {"row_count", "row_count_change"}
    assert outcomes["row_count"].observed == 40
    # 0.5 x 100 previous rows: at least 50.
    assert outcomes["row_count_change"].expected["min"] == 50
    assert outcomes["row_count_change"].severity == "warn"


def test_freshness(churn_rules, curated_types, tmp_path):
    frame = clean_frame(curated_types)
    frame["event_ts"] = [
        pd.Timestamp(f"{DS}T08:00:00", tz="UTC") + timedelta(minutes=i) for i in range(len(frame))
    ]
    outcomes = run(gate_frame(frame, curated_types, tmp_path), churn_rules)
    assert failing(outcomes) == {"freshness_event_ts"}
    assert outcomes["freshness_event_ts"].observed == "2026-01-10T08:39:00"
    assert outcomes["freshness_event_ts"].expected["not_before"] == "2026-01-10T12:00:00+00:00"


def test_mean_and_stdev(churn_rules, curated_types, tmp_path):
    shifted = clean_frame(curated_types)
    shifted["monthly_charge"] += 50.0
    outcomes = run(gate_frame(shifted, curated_types, tmp_path), churn_rules)
    assert failing(outcomes) == {"mean_monthly_charge"}
    assert outcomes["mean_monthly_charge"].observed == pytest.approx(95.0)

    flat = clean_frame(curated_types)
    flat["monthly_charge"] = [44.0 if i % 2 else 46.0 for i in range(len(flat))]
    outcomes = run(gate_frame(flat, curated_types, tmp_path), churn_rules)
    assert failing(outcomes) == {"stdev_monthly_charge"}
    assert outcomes["stdev_monthly_charge"].observed == pytest.approx(1.0128, rel=1e-3)


def test_schema(churn_rules, curated_types, tmp_path):
    frame = clean_frame(curated_types)
    frame["promo_code"] = "WINTER"
    table = arrow_table(frame, curated_types)
    # sessions written as a 64-bit integer instead of the spec's int.
    index = table.schema.get_field_index("sessions")
    table = table.set_column(index, "sessions", table.column("sessions").cast(pa.int64()))
    outcomes = run(gate_frame(frame, curated_types, tmp_path, table=table), churn_rules)
    assert failing(outcomes) == {"schema"}
    assert outcomes["schema"].observed == {
        "missing_columns": [],
        "unexpected_columns": ["promo_code"],
        "wrong_types": {"sessions": "int64"},
    }


def test_missing_column_fails_schema_and_its_rules_with_a_reason(
    churn_rules, curated_types, tmp_path
):
    frame = clean_frame(curated_types).drop(columns=["region"])
    outcomes = run(gate_frame(frame, curated_types, tmp_path), churn_rules)
    assert failing(outcomes) == {"schema", "allowed_values_region"}
    assert outcomes["schema"].observed["missing_columns"] == ["region"]
    assert "could not be evaluated" in outcomes["allowed_values_region"].detail
    assert "region" in outcomes["allowed_values_region"].detail
