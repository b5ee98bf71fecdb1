"""The drift check end to end on generated churn days: planted drift is reported for exactly the
drifted columns at the configured thresholds, a batch from the same distributions for none; the
outputs follow Model Monitor's violations format and the HTML report plots each drifted column."""

from __future__ import annotations

import html as html_module
import json
import re

import jsonschema
import numpy as np
import pytest
from scipy import stats

from include.monitoring.baseline import load_baseline, write_baseline
from include.monitoring.drift import DriftReport, check_drift
from include.monitoring.job import write_drift_files
from include.monitoring.report import render_html, write_drift_html
from include.monitoring.thresholds import MonitoringConfigError, parse_monitoring_config
from include.storage import storage_for

# Written down from "Schema for Violations (constraint_violations.json file)",
# https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-interpreting-violations.html
VIOLATIONS_SCHEMA = {
    "type": "object",
    "required": ["violations"],
    "additionalProperties": False,
    "properties": {
        "violations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["feature_name", "constraint_check_type", "description"],
                "additionalProperties": False,
                "properties": {
                    "feature_name": {"type": "string"},
                    "constraint_check_type": {
                        "enum": [
                            "data_type_check",
                            "completeness_check",
                            "baseline_drift_check",
                            "missing_column_check",
                            "extra_column_check",
                            "categorical_values_check",
                        ]
                    },
                    "description": {"type": "string"},
                },
            },
        }
    },
}


def test_planted_drift_is_reported_for_the_drifted_columns_only(
    churn_baseline, churn_frames, monitoring_config, planted_features
):
    report = check_drift(churn_baseline, churn_frames["drifted"], monitoring_config)
    # The two planted features, and the score, whose scorer reads sessions.
    assert set(report.features_over_threshold) == {*planted_features, "score"}
    by_name = {f.name: f for f in report.features}
    assert [v.constraint_check_type for v in by_name["sessions"].violations] == [
        "baseline_drift_check"
    ]
    assert [v.constraint_check_type for v in by_name["region"].violations] == [
        "baseline_drift_check"
    ]
    # sessions + 8 is far beyond every numeric threshold; 30 % of regions moved to apac.
    assert by_name["sessions"].metrics["ks"] > 0.5
    assert by_name["sessions"].metrics["psi"] > 1.0
    assert by_name["region"].metrics["linf"] == pytest.approx(
        (churn_frames["drifted"]["region"] == "apac").mean()
        - (churn_frames["train"]["region"] == "apac").mean(),
        abs=1e-12,
    )
    # Unplanted columns stay far below their thresholds.
    for name in ("monthly_charge", "minutes_used", "plan", "contract"):
        assert not by_name[name].over_threshold
    assert report.verdict.startswith("drift: 3 of 14 features over threshold (sessions psi=")
    assert "region psi=" in report.verdict and "score psi=" in report.verdict
    jsonschema.validate(report.constraint_violations(), VIOLATIONS_SCHEMA)
    assert {v["feature_name"] for v in report.constraint_violations()["violations"]} == {
        *planted_features,
        "score",
    }


def test_the_check_ks_is_scipy_ks_against_the_reference_sample(churn_baseline, churn_frames):
    report = check_drift(churn_baseline, churn_frames["drifted"])
    train, batch = churn_frames["train"], churn_frames["drifted"]
    for feature in report.features:
        if feature.kind != "numeric":
            continue
        expected = stats.ks_2samp(
            train[feature.name].dropna(), batch[feature.name].dropna()
        ).statistic
        assert feature.metrics["ks"] == pytest.approx(expected, abs=1e-9), feature.name


def test_same_distribution_other_customers_has_no_violation(
    churn_baseline, churn_frames, monitoring_config
):
    report = check_drift(churn_baseline, churn_frames["no_drift"], monitoring_config)
    assert report.violations == []
    assert report.constraint_violations() == {"violations": []}
    assert report.verdict == "no drift: 0 of 14 features over threshold (20000 rows)"
    # Not merely under threshold: far under it.
    for feature in report.features:
        assert feature.metrics["psi"] < 0.05, feature.name
        assert feature.metrics.get("ks") is None or feature.metrics["ks"] < 0.03, feature.name


def test_per_feature_thresholds_from_config_decide(churn_baseline, churn_frames):
    # region's L-infinity distance is about 0.26 and its PSI about 0.39: loosen exactly those.
    text = """
dataset: churn
monitoring:
  thresholds:
    numeric: {psi: 0.2, ks: 0.1, missing_rate_change: 0.05}
    categorical: {psi: 0.2, js: 0.1, linf: 0.1, unseen_rate: 0.0, missing_rate_change: 0.05}
  features:
    region: {psi: 0.5, js: 0.3, linf: 0.3}
    score: {psi: null, ks: 0.5}
"""
    config = parse_monitoring_config(text, source="loose.monitoring.yaml")
    report = check_drift(churn_baseline, churn_frames["drifted"], config)
    assert report.features_over_threshold == ["sessions"]
    region = next(f for f in report.features if f.name == "region")
    assert region.thresholds == {
        "psi": 0.5,
        "js": 0.3,
        "linf": 0.3,
        "unseen_rate": 0.0,
        "missing_rate_change": 0.05,
    }


