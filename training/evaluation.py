"""Test-split evaluation of a binary classifier: metrics, calibration, per-group metrics, importance.

Pure numpy and scikit-learn, with no torch and no Airflow, because it ships inside the SageMaker
source directory beside ``train.py`` (which writes ``evaluation.json`` from these functions) and
is also what the registry and the model card read back. Every function returns plain JSON-able
values: floats, ints, strings, lists, dicts and ``None`` where a metric is undefined (ROC AUC of a
single class, recall of a group without positives), never NaN, which JSON cannot carry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from sklearn import metrics as skm

CALIBRATION_BINS = 10
# Permutation importance scores a column by how much the metric worsens when it is shuffled;
# for these metrics a larger value is better, for the others a smaller one.
_HIGHER_IS_BETTER = {"roc_auc": True, "log_loss": False, "brier": False}
# One-hot rows with no category set (a value outside the spec's allowed list) form this group.
NO_CATEGORY = "(none)"


def _labels_and_scores(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """Validated 1-D arrays: labels 0/1 as ints, scores finite probabilities in [0, 1]."""
    labels = np.asarray(y_true)
    scores = np.asarray(y_score, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(
            f"y_true and y_score must be 1-D, got shapes {labels.shape} and {scores.shape}"
        )
    if labels.shape[0] != scores.shape[0]:
        raise ValueError(
            f"y_true has {labels.shape[0]} rows but y_score has {scores.shape[0]}; "
            "they must describe the same rows"
        )
    if labels.shape[0] == 0:
        raise ValueError("y_true is empty: there is nothing to evaluate")
    bad_labels = ~np.isin(labels, (0, 1))
    if bad_labels.any():
        row = int(np.flatnonzero(bad_labels)[0])
        raise ValueError(f"y_true must hold 0/1 labels; row {row} is {labels[row].item()!r}")
    bad_scores = ~np.isfinite(scores) | (scores < 0.0) | (scores > 1.0)
    if bad_scores.any():
        row = int(np.flatnonzero(bad_scores)[0])
        raise ValueError(
            f"y_score must hold probabilities in [0, 1]; row {row} is {scores[row].item()!r}"
        )
    return labels.astype(np.int64), scores


def _roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or ``None`` when only one class is present and the AUC is undefined."""
    if np.unique(labels).size < 2:
        return None
    return float(skm.roc_auc_score(labels, scores))


def _recall(labels: np.ndarray, predicted: np.ndarray) -> float | None:
    positives = labels == 1
    if not positives.any():
        return None
    return float(predicted[positives].mean())


def calibration(y_true, y_score, *, bins: int = CALIBRATION_BINS) -> dict:
    """Expected calibration error over ``bins`` equal-width score bins, and the bins themselves.

    A bin covers ``[lower, upper)``; the last one also holds scores of exactly 1.0. ECE is the
    row-weighted mean of ``|mean_score - positive_rate|`` over non-empty bins. Empty bins are
    listed with ``count`` 0 and ``None`` for their means, so every card shows the same bins.
    """
    labels, scores = _labels_and_scores(y_true, y_score)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    # k / bins is the correctly rounded edge (0.6, not linspace's 0.6000000000000001).
    edges = np.arange(bins + 1) / bins
    # Binning against the same edges the card reports (as sklearn's calibration_curve does), so
    # a score on an edge lands in the bin whose printed ``lower`` it equals.
    index = np.searchsorted(edges[1:-1], scores, side="right")
    ece = 0.0
    rows = []
    for b in range(bins):
        in_bin = index == b
        count = int(in_bin.sum())
        mean_score = float(scores[in_bin].mean()) if count else None
        positive_rate = float(labels[in_bin].mean()) if count else None
        if count:
            ece += count / labels.size * abs(mean_score - positive_rate)
        rows.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "mean_score": mean_score,
                "positive_rate": positive_rate,
            }
        )
    return {"ece": float(ece), "bins": rows}


