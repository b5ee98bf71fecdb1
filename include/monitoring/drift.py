"""The drift check: one batch (scored records) against the baseline bound to the model version.

For every monitored column (the features and the prediction score):

- numeric: PSI on the baseline's quantile bins and the two-sample Kolmogorov-Smirnov statistic,
  exact against the baseline's reference sample, with its asymptotic Kolmogorov p-value. KS is
  drift when the statistic is over its threshold (a change big enough to matter: at a million
  rows every p-value is tiny) and the p-value is below ``ks_alpha`` (not sampling noise: 600
  held-out rows and a 2,000-row batch from one distribution are more than 0.05 apart about one
  time in five);
- categorical: PSI on the categories, Jensen-Shannon distance (base 2) and the L-infinity
  distance (Model Monitor's ``LInfinity``) of the category shares, and the share of values the
  baseline never saw;
- both: the change of the missing rate; a column the batch lacks, or numeric text that is not a
  number, is a violation of its own.

Vectorized numpy, no per-row Python, over chunks (:mod:`include.monitoring.streaming`): each
numeric chunk is sorted (numpy's SIMD sort) and every metric comes from counts of binary searches
of the reference's sorted values into it, which add up over chunks. The result is a
:class:`DriftReport`: its violations in the SageMaker Model Monitor format
(``constraint_violations.json``), the batch's ``statistics.json``, every metric per column, and a
one-line verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from include.monitoring.baseline import (
    Baseline,
    CategoricalReference,
    NumericReference,
    _shares,
)
from include.monitoring.columns import NUMERIC
from include.monitoring.score_join import AlignedScores, ScoreJoin
from include.monitoring.statistics import (
    ask_numeric_statistics,
    numeric_feature_statistics,
    statistics_document,
    string_feature_statistics,
)
from include.monitoring.streaming import (
    DEFAULT_BATCH_ROWS,
    KEEP_VALUES,
    CategoryCounter,
    ChunkSource,
    NumericStream,
    frame_source,
    parquet_columns,
    parquet_source,
    resolve,
    run_pass,
)
from include.monitoring.thresholds import METRICS_BY_KIND, MonitoringConfig

# A bin or category share below this is raised to it before PSI takes its logarithm: an empty
# bin would otherwise make PSI infinite. 1e-4 (0.01 %) is the usual choice; it caps one empty
# bin's term at about (share - 1e-4) * ln(share / 1e-4).
PSI_EPSILON = 1e-4
# The exact KS statistic of a whole sorted batch is computed at every KS_BLOCK-th reference value
# first; the values in between are searched only in the blocks that could hold the supremum.
KS_BLOCK = 64
# Equal-width bins of the report's reference-vs-current plot of a numeric column.
PLOT_BINS = 30

# Model Monitor's constraint_check_type values (the constraint_violations.json documentation).
DATA_TYPE_CHECK = "data_type_check"
COMPLETENESS_CHECK = "completeness_check"
BASELINE_DRIFT_CHECK = "baseline_drift_check"
MISSING_COLUMN_CHECK = "missing_column_check"
CATEGORICAL_VALUES_CHECK = "categorical_values_check"
# Which check a metric over its threshold violates.
_CHECK_OF_METRIC = {
    "psi": BASELINE_DRIFT_CHECK,
    "ks": BASELINE_DRIFT_CHECK,
    "js": BASELINE_DRIFT_CHECK,
    "linf": BASELINE_DRIFT_CHECK,
    "unseen_rate": CATEGORICAL_VALUES_CHECK,
    "missing_rate_change": COMPLETENESS_CHECK,
}


# --- the metrics --------------------------------------------------------------------------------


def ks_statistic_from_counts(
    reference_cdf: np.ndarray, at_or_below: np.ndarray, below: np.ndarray, n: int
) -> float:
    """Exact two-sample KS statistic ``sup |F_ref(x) - F_cur(x)|`` from counters of the batch.

    :param reference_cdf: the reference's empirical CDF at each of its distinct values ``v_j``
        (ascending; ``count(<= v_j) / m``).
    :param at_or_below: the batch's ``count(x <= v_j)``; ``below``: its ``count(x < v_j)``.
    :param n: the batch's size.

    Both CDFs are step functions; between two consecutive reference values ``F_ref`` is constant
    and ``F_cur`` only grows, so the supremum is reached at a reference value ``v_j``, either
    ``|R_j - F_cur(v_j)|`` or ``|R_(j-1) - F_cur(v_j-)|`` (``R_j``: the reference CDF at ``v_j``,
    ``F_cur(v-)``: the batch's share below ``v``); below the first value ``F_ref`` is 0 and at
    or above the last it is 1, which those terms at the ends cover. The counters add up over
    chunks, so a batch streamed in chunks gives the same float as :func:`ks_statistic_sorted`
    of the batch at once.
    """
    if n == 0 or reference_cdf.size == 0:
        return math.nan
    previous = np.concatenate(([0.0], reference_cdf[:-1]))
    return float(
        max(np.max(np.abs(reference_cdf - at_or_below / n)), np.max(np.abs(previous - below / n)))
    )


def ks_statistic_sorted(
    reference_values: np.ndarray, reference_cdf: np.ndarray, current_sorted: np.ndarray
) -> float:
    """Exact two-sample KS statistic ``sup |F_ref(x) - F_cur(x)|``.

    :param reference_values: the reference's distinct values, ascending.
    :param reference_cdf: the reference's empirical CDF at each of them (``count(<= v) / n``).
    :param current_sorted: the current sample, ascending.

    Both CDFs are step functions; between two consecutive reference values ``F_ref`` is constant
    and ``F_cur`` only grows, so the supremum is reached at a reference value ``v_j``, either
    ``|R_j - F_cur(v_j)|`` or ``|R_(j-1) - F_cur(v_j-)|`` (``R_j``: the reference CDF at ``v_j``,
    ``F_cur(v-)``: the batch's share below ``v``). Binary searches of reference values into the
    sorted batch give both.

    Searching every reference value would cost one binary search per distinct value (200,000
    for a continuous column); instead the terms are computed exactly at every
    :data:`KS_BLOCK`-th value first, and a block in between is searched only when its bound
    could beat the largest exact term so far. Inside a block ``(s, t)`` both CDFs only grow, so
    no term there exceeds ``max(R_(t-1) - F_cur(v_s), F_cur(v_t-) - R_s)``: skipping the other
    blocks changes nothing, the result is the same float as the full evaluation.
    """
    m = reference_values.size
    if current_sorted.size == 0 or m == 0:
        return math.nan
    if m <= 4 * KS_BLOCK:
        return float(_ks_terms(reference_values, reference_cdf, current_sorted, np.arange(m)).max())
    ends = np.unique(np.append(np.arange(0, m, KS_BLOCK), m - 1))
    at_or_below, below = _current_cdf(current_sorted, reference_values[ends])
    cdf = reference_cdf[ends]
    previous = np.where(ends > 0, reference_cdf[np.maximum(ends - 1, 0)], 0.0)
    statistic = float(max(np.max(np.abs(cdf - at_or_below)), np.max(np.abs(previous - below))))
    # Block k spans ends[k] < j < ends[k + 1]; R_(t-1) is `previous` at its right end.
    bound = np.maximum(previous[1:] - at_or_below[:-1], below[1:] - cdf[:-1])
    open_blocks = np.flatnonzero((bound > statistic) & (np.diff(ends) > 1))
    if open_blocks.size:
        starts = ends[open_blocks] + 1
        lengths = ends[open_blocks + 1] - starts
        # Every index of every open block, without a Python loop: a ramp restarted per block.
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        inside = np.repeat(starts, lengths) + offsets
        terms = _ks_terms(reference_values, reference_cdf, current_sorted, inside)
        statistic = max(statistic, float(terms.max()))
    return statistic


def _current_cdf(current_sorted: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The batch's ``F(v)`` and ``F(v-)`` at ascending ``values``."""
    n = current_sorted.size
    at_or_below = np.searchsorted(current_sorted, values, side="right")
    return at_or_below / n, np.searchsorted(current_sorted, values, side="left") / n


def _ks_terms(
    reference_values: np.ndarray,
    reference_cdf: np.ndarray,
    current_sorted: np.ndarray,
    indices: np.ndarray,
) -> np.ndarray:
    """``max(|R_j - F_cur(v_j)|, |R_(j-1) - F_cur(v_j-)|)`` for each ``j`` in ``indices``."""
    at_or_below, below = _current_cdf(current_sorted, reference_values[indices])
    previous = np.where(indices > 0, reference_cdf[np.maximum(indices - 1, 0)], 0.0)
    return np.maximum(np.abs(reference_cdf[indices] - at_or_below), np.abs(previous - below))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Exact two-sample KS statistic of two samples (NaN-free, any order)."""
    reference = np.sort(np.asarray(reference, dtype=np.float64))
    values, counts = np.unique(reference, return_counts=True)
    cdf = np.cumsum(counts) / reference.size
    return ks_statistic_sorted(values, cdf, np.sort(np.asarray(current, dtype=np.float64)))


def ks_pvalue(statistic: float, n_reference: int, n_current: int) -> float:
    """Asymptotic two-sided p-value: Kolmogorov's limiting distribution at ``sqrt(en) * D`` with
    ``en = n m / (n + m)`` (what ``scipy.special.kolmogorov`` computes). Close to the exact
    two-sample p-value from a few hundred rows up; conservative (too large) for tied values."""
    if math.isnan(statistic) or n_reference == 0 or n_current == 0:
        return math.nan
    x = math.sqrt(n_reference * n_current / (n_reference + n_current)) * statistic
    return kolmogorov_survival(x)


def kolmogorov_survival(x: float) -> float:
    """``P(K > x)`` of the Kolmogorov distribution, from whichever of its two series converges
    fast at ``x`` (each to double precision in well under 20 terms)."""
    if x <= 0:
        return 1.0
    k = np.arange(1, 21, dtype=np.float64)
    if x < 1.0:
        # 1 - sqrt(2 pi) / x * sum exp(-(2k-1)^2 pi^2 / (8 x^2))
        terms = np.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * x * x))
        return float(min(max(1.0 - math.sqrt(2 * math.pi) / x * terms.sum(), 0.0), 1.0))
    # 2 sum (-1)^(k-1) exp(-2 k^2 x^2)
    signs = np.where(k % 2 == 1, 1.0, -1.0)
    return float(min(max(2.0 * np.sum(signs * np.exp(-2.0 * k * k * x * x)), 0.0), 1.0))


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` over the same bins, each share
    raised to at least :data:`PSI_EPSILON`."""
    r = np.maximum(np.asarray(reference_shares, dtype=np.float64), PSI_EPSILON)
    c = np.maximum(np.asarray(current_shares, dtype=np.float64), PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2, so within [0, 1])."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nonzero = a > 0  # 0 * log(0 / m) is 0
        return float(np.sum(a[nonzero] * np.log2(a[nonzero] / m[nonzero])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One entry of ``constraint_violations.json``."""

    feature_name: str
    constraint_check_type: str
    description: str

    def as_dict(self) -> dict:
        return {
            "feature_name": self.feature_name,
            "constraint_check_type": self.constraint_check_type,
            "description": self.description,
        }


@dataclass
class FeatureDrift:
    """Every metric of one monitored column, its thresholds, what crossed them, and plot data."""

    name: str
    kind: str
    inferred_type: str
    metrics: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    # (metric, value, threshold) for each metric over its threshold, in the kind's metric order.
    exceeded: list[tuple[str, float, float]] = field(default_factory=list)
    # Over its threshold but not significant (KS at p >= ks_alpha): not drift, said so.
    within_noise: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    plot: dict | None = None

    @property
    def over_threshold(self) -> bool:
        return bool(self.violations)

    def summary(self) -> str:
        """``monthly_charge psi=0.412>0.2`` (its first violation, for the verdict)."""
        if self.exceeded:
            metric, value, threshold = self.exceeded[0]
            return f"{self.name} {metric}={_fmt(value)}>{_fmt(threshold)}"
        return f"{self.name} {self.violations[0].constraint_check_type}"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "inferred_type": self.inferred_type,
            "over_threshold": self.over_threshold,
            "metrics": self.metrics,
            "thresholds": self.thresholds,
            "violations": [v.as_dict() for v in self.violations],
            "within_sampling_noise": self.within_noise,
            "exceeded": [list(item) for item in self.exceeded],
            "plot": self.plot,
        }

    @classmethod
    def from_dict(cls, data: dict) -> FeatureDrift:
        """The column's entry of ``drift_report.json`` (:meth:`as_dict`), read back."""
        return cls(
            name=data["name"],
            kind=data["kind"],
            inferred_type=data["inferred_type"],
            metrics=data["metrics"],
            thresholds=data["thresholds"],
            exceeded=[(m, v, t) for m, v, t in data["exceeded"]],
            within_noise=data["within_sampling_noise"],
            violations=[Violation(**v) for v in data["violations"]],
            plot=data["plot"],
        )


@dataclass
class DriftReport:
    item_count: int
    reference_item_count: int
    features: list[FeatureDrift]
    statistics: dict
    metadata: dict = field(default_factory=dict)
    ks_alpha: float | None = None

    @property
    def violations(self) -> list[Violation]:
        return [v for feature in self.features for v in feature.violations]

    @property
    def features_over_threshold(self) -> list[str]:
        return [f.name for f in self.features if f.over_threshold]

    @property
    def drifted(self) -> bool:
        return bool(self.violations)

    @property
    def verdict(self) -> str:
        """One line for the task log, e.g. ``drift: 2 of 14 features over threshold
        (monthly_charge psi=0.412>0.2, plan js=0.274>0.1)``."""
        over = [f for f in self.features if f.over_threshold]
        total = len(self.features)
        if not over:
            return f"no drift: 0 of {total} features over threshold ({self.item_count} rows)"
        details = ", ".join(f.summary() for f in over)
        return f"drift: {len(over)} of {total} features over threshold ({details})"

    def constraint_violations(self) -> dict:
        """``constraint_violations.json`` (Model Monitor's format: violations only)."""
        return {"violations": [v.as_dict() for v in self.violations]}

    def as_dict(self) -> dict:
        """``drift_report.json``: every metric of every column, and the verdict."""
        return {
            "verdict": self.verdict,
            "drifted": self.drifted,
            "item_count": self.item_count,
            "reference_item_count": self.reference_item_count,
            "metadata": self.metadata,
            "psi_epsilon": PSI_EPSILON,
            "ks_alpha": self.ks_alpha,
            "features": [f.as_dict() for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: dict, statistics: dict) -> DriftReport:
        """A report read back from ``drift_report.json`` and the batch's ``statistics.json``
        (what the drift job leaves), e.g. to render its HTML page on the worker."""
        return cls(
            item_count=data["item_count"],
            reference_item_count=data["reference_item_count"],
            features=[FeatureDrift.from_dict(f) for f in data["features"]],
            statistics=statistics,
            metadata=data["metadata"],
            ks_alpha=data["ks_alpha"],
        )


# --- the check ----------------------------------------------------------------------------------


def check_drift(
    reference_profile: Baseline,
    current_frame: pd.DataFrame,
    thresholds: MonitoringConfig | None = None,
    *,
    metadata: dict | None = None,
) -> DriftReport:
    """Compare ``current_frame`` with the baseline, column by column.

    :param reference_profile: the model version's baseline (:func:`load_baseline`).
    :param current_frame: the batch: curated columns plus the prediction score; columns the
        baseline does not monitor (keys, timestamps) are ignored.
    :param thresholds: per-feature thresholds (``<dataset>.monitoring.yaml``); the defaults of
        :class:`MonitoringConfig` when omitted.
    :param metadata: copied into the report (model version, batch date, ...).

    The frame is one chunk of :func:`check_drift_from_source` (everything kept in memory).
    """
    return check_drift_from_source(
        reference_profile,
        frame_source(current_frame),
        set(current_frame.columns),
        thresholds,
        metadata=metadata,
        keep_values=None,
    )


def check_drift_from_parquet(
    reference_profile: Baseline,
    paths: Sequence[str],
    thresholds: MonitoringConfig | None = None,
    *,
    metadata: dict | None = None,
    scores: AlignedScores | None = None,
    score_column: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    keep_values: int = KEEP_VALUES,
) -> DriftReport:
    """:func:`check_drift` of the batch in the Parquet files ``paths``, streamed a record batch
    at a time (the same report, in memory bounded by the batch).

    :param scores: the batch's scores aligned with its rows
        (:func:`~include.monitoring.score_join.align_scores`), with the column ``score_column``
        (a row without a score has a missing score). None: the score, if monitored, is a column
        of the files.
    :param keep_values: a numeric column with at most this many present values is kept whole
        (one pass); a larger one takes the passes of exact order statistics.
    """
    monitored = list(reference_profile.references)
    available = set(parquet_columns(paths))
    transform = {}
    if scores is not None:
        available.add(score_column)
        transform = {
            "transform": ScoreJoin(scores),
            "transform_makes": [score_column],
        }
    columns = [
        name for name in monitored if name in available and (scores is None or name != score_column)
    ]
    source = parquet_source(paths, columns, batch_rows=batch_rows, **transform)
    return check_drift_from_source(
        reference_profile, source, available, thresholds, metadata=metadata, keep_values=keep_values
    )


def check_drift_from_source(
    reference_profile: Baseline,
    source: ChunkSource,
    available: set[str],
    thresholds: MonitoringConfig | None = None,
    *,
    metadata: dict | None = None,
    keep_values: int | None = KEEP_VALUES,
) -> DriftReport:
    """The drift check of the rows of ``source`` (see :func:`check_drift`), whose columns are
    ``available``: one pass counting against the baseline's PSI edges and reference sample
    values (PSI and KS are exact from those counts), then the passes the batch's own order
    statistics need (its ``statistics.json`` and the report's plot): one, which also keeps the
    values around where the plot's edges can fall, unless a column's budget calls for more."""
    config = thresholds or MonitoringConfig()
    config.check_features(reference_profile.references)
    item_count = source.rows
    streams: dict[str, NumericStream] = {}
    counters: dict[str, CategoryCounter] = {}
    for name, reference in reference_profile.references.items():
        if name not in available:
            continue
        if reference.column.kind == NUMERIC:
            # Counted at the reference's values and PSI edges (not needed when kept whole).
            points = None
            if keep_values is not None:
                points = np.union1d(reference.ks_values, reference.psi_edges)
            streams[name] = NumericStream(name, item_count, points=points, keep_values=keep_values)
        else:
            counters[name] = CategoryCounter(name)
    run_pass(source, [*streams.values(), *counters.values()])
    for name, stream in streams.items():
        ask_numeric_statistics(stream)
        reference = reference_profile.references[name]
        if stream.n and reference.sample_sorted.size:
            stream.ask(
                ranks=_plot_ranks(stream.n),
                ranges=_plot_edge_ranges(reference.sample_sorted, stream),
            )
    resolve(source, list(streams.values()))
    plots = {}
    for name, stream in streams.items():
        plots[name] = _plot_edges(reference_profile.references[name].sample_sorted, stream)
        if plots[name] is not None:
            stream.ask(values=plots[name])
    # Nothing left to read when the edges' ranges were kept with the ranks (see above).
    resolve(source, list(streams.values()))

    features: list[FeatureDrift] = []
    statistics_features: list[dict] = []
    for name, reference in reference_profile.references.items():
        column = reference.column
        limits = config.thresholds_for(column).as_dict()
        drift = FeatureDrift(
            name=name,
            kind=column.kind,
            inferred_type=column.inferred_type,
            thresholds={m: limits[m] for m in METRICS_BY_KIND[column.kind]},
        )
        features.append(drift)
        if name not in available:
            drift.violations.append(
                Violation(
                    name,
                    MISSING_COLUMN_CHECK,
                    f"the baseline monitors {name!r} ({column.inferred_type}); "
                    "the batch has no such column",
                )
            )
            continue
        if column.kind == NUMERIC:
            stats = _check_numeric(drift, reference, streams[name], plots[name], item_count)
        else:
            stats = _check_categorical(drift, reference, counters[name], item_count)
        statistics_features.append(stats)
        _judge(drift, config.ks_alpha)
    return DriftReport(
        item_count=item_count,
        reference_item_count=reference_profile.item_count,
        features=features,
        statistics=statistics_document(item_count, statistics_features),
        metadata=dict(metadata or {}),
        ks_alpha=config.ks_alpha,
    )


def _check_numeric(
    drift: FeatureDrift,
    reference: NumericReference,
    stream: NumericStream,
    plot_edges: np.ndarray | None,
    item_count: int,
) -> dict:
    column = reference.column
    n = stream.n
    missing_rate = stream.missing / item_count if item_count else 0.0
    drift.metrics = {
        "missing_rate": missing_rate,
        "reference_missing_rate": reference.missing_rate,
        "missing_rate_change": missing_rate - reference.missing_rate,
        "psi": None,
        "ks": None,
        "ks_pvalue": None,
        "mean": stream.mean,
        "reference_sample_mean": (
            float(reference.sample_sorted.mean()) if reference.sample_sorted.size else None
        ),
    }
    if stream.invalid:
        row, value = stream.first_invalid
        drift.violations.append(
            Violation(
                column.name,
                DATA_TYPE_CHECK,
                f"{stream.invalid} of {item_count} values are not {column.inferred_type} "
                f"numbers (the first at row {row}, counting from 0: {value!r}); the baseline's "
                f"type is {column.inferred_type}",
            )
        )
    if n and reference.sample_sorted.size:
        if stream.all_values is not None:  # the whole batch at hand: fewer searches, same float
            statistic = ks_statistic_sorted(
                reference.ks_values, reference.ks_cdf, stream.all_values
            )
        else:
            at_or_below, below = stream.point_counts(reference.ks_values)
            statistic = ks_statistic_from_counts(reference.ks_cdf, at_or_below, below, n)
        drift.metrics["ks"] = statistic
        drift.metrics["ks_pvalue"] = ks_pvalue(statistic, int(reference.sample_sorted.size), n)
    if n and reference.psi_shares.size:
        _, below = stream.point_counts(reference.psi_edges)
        current_shares = _shares(below, n)
        drift.metrics["psi"] = psi(reference.psi_shares, current_shares)
        drift.metrics["psi_bins"] = {
            "edges": reference.psi_edges.tolist(),
            "reference_shares": reference.psi_shares.tolist(),
            "current_shares": current_shares.tolist(),
        }
    drift.plot = _numeric_plot(reference.sample_sorted, stream, plot_edges)
    return numeric_feature_statistics(column, stream)


def _check_categorical(
    drift: FeatureDrift, reference: CategoricalReference, counter: CategoryCounter, item_count: int
) -> dict:
    column = reference.column
    counts, missing = counter.result()
    present = sum(counts.values())
    known = set(reference.categories)
    unseen = {value: count for value, count in counts.items() if value not in known}
    # Shares over the baseline's categories, then each unseen one (a baseline share of 0).
    categories = [*reference.categories, *unseen]
    reference_shares = np.concatenate((reference.shares, np.zeros(len(unseen))))
    current_counts = np.array([counts.get(c, 0) for c in categories], dtype=np.float64)
    current_shares = current_counts / present if present else current_counts
    missing_rate = missing / item_count if item_count else 0.0
    drift.metrics = {
        "missing_rate": missing_rate,
        "reference_missing_rate": reference.missing_rate,
        "missing_rate_change": missing_rate - reference.missing_rate,
        "unseen_rate": sum(unseen.values()) / present if present else 0.0,
        "unseen_categories": dict(sorted(unseen.items(), key=lambda kv: -kv[1])),
        "psi": None,
        "js": None,
        "linf": None,
    }
    if present and reference.shares.size:
        drift.metrics["psi"] = psi(reference_shares, current_shares)
        drift.metrics["js"] = jensen_shannon_distance(reference_shares, current_shares)
        drift.metrics["linf"] = float(np.max(np.abs(current_shares - reference_shares)))
    drift.plot = {
        "categories": categories,
        "reference_shares": reference_shares.tolist(),
        "current_shares": current_shares.tolist(),
    }
    return string_feature_statistics(column, counts, missing)


def _judge(drift: FeatureDrift, ks_alpha: float | None) -> None:
    """Record every metric over its threshold and the Model Monitor violations they make; KS
    over its threshold counts only with a p-value below ``ks_alpha`` (None: the statistic
    alone decides)."""
    by_check: dict[str, list[str]] = {}
    for metric in METRICS_BY_KIND[drift.kind]:
        threshold = drift.thresholds.get(metric)
        value = drift.metrics.get(metric)
        if threshold is None or value is None or math.isnan(value):
            continue
        # The missing rate may move either way; both are a change in what the model is fed.
        measured = abs(value) if metric == "missing_rate_change" else value
        if measured <= threshold:
            continue
        exceeded = f"{metric}={_fmt(measured)}>{_fmt(threshold)}"
        if metric == "ks" and ks_alpha is not None:
            pvalue = drift.metrics["ks_pvalue"]
            if not pvalue < ks_alpha:
                drift.within_noise.append(f"{exceeded} at p={_fmt(pvalue)}>={_fmt(ks_alpha)}")
                continue
            exceeded += f" at p={_fmt(pvalue)}<{_fmt(ks_alpha)}"
        drift.exceeded.append((metric, measured, threshold))
        by_check.setdefault(_CHECK_OF_METRIC[metric], []).append(exceeded)
    for check, exceeded in by_check.items():
        drift.violations.append(
            Violation(drift.name, check, _describe(drift, check, ", ".join(exceeded)))
        )


def _describe(drift: FeatureDrift, check: str, exceeded: str) -> str:
    m = drift.metrics
    if check == COMPLETENESS_CHECK:
        return (
            f"missing rate {m['missing_rate']:.4f} vs {m['reference_missing_rate']:.4f} in the "
            f"baseline ({exceeded})"
        )
    if check == CATEGORICAL_VALUES_CHECK:
        shown = ", ".join(f"{v!r} ({c})" for v, c in list(m["unseen_categories"].items())[:5])
        return f"values outside the baseline's categories: {shown} ({exceeded})"
    return f"distribution differs from the baseline's ({exceeded})"


_PLOT_QUANTILES = (0.005, 0.995)


def _plot_ranks(n: int) -> list[int]:
    """The batch's ranks :func:`_sorted_quantile` reads for the plot's range."""
    return [rank for q in _PLOT_QUANTILES for rank in _quantile_neighbours(n, q)]


def _quantile_neighbours(n: int, q: float) -> tuple[int, int]:
    """The two ranks :func:`_sorted_quantile` interpolates between for ``q`` of ``n`` values."""
    below = math.floor(q * (n - 1))
    return below, min(below + 1, n - 1)


def _plot_edge_ranges(reference_sorted: np.ndarray, stream: NumericStream) -> np.ndarray:
    """Value ranges holding the plot's edges whatever the batch's plot quantiles turn out to be
    (after the first pass each is only known to lie between two points), so that the pass that
    finds those quantiles also keeps what counting at the edges needs. Empty when the kept
    column makes them known already, or when the edges could be ``low .. low + 1``."""
    if stream.all_values is not None:
        return np.empty((0, 2))
    bounds = []
    for q, side in zip(_PLOT_QUANTILES, (min, max), strict=True):
        below, above = _quantile_neighbours(stream.n, q)
        (low,), _ = stream.rank_bounds([below])
        _, (high,) = stream.rank_bounds([above])
        reference = _sorted_quantile(reference_sorted, q)
        bounds.append((side(reference, low), side(reference, high)))
    (low_min, low_max), (high_min, high_max) = bounds
    if high_min <= low_max:
        return np.empty((0, 2))
    # Each edge grows with both ends; the margin covers linspace's rounding.
    margin = 1e-9 * (high_max - low_min) + 8 * np.spacing(max(abs(low_min), abs(high_max)))
    first = np.linspace(low_min, high_min, PLOT_BINS + 1) - margin
    last = np.linspace(low_max, high_max, PLOT_BINS + 1) + margin
    return np.stack((first, last), axis=1)


def _plot_edges(reference_sorted: np.ndarray, stream: NumericStream) -> np.ndarray | None:
    """Equal-width bins over the common 0.5-99.5 % range of the reference sample and the
    batch."""
    if reference_sorted.size == 0 or stream.n == 0:
        return None
    low = min(_sorted_quantile(reference_sorted, 0.005), _stream_quantile(stream, 0.005))
    high = max(_sorted_quantile(reference_sorted, 0.995), _stream_quantile(stream, 0.995))
    if high <= low:
        high = low + 1.0
    return np.linspace(low, high, PLOT_BINS + 1)


def _numeric_plot(
    reference_sorted: np.ndarray, stream: NumericStream, edges: np.ndarray | None
) -> dict | None:
    """Shares of both samples in the plot's bins (:func:`_plot_edges`)."""
    if edges is None:
        return None
    inside = np.searchsorted(reference_sorted, edges, side="left")
    inside[-1] = np.searchsorted(reference_sorted, edges[-1], side="right")
    current = np.array([stream.count_below(float(e)) for e in edges])
    current[-1] = stream.count_at_or_below(float(edges[-1]))
    return {
        "edges": edges.tolist(),
        "reference_shares": (np.diff(inside) / reference_sorted.size).tolist(),
        "current_shares": (np.diff(current) / stream.n).tolist(),
    }


def _stream_quantile(stream: NumericStream, q: float) -> float:
    """:func:`_sorted_quantile` of a stream's values (its ranks asked by :func:`_plot_ranks`)."""
    below, above = _quantile_neighbours(stream.n, q)
    fraction = q * (stream.n - 1) - below
    low, high = stream.value_at(below), stream.value_at(above)
    return float(low + (high - low) * fraction)


def _sorted_quantile(sorted_values: np.ndarray, q: float) -> float:
    """``np.quantile``'s default (linear) on values already sorted, without its partition pass."""
    position = q * (sorted_values.size - 1)
    below = math.floor(position)
    above = min(below + 1, sorted_values.size - 1)
    fraction = position - below
    return float(sorted_values[below] + (sorted_values[above] - sorted_values[below]) * fraction)


def _fmt(value: float) -> str:
    return f"{value:.3g}"
