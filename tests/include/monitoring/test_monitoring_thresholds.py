"""The monitoring config loader: churn.monitoring.yaml as shipped; errors name the file and key."""

from __future__ import annotations

import pytest

from include.monitoring.columns import CATEGORICAL, FRACTIONAL, NUMERIC, STRING, MonitoredColumn
from include.monitoring.thresholds import (
    FeatureThresholds,
    MonitoringConfigError,
    load_monitoring_config,
    parse_monitoring_config,
)


def test_shipped_config_loads(monitoring_config):
    assert monitoring_config.dataset == "churn"
    assert monitoring_config.score_column == "score"
    assert monitoring_config.reference_sample_rows == 200_000
    assert monitoring_config.psi_bins == 10
    assert monitoring_config.ks_alpha == 0.01
    monthly = monitoring_config.thresholds_for(
        MonitoredColumn("monthly_charge", NUMERIC, FRACTIONAL)
    )
    assert monthly == FeatureThresholds(psi=0.2, ks=0.1, missing_rate_change=0.05)
    score = monitoring_config.thresholds_for(MonitoredColumn("score", NUMERIC, FRACTIONAL))
    assert (score.psi, score.ks) == (0.1, 0.05)
    total = monitoring_config.thresholds_for(MonitoredColumn("total_charges", NUMERIC, FRACTIONAL))
    assert total.missing_rate_change == 0.1
    plan = monitoring_config.thresholds_for(MonitoredColumn("plan", CATEGORICAL, STRING))
    assert plan == FeatureThresholds(
        psi=0.2, js=0.1, linf=0.1, unseen_rate=0.0, missing_rate_change=0.05
    )
    assert monitoring_config.monitoring_config() == {
        "evaluate_constraints": "Enabled",
        "emit_metrics": "Enabled",
        "datatype_check_threshold": 1.0,
        "domain_content_threshold": 1.0,
        "distribution_constraints": {
            "perform_comparison": "Enabled",
            "comparison_threshold": 0.1,
            "comparison_method": "Robust",
            "categorical_comparison_threshold": 0.1,
            "categorical_drift_method": "LInfinity",
        },
    }


def test_every_problem_is_reported_with_file_and_key():
    text = """
dataset: churn
monitoring:
  psi_bins: 1
  ks_alpha: 1.0
  sample_rows: 10
  thresholds:
    numeric: {psi: -0.1, ks: 1.5, wasserstein: 0.2}
    categorical: {js: "high"}
    ordinal: {psi: 0.1}
  features:
    plan: {linf: true}
  model_monitor:
    comparison_method: Fancy
"""
    with pytest.raises(MonitoringConfigError) as error:
        parse_monitoring_config(text, source="conf/bad.monitoring.yaml")
    message = str(error.value)
    for expected in (
        "bad.monitoring.yaml: monitoring.sample_rows: unknown key",
        "bad.monitoring.yaml: monitoring.psi_bins: must be an integer >= 2, got 1",
        "bad.monitoring.yaml: monitoring.ks_alpha: must be a number in (0, 1) or null, got 1.0",
        "bad.monitoring.yaml: monitoring.thresholds.numeric.psi: must be a finite number >= 0 or null, got -0.1",
        "bad.monitoring.yaml: monitoring.thresholds.numeric.ks: must be within [0, 1] or null, got 1.5",
        "bad.monitoring.yaml: monitoring.thresholds.numeric.wasserstein: unknown metric",
        "bad.monitoring.yaml: monitoring.thresholds.categorical.js: must be within [0, 1] or null, got 'high'",
        "bad.monitoring.yaml: monitoring.thresholds.ordinal: unknown kind",
        "bad.monitoring.yaml: monitoring.features.plan.linf: must be within [0, 1] or null, got True",
        "bad.monitoring.yaml: monitoring.model_monitor.comparison_method: must be one of Robust, Simple, got 'Fancy'",
    ):
        assert expected in message
    assert len(error.value.problems) == 10


def test_null_switches_a_metric_off():
    text = """
dataset: churn
monitoring:
  thresholds:
    numeric: {psi: 0.2, ks: null}
    categorical: {psi: 0.2}
"""
    config = parse_monitoring_config(text)
    thresholds = config.thresholds_for(MonitoredColumn("x", NUMERIC, FRACTIONAL))
    assert thresholds.ks is None and thresholds.psi == 0.2
    # ks_alpha defaults to 0.01; null leaves KS to its threshold alone.
    assert config.ks_alpha == 0.01
    assert parse_monitoring_config(text + "  ks_alpha: null\n").ks_alpha is None
    assert parse_monitoring_config(text + "  ks_alpha: 0.001\n").ks_alpha == 0.001


def test_unreadable_and_malformed_files_are_named(tmp_path):
    with pytest.raises(
        MonitoringConfigError, match=r"nope\.monitoring\.yaml: cannot read the file"
    ):
        load_monitoring_config(tmp_path / "nope.monitoring.yaml")
    broken = tmp_path / "broken.monitoring.yaml"
    broken.write_text("dataset: churn\nmonitoring: [1, 2\n")
    with pytest.raises(MonitoringConfigError, match=r"broken\.monitoring\.yaml: not valid YAML"):
        load_monitoring_config(broken)
    missing = tmp_path / "empty.monitoring.yaml"
    missing.write_text("dataset: churn\n")
    with pytest.raises(
        MonitoringConfigError, match=r"empty\.monitoring\.yaml: monitoring: must be a mapping"
    ):
        load_monitoring_config(missing)
