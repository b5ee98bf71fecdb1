"""The features job: values match a hand computation from curated data, the split is stable per
customer and proportional, re-runs are identical, only days that passed the quality gate are
read (the others are named in the manifest), and a missing or unvalidated day itself fails. And
a day's ingest and features jobs, run again in the same session, compile no generated class again."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta

import pytest
from lake_helpers import (
    TEST_SALT,
    lake_paths,
    read_rows,
    tree_digest,
    write_quality_result,
)

from include.datagen.churn import GeneratorConfig, generate
from spark_jobs.features import FeaturesError, feature_columns, gate_verdict, run_features
from spark_jobs.ingest import LocalFS, run_ingest

pytestmark = pytest.mark.e2e

START = date(2026, 6, 1)
DAYS = [(START + timedelta(days=i)).isoformat() for i in range(3)]
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def lake(spark, spec, tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    config = GeneratorConfig(
        out=root / "landing", start=START, days=3, rows_per_day=3000, seed=5, corrupt_rate=0.03
    )
    generate(config)
    lake = root / "lake"
    for ds in DAYS:
        run_ingest(
            spark, spec, landing_uri=str(config.out), ds=ds, lake_root=str(lake), pii_salt=TEST_SALT
        )
        # Every day passed the gate, as the validation DAG runs it before features.
        write_quality_result(lake, ds)
    return lake


def split_rows(lake, ds) -> dict[str, list[dict]]:
    base = lake / "features" / "churn" / f"ds={ds}"
    return {split: read_rows(base / f"split={split}") for split in SPLITS}


@pytest.fixture(scope="module")
def last_day(spark, spec, lake):
    result = run_features(spark, spec, lake_root=str(lake), ds=DAYS[-1], lookback_days=3)
    return result, split_rows(lake, DAYS[-1])


def test_features_match_a_hand_computation(spec, lake, last_day):
    result, splits = last_day
    rows = {r["customer_id"]: r for split in splits.values() for r in split}
    history = defaultdict(list)
    for ds in DAYS:
        for row in read_rows(lake_paths(lake, ds)["curated"]):
            history[row["customer_id"]].append(row)
    anchor = {
        r["customer_id"]: r
        for r in history.values()
        for r in r
        if r["snapshot_date"].isoformat() == DAYS[-1]
    }
    assert set(rows) == set(anchor)
    assert list(next(iter(rows.values()))) == [
        "customer_id",
        "snapshot_date",
        *result.manifest["features"],
        "churned",
    ]

    checked = 0
    for customer_id in sorted(anchor)[:200]:
        source, features, days = anchor[customer_id], rows[customer_id], history[customer_id]
        assert features["minutes_used_mean_3d"] == pytest.approx(
            sum(d["minutes_used"] for d in days) / len(days)
        )
        assert features["days_present_3d"] == len(days)
        assert features["monthly_charge"] == pytest.approx(source["monthly_charge"])
        assert features[f"plan__{source['plan']}"] == 1.0
        assert (
            sum(features[f"plan__{p}"] for p in ("basic", "standard", "premium", "family")) == 1.0
        )
        assert features["contract__month_to_month"] == float(source["contract"] == "month-to-month")
        assert features["autopay"] == float(source["autopay"])
        assert (
            features["days_since_signup_date"]
            == (date.fromisoformat(DAYS[-1]) - source["signup_date"]).days
        )
        total = source["total_charges"]
        assert features["total_charges_missing"] == float(total is None)
        expected_ratio = (
            (total or 0.0) / source["tenure_months"] if source["tenure_months"] and total else 0.0
        )
        assert features["charge_per_tenure_month"] == pytest.approx(expected_ratio)
        assert features["churned"] == source["churned"]
        checked += 1
    assert checked == 200
    # Some customers miss a day (a quarantined record), and it shows.
    assert any(r["days_present_3d"] < 3 for r in rows.values())


def test_split_is_stable_disjoint_and_proportional(spark, spec, lake, last_day):
    result, splits = last_day
    total = sum(len(rows) for rows in splits.values())
    assert {s: result.manifest["splits"][s]["rows"] for s in SPLITS} == {
        s: len(splits[s]) for s in SPLITS
    }
    shares = {s: len(splits[s]) / total for s in SPLITS}
    assert shares["train"] == pytest.approx(0.70, abs=0.04)
    assert shares["validation"] == pytest.approx(0.15, abs=0.03)
    assert shares["test"] == pytest.approx(0.15, abs=0.03)
    ids = [r["customer_id"] for rows in splits.values() for r in rows]
    assert len(ids) == len(set(ids))

    run_features(spark, spec, lake_root=str(lake), ds=DAYS[1], lookback_days=2)
    earlier = split_rows(lake, DAYS[1])
    where_before = {r["customer_id"]: s for s, rows in earlier.items() for r in rows}
    where_now = {r["customer_id"]: s for s, rows in splits.items() for r in rows}
    common = set(where_before) & set(where_now)
    assert len(common) > 2500
    assert all(where_before[c] == where_now[c] for c in common)


def test_rerun_is_identical_and_inputs_are_traced(spark, spec, lake, last_day):
    first, _ = last_day
    folder = lake / "features" / "churn" / f"ds={DAYS[-1]}"
    before = tree_digest(folder)
    again = run_features(spark, spec, lake_root=str(lake), ds=DAYS[-1], lookback_days=3)
    assert tree_digest(folder) == before
    assert [i["ds"] for i in again.manifest["inputs"]] == DAYS
    assert all(len(i["manifest_sha256"]) == 64 for i in again.manifest["inputs"])
    assert again.manifest == first.manifest
    assert again.manifest["features"] == feature_columns(spec, 3)
    assert not (lake / "features" / "churn" / "_staging" / f"ds={DAYS[-1]}").exists()


def test_a_days_second_ingest_and_features_compile_no_generated_class_again(spark, spec, tmp_path):
    """As in a warm driver, a day's ingest then features jobs, twice in the session: the
    second time every generated class comes from the session's cache. With Spark's default of
    100 entries the two jobs' 97 classes evicted each other, and 43 were compiled again."""
    config = GeneratorConfig(
        out=tmp_path / "landing", start=START, days=1, rows_per_day=300, seed=9, corrupt_rate=0.05
    )
    generate(config)
    lake = tmp_path / "lake"
    compilations = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics
    compiled = []
    for _ in range(2):
        before = compilations.METRIC_COMPILATION_TIME().getCount()
        run_ingest(
            spark, spec, landing_uri=str(config.out), ds=DAYS[0], lake_root=str(lake),
            pii_salt=TEST_SALT,
        )  # fmt: skip
        write_quality_result(lake, DAYS[0])
        run_features(spark, spec, lake_root=str(lake), ds=DAYS[0])
        compiled.append(compilations.METRIC_COMPILATION_TIME().getCount() - before)
    assert compiled[1] == 0, compiled