def test_override_of_an_unmonitored_feature_names_file_and_key(churn_baseline, churn_frames):
    text = """
dataset: churn
monitoring:
  thresholds: {numeric: {psi: 0.2}, categorical: {psi: 0.2}}
  features:
    sesions: {psi: 0.3}
"""
    config = parse_monitoring_config(text, source="typo.monitoring.yaml")
    with pytest.raises(
        MonitoringConfigError,
        match=r"typo\.monitoring\.yaml: monitoring\.features\.sesions: not a monitored column",
    ):
        check_drift(churn_baseline, churn_frames["no_drift"], config)


def test_override_with_a_metric_of_the_other_kind_is_refused(churn_baseline, churn_frames):
    text = """
dataset: churn
monitoring:
  thresholds: {numeric: {psi: 0.2}, categorical: {psi: 0.2}}
  features:
    plan: {ks: 0.3}
"""
    config = parse_monitoring_config(text, source="kind.monitoring.yaml")
    with pytest.raises(
        MonitoringConfigError,
        match=r"monitoring\.features\.plan\.ks: not a metric of a categorical column",
    ):
        check_drift(churn_baseline, churn_frames["no_drift"], config)


def test_missing_column_unseen_category_missing_rate_and_bad_type(
    churn_baseline, churn_frames, monitoring_config
):
    batch = churn_frames["no_drift"].copy()
    batch = batch.drop(columns=["contract"])
    batch.loc[batch.index[:40], "plan"] = "platinum"
    batch.loc[batch.index[:3000], "data_gb"] = np.nan  # 15 % more missing
    batch["minutes_used"] = batch["minutes_used"].astype(object)
    batch.loc[batch.index[7], "minutes_used"] = "n/a"
    report = check_drift(churn_baseline, batch, monitoring_config)
    checks = {(v.feature_name, v.constraint_check_type) for v in report.violations}
    assert checks == {
        ("contract", "missing_column_check"),
        ("plan", "categorical_values_check"),
        ("data_gb", "completeness_check"),
        ("minutes_used", "data_type_check"),
    }
    by_name = {f.name: f for f in report.features}
    assert by_name["plan"].metrics["unseen_categories"] == {"platinum": 40}
    assert by_name["plan"].metrics["unseen_rate"] == pytest.approx(40 / len(batch))
    minutes = next(v for v in report.violations if v.feature_name == "minutes_used")
    assert "row 7, counting from 0: 'n/a'" in minutes.description
    data_gb = next(v for v in report.violations if v.feature_name == "data_gb")
    assert "missing_rate_change=" in data_gb.description
    # The missing column has no statistics; every other one does.
    assert "contract" not in {f["name"] for f in report.statistics["features"]}
    assert len(report.statistics["features"]) == 13
    json.dumps(report.as_dict(), allow_nan=False)  # drift_report.json stays valid JSON
    jsonschema.validate(report.constraint_violations(), VIOLATIONS_SCHEMA)


def test_outputs_are_written_with_a_plot_per_drifted_feature(
    tmp_path, churn_frames, churn_columns, monitoring_config, planted_features
):
    lake = tmp_path / "lake"
    baseline_uri = (lake / "monitoring/churn/model_version=3/baseline").as_uri()
    write_baseline(churn_frames["train"], churn_columns, baseline_uri, monitoring_config)
    report = check_drift(
        load_baseline(baseline_uri), churn_frames["drifted"], monitoring_config,
        metadata={"model_version": "3", "ds": "2026-01-02"},
    )  # fmt: skip
    batch = lake / "monitoring/churn/model_version=3/ds=2026-01-02"
    html_uri = (lake / "reports/drift/churn/ds=2026-01-02/drift_report.html").as_uri()
    paths = write_drift_files(report, batch)  # the job's files

    def read_json(key):
        return json.loads(paths[key].read_text())

    # The worker renders the page from what the job left: the same page as from the report.
    read_back = DriftReport.from_dict(read_json("drift_report"), read_json("statistics"))
    assert read_back.verdict == report.verdict
    assert read_back.features_over_threshold == report.features_over_threshold
    write_drift_html(read_back, html_uri)
    violations = read_json("constraint_violations")
    jsonschema.validate(violations, VIOLATIONS_SCHEMA)
    assert {v["feature_name"] for v in violations["violations"]} == {*planted_features, "score"}
    statistics = read_json("statistics")
    assert statistics["dataset"]["item_count"] == len(churn_frames["drifted"])
    drift_report = read_json("drift_report")
    assert drift_report["verdict"] == report.verdict
    assert len(drift_report["features"]) == 14

    html = storage_for(html_uri).read_bytes(html_uri).decode()
    plotted = re.findall(
        r'<img alt="([a-z_0-9]+): reference vs current" src="data:image/png;base64,', html
    )
    assert sorted(plotted) == sorted([*planted_features, "score"])
    assert html_module.escape(report.verdict) in html
    # Deterministic: the same batch renders the same page.
    assert render_html(report) == html
