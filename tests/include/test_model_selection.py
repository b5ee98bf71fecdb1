"""include/model_selection.py: the champion / challenger rule and its reasons."""

from __future__ import annotations

import pytest

from include.model_selection import decide_champion_challenger


def test_no_champion_approves_the_challenger():
    decision = decide_champion_challenger({"roc_auc": 0.71}, None)

    assert decision.approve is True
    assert decision.approval_status == "Approved"
    assert "no approved champion" in decision.reason and "0.710000" in decision.reason


def test_challenger_beating_the_champion_by_the_margin_is_approved():
    decision = decide_champion_challenger({"roc_auc": 0.815}, {"roc_auc": 0.81}, margin=0.005)

    assert decision.approve is True
    assert "+0.005000" in decision.reason


def test_challenger_inside_the_margin_waits_for_a_person_and_names_both_values():
    decision = decide_champion_challenger({"roc_auc": 0.814}, {"roc_auc": 0.81}, margin=0.005)

    assert decision.approve is False
    assert decision.approval_status == "PendingManualApproval"
    assert "challenger roc_auc=0.814000" in decision.reason
    assert "champion roc_auc=0.810000" in decision.reason
    assert "needs manual approval" in decision.reason


def test_worse_challenger_is_not_approved_even_with_zero_margin():
    assert not decide_champion_challenger({"roc_auc": 0.7}, {"roc_auc": 0.8}, margin=0).approve
    assert decide_champion_challenger({"roc_auc": 0.8}, {"roc_auc": 0.8}, margin=0).approve


def test_losses_compare_the_other_way():
    better = decide_champion_challenger(
        {"log_loss": 0.30}, {"log_loss": 0.40}, metric="log_loss", higher_is_better=False
    )
    worse = decide_champion_challenger(
        {"log_loss": 0.45}, {"log_loss": 0.40}, metric="log_loss", higher_is_better=False
    )

    assert better.approve and "+0.100000" in better.reason
    assert not worse.approve and "-0.050000" in worse.reason


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
