"""include/model_selection.py: the champion / challenger rule, its reasons and its numbers."""

from __future__ import annotations

import pytest

from include.model_selection import PAIRED_RULE, decide_champion_challenger


def _paired(challenger_auc, champion_auc, lower, upper, rows=200):
    """A job's ``champion_comparison`` (the shape training/evaluation.py writes)."""
    return {
        "paired": True,
        "method": "paired bootstrap (percentile)",
        "rows": rows,
        "positives": rows // 2,
        "challenger_auc": challenger_auc,
        "champion_auc": champion_auc,
        "difference": challenger_auc - champion_auc,
        "interval": [lower, upper],
        "confidence": 0.95,
        "resamples": 1000,
        "resamples_used": 1000,
        "seed": 0,
        "champion_sha256": "ab" * 32,
    }


def test_no_champion_approves_the_challenger():
    decision = decide_champion_challenger({"roc_auc": 0.71}, None)

    assert decision.approve is True
    assert decision.approval_status == "Approved"
    assert "no approved champion" in decision.reason and "0.710000" in decision.reason
    assert decision.comparison is None


def test_paired_interval_above_the_margin_approves_with_its_numbers():
    decision = decide_champion_challenger(
        {"roc_auc": 0.9},
        {"roc_auc": 0.7},
        margin=0.005,
        comparison=_paired(0.88, 0.80, 0.03, 0.13),
        champion_version="3",
    )

    assert decision.approve is True
    assert "on the same 200 test rows" in decision.reason
    assert "challenger roc_auc=0.880000 vs champion roc_auc=0.800000" in decision.reason
    assert "difference +0.080000" in decision.reason
    assert "95% interval [+0.030000, +0.130000]" in decision.reason
    record = decision.comparison
    assert record["paired"] is True and record["outcome"] == "approved"
    # Both AUCs come from the shared rows, not from the registry's per-split metrics.
    assert (record["challenger"], record["champion"]) == (0.88, 0.80)
    assert record["difference"] == pytest.approx(0.08)
    assert record["interval"] == [0.03, 0.13] and record["rows"] == 200
    assert record["margin"] == 0.005 and record["champion_version"] == "3"
    assert record["rule"] == PAIRED_RULE


def test_a_better_point_estimate_whose_interval_does_not_clear_the_margin_waits():
    # +0.02 on average, but the interval reaches down to +0.004 < margin 0.005.
    decision = decide_champion_challenger(
        {"roc_auc": 0.82}, {"roc_auc": 0.80}, comparison=_paired(0.82, 0.80, 0.004, 0.036)
    )

    assert decision.approve is False
    assert decision.approval_status == "PendingManualApproval"
    assert "lower bound +0.004000 does not clear the margin 0.005000" in decision.reason
    assert decision.comparison["outcome"] == "needs manual approval"


def test_identical_models_with_a_zero_interval_are_not_promoted_even_with_zero_margin():
    decision = decide_champion_challenger(
        {"roc_auc": 0.8}, {"roc_auc": 0.8}, margin=0, comparison=_paired(0.8, 0.8, 0.0, 0.0)
    )

    assert decision.approve is False


def test_unpaired_comparison_never_approves_and_says_so():
    # The old rule would approve +0.005; numbers from two splits now need a person.
    decision = decide_champion_challenger(
        {"roc_auc": 0.815},
        {"roc_auc": 0.81},
        margin=0.005,
        champion_version="1",
        not_paired_because="the champion was trained on other features",
    )

    assert decision.approve is False
    assert decision.reason.startswith("NOT PAIRED (the champion was trained on other features)")
    assert "challenger roc_auc=0.815000" in decision.reason
    assert "champion roc_auc=0.810000 on another split" in decision.reason
    assert decision.comparison["paired"] is False
    assert decision.comparison["method"] == "not paired" and decision.comparison["interval"] is None


def test_a_comparison_the_job_could_not_pair_is_treated_as_unpaired():
    comparison = {"paired": False, "reason": "the champion predicts label 'x'"}
    decision = decide_champion_challenger(
        {"roc_auc": 0.95}, {"roc_auc": 0.5}, comparison=comparison
    )

    assert decision.approve is False and "NOT PAIRED" in decision.reason


def test_losses_compare_the_other_way_and_name_the_direction():
    worse = decide_champion_challenger(
        {"log_loss": 0.45}, {"log_loss": 0.40}, metric="log_loss", higher_is_better=False
    )

    assert not worse.approve and "-0.050000 (lower is better" in worse.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "kwargs", "message"),
    [
        ({"f1": 0.5}, None, {}, "challenger metrics have no finite 'roc_auc'.*available: f1"),
        ({"roc_auc": 0.8}, {"roc_auc": None}, {}, "champion metrics have no finite 'roc_auc'"),
        ({"roc_auc": float("nan")}, None, {}, "challenger metrics have no finite"),
        ({"roc_auc": 0.8}, None, {"margin": -0.1}, "margin must be a finite number >= 0"),
    ],
)
def test_bad_metrics_or_margin_are_named(challenger, champion, kwargs, message):
    with pytest.raises(ValueError, match=message):
        decide_champion_challenger(challenger, champion, **kwargs)