def evaluate_binary_classifier(y_true, y_score, *, threshold: float = 0.5) -> dict:
    """Threshold-free and thresholded metrics of scores ``y_score`` against labels ``y_true``.

    :param y_true: 0/1 labels, one per row.
    :param y_score: predicted probabilities of the positive class, one per row.
    :param threshold: a row is predicted positive when its score is ``>= threshold``.
    :return: ``roc_auc`` (``None`` with a single class), ``f1``, ``log_loss``, ``brier``,
        ``accuracy``, ``precision``, ``recall``, ``positive_rate`` (share predicted positive),
        ``label_rate`` (share labelled positive), ``rows``, ``threshold`` and ``calibration``.
    """
    labels, scores = _labels_and_scores(y_true, y_score)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    predicted = (scores >= threshold).astype(np.int64)
    return {
        "rows": int(labels.size),
        "threshold": float(threshold),
        "roc_auc": _roc_auc(labels, scores),
        "f1": float(skm.f1_score(labels, predicted, zero_division=0)),
        # labels=[0, 1] keeps log loss defined when a small split holds one class only.
        "log_loss": float(skm.log_loss(labels, scores, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(labels, scores)),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "precision": float(skm.precision_score(labels, predicted, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, zero_division=0)),
        "positive_rate": float(predicted.mean()),
        "label_rate": float(labels.mean()),
        "calibration": calibration(labels, scores),
    }


def _max_difference(per_group: Mapping[str, dict], metric: str) -> dict:
    """Largest gap in ``metric`` between two groups, naming them; groups without it are skipped."""
    defined = {name: g[metric] for name, g in per_group.items() if g[metric] is not None}
    if len(defined) < 2:
        return {"value": None, "highest": None, "lowest": None}
    highest = max(sorted(defined), key=defined.__getitem__)
    lowest = min(sorted(defined), key=defined.__getitem__)
    return {"value": defined[highest] - defined[lowest], "highest": highest, "lowest": lowest}


def group_metrics(
    y_true, y_score, groups: Mapping[str, np.ndarray], *, threshold: float = 0.5
) -> dict:
    """Metrics per value of each sensitive attribute, and the largest gaps between its groups.

    :param y_true: 0/1 labels, one per row.
    :param y_score: predicted probabilities of the positive class, one per row.
    :param groups: attribute name → the group value of every row, e.g.
        ``{"region": np.array(["eu_west", "us_east", …])}`` (see :func:`groups_from_one_hot`).
    :param threshold: a row is predicted positive when its score is ``>= threshold``.
    :return: per attribute, ``groups`` (per value: ``rows``, ``label_rate``, ``positive_rate``,
        ``recall`` — ``None`` without positives — and ``roc_auc`` — ``None`` with one class), and
        ``positive_rate_difference`` and ``recall_difference``: the largest gap between two
        groups as ``{value, highest, lowest}`` (``value`` is ``None`` with fewer than two groups
        where the metric is defined).
    """
    labels, scores = _labels_and_scores(y_true, y_score)
    predicted = (scores >= threshold).astype(np.int64)
    result: dict[str, dict] = {}
    for attribute, values in groups.items():
        values = np.asarray(values)
        if values.shape != labels.shape:
            raise ValueError(
                f"groups[{attribute!r}] has shape {values.shape} but there are "
                f"{labels.size} rows; give one group value per row"
            )
        per_group: dict[str, dict] = {}
        for value in sorted({str(v) for v in values.tolist()}):
            member = values.astype(str) == value
            per_group[value] = {
                "rows": int(member.sum()),
                "label_rate": float(labels[member].mean()),
                "positive_rate": float(predicted[member].mean()),
                "recall": _recall(labels[member], predicted[member]),
                "roc_auc": _roc_auc(labels[member], scores[member]),
            }
        result[attribute] = {
            "groups": per_group,
            "positive_rate_difference": _max_difference(per_group, "positive_rate"),
            "recall_difference": _max_difference(per_group, "recall"),
        }
    return result


def groups_from_one_hot(
    X, feature_names: Sequence[str], attributes: Sequence[str]
) -> dict[str, np.ndarray]:
    """Recover each categorical attribute's value per row from its one-hot columns.

    The features job writes a categorical ``region`` as ``region__eu_west``, ``region__us_east``…
    (0/1); a row's group is the suffix of the column set to 1, or ``"(none)"`` when none is.
    Pass the unscaled features: standardised one-hot columns are no longer 0/1.

    :param X: feature matrix, (rows, ``len(feature_names)``).
    :param feature_names: the column names of ``X``.
    :param attributes: categorical prefixes, e.g. ``["region"]``.
    """
    matrix = np.asarray(X, dtype=np.float64)
    names = list(feature_names)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise ValueError(
            f"X has shape {matrix.shape} but {len(names)} feature names were given; "
            "X must be (rows, features)"
        )
    result: dict[str, np.ndarray] = {}
    for attribute in attributes:
        prefix = f"{attribute}__"
        columns = [i for i, name in enumerate(names) if name.startswith(prefix)]
        if not columns:
            raise ValueError(
                f"sensitive attribute {attribute!r} has no one-hot columns "
                f"({prefix}<value>) among the features"
            )
        one_hot = matrix[:, columns] >= 0.5
        suffixes = np.array(
            [names[i][len(prefix) :] for i in columns] + [NO_CATEGORY], dtype=object
        )
        # argmax picks the set column; rows with none set point at the extra NO_CATEGORY slot.
        chosen = np.where(one_hot.any(axis=1), one_hot.argmax(axis=1), len(columns))
        result[attribute] = suffixes[chosen].astype(str)
    return result


def _score(metric: str, labels: np.ndarray, scores: np.ndarray) -> float:
    if metric == "roc_auc":
        return float(skm.roc_auc_score(labels, scores))
    if metric == "log_loss":
        return float(skm.log_loss(labels, scores, labels=[0, 1]))
    return float(skm.brier_score_loss(labels, scores))


def permutation_importance(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    X,
    y,
    feature_names: Sequence[str],
    *,
    repeats: int = 3,
    seed: int = 0,
    metric: str = "roc_auc",
) -> list[dict]:
    """How much ``metric`` worsens when one feature column is shuffled, per feature.

    The importance of a column is ``baseline - permuted`` for ``roc_auc`` (the drop in AUC) and
    ``permuted - baseline`` for the losses, so a larger value always means a more useful column;
    values near 0 (or below) mean the model does not rely on it. One seeded
    ``numpy.random.Generator`` drives every shuffle, so the same inputs give the same result.

    :param predict_fn: maps a (rows, features) float64 matrix to positive-class probabilities.
    :param X: the (test-split) feature matrix, as ``predict_fn`` expects it.
    :param y: 0/1 labels, one per row.
    :param feature_names: the column names of ``X``.
    :param repeats: shuffles per column; mean and std are over these.
    :param seed: seed of the generator.
    :param metric: ``roc_auc`` (default), ``log_loss`` or ``brier``.
    :return: ``[{feature, importance_mean, importance_std}]``, most important first.
    """
    if metric not in _HIGHER_IS_BETTER:
        raise ValueError(f"metric must be one of {', '.join(_HIGHER_IS_BETTER)}, got {metric!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    matrix = np.array(X, dtype=np.float64)  # a private copy: columns are shuffled in place
    names = list(feature_names)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise ValueError(
            f"X has shape {matrix.shape} but {len(names)} feature names were given; "
            "X must be (rows, features)"
        )

    def predict(features: np.ndarray) -> np.ndarray:
        _, scores = _labels_and_scores(np.zeros(features.shape[0]), predict_fn(features))
        return scores

    labels, baseline_scores = _labels_and_scores(y, predict(matrix))
    if metric == "roc_auc" and np.unique(labels).size < 2:
        raise ValueError("permutation importance on roc_auc needs both classes in y")
    baseline = _score(metric, labels, baseline_scores)
    sign = 1.0 if _HIGHER_IS_BETTER[metric] else -1.0
    rng = np.random.default_rng(seed)
    importances = []
    for column, name in enumerate(names):
        original = matrix[:, column].copy()
        drops = []
        for _ in range(repeats):
            matrix[:, column] = rng.permutation(original)
            drops.append(sign * (baseline - _score(metric, labels, predict(matrix))))
        matrix[:, column] = original
        importances.append(
            {
                "feature": name,
                "importance_mean": float(np.mean(drops)),
                "importance_std": float(np.std(drops)),
            }
        )
    # Ties (e.g. unused columns at 0.0) keep the column order, so the list is deterministic.
    return sorted(importances, key=lambda item: -item["importance_mean"])
