"""The baseline and the drift check streamed over Parquet record batches give the in-memory results.

The churn days of ``conftest.py`` are written as Parquet files of several row groups and read
back a record batch at a time, in chunkings down to one row, with the budgets that keep a column
whole set low so the multi-pass order statistics run. PSI, Jensen-Shannon, L-infinity, missing
and unseen rates, KS, the PSI bins, the order statistics and the reference sample are the same
floats as the in-memory functions'; sums, means and standard deviations merge chunk by chunk, so
they agree to rounding. Memory is shown bounded by structure: the reader is asked for record
batches of the monitored columns only, every chunk has at most ``batch_rows`` rows, and a column
too large to keep holds a small share of its values.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from include.monitoring import streaming
from include.monitoring.baseline import (
    SCORE_ROWS_COLUMN,
    build_baseline,
    build_baseline_from_parquet,
    build_baseline_from_source,
)
from include.monitoring.columns import NUMERIC, NumericValues
from include.monitoring.drift import check_drift, check_drift_from_parquet
from include.monitoring.score_join import align_scores
from include.monitoring.streaming import NumericStream, parquet_source, quantiles

# Merged sums differ from one sum by rounding only.
ROUNDING = 1e-12
# (batch rows, keep_values, collect_values): everything kept; multi-pass with gaps kept; the
# finer-points pass forced; an uneven batch size.
CHUNKINGS = [(4_096, None, 10**9), (4_096, 1_000, 10**9), (1_000, 500, 2_000), (777, 0, 10**9)]


def write_parquet(frame: pd.DataFrame, folder, *, files: int = 2, row_group: int = 3_000):
    """``frame`` as ``files`` Parquet files of row groups of ``row_group`` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(frame), files + 1).astype(int)
    paths = []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        path = folder / f"part-{i:05d}.parquet"
        table = pa.Table.from_pandas(frame.iloc[lo:hi], preserve_index=False)
        pq.write_table(table, path, row_group_size=row_group)
        paths.append(f"file://{path}")
    assert pq.ParquetFile(paths[0][len("file://") :]).num_row_groups > 1
    return paths


@pytest.fixture
def budgets(monkeypatch):
    """Set the streaming budgets of one run."""

    def set_budgets(collect_values: int) -> None:
        monkeypatch.setattr(streaming, "COLLECT_VALUES", collect_values)

    return set_budgets


def _numeric_summaries_agree(expected: dict, actual: dict) -> None:
    """statistics.json documents: equal, sums, means and standard deviations to rounding."""
    assert expected["dataset"] == actual["dataset"]
    for want, got in zip(expected["features"], actual["features"], strict=True):
        want, got = json.loads(json.dumps(want)), json.loads(json.dumps(got))
        numeric = want.get("numerical_statistics")
        if numeric is not None:
            for key in ("mean", "sum", "std_dev"):
                if numeric[key] is not None:
                    assert got["numerical_statistics"][key] == pytest.approx(
                        numeric[key], rel=ROUNDING, abs=1e-300
                    ), (want["name"], key)
                numeric[key] = got["numerical_statistics"][key] = None
        assert want == got, want["name"]


def _reports_agree(expected, actual) -> None:
    """Every metric the same float (the batch mean to rounding), the same verdict and plots."""
    assert actual.verdict == expected.verdict
    assert actual.item_count == expected.item_count
    for want, got in zip(expected.features, actual.features, strict=True):
        want_metrics, got_metrics = dict(want.metrics), dict(got.metrics)
        if want_metrics.get("mean") is not None:
            assert got_metrics.pop("mean") == pytest.approx(want_metrics.pop("mean"), rel=ROUNDING)
        assert got_metrics == want_metrics, want.name
        assert got.plot == want.plot, want.name
        assert [v.as_dict() for v in got.violations] == [v.as_dict() for v in want.violations]
    _numeric_summaries_agree(expected.statistics, actual.statistics)


