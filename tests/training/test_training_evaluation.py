"""training/evaluation.py against hand-computed values and scikit-learn's own implementations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from training.evaluation import (
    calibration,
    evaluate_binary_classifier,
    group_metrics,
    groups_from_one_hot,
    permutation_importance,
)

# Four rows small enough to compute by hand: one positive is ranked below one negative.
Y = np.array([0, 0, 1, 1])
S = np.array([0.1, 0.4, 0.35, 0.8])


def test_metrics_match_hand_computed_values():
    result = evaluate_binary_classifier(Y, S)

    # Of the four (negative, positive) pairs only (0.4, 0.35) is misordered.
    assert result["roc_auc"] == pytest.approx(0.75)
    # At 0.5 only 0.8 is predicted positive: TP=1, FP=0, FN=1, TN=2.
    assert result["precision"] == pytest.approx(1.0)
    assert result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["positive_rate"] == pytest.approx(0.25)
    assert result["label_rate"] == pytest.approx(0.5)
    assert result["rows"] == 4
    expected_log_loss = -np.mean(np.log([0.9, 0.6, 0.35, 0.8]))
    assert result["log_loss"] == pytest.approx(expected_log_loss)
    assert result["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    # Each row sits alone in its bin: ECE = mean |score - label|.
    assert result["calibration"]["ece"] == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)
    json.dumps(result)  # evaluation.json must be able to carry it as it is


def test_threshold_changes_thresholded_metrics_only():
    result = evaluate_binary_classifier(Y, S, threshold=0.3)

    # 0.35, 0.4 and 0.8 are now positive: TP=2, FP=1.
    assert result["recall"] == pytest.approx(1.0)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["positive_rate"] == pytest.approx(0.75)
    assert result["roc_auc"] == pytest.approx(0.75)


def test_metrics_agree_with_sklearn_on_random_scores():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, size=500)
    scores = np.clip(0.3 * labels + rng.uniform(0, 0.7, size=500), 0, 1)

    result = evaluate_binary_classifier(labels, scores)

    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["f1"] == pytest.approx(f1_score(labels, scores >= 0.5))
    assert result["log_loss"] == pytest.approx(log_loss(labels, scores))
    prob_true, prob_pred = calibration_curve(labels, scores, n_bins=10, strategy="uniform")
    filled = [b for b in result["calibration"]["bins"] if b["count"]]
    assert [b["positive_rate"] for b in filled] == pytest.approx(list(prob_true))
    assert [b["mean_score"] for b in filled] == pytest.approx(list(prob_pred))
    counts = np.array([b["count"] for b in filled])
    expected_ece = np.sum(counts / counts.sum() * np.abs(prob_true - prob_pred))
    assert result["calibration"]["ece"] == pytest.approx(expected_ece)


def test_calibration_lists_every_bin_and_puts_edges_where_they_belong():
    result = calibration([0, 1, 1, 0], [0.0, 1.0, 0.95, 0.05])

    bins = result["bins"]
    assert len(bins) == 10
    assert (bins[0]["lower"], bins[0]["upper"]) == (0.0, 0.1)
    assert bins[0]["count"] == 2 and bins[0]["mean_score"] == pytest.approx(0.025)
    # 1.0 belongs to the last bin, which is closed on the right.
    assert bins[9]["count"] == 2 and bins[9]["positive_rate"] == 1.0
    assert bins[5] == {
        "lower": 0.5,
        "upper": 0.6,
        "count": 0,
        "mean_score": None,
        "positive_rate": None,
    }
    assert result["ece"] == pytest.approx(0.5 * 0.025 + 0.5 * 0.025)


def test_single_class_gives_no_auc_but_still_a_log_loss():
    result = evaluate_binary_classifier([0, 0, 0], [0.2, 0.1, 0.6])

    assert result["roc_auc"] is None
    assert result["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.9, 0.4])))
    assert result["recall"] == 0.0


@pytest.mark.parametrize(
    ("y_true", "y_score", "message"),
    [
        ([0, 1, 1], [0.1, 0.2], "y_true has 3 rows but y_score has 2"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "row 1 is"),
        (
            [0, 1, 1],
            [0.1, float("nan"), 0.3],
            "y_score must hold probabilities in \\[0, 1\\]; row 1",
        ),
        ([0, 1], [0.1, 1.5], "row 1 is 1.5"),
        ([], [], "y_true is empty"),
    ],
)
def test_bad_input_names_the_row_or_parameter(y_true, y_score, message):
    with pytest.raises(ValueError, match=message):
        evaluate_binary_classifier(y_true, y_score)


def test_group_metrics_per_group_and_largest_gaps():
    labels = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    scores = np.array([0.9, 0.6, 0.2, 0.1, 0.7, 0.8, 0.3, 0.1])
    region = np.array(["eu", "eu", "eu", "eu", "us", "us", "us", "ap"])

    result = group_metrics(labels, scores, {"region": region}, min_group_rows=1)["region"]

    eu, us, ap = (result["groups"][g] for g in ("eu", "us", "ap"))
    # eu: predicted [1, 1, 0, 0]; positives at rows 0 and 2, one of them found; of the four
    # (positive, negative) pairs only (0.2, 0.6) is misordered.
    assert eu == {
        "rows": 4,
        "positives": 2,
        "judged": True,
        "reason": None,
        "label_rate": 0.5,
        "positive_rate": 0.5,
        "recall": 0.5,
        "roc_auc": pytest.approx(0.75),
    }
    # us: predicted [1, 1, 0]; both positives found and ranked above the negative.
    assert us["positive_rate"] == pytest.approx(2 / 3)
    assert us["recall"] == 1.0 and us["roc_auc"] == 1.0
    # ap: one negative row, one class only: counts, no rates, and no part in any gap.
    assert ap == {
        "rows": 1,
        "positives": 0,
        "judged": False,
        "reason": "labels of one class only (0 positive of 1)",
        "label_rate": None,
        "positive_rate": None,
        "recall": None,
        "roc_auc": None,
    }
    assert result["positive_rate_difference"] == {
        "value": pytest.approx(2 / 3 - 1 / 2),
        "highest": "us",
        "lowest": "eu",
    }
    assert result["recall_difference"] == {"value": 0.5, "highest": "us", "lowest": "eu"}


def test_group_metrics_rejects_a_group_array_of_the_wrong_length():
    with pytest.raises(
        ValueError, match=r"groups\['region'\] has shape \(3,\) but there are 4 rows"
    ):
        group_metrics(Y, S, {"region": np.array(["a", "b", "c"])})


def test_groups_from_one_hot_reads_the_set_column():
    names = ["tenure", "region__eu_west", "region__us_east", "plan__basic"]
    X = np.array(
        [
            [3.0, 1.0, 0.0, 1.0],
            [5.0, 0.0, 1.0, 0.0],
            [7.0, 0.0, 0.0, 1.0],  # a region outside the allowed list: no column set
        ]
    )

    groups = groups_from_one_hot(X, names, ["region", "plan"])

    assert groups["region"].tolist() == ["eu_west", "us_east", "(none)"]
    assert groups["plan"].tolist() == ["basic", "(none)", "basic"]
    with pytest.raises(ValueError, match="'contract' has no one-hot columns"):
        groups_from_one_hot(X, names, ["contract"])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_permutation_importance_ranks_the_used_feature_first_and_ignores_unused():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=400) > 0).astype(int)

    def predict(features):
        # Uses columns 0 and 1 only; column 2 must score exactly zero.
        return _sigmoid(2 * features[:, 0] + features[:, 1])

    result = permutation_importance(predict, X, y, ["strong", "weak", "unused"], repeats=4)

    assert [r["feature"] for r in result] == ["strong", "weak", "unused"]
    assert result[0]["importance_mean"] > result[1]["importance_mean"] > 0.05
    assert result[2] == {"feature": "unused", "importance_mean": 0.0, "importance_std": 0.0}
    # The input matrix is not shuffled under the caller's feet.
    assert np.array_equal(X, np.random.default_rng(0).normal(size=(400, 3)))


def test_permutation_importance_equals_a_manual_computation_with_the_same_seed():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)

    def predict(features):
        return _sigmoid(features[:, 0] - features[:, 1])

    result = permutation_importance(predict, X, y, ["a", "b"], repeats=3, seed=42)

    baseline = roc_auc_score(y, predict(X))
    shuffler = np.random.default_rng(42)
    expected = {}
    for column, name in enumerate(["a", "b"]):
        drops = []
        for _ in range(3):
            shuffled = X.copy()
            shuffled[:, column] = shuffler.permutation(X[:, column])
            drops.append(baseline - roc_auc_score(y, predict(shuffled)))
        expected[name] = (np.mean(drops), np.std(drops))
    for row in result:
        mean, std = expected[row["feature"]]
        assert row["importance_mean"] == pytest.approx(mean)
        assert row["importance_std"] == pytest.approx(std)
    assert permutation_importance(predict, X, y, ["a", "b"], repeats=3, seed=42) == result


def test_permutation_importance_on_log_loss_counts_a_worse_loss_as_importance():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(int)

    result = permutation_importance(
        lambda f: _sigmoid(3 * f[:, 0]), X, y, ["signal", "noise"], metric="log_loss"
    )

    assert result[0]["feature"] == "signal" and result[0]["importance_mean"] > 0.5
    assert result[1]["importance_mean"] == 0.0


def test_permutation_importance_rejects_bad_arguments():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="2 feature names were given"):
        permutation_importance(lambda f: f[:, 0], np.zeros((4, 3)), Y, ["a", "b"])
    with pytest.raises(ValueError, match="metric must be one of roc_auc, log_loss, brier"):
        permutation_importance(lambda f: f[:, 0], X, Y, ["a", "b"], metric="accuracy")
    with pytest.raises(ValueError, match="y_score must hold probabilities"):
        permutation_importance(lambda f: f[:, 0] + 2.0, X, Y, ["a", "b"])
    assert math.isfinite(
        permutation_importance(lambda f: np.full(4, 0.5), X, Y, ["a", "b"])[0]["importance_mean"]
    )
