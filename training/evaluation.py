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


# Fairness audit defaults (the spec's features.fairness overrides them through train.py's flags).
# A group with fewer rows than this, or with labels of one class only, is reported with its
# counts as too small to judge: its rates would be noise, and its TPR or AUC undefined.
MIN_GROUP_ROWS = 30
# How the decision threshold is chosen on the validation split when the spec fixes none.
THRESHOLD_METHODS = ("f1", "youden")
# The gaps between groups that the audit reports, in the order a reader meets them. Every one
# is ``{value, highest, lowest}``: the two (distinct) groups it compares and the gap between
# their values of ``quantity``. Pre-training gaps describe the labels, post-training ones the
# model's predictions at the decision threshold (SageMaker Clarify's CI, DPL, DPPL, EOD, DI).
GAP_METRICS: dict[str, dict[str, str]] = {
    "class_imbalance": {
        "stage": "pre-training",
        "quantity": "rows",
        "formula": "CI = (n_a - n_d) / (n_a + n_d), a the largest group, d the smallest",
    },
    "label_rate_difference": {
        "stage": "pre-training",
        "quantity": "label_rate",
        "formula": "DPL = q_a - q_d, q the share labelled positive (highest minus lowest group)",
    },
    "positive_rate_difference": {
        "stage": "post-training",
        "quantity": "positive_rate",
        "formula": "DPPL = q'_a - q'_d, q' the share predicted positive (highest minus lowest)",
    },
    "recall_difference": {
        "stage": "post-training",
        "quantity": "recall",
        "formula": "EOD = TPR_a - TPR_d, the equal-opportunity (true positive rate) difference",
    },
    "disparate_impact": {
        "stage": "post-training",
        "quantity": "positive_rate",
        "formula": "DI = q'_d / q'_a, lowest over highest share predicted positive (1 is parity)",
    },
    "roc_auc_difference": {
        "stage": "post-training",
        "quantity": "roc_auc",
        "formula": "AUC_a - AUC_d, highest minus lowest per-group ROC AUC",
    },
}


def choose_threshold(y_true, y_score, *, method: str = "f1") -> float:
    """The decision threshold that maximises ``method`` on these (validation) rows.

    ``f1``: the F1 score of ``score >= threshold``; ``youden``: Youden's J, TPR - FPR. The
    candidates are the rows' own scores, so every distinct decision is tried once; on a tie the
    highest threshold wins (fewest rows predicted positive), so the choice is deterministic.
    Needs both classes among the rows.
    """
    labels, scores = _labels_and_scores(y_true, y_score)
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"method must be one of {', '.join(THRESHOLD_METHODS)}, got {method!r}")
    if np.unique(labels).size < 2:
        raise ValueError(f"choosing a threshold by {method} needs both classes among the rows")
    candidates = np.unique(scores)  # ascending
    # Positives and negatives at or above each candidate, from the sorted scores.
    order = np.sort(scores)
    above = labels.size - np.searchsorted(order, candidates, side="left")
    positive_scores = np.sort(scores[labels == 1])
    true_positives = positive_scores.size - np.searchsorted(
        positive_scores, candidates, side="left"
    )
    false_positives = above - true_positives
    positives, negatives = positive_scores.size, labels.size - positive_scores.size
    if method == "f1":
        # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (TP + FP + P).
        objective = 2.0 * true_positives / (above + positives)
    else:
        objective = true_positives / positives - false_positives / negatives
    best = np.flatnonzero(objective == objective.max())[-1]
    return float(candidates[best])