def test_missing_past_days_are_left_out_and_reported_but_the_day_itself_is_required(
    spark, spec, lake
):
    with pytest.raises(FeaturesError, match=r"curated partition of churn ds=2026-06-04 is missing"):
        run_features(spark, spec, lake_root=str(lake), ds="2026-06-04", lookback_days=1)
    result = run_features(spark, spec, lake_root=str(lake), ds=DAYS[-1], lookback_days=5)
    window = result.manifest["window"]
    assert window["days"] == ["2026-05-30", "2026-05-31", *DAYS]
    assert window["used"] == DAYS
    assert window["missing"] == ["2026-05-30", "2026-05-31"]
    assert window["failed_gate"] == window["not_validated"] == []
    assert "no committed curated partition" in window["reasons"]["2026-05-30"]
    assert result.manifest["missing_days"] == ["2026-05-30", "2026-05-31"]
    assert "minutes_used_mean_5d" in result.manifest["features"]


def test_audit_attributes_are_carried_beside_the_ids_but_are_no_features(
    spark, spec, lake, tmp_path
):
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    shutil.rmtree(copy / "features", ignore_errors=True)  # what other tests built
    # device_model is curated but no model input in churn.yaml: an audit attribute.
    audited = replace(spec, features=replace(spec.features, audit_attributes=("device_model",)))

    result = run_features(spark, audited, lake_root=str(copy), ds=DAYS[-1], lookback_days=1)

    assert result.manifest["audit_attributes"] == ["device_model"]
    # The model's inputs are exactly those of the spec without the audit attribute.
    assert result.manifest["features"] == feature_columns(spec, 1)
    assert not any(name.startswith("device_model") for name in result.manifest["features"])
    curated = {
        row["customer_id"]: row["device_model"]
        for row in read_rows(lake_paths(copy, DAYS[-1])["curated"])
    }
    rows = [row for split in split_rows(copy, DAYS[-1]).values() for row in split]
    assert list(rows[0]) == [
        "customer_id",
        "snapshot_date",
        "device_model",
        *result.manifest["features"],
        "churned",
    ]
    assert len(rows) == len(curated)
    assert {row["customer_id"]: row["device_model"] for row in rows} == curated
    # Nulls stay null (training reads them as the group "(missing)").
    assert any(value is None for value in curated.values())


@pytest.fixture
def gated_lake(lake, tmp_path):
    """A copy of the lake whose first day failed the gate and whose second day was never
    validated; the anchor day passed with a failed warn rule (which does not block)."""
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    shutil.rmtree(copy / "features", ignore_errors=True)  # what other tests built
    write_quality_result(copy, DAYS[0], failed_errors=("range_minutes_used_strict",))
    (copy / "reports" / "churn" / "quality" / f"ds={DAYS[1]}" / "result.json").unlink()
    write_quality_result(copy, DAYS[2], failed_warns=("mean_churned",))
    return copy


