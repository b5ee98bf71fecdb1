"""The drift metrics against independent oracles: scipy for KS, the Kolmogorov distribution and
Jensen-Shannon; the textbook PSI formula written out by hand on the same bins."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from include.monitoring.baseline import bin_shares, psi_bins
from include.monitoring.drift import (
    PSI_EPSILON,
    _ks_terms,
    jensen_shannon_distance,
    kolmogorov_survival,
    ks_pvalue,
    ks_statistic,
    ks_statistic_from_counts,
    ks_statistic_sorted,
    psi,
)


def _samples():
    rng = np.random.default_rng(2026)
    yield "normal, shifted", rng.normal(0, 1, 3_000), rng.normal(0.2, 1.1, 5_000)
    yield "same distribution", rng.normal(0, 1, 4_000), rng.normal(0, 1, 4_000)
    # Ties: integer counts (most of the mass on a handful of values) and rounded money.
    yield (
        "poisson ties",
        rng.poisson(0.6, 6_000).astype(float),
        rng.poisson(0.9, 2_500).astype(float),
    )
    yield (
        "rounded prices",
        np.round(rng.gamma(3, 15, 5_000), 0),
        np.round(rng.gamma(3, 16, 7_000), 0),
    )
    yield "heavy tail vs uniform", rng.lognormal(0, 2, 1_000), rng.uniform(0, 5, 900)
    yield "disjoint supports", rng.uniform(0, 1, 500), rng.uniform(2, 3, 700)
    yield "tiny", np.array([1.0, 2.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0])
    yield "identical", np.arange(100.0), np.arange(100.0)


@pytest.mark.parametrize(
    ("label", "reference", "current"),
    list(_samples()),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_ks_statistic_equals_scipy_ks_2samp(label, reference, current):
    expected = stats.ks_2samp(reference, current).statistic
    assert ks_statistic(reference, current) == pytest.approx(expected, abs=1e-9)


def _sample_pair(rng: np.random.Generator, trial: int) -> tuple[np.ndarray, np.ndarray]:
    """A reference and a current sample, by turns continuous, tied (rounded) or overlapping."""
    n1, n2 = (int(x) for x in rng.integers(300, 20_000, 2))
    shift = rng.normal(0, 0.05)
    if trial % 3 == 0:
        return rng.normal(0, 1, n1), rng.normal(shift, 1, n2)
    if trial % 3 == 1:
        return np.round(rng.gamma(2, 10, n1), 1), np.round(rng.gamma(2, 10 + shift, n2), 1)
    a = rng.uniform(0, 1, n1)
    return a, np.concatenate([a[: n2 // 2], rng.uniform(0, 1, n2 - n2 // 2)])


def test_block_pruned_ks_is_the_full_evaluation_bit_for_bit():
    """The pruned search may skip a block only when it cannot hold the supremum: across many
    random pairs (continuous, tied, rounded, overlapping) it returns the very same float as
    evaluating every reference value."""
    rng = np.random.default_rng(99)
    for trial in range(60):
        a, b = _sample_pair(rng, trial)
        a.sort()
        b.sort()
        values, counts = np.unique(a, return_counts=True)
        cdf = np.cumsum(counts) / a.size
        full = float(_ks_terms(values, cdf, b, np.arange(values.size)).max())
        assert ks_statistic_sorted(values, cdf, b) == full
        assert full == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-9)


def _ks_every_jump(reference: np.ndarray, current: np.ndarray) -> float:
    """The textbook supremum: both empirical CDFs at every value of either sample."""
    points = np.union1d(reference, current)
    f_ref = np.searchsorted(reference, points, side="right") / reference.size
    f_cur = np.searchsorted(current, points, side="right") / current.size
    return float(np.max(np.abs(f_ref - f_cur)))


def test_ks_from_chunk_counters_is_the_whole_batch_statistic_bit_for_bit():
    """Counters of the batch at the reference values, summed over chunks of any size, give the
    very same float as the whole sorted batch (the block-pruned search the in-memory check
    uses), and agree with scipy and the textbook supremum."""
    rng = np.random.default_rng(99)
    for trial in range(30):
        a, b = _sample_pair(rng, trial)
        a.sort()
        values, counts = np.unique(a, return_counts=True)
        cdf = np.cumsum(counts) / a.size
        whole = ks_statistic_sorted(values, cdf, np.sort(b))
        chunk = int(rng.integers(1, 3_000))
        at_or_below = np.zeros(values.size, np.int64)
        below = np.zeros(values.size, np.int64)
        for start in range(0, b.size, chunk):  # the batch's own order, not sorted
            part = np.sort(b[start : start + chunk])
            at_or_below += np.searchsorted(part, values, side="right")
            below += np.searchsorted(part, values, side="left")
        assert ks_statistic_from_counts(cdf, at_or_below, below, b.size) == whole
        assert whole == pytest.approx(_ks_every_jump(a, np.sort(b)), abs=1e-15)
        assert whole == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-9)


def test_ks_statistic_is_order_free_and_symmetric():
    rng = np.random.default_rng(5)
    a, b = rng.poisson(2, 800).astype(float), rng.poisson(2.4, 1_200).astype(float)
    assert ks_statistic(a, b) == pytest.approx(ks_statistic(b, a), abs=1e-15)
    assert ks_statistic(rng.permutation(a), rng.permutation(b)) == ks_statistic(a, b)


@pytest.mark.parametrize("x", [0.05, 0.3, 0.7, 0.99, 1.0, 1.2, 1.36, 2.0, 3.5])
def test_kolmogorov_survival_equals_scipy(x):
    assert kolmogorov_survival(x) == pytest.approx(special.kolmogorov(x), abs=1e-12)


def test_ks_pvalue_is_the_asymptotic_kolmogorov_tail():
    n, m, d = 3_000, 5_000, 0.04
    assert ks_pvalue(d, n, m) == pytest.approx(
        special.kolmogorov(math.sqrt(n * m / (n + m)) * d), abs=1e-12
    )
    # Close to scipy's own asymptotic two-sample p-value at these sizes.
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 3_000), rng.normal(0.05, 1, 5_000)
    result = stats.ks_2samp(a, b, method="asymp")
    assert ks_pvalue(result.statistic, 3_000, 5_000) == pytest.approx(result.pvalue, rel=0.05)


def test_ks_pvalue_at_the_small_sizes_the_gate_judges_is_scipys_exact_or_a_little_above():
    """600 held-out rows against a 2,000-row batch (``ks_alpha`` decides at these sizes): the
    asymptotic p-value is within 15 % of scipy's exact two-sample p-value, and never below it,
    so the gate errs toward calling a batch calm."""
    rng = np.random.default_rng(16)
    for _ in range(30):
        a, b = rng.beta(2, 6, 600), rng.beta(2, 6, 2_000) + rng.uniform(0, 0.03)
        exact = stats.ks_2samp(a, b, method="exact")
        ratio = ks_pvalue(ks_statistic(a, b), 600, 2_000) / exact.pvalue
        assert 1.0 <= ratio < 1.15, (exact.statistic, exact.pvalue, ratio)


def textbook_psi(reference: np.ndarray, current: np.ndarray, edges: np.ndarray) -> float:
    """PSI = sum over bins of (actual% - expected%) * ln(actual% / expected%), bins
    (-inf, e0), [e0, e1), ..., [ek, inf), shares floored at the documented epsilon."""
    bounds = [-math.inf, *edges.tolist(), math.inf]
    total = 0.0
    for low, high in itertools.pairwise(bounds):
        expected = sum(1 for x in reference if low <= x < high) / len(reference)
        actual = sum(1 for x in current if low <= x < high) / len(current)
        expected, actual = max(expected, PSI_EPSILON), max(actual, PSI_EPSILON)
        total += (actual - expected) * math.log(actual / expected)
    return total


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5, 1.5])
def test_psi_equals_the_textbook_formula_on_the_same_bins(shift):
    rng = np.random.default_rng(17)
    reference = np.sort(rng.normal(50, 10, 3_000))
    current = np.sort(rng.normal(50 + 10 * shift, 10, 2_000))
    edges, reference_shares = psi_bins(reference, 10)
    assert len(edges) == 9  # ten deciles of continuous data: nine cut points
    np.testing.assert_allclose(reference_shares, 0.1, atol=1e-3)
    value = psi(reference_shares, bin_shares(current, edges))
    assert value == pytest.approx(textbook_psi(reference, current, edges), abs=1e-12)
    if shift == 0.0:
        assert value < 0.02
    if shift == 1.5:
        assert value > 1.0


def test_psi_with_an_empty_bin_uses_the_epsilon():
    reference = np.sort(np.repeat([0.0, 1.0, 2.0, 3.0], 250))
    current = np.sort(np.repeat([1.0, 2.0, 3.0, 9.0], 250))  # no 0 any more
    edges, reference_shares = psi_bins(reference, 4)
    current_shares = bin_shares(current, edges)
    assert current_shares[0] == 0.0
    value = psi(reference_shares, current_shares)
    assert math.isfinite(value)
    assert value == pytest.approx(textbook_psi(reference, current, edges), abs=1e-12)


def test_psi_of_ties_merges_equal_quantiles():
    reference = np.sort(np.concatenate([np.zeros(700), np.ones(200), np.full(100, 2.0)]))
    edges, shares = psi_bins(reference, 10)
    np.testing.assert_array_equal(edges, np.unique(edges))
    assert shares.sum() == pytest.approx(1.0)
    assert len(shares) == len(edges) + 1


@pytest.mark.parametrize(
    ("p", "q"),
    [
        ([0.35, 0.35, 0.2, 0.1], [0.35, 0.35, 0.2, 0.1]),
        ([0.35, 0.35, 0.2, 0.1], [0.2, 0.3, 0.4, 0.1]),
        ([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]),
        ([1.0, 0.0], [0.0, 1.0]),
    ],
)
def test_jensen_shannon_distance_equals_scipy(p, q):
    assert jensen_shannon_distance(np.array(p), np.array(q)) == pytest.approx(
        jensenshannon(p, q, base=2), abs=1e-12
    )