@pytest.mark.parametrize(("batch_rows", "keep_values", "collect_values"), CHUNKINGS)
def test_streamed_drift_check_is_the_in_memory_check(
    tmp_path, churn_frames, churn_baseline, monitoring_config, budgets,
    batch_rows, keep_values, collect_values,
):  # fmt: skip
    budgets(collect_values)
    batch = churn_frames["drifted"]
    expected = check_drift(churn_baseline, batch, monitoring_config)
    paths = write_parquet(batch, tmp_path / "batch")
    source = parquet_source(paths, list(churn_baseline.references), batch_rows=batch_rows)
    from include.monitoring.drift import check_drift_from_source

    actual = check_drift_from_source(
        churn_baseline, source, set(batch.columns), monitoring_config, keep_values=keep_values
    )
    _reports_agree(expected, actual)
    assert set(actual.features_over_threshold) >= {"sessions", "region"}


@pytest.mark.parametrize(("batch_rows", "keep_values", "collect_values"), CHUNKINGS)
def test_streamed_baseline_is_the_in_memory_baseline(
    tmp_path, churn_frames, churn_columns, monitoring_config, budgets,
    batch_rows, keep_values, collect_values,
):  # fmt: skip
    budgets(collect_values)
    frame = churn_frames["train"]
    held_out = (np.arange(len(frame)) % 10) < 3
    expected, expected_sample = build_baseline(
        frame, churn_columns, monitoring_config, score_rows=held_out
    )
    paths = write_parquet(frame.assign(**{SCORE_ROWS_COLUMN: held_out}), tmp_path / "train")
    names = [c.name for c in churn_columns] + [SCORE_ROWS_COLUMN]
    actual, sample = build_baseline_from_source(
        parquet_source(paths, names, batch_rows=batch_rows),
        churn_columns,
        monitoring_config,
        score_rows=True,
        keep_values=keep_values,
    )
    assert json.dumps(actual.profile) == json.dumps(expected.profile)
    assert actual.constraints == expected.constraints
    _numeric_summaries_agree(expected.statistics, actual.statistics)
    pd.testing.assert_frame_equal(sample, expected_sample)


def test_one_row_chunks_and_uneven_row_groups(tmp_path, churn_frames, churn_columns, budgets):
    """Chunks of a single row, files of uneven row groups, a sample smaller than the rows."""
    from include.monitoring.thresholds import MonitoringConfig

    budgets(40)
    config = MonitoringConfig(dataset="churn", reference_sample_rows=150, psi_bins=5)
    train = churn_frames["train"].iloc[:400].reset_index(drop=True)
    batch = churn_frames["drifted"].iloc[:300].reset_index(drop=True)
    expected, expected_sample = build_baseline(train, churn_columns, config)
    names = [c.name for c in churn_columns]
    paths = write_parquet(train, tmp_path / "train", files=3, row_group=37)
    actual, sample = build_baseline_from_source(
        parquet_source(paths, names, batch_rows=1), churn_columns, config, keep_values=10
    )
    assert json.dumps(actual.profile) == json.dumps(expected.profile)
    pd.testing.assert_frame_equal(sample, expected_sample)
    _numeric_summaries_agree(expected.statistics, actual.statistics)

    from include.monitoring.drift import check_drift_from_source

    batch_paths = write_parquet(batch, tmp_path / "batch", files=2, row_group=41)
    report = check_drift_from_source(
        expected,
        parquet_source(batch_paths, names, batch_rows=1),
        set(batch.columns),
        config,
        keep_values=10,
    )
    _reports_agree(check_drift(expected, batch, config), report)