def test_days_that_did_not_pass_the_gate_are_left_out_and_reported(spark, spec, gated_lake):
    result = run_features(spark, spec, lake_root=str(gated_lake), ds=DAYS[2], lookback_days=3)

    window = result.manifest["window"]
    assert window["days"] == DAYS
    assert window["used"] == [DAYS[2]]
    assert window["failed_gate"] == [DAYS[0]]
    assert window["not_validated"] == [DAYS[1]]
    assert window["missing"] == []
    assert "range_minutes_used_strict" in window["reasons"][DAYS[0]]
    assert "no quality result" in window["reasons"][DAYS[1]]
    assert set(window["reasons"]) == {DAYS[0], DAYS[1]}
    assert result.manifest["missing_days"] == [DAYS[0], DAYS[1]]
    assert [i["ds"] for i in result.manifest["inputs"]] == [DAYS[2]]
    written = json.loads(
        (gated_lake / "features" / "churn" / f"ds={DAYS[2]}" / "_manifest.json").read_text()
    )
    assert written["window"] == window

    # The rolling features come from the anchor day alone: the other days' rows are not read.
    anchor = {r["customer_id"]: r for r in read_rows(lake_paths(gated_lake, DAYS[2])["curated"])}
    earlier = defaultdict(list)
    for ds in DAYS[:2]:
        for row in read_rows(lake_paths(gated_lake, ds)["curated"]):
            earlier[row["customer_id"]].append(row["minutes_used"])
    rows = [r for split in split_rows(gated_lake, DAYS[2]).values() for r in split]
    assert {r["customer_id"] for r in rows} == set(anchor)
    for row in rows:
        assert row["days_present_3d"] == 1.0
        assert row["minutes_used_mean_3d"] == pytest.approx(
            anchor[row["customer_id"]]["minutes_used"] or 0.0
        )
    # ...and reading them would have changed the means (so the check above can fail).
    assert (
        sum(
            1
            for r in rows
            if earlier[r["customer_id"]]
            and any(
                v != anchor[r["customer_id"]]["minutes_used"] for v in earlier[r["customer_id"]]
            )
        )
        > len(rows) // 2
    )


def test_the_day_itself_must_have_passed_the_gate(spark, spec, gated_lake):
    target = gated_lake / "features" / "churn" / f"ds={DAYS[0]}"
    with pytest.raises(
        FeaturesError,
        match=rf"churn ds={DAYS[0]} has not passed the quality gate: .*range_minutes_used_strict",
    ):
        run_features(spark, spec, lake_root=str(gated_lake), ds=DAYS[0], lookback_days=1)
    with pytest.raises(
        FeaturesError, match=rf"churn ds={DAYS[1]} has not passed the quality gate: no quality"
    ):
        run_features(spark, spec, lake_root=str(gated_lake), ds=DAYS[1], lookback_days=2)
    assert not target.exists()
    assert not (gated_lake / "features" / "churn" / f"ds={DAYS[1]}").exists()


RESULT = {"format": "headrace-quality-result/1", "dataset": "churn", "ds": "2026-06-01",
          "partition": {"content_sha256": "m1"}}  # fmt: skip


@pytest.mark.parametrize(
    ("document", "status", "reason"),
    [
        (None, "not_validated", "no quality result"),
        ("{not json", "not_validated", "is not valid JSON"),
        ({"format": "other/1"}, "not_validated", "is not a quality result"),
        ({**RESULT, "ds": "2026-06-02", "passed": True, "results": []},
         "not_validated", "holds the result of churn ds=2026-06-02"),
        ({**RESULT, "passed": True}, "not_validated", "lists no rule results"),
        ({**RESULT, "passed": False, "results": []}, "failed_gate", "passed is not true"),
        ({**RESULT, "passed": True, "engine": "deequ", "results": [
            {"rule": "unique_key", "status": "fail", "severity": "error"}]},
         "failed_gate", "failed on deequ: error rules unique_key"),
        ({**RESULT, "passed": True, "results": [
            {"rule": "mean", "status": "fail", "severity": "warn"}]}, "used", ""),
        # A pass on an earlier ingest of the day says nothing about the rows there now.
        ({**RESULT, "partition": {"content_sha256": "m0"}, "passed": True, "results": []},
         "not_validated", "the day was re-ingested after the gate checked it"),
        ({**RESULT, "partition": {}, "passed": True, "results": []},
         "not_validated", "verdict on curated content sha256 None"),
    ],
)  # fmt: skip
def test_gate_verdict_names_why_a_day_is_not_validated(tmp_path, document, status, reason):
    folder = tmp_path / "reports" / "churn" / "quality" / "ds=2026-06-01"
    if document is not None:
        folder.mkdir(parents=True)
        text = document if isinstance(document, str) else json.dumps(document)
        (folder / "result.json").write_text(text)
    verdict = gate_verdict(LocalFS(), f"file://{tmp_path}", "churn", "2026-06-01", "m1")
    assert verdict.status == status
    assert reason in verdict.reason
    assert (verdict.result_sha256 is None) == (document is None)
