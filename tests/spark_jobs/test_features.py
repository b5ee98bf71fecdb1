"""The features job: values match a hand computation from curated data, the split is stable per
customer and proportional, re-runs are identical, and missing inputs fail loudly."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import pytest
from lake_helpers import TEST_SALT, lake_paths, read_rows, tree_digest

from include.datagen.churn import GeneratorConfig, generate
from spark_jobs.features import FeaturesError, feature_columns, run_features
from spark_jobs.ingest import run_ingest

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


def test_missing_inputs_fail_unless_allowed(spark, spec, lake):
    with pytest.raises(FeaturesError, match=r"missing for churn: ds=2026-06-04"):
        run_features(spark, spec, lake_root=str(lake), ds="2026-06-04", lookback_days=1)
    with pytest.raises(
        FeaturesError, match=r"ds=2026-05-30, ds=2026-05-31.*--allow-missing-days true"
    ):
        run_features(spark, spec, lake_root=str(lake), ds=DAYS[-1], lookback_days=5)
    result = run_features(
        spark, spec, lake_root=str(lake), ds=DAYS[-1], lookback_days=5, allow_missing_days=True
    )
    assert result.manifest["missing_days"] == ["2026-05-30", "2026-05-31"]
    assert "minutes_used_mean_5d" in result.manifest["features"]