def test_streamed_ks_equals_scipy_on_the_stored_reference_sample(
    tmp_path, churn_frames, churn_baseline, monitoring_config
):
    batch = churn_frames["no_drift"]
    paths = write_parquet(batch, tmp_path / "batch")
    report = check_drift_from_parquet(churn_baseline, paths, monitoring_config, batch_rows=2_500)
    checked = 0
    for feature in report.features:
        if feature.kind != NUMERIC:
            continue
        reference = churn_baseline.references[feature.name].sample_sorted
        current = pd.to_numeric(batch[feature.name], errors="coerce").dropna().to_numpy()
        expected = stats.ks_2samp(reference, current)
        assert feature.metrics["ks"] == pytest.approx(expected.statistic, abs=1e-12)
        checked += 1
    assert checked >= 5


def aligned(folder, scores: pd.DataFrame, paths, columns: dict):
    """``scores`` (with a customer_id column) lined up with the rows of the Parquet ``paths``."""
    return align_scores(
        lambda: [scores], parquet_source(paths, ["customer_id"]), "customer_id", columns,
        folder, score_rows=len(scores), what="the scores", bucket_rows=5_000,
    )  # fmt: skip


def test_the_score_is_joined_to_each_batch_by_key(
    tmp_path, churn_frames, churn_columns, monitoring_config
):
    """Scores held by key, joined to each record batch: the same baseline and report as the
    whole-day left join; rows without a score are missing, scores of other keys ignored."""
    frame = churn_frames["train"].drop(columns="score")
    scored = churn_frames["train"][["customer_id", "score"]].iloc[:-300]
    stranger = pd.DataFrame({"customer_id": ["nobody-1", "nobody-2"], "score": [0.9, 0.1]})
    scores = pd.concat([scored, stranger], ignore_index=True)
    held_out = np.asarray(pd.util.hash_array(scores["customer_id"].to_numpy()) % 10 < 3)
    with_mask = scores.assign(**{SCORE_ROWS_COLUMN: held_out})
    joined = frame.merge(
        scores.assign(held=held_out), on="customer_id", how="left", validate="one_to_one"
    )
    expected, _ = build_baseline(
        joined.drop(columns="held"),
        churn_columns,
        monitoring_config,
        score_rows=joined["held"].fillna(False).astype(bool).to_numpy(),
    )
    paths = write_parquet(frame, tmp_path / "train")
    by_key = aligned(
        tmp_path / "train-scores", with_mask, paths, {"score": float, SCORE_ROWS_COLUMN: bool}
    )
    actual, _ = build_baseline_from_parquet(
        paths, churn_columns, monitoring_config, scores=by_key, batch_rows=3_001
    )
    assert json.dumps(actual.profile) == json.dumps(expected.profile)
    assert actual.references["score"].missing_rate == 300 / len(frame)

    batch = churn_frames["drifted"]
    batch_scores = batch[["customer_id", "score"]].iloc[:-50]
    batch_joined = batch.drop(columns="score").merge(batch_scores, on="customer_id", how="left")
    batch_paths = write_parquet(batch.drop(columns="score"), tmp_path / "batch")
    report = check_drift_from_parquet(
        expected,
        batch_paths,
        monitoring_config,
        scores=aligned(tmp_path / "batch-scores", batch_scores, batch_paths, {"score": float}),
        score_column="score",
        batch_rows=4_000,
    )
    _reports_agree(check_drift(expected, batch_joined, monitoring_config), report)
    score = next(f for f in report.features if f.name == "score")
    assert score.metrics["missing_rate"] == 50 / len(batch)


def test_a_key_twice_in_the_batch_is_refused(tmp_path, churn_frames, churn_baseline):
    batch = churn_frames["drifted"].iloc[:1_000].drop(columns="score")
    batch.loc[999, "customer_id"] = batch.loc[3, "customer_id"]
    scores = pd.DataFrame(
        {"customer_id": churn_frames["drifted"]["customer_id"].iloc[:1_000], "score": 0.2}
    )
    paths = write_parquet(batch, tmp_path / "batch", row_group=300)
    with pytest.raises(ValueError, match="the batch holds customer_id values more than once"):
        check_drift_from_parquet(
            churn_baseline,
            paths,
            scores=aligned(tmp_path / "scores", scores, paths, {"score": float}),
            score_column="score",
            batch_rows=256,
        )