def _gap(per_group: Mapping[str, dict], quantity: str, *, ratio: bool = False) -> dict:
    """The gap in ``quantity`` between the highest and the lowest judged group.

    Groups are ordered by ``(value, name)``, so on ties the choice is deterministic and, with two
    or more groups, ``highest`` and ``lowest`` are always two different groups. ``ratio``: the
    value is lowest / highest (``None`` where the highest is 0), else highest - lowest.
    """
    defined = {
        name: g[quantity]
        for name, g in per_group.items()
        if g["judged"] and g.get(quantity) is not None
    }
    if len(defined) < 2:
        return {"value": None, "highest": None, "lowest": None}
    order = sorted(defined, key=lambda name: (defined[name], name))
    lowest, highest = order[0], order[-1]
    high, low = defined[highest], defined[lowest]
    if ratio:
        value = None if high == 0 else float(low / high)
    elif quantity == "rows":
        value = float((high - low) / (high + low))
    else:
        value = float(high - low)
    return {"value": value, "highest": highest, "lowest": lowest}


def group_metrics(
    y_true,
    y_score,
    groups: Mapping[str, np.ndarray],
    *,
    threshold: float = 0.5,
    min_group_rows: int = MIN_GROUP_ROWS,
) -> dict:
    """A fairness audit: metrics per value of each attribute, and the gaps between its groups.

    :param y_true: 0/1 labels, one per row.
    :param y_score: predicted probabilities of the positive class, one per row.
    :param groups: attribute name → the group value of every row, e.g.
        ``{"region": np.array(["eu_west", "us_east", …])}`` (from :func:`groups_from_one_hot`
        for a categorical model input, or an audit column the model never sees).
    :param threshold: a row is predicted positive when its score is ``>= threshold``.
    :param min_group_rows: a group with fewer rows, or with labels of one class only, is not
        judged: it keeps its counts (``rows``, ``positives``) and ``reason``, its rates are
        ``None`` and it takes part in no gap.
    :return: per attribute, ``groups`` (per value: ``rows``, ``positives``, ``judged``,
        ``reason``, ``label_rate``, ``positive_rate``, ``recall`` (TPR) and ``roc_auc``) and
        one entry per :data:`GAP_METRICS` name, ``{value, highest, lowest}`` (``value`` is
        ``None`` with fewer than two judged groups).
    """
    labels, scores = _labels_and_scores(y_true, y_score)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if min_group_rows < 1:
        raise ValueError(f"min_group_rows must be at least 1, got {min_group_rows}")
    predicted = (scores >= threshold).astype(np.int64)
    result: dict[str, dict] = {}
    for attribute, values in groups.items():
        values = np.asarray(values)
        if values.shape != labels.shape:
            raise ValueError(
                f"groups[{attribute!r}] has shape {values.shape} but there are "
                f"{labels.size} rows; give one group value per row"
            )
        names = values.astype(str)
        per_group: dict[str, dict] = {}
        for value in sorted(set(names.tolist())):
            member = names == value
            rows, positives = int(member.sum()), int(labels[member].sum())
            reason = None
            if rows < min_group_rows:
                reason = f"{rows} rows, fewer than {min_group_rows}"
            elif positives in (0, rows):
                reason = f"labels of one class only ({positives} positive of {rows})"
            entry = {"rows": rows, "positives": positives, "judged": reason is None}
            entry["reason"] = reason
            for name in ("label_rate", "positive_rate", "recall", "roc_auc"):
                entry[name] = None
            if reason is None:
                entry.update(
                    label_rate=float(labels[member].mean()),
                    positive_rate=float(predicted[member].mean()),
                    recall=_recall(labels[member], predicted[member]),
                    roc_auc=_roc_auc(labels[member], scores[member]),
                )
            per_group[value] = entry
        result[attribute] = {
            "groups": per_group,
            **{
                name: _gap(per_group, info["quantity"], ratio=name == "disparate_impact")
                for name, info in GAP_METRICS.items()
            },
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


# Champion / challenger on the same rows. A percentile bootstrap of the paired AUC difference:
# each resample draws the same row indices for both models, so what the two models share (an
# easy or a hard sample of rows) cancels out of the difference. Chosen over DeLong because it
# needs no variance formula, takes ties as they come, and is a dozen lines anyone can check;
# a fixed seed makes the interval reproducible.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
PAIRED_METHOD = "paired bootstrap (percentile)"


class _BootstrapAuc:
    """The ROC AUC of one model's scores on its rows, each row counted as often as a resample
    drew it (the Mann-Whitney U statistic, ties counting half, as ``roc_auc_score`` computes it).

    The rows are sorted by score once; each resample then costs a few passes over the rows
    instead of a sort of the resampled scores. On 37,402 rows, 1000 resamples of both models
    took 8.6 s with ``scipy.stats.rankdata`` per resample and take 1.0 s this way (this
    project's 2-core machine), at the end of every training job that has a champion. Every rank
    is a half-integer and every sum stays far below 2**53, so the AUC is the very float the rank
    sum of the resampled scores gives.
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray):
        self._order = np.argsort(scores, kind="stable")
        ranked = scores[self._order]
        self._positive = labels[self._order] == 1
        # Rows of equal score form one tie group and share its average rank.
        self._group = np.cumsum(np.concatenate(([True], ranked[1:] != ranked[:-1]))) - 1
        self._groups = int(self._group[-1]) + 1

    def __call__(self, counts: np.ndarray) -> float | None:
        """AUC with row ``i`` drawn ``counts[i]`` times; None when one class was never drawn."""
        drawn = counts[self._order].astype(np.float64)
        per_group = np.bincount(self._group, weights=drawn, minlength=self._groups)
        positives = np.bincount(self._group, weights=drawn * self._positive, minlength=self._groups)
        n_pos = positives.sum()
        n_neg = per_group.sum() - n_pos
        if n_pos == 0 or n_neg == 0:
            return None
        ranks_below = np.cumsum(per_group) - per_group
        rank_sum = positives @ (ranks_below + (per_group + 1) / 2)
        return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def paired_auc_comparison(
    y_true,
    challenger_scores,
    champion_scores,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> dict:
    """ROC AUC of two models on the same rows, and a confidence interval of their difference.

    The difference is challenger minus champion. The interval is the percentile interval of the
    difference over ``resamples`` bootstrap resamples of the rows (the same rows for both
    models in each resample); resamples that hold one label class only have no AUC and are
    skipped (``resamples_used`` counts the rest). Same inputs and seed, same interval.

    :return: ``method``, ``rows``, ``positives``, ``challenger_auc``, ``champion_auc``,
        ``difference``, ``interval`` (``[lower, upper]``), ``confidence``, ``resamples``,
        ``resamples_used`` and ``seed``.
    """
    labels, challenger = _labels_and_scores(y_true, challenger_scores)
    _, champion = _labels_and_scores(labels, champion_scores)
    if challenger.size != champion.size:
        raise ValueError(
            f"challenger_scores has {challenger.size} rows but champion_scores has "
            f"{champion.size}; both models must score the same rows"
        )
    if np.unique(labels).size < 2:
        raise ValueError("comparing AUCs needs both label classes among the rows")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    challenger_auc_of = _BootstrapAuc(labels, challenger)
    champion_auc_of = _BootstrapAuc(labels, champion)
    every_row_once = np.ones(labels.size, dtype=np.int64)
    challenger_auc = challenger_auc_of(every_row_once)
    champion_auc = champion_auc_of(every_row_once)
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, labels.size, labels.size), minlength=labels.size)
        challenger_resampled = challenger_auc_of(counts)
        if challenger_resampled is None:  # the resample holds one label class only
            continue
        differences.append(challenger_resampled - champion_auc_of(counts))
    if not differences:
        raise ValueError(
            f"every one of {resamples} resamples of {labels.size} rows held one label class: "
            "too few rows of the rarer class to compare AUCs"
        )
    tail = (1 - confidence) / 2 * 100
    lower, upper = np.percentile(differences, [tail, 100 - tail])
    return {
        "method": PAIRED_METHOD,
        "rows": int(labels.size),
        "positives": int(labels.sum()),
        "challenger_auc": challenger_auc,
        "champion_auc": champion_auc,
        "difference": challenger_auc - champion_auc,
        "interval": [float(lower), float(upper)],
        "confidence": float(confidence),
        "resamples": int(resamples),
        "resamples_used": len(differences),
        "seed": int(seed),
    }
