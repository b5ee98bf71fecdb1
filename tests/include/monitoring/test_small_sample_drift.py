"""Small batches: sampling noise is not drift, a real shift still is.

At ``tests/e2e/test_demo.py``'s size (2,000 rows a day) the score's reference is about 600
held-out rows, and two samples of those sizes from one distribution are more than the score's KS
threshold (0.05) apart about one time in five. The check counts KS only when its p-value is also
below ``ks_alpha`` (0.01 in churn.monitoring.yaml): calm batches are then reported about one time
in a hundred, a shifted batch of the same size every time, and at large sizes the threshold alone
decides, as before.

The references and batches are samples of generated churn days (``conftest.churn_frames``), each
baseline is built by the real ``build_baseline`` with a held-out score reference, and every batch
goes through the real ``check_drift`` with churn.monitoring.yaml's thresholds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from include.monitoring.baseline import build_baseline
from include.monitoring.columns import FRACTIONAL, NUMERIC, MonitoredColumn
from include.monitoring.drift import check_drift
from include.monitoring.thresholds import MonitoringConfig

REFERENCE_ROWS, HELD_OUT_SHARE, BATCH_ROWS = 2_000, 0.3, 2_000
CALM_TRIALS, SHIFTED_TRIALS = 200, 10
SCORE = MonitoredColumn("score", NUMERIC, FRACTIONAL)


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame.sample(rows, random_state=seed).reset_index(drop=True)


def _small_baseline(churn_frames, columns, config, seed: int):
    """The baseline of a 2,000-row training day: its score reference is ~600 held-out rows."""
    reference = _sample(churn_frames["train"], REFERENCE_ROWS, seed)
    held_out = np.random.default_rng(seed).random(REFERENCE_ROWS) < HELD_OUT_SHARE
    baseline, _ = build_baseline(reference, columns, config, score_rows=held_out)
    assert 500 < baseline.references["score"].sample_sorted.size < 700
    return baseline


def _score(report):
    return next(f for f in report.features if f.name == "score")


def test_calm_small_batches_are_not_reported_for_sampling_noise(churn_frames, monitoring_config):
    """200 independent pairs (a reference and a batch of new customers from the same
    distributions). Only the score is monitored here: its KS threshold (0.05) is the one inside
    the noise at these sizes; the features' (0.1, against a 2,000-row reference) are not.
    Pairs, not one reference against many batches: an unusual reference (drawn about one time in
    a hundred) would make every batch checked against it look drifted."""
    # churn.monitoring.yaml as shipped, less its overrides of features not monitored here.
    config = replace(monitoring_config, overrides={"score": monitoring_config.overrides["score"]})
    over_threshold, reported = 0, 0
    for seed in range(CALM_TRIALS):
        baseline = _small_baseline(churn_frames, [SCORE], config, seed)
        batch = _sample(churn_frames["no_drift"], BATCH_ROWS, 1_000 + seed)
        score = _score(check_drift(baseline, batch, config))
        if score.metrics["ks"] > score.thresholds["ks"]:
            over_threshold += 1
            if not score.over_threshold:
                # Not drift, and the report says why.
                assert score.within_noise[0].startswith(f"ks={score.metrics['ks']:.3g}>0.05 at p=")
                assert score.within_noise[0].endswith(">=0.01")
                assert score.as_dict()["within_sampling_noise"] == score.within_noise
        reported += score.over_threshold
    # The noise is real: judged by the statistic alone, about one calm batch in five would be
    # "drifted".
    assert over_threshold >= 0.1 * CALM_TRIALS, over_threshold
    # Judged with the p-value too, about ks_alpha (1 %) of them are: at most 6 in 200.
    assert reported <= 6, f"{reported} of {CALM_TRIALS} calm batches reported score drift"


def test_a_shifted_small_batch_is_still_reported(churn_frames, churn_columns, monitoring_config):
    """The drifted day (sessions and region shifted; the scorer reads sessions), same sizes,
    every column monitored."""
    for seed in range(SHIFTED_TRIALS):
        baseline = _small_baseline(churn_frames, churn_columns, monitoring_config, seed)
        batch = _sample(churn_frames["drifted"], BATCH_ROWS, 5_000 + seed)
        report = check_drift(baseline, batch, monitoring_config)
        assert set(report.features_over_threshold) == {"sessions", "region", "score"}
        score = _score(report)
        assert score.metrics["ks"] > 0.1 and score.metrics["ks_pvalue"] < 1e-6
        (violation,) = score.violations
        assert f"ks={score.metrics['ks']:.3g}>0.05 at p=" in violation.description
        assert "<0.01" in violation.description


def test_at_large_sizes_the_threshold_alone_decides():
    """250,000 rows against a 75,000-row reference: every KS over 0.05 has a tiny p-value, so
    the gate changes nothing, and a shift under the threshold stays unreported though
    significant."""
    column = MonitoredColumn("score", NUMERIC, FRACTIONAL)
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"score": rng.beta(2, 6, 75_000)})
    config = MonitoringConfig(overrides={"score": {"ks": 0.05}})
    baseline, _ = build_baseline(reference, [column], config)
    for shift, drifted in ((0.03, True), (0.01, False)):
        batch = pd.DataFrame({"score": np.clip(rng.beta(2, 6, 250_000) + shift, 0, 1)})
        score = _score(check_drift(baseline, batch, config))
        assert score.metrics["ks_pvalue"] < 1e-6
        assert (score.metrics["ks"] > 0.05) is drifted
        assert score.over_threshold is drifted
        assert score.within_noise == []


def test_without_ks_alpha_the_statistic_alone_decides(churn_frames):
    """``ks_alpha: null``: the behaviour before the gate, for a dataset that wants it."""
    gated = MonitoringConfig(overrides={"score": {"ks": 0.05}})
    ungated = MonitoringConfig(overrides={"score": {"ks": 0.05}}, ks_alpha=None)
    noise = 0
    for seed in range(20):
        baseline = _small_baseline(churn_frames, [SCORE], gated, seed)
        batch = _sample(churn_frames["no_drift"], BATCH_ROWS, 1_000 + seed)
        report = check_drift(baseline, batch, ungated)
        score = _score(report)
        assert score.over_threshold is (score.metrics["ks"] > 0.05)
        assert report.as_dict()["ks_alpha"] is None
        noise += (
            score.over_threshold and not _score(check_drift(baseline, batch, gated)).over_threshold
        )
    assert noise >= 2