def test_a_file_without_a_monitored_column_is_named(tmp_path, churn_frames, churn_columns):
    paths = write_parquet(churn_frames["train"].drop(columns="sessions"), tmp_path / "train")
    with pytest.raises(ValueError, match=r"part-00000.parquet lacks the monitored column\(s\) "):
        build_baseline_from_parquet(paths, churn_columns)


def test_the_reader_streams_record_batches_of_the_monitored_columns_only(
    tmp_path, monkeypatch, churn_frames, churn_baseline, monitoring_config, budgets
):
    """Structure, not timing: every read is a record batch of at most batch_rows rows of the
    monitored columns (no whole-file read), and a column too big to keep holds a small share of
    its values after the passes."""
    budgets(10**9)
    batch = churn_frames["drifted"]
    paths = write_parquet(batch, tmp_path / "batch", row_group=2_000)
    calls, chunk_rows = [], []
    original = streaming.open_parquet

    class Recorded:
        def __init__(self, parquet):
            self.parquet = parquet

        def __getattr__(self, name):
            if name in ("read", "read_row_group", "read_row_groups"):
                raise AssertionError(f"the whole file was read ({name})")
            return getattr(self.parquet, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.parquet.__exit__(*exc)

        def iter_batches(self, batch_size, columns):
            calls.append((batch_size, tuple(columns)))
            for record_batch in self.parquet.iter_batches(batch_size=batch_size, columns=columns):
                chunk_rows.append(record_batch.num_rows)
                yield record_batch

    monkeypatch.setattr(streaming, "open_parquet", lambda path: Recorded(original(path)))
    from include.monitoring.drift import check_drift_from_source

    kept = []

    class Watched(NumericStream):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            kept.append(self)

    monkeypatch.setattr("include.monitoring.drift.NumericStream", Watched)
    source = parquet_source(paths, list(churn_baseline.references), batch_rows=1_024)
    report = check_drift_from_source(
        churn_baseline, source, set(batch.columns), monitoring_config, keep_values=2_000
    )
    assert report.features_over_threshold
    assert calls and all(size == 1_024 for size, _ in calls)
    assert max(chunk_rows) <= 1_024 and sum(chunk_rows) >= 2 * len(batch)  # several passes
    read = {name for _, columns in calls for name in columns}
    assert read <= set(churn_baseline.references)
    assert "customer_id" not in read and "churned" not in read
    # The first pass reads every monitored column; later passes only the numeric ones.
    first = set(calls[0][1])
    assert first == {name for name in churn_baseline.references if name in batch.columns}
    later = {name for _, columns in calls[2:] for name in columns}
    categorical = {n for n, r in churn_baseline.references.items() if r.column.kind != NUMERIC}
    assert later and not later & categorical
    for stream in kept:
        assert stream.all_values is None, stream.name  # over keep_values: not kept whole
        gap_values = stream._kept_all.size
        assert gap_values < 0.6 * stream.n, (stream.name, gap_values, stream.n)


def test_quantiles_from_order_statistics_are_numpys_floats():
    """The PSI edges come from order statistics, with np.quantile's own arithmetic."""
    rng = np.random.default_rng(11)
    probabilities = np.arange(1, 10) / 10
    for trial in range(200):
        n = int(rng.integers(1, 5_000))
        values = np.sort(np.round(rng.lognormal(2, 1.5, n), int(rng.integers(0, 4))))
        stream = NumericStream("x", n, keep_values=None)
        stream.add(NumericValues(sorted_values=values, missing=0))
        q = probabilities if trial % 2 else np.sort(rng.random(7))
        np.testing.assert_array_equal(quantiles(stream, q), np.quantile(values, q))


# (points counted by comparisons at most, bins of the gaps' filter): the defaults; every later
# pass sorting its chunks, with a filter of a few bins (most of them met by several gaps).
LATER_PASSES = [(streaming.COMPARE_POINTS, streaming.FILTER_BINS), (0, 4)]


@pytest.mark.parametrize(("compare_points", "filter_bins"), LATER_PASSES)
def test_order_statistics_over_chunks_with_a_small_budget(monkeypatch, compare_points, filter_bins):
    """A column streamed in chunks with almost nothing kept, its first chunk its largest values
    (so the first chunk's points leave one huge gap): every order statistic and every count
    below a value is the whole sorted column's."""
    monkeypatch.setattr(streaming, "SAMPLE_POINTS", 400)
    monkeypatch.setattr(streaming, "COMPARE_POINTS", compare_points)
    monkeypatch.setattr(streaming, "FILTER_BINS", filter_bins)
    rng = np.random.default_rng(3)
    data = np.concatenate([rng.normal(0, 1, 6_000), np.full(2_000, 0.25), rng.poisson(3, 2_000)])
    ordered = np.sort(data)
    data = np.concatenate([ordered[-613:], rng.permutation(ordered[:-613])])
    frame = pd.DataFrame({"x": data})
    source = streaming.frame_source(frame, batch_rows=613)
    stream = NumericStream("x", len(frame), keep_values=100, collect_values=300)
    streaming.run_pass(source, [stream])
    ranks = rng.integers(0, data.size, 40)
    values = rng.normal(0, 2, 15)
    stream.ask(ranks=ranks, values=values)
    streaming.resolve(source, [stream])
    np.testing.assert_array_equal(stream.values_at(ranks), ordered[ranks])
    for value in values:
        assert stream.count_below(value) == np.searchsorted(ordered, value, side="left")
        assert stream.count_at_or_below(value) == np.searchsorted(ordered, value, side="right")
    assert stream.passes >= 3  # counted finer points, then kept gaps
    assert stream._kept_all.size < data.size / 4


@pytest.mark.parametrize("bins", [1, 4, 64, 1 << 16])
def test_the_gap_filter_keeps_exactly_the_values_inside_the_gaps(bins):
    """Values tied at the gaps' ends (points), beyond the filter's span, at the floats' limits
    and around infinite outer gaps: the filter keeps exactly the values strictly inside a gap,
    sorted, however many gaps share a bin."""
    rng = np.random.default_rng(8)
    body = np.round(rng.lognormal(2, 1.5, 20_000), 1)
    points = np.unique(rng.choice(body, 500))
    extremes = [-np.finfo(float).max, -1e300, -1e-300, 0.0, 5e-324, 1e300, np.finfo(float).max]
    values = rng.permutation(np.concatenate([body, points.repeat(3), extremes]))
    j = np.unique(rng.integers(0, points.size + 1, 120))
    lo = np.where(j > 0, points[np.maximum(j - 1, 0)], -np.inf)
    hi = np.where(j < points.size, points[np.minimum(j, points.size - 1)], np.inf)
    gaps = np.stack((lo, hi), axis=1)
    k = np.searchsorted(hi, values, side="right")
    inside = np.zeros(values.size, bool)
    inside[k < hi.size] = lo[k[k < hi.size]] < values[k < hi.size]
    expected = np.sort(values[inside])
    spans = [
        (float(points[5]), float(points[-5])),  # the usual: outliers share the end bins
        (-np.finfo(float).max, np.finfo(float).max),  # too wide for a float: no filter
        (1.0, 1.0),  # empty: no filter
        (1.0, float(np.nextafter(1.0, 2.0))),  # too narrow for a finite scale: no filter
    ]
    for low, high in spans:
        kept = streaming.GapFilter(gaps, low, high, bins)(values)
        np.testing.assert_array_equal(kept, expected)


def test_streamed_drift_check_reads_parquet_on_s3(
    moto_s3, tmp_path, churn_frames, churn_baseline, monitoring_config
):
    import boto3

    batch = churn_frames["drifted"].iloc[:5_000]
    local = write_parquet(batch, tmp_path / "batch", row_group=1_000)
    client = boto3.client("s3", region_name="eu-west-1")
    uris = []
    for path in local:
        key = f"curated/churn/ds=2026-01-02/{path.rsplit('/', 1)[1]}"
        client.put_object(Bucket=moto_s3, Key=key, Body=Path(path[len("file://") :]).read_bytes())
        uris.append(f"s3://{moto_s3}/{key}")
    on_s3 = check_drift_from_parquet(churn_baseline, uris, monitoring_config, batch_rows=700)
    _reports_agree(check_drift(churn_baseline, batch, monitoring_config), on_s3)


def test_ranges_asked_with_ranks_are_kept_in_the_same_pass():
    """Value ranges asked along with ranks are kept in the pass that finds the ranks, so values
    asked later inside them are counted without a pass of their own; ranges over the budget are
    dropped, and those values take one more pass. Either way every rank, count and rank bound
    is the whole sorted column's."""
    rng = np.random.default_rng(5)
    data = np.concatenate([rng.standard_t(3, 20_000), rng.poisson(4, 5_000).astype(float)])
    ordered = np.sort(data)
    frame = pd.DataFrame({"x": rng.permutation(data)})
    points = rng.choice(data, 2_000)  # like the reference sample's values: ties included
    ranks = np.array([0, 50, 12_000, 17_500, 24_999])
    ranges = [(-1.0, -0.5), (2.0, 2.5)]  # thousands of values, a tie at 2.0 among them
    later = np.concatenate([rng.uniform(-1.0, -0.5, 20), rng.uniform(2.0, 2.5, 20), [2.0, -0.5]])
    # Budgets: everything; the ranks' gaps (a few dozen values) but not the ranges.
    for collect_values, passes in ((10**9, 2), (500, 3)):
        source = streaming.frame_source(frame, batch_rows=1_000)
        stream = NumericStream(
            "x", len(frame), points=points, keep_values=0, collect_values=collect_values
        )
        streaming.run_pass(source, [stream])
        low, high = stream.rank_bounds(ranks)
        assert (low <= ordered[ranks]).all() and (ordered[ranks] <= high).all()
        assert (low > ordered[0] - 1).all() and (high < ordered[-1] + 1).all()  # within min, max
        stream.ask(ranks=ranks, ranges=ranges)
        streaming.resolve(source, [stream])
        assert stream.passes == 2
        stream.ask(values=later)
        streaming.resolve(source, [stream])
        assert stream.passes == passes, collect_values
        np.testing.assert_array_equal(stream.values_at(ranks), ordered[ranks])
        for value in later:
            assert stream.count_below(value) == np.searchsorted(ordered, value, side="left")
            assert stream.count_at_or_below(value) == np.searchsorted(ordered, value, side="right")


def test_the_streamed_drift_check_takes_two_passes(
    tmp_path, churn_frames, churn_baseline, monitoring_config
):
    """Too large to keep (keep_values 0), a batch is read twice: the first pass counts at the
    baseline's points, the second finds the order statistics and keeps what counting at the
    plot's edges needs; the report is the in-memory check's, plots of every column included."""
    from include.monitoring.drift import check_drift_from_source

    batch = churn_frames["drifted"]
    inner = parquet_source(
        write_parquet(batch, tmp_path / "batch"), list(churn_baseline.references), batch_rows=2_048
    )
    passes = []

    def chunks(columns=None):
        passes.append(columns)
        yield from inner.chunks(columns)

    source = streaming.ChunkSource(rows=inner.rows, chunks=chunks)
    report = check_drift_from_source(
        churn_baseline, source, set(batch.columns), monitoring_config, keep_values=0
    )
    assert len(passes) == 2
    expected = check_drift(churn_baseline, batch, monitoring_config)
    _reports_agree(expected, report)
    numeric = [f for f in report.features if f.kind == NUMERIC]
    assert numeric and all(f.plot is not None for f in numeric)
