"""The monitoring statistics as merges of per-chunk statistics, so memory does not grow with rows.

A :class:`ChunkSource` yields a table in chunks, pass after pass: an in-memory frame (one chunk,
or slices of it) or Parquet files read a record batch at a time, only the monitored columns.
Counts, missing values, category counts, sums, minima and maxima merge over chunks exactly
(sums and the standard deviation's squared deviations up to float rounding, merged by Chan's
pairwise update; with one chunk they are today's floats).

What needs the whole sorted column (order statistics, quantile bin edges, counts below a value
known only at the end) is exact too: :class:`NumericStream` counts the values at and below a set
of points in every pass, and a later pass keeps only the values of the gaps between points that
hold a rank it still needs (without sorting the chunk, unless it counts at many new points:
:class:`GapFilter`). A column of at most ``keep_values`` present values is simply kept
(one pass; an in-memory frame keeps everything). Otherwise the points of the first pass are
given (the drift check: the reference sample's values) or taken from the first chunk; when the
gaps to keep hold more than ``collect_values`` values, one more counting pass uses evenly spaced
order statistics of every chunk as points. Every result is then the same as on the whole sorted
column; memory is bounded by the points, the kept gaps (about ``ranks * rows / points`` values)
and a chunk. Value ranges where values will be asked later (the drift plot's edges, which
depend on ranks not yet known) are kept along with the ranks' gaps when they fit in
``collect_values``, so those values take no pass of their own.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from include.monitoring.columns import (
    NumericValues,
    category_counts,
    finite_values,
    numeric_values,
)

# Record batch rows read from Parquet: a few MB a column, large enough that per-batch work
# (searches of the points into the batch) is small beside the batch's sort.
DEFAULT_BATCH_ROWS = 262_144
# A column with at most this many present values is kept whole (8 MB): one pass suffices.
KEEP_VALUES = 1_000_000
# The values kept from the gaps holding needed ranks before falling back to finer points.
COLLECT_VALUES = 4_000_000
# Points taken from the first chunk, and in total from every chunk for the finer pass.
FIRST_CHUNK_POINTS = 65_536
SAMPLE_POINTS = 65_536
# Passes a column may take before the loop gives up (it never should: see resolve()).
MAX_PASSES = 6
# A later pass counts at up to this many new points by two comparisons over the chunk each
# (0.04 ms a comparison on a 262,144-value chunk) rather than by sorting it (12 ms, then 4 ms of
# binary searches); more points (the finer pass's tens of thousands) take the sort.
COMPARE_POINTS = 64
# Equal-width bins of the coarse test of the values of the kept gaps (:class:`GapFilter`): its
# byte table stays in cache (64 KB), and 1 value in 10 passes it where 3 in 100 lie in a gap
# (4x the bins: 1 in 16 passes, but no faster).
FILTER_BINS = 1 << 16
# The filter's bins span the values between these shares of the column (the first pass's
# points there); the tails share the end bins, so an outlier does not widen every bin.
FILTER_SPAN = (0.01, 0.99)


# --- the chunks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkSource:
    """``chunks(columns)`` yields ``(offset of the chunk's first row, DataFrame)``, the same rows
    in the same order at every call, holding at least ``columns`` (None: all the source's
    columns); ``rows`` is their total."""

    rows: int
    chunks: Callable[[Sequence[str] | None], Iterator[tuple[int, pd.DataFrame]]]
    description: str = "frame"


def frame_source(frame: pd.DataFrame, batch_rows: int | None = None) -> ChunkSource:
    """An in-memory frame as one chunk (``batch_rows`` None) or slices of ``batch_rows`` rows."""
    n = len(frame)
    if batch_rows is not None and batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")

    def chunks(columns: Sequence[str] | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
        if batch_rows is None or batch_rows >= n:
            yield 0, frame
            return
        for start in range(0, n, batch_rows):
            yield start, frame.iloc[start : start + batch_rows]

    return ChunkSource(rows=n, chunks=chunks)


def parquet_source(
    paths: Sequence[str],
    columns: Sequence[str],
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    transform: Callable[[int, pd.DataFrame], pd.DataFrame] | None = None,
    transform_makes: Sequence[str] = (),
) -> ChunkSource:
    """Parquet files (local paths or ``file://`` / ``s3://`` URIs), read a record batch at a time
    and only the columns a pass asks for (of ``columns``); ``transform`` (e.g. the join of the
    scores) is applied to each batch with its offset, adding ``transform_makes``.

    The row count comes from the files' footers. A file without one of ``columns`` is an error
    naming the file and the column.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    wanted = list(columns)
    rows = 0
    for path in paths:
        with open_parquet(path) as parquet:
            names = set(parquet.schema_arrow.names)
            absent = [name for name in wanted if name not in names]
            if absent:
                raise ValueError(f"{path} lacks the monitored column(s) {', '.join(absent)}")
            rows += parquet.metadata.num_rows

    def chunks(names: Sequence[str] | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
        asked = wanted if names is None else [n for n in wanted if n in set(names)]
        makes = transform is not None and (names is None or set(names) & set(transform_makes))
        offset = 0
        for path in paths:
            with open_parquet(path) as parquet:
                for batch in parquet.iter_batches(batch_size=batch_rows, columns=asked):
                    frame = batch.to_pandas(date_as_object=False)
                    if makes:
                        frame = transform(offset, frame)
                    yield offset, frame
                    offset += batch.num_rows

    return ChunkSource(rows=rows, chunks=chunks, description=f"{len(paths)} Parquet file(s)")


def parquet_columns(paths: Sequence[str]) -> list[str]:
    """The column names of Parquet files (read from their footers), in order of appearance."""
    names: dict[str, None] = {}
    for path in paths:
        with open_parquet(path) as parquet:
            names.update(dict.fromkeys(parquet.schema_arrow.names))
    return list(names)


def open_parquet(path: str):
    """A ``pyarrow.parquet.ParquetFile`` that reads the byte ranges it needs (the footer, then
    the column chunks of each record batch), never the whole file at once."""
    import pyarrow.parquet as pq

    if path.startswith("file://"):
        return pq.ParquetFile(path[len("file://") :])
    if path.startswith("s3://"):
        return pq.ParquetFile(io.BufferedReader(S3RangeReader(path), buffer_size=1 << 20))
    return pq.ParquetFile(path)


class S3RangeReader(io.RawIOBase):
    """A seekable read-only file over an S3 object, each read a ranged GET through the lake's
    boto3 client (its credentials, endpoint and region)."""

    def __init__(self, uri: str):
        from include.storage import S3Storage, storage_for

        storage = storage_for(uri)
        assert isinstance(storage, S3Storage)
        self.client = storage.client
        self.bucket, self.key = S3Storage._split(uri)
        self.size = self.client.head_object(Bucket=self.bucket, Key=self.key)["ContentLength"]
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.size or len(buffer) == 0:
            return 0
        end = min(self.position + len(buffer), self.size) - 1
        body = self.client.get_object(
            Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{end}"
        )["Body"].read()
        buffer[: len(body)] = body
        self.position += len(body)
        return len(body)


def run_pass(source: ChunkSource, visitors: Sequence, columns: Sequence[str] | None = None) -> None:
    """One pass over the source (reading ``columns``, None: all), every visitor seeing every
    chunk."""
    for offset, chunk in source.chunks(columns):
        for visit in visitors:
            visit(offset, chunk)


# --- categorical columns ------------------------------------------------------------------------


@dataclass
class CategoryCounter:
    """``category_counts`` merged over chunks."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    missing: int = 0

    def __call__(self, offset: int, chunk: pd.DataFrame) -> None:
        counts, missing = category_counts(chunk[self.name])
        for value, count in counts.items():
            self.counts[value] = self.counts.get(value, 0) + count
        self.missing += missing

    def result(self) -> tuple[dict[str, int], int]:
        return dict(sorted(self.counts.items())), self.missing


# --- numeric columns ----------------------------------------------------------------------------


class NumericStream:
    """A numeric column's statistics over chunks, and exact order statistics and counts below
    values asked for after the first pass (see the module docstring).

    Pass 1 (:meth:`add`): counts, missing and invalid values, sum, squared deviations (merged by
    Chan's update), min and max, the counts at and below ``points``. Then :meth:`ask` ranks
    (0-based, of the sorted present values) and values to count below; :func:`resolve` runs the
    further passes needed; :meth:`value_at`, :meth:`count_below`, :meth:`count_at_or_below`
    answer.
    """

    def __init__(
        self,
        name: str,
        total_rows: int,
        *,
        points: np.ndarray | None = None,
        keep_values: int | None = KEEP_VALUES,
        collect_values: int | None = None,
        select: Callable[[pd.DataFrame], pd.Series] | None = None,
        columns: Sequence[str] | None = None,
        counts_only: bool = False,
    ):
        self.name = name
        # Only counts, sums and extremes (no order statistics will be asked).
        self.counts_only = counts_only
        # The source columns select() reads, for the later passes.
        self.columns = tuple(columns or (name,))
        self.total_rows = max(int(total_rows), 1)
        self.select = select or (lambda chunk: chunk[name])
        self.keep_values = keep_values
        # Read at construction, not definition, so that a test can lower the module's budget.
        self.collect_values = COLLECT_VALUES if collect_values is None else collect_values
        self.n = 0
        self.missing = 0
        self.invalid = 0
        self.first_invalid: tuple[int, object] | None = None
        self.total = 0.0
        self._mean = 0.0
        self._m2 = 0.0
        self.low = math.inf
        self.high = -math.inf
        self._kept: list[np.ndarray] | None = []
        self._sorted: np.ndarray | None = None
        if points is not None:
            points = np.asarray(points, np.float64)
            if not (points[1:] > points[:-1]).all():  # a sorted, distinct array needs no sort
                points = np.unique(points)
        self._points = points
        self._le = self._lt = None
        if self._points is not None:
            self._le = np.zeros(self._points.size, np.int64)
            self._lt = np.zeros(self._points.size, np.int64)
        self._sample: list[np.ndarray] = []
        self._refined = False
        # Open gaps (lo, hi) kept whole, by lo, and all their values, sorted.
        self._kept_lo = np.array([])
        self._kept_hi = np.array([])
        self._kept_all = np.array([])
        self._ranks: set[int] = set()
        self._values: set[float] = set()
        self._ranges: list[tuple[float, float]] = []
        self.passes = 1

    # pass 1 ----------------------------------------------------------------------------------

    def __call__(self, offset: int, chunk: pd.DataFrame) -> None:
        self.add(numeric_values(self.select(chunk)), offset)

    def add(self, values: NumericValues, offset: int = 0) -> None:
        """Merge one chunk (its present values sorted)."""
        data = values.sorted_values
        self.missing += values.missing
        if values.invalid:
            if self.first_invalid is None:
                row, value = values.first_invalid
                self.first_invalid = (offset + row, value)
            self.invalid += values.invalid
        c = int(data.size)
        if c == 0:
            return
        chunk_sum = float(data.sum())
        chunk_mean = chunk_sum / c
        deviations = data - chunk_mean
        # einsum, not np.dot: BLAS threads cost more CPU than they save on one vector.
        chunk_m2 = float(np.einsum("i,i->", deviations, deviations))
        n = self.n + c
        delta = chunk_mean - self._mean
        self._mean += delta * c / n
        self._m2 += chunk_m2 + delta * delta * self.n * c / n
        self.n = n
        self.total += chunk_sum
        self.low = min(self.low, float(data[0]))
        self.high = max(self.high, float(data[-1]))
        if self.counts_only:
            return
        if self._kept is not None:
            if self.keep_values is None or self.n <= self.keep_values:
                # Kept whole: the counts at points come from the kept values at the end.
                self._kept.append(data)
                return
            # Too many to keep: count the chunks kept so far, from now on chunk by chunk.
            kept, self._kept = self._kept, None
            for part in kept:
                self._count_points(part)
        self._count_points(data)

    def _count_points(self, data: np.ndarray) -> None:
        """Counts of a sorted chunk at the points (the first chunk's order statistics unless
        given), and its share of the order statistics the finer points come from."""
        c = int(data.size)
        if self._points is None:
            take = np.linspace(0, c - 1, min(c, FIRST_CHUNK_POINTS)).round().astype(np.int64)
            self._points = np.unique(data[take])
            self._le = np.zeros(self._points.size, np.int64)
            self._lt = np.zeros(self._points.size, np.int64)
        at_or_below, below = counts_at(data, self._points)
        self._le += at_or_below
        self._lt += below
        share = max(2, math.ceil(SAMPLE_POINTS * c / self.total_rows))
        self._sample.append(data[np.linspace(0, c - 1, min(c, share)).round().astype(np.int64)])

    # the summary -----------------------------------------------------------------------------

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def std(self) -> float | None:
        return math.sqrt(self._m2 / self.n) if self.n else None

    @property
    def all_values(self) -> np.ndarray | None:
        """Every present value, sorted, when the column was kept whole."""
        if self._sorted is None and self._kept is not None:
            self._sorted = (
                self._kept[0]
                if len(self._kept) == 1
                # Sorted runs: the stable sort (timsort) merges them.
                else np.sort(np.concatenate(self._kept), kind="stable")
                if self._kept
                else np.array([])
            )
            self._kept = [self._sorted]
        return self._sorted

    def point_counts(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(count <= v, count < v)`` for each of ``values``, which must be points of pass 1."""
        if self.all_values is not None:
            data = self.all_values
            return (
                np.searchsorted(data, values, side="right"),
                np.searchsorted(data, values, side="left"),
            )
        index = np.searchsorted(self._points, values)
        return self._le[index], self._lt[index]

    # later passes ----------------------------------------------------------------------------

    def ask(self, ranks=(), values=(), ranges=()) -> None:
        """Ranks whose value is needed, values to count below and at-or-below, and value
        ranges ``(low, high)`` where values may be asked later: their gaps are kept along with
        the next pass's if all fit in ``collect_values`` (never a pass of their own), so that a
        value asked there is answered without one."""
        self._ranks.update(int(r) for r in ranks)
        self._values.update(float(v) for v in values)
        for low, high in ranges:
            if not low <= high:
                raise ValueError(f"{self.name}: range ({low}, {high}) has its low above its high")
            self._ranges.append((float(low), float(high)))

    def rank_bounds(self, ranks) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)``: the closed range each rank's value is known to lie in (a point, or
        the gap around it, within min and max), before the passes that find it."""
        ranks = np.asarray(ranks, dtype=np.int64)
        if self.all_values is not None:
            values = self.values_at(ranks)
            return values, values.copy()
        gap, at_point, _ = self._locate_ranks(ranks)
        lo, hi = self._gap_bounds(gap)
        lo = np.where(at_point, hi, np.maximum(lo, self.low))
        return lo, np.minimum(hi, self.high)

    def value_at(self, rank: int) -> float:
        return float(self.values_at(np.array([rank]))[0])

    def values_at(self, ranks: np.ndarray) -> np.ndarray:
        """The sorted column's values at ``ranks`` (0-based)."""
        ranks = np.asarray(ranks, dtype=np.int64)
        if self.all_values is not None:
            return self.all_values[ranks].astype(np.float64)
        if ranks.size and (ranks.min() < 0 or ranks.max() >= self.n):
            raise IndexError(f"{self.name}: ranks outside 0..{self.n - 1}")
        gap, at_point, before = self._locate_ranks(ranks)
        out = np.empty(ranks.size, dtype=np.float64)
        out[at_point] = self._points[gap[at_point]]
        inside = ~at_point
        if inside.any():
            if (self._kept_gap(gap[inside]) < 0).any():
                raise LookupError(f"{self.name}: a rank's gap was not kept")
            # The kept values are one sorted array: a gap's values start after its low end.
            lo, _ = self._gap_bounds(gap[inside])
            start = np.searchsorted(self._kept_all, lo, side="right")
            out[inside] = self._kept_all[start + ranks[inside] - before[inside]]
        return out

    def count_below(self, value: float) -> int:
        return self._count(value, strict=True)

    def count_at_or_below(self, value: float) -> int:
        return self._count(value, strict=False)

    def _count(self, value: float, *, strict: bool) -> int:
        data = self.all_values
        if data is not None:
            return int(np.searchsorted(data, value, side="left" if strict else "right"))
        j = int(np.searchsorted(self._points, value, side="left"))
        if j < self._points.size and self._points[j] == value:
            return int(self._lt[j] if strict else self._le[j])
        before = int(self._le[j - 1]) if j > 0 else 0
        inside = (int(self._lt[j]) if j < self._points.size else self.n) - before
        if inside == 0:
            return before
        gap = self._gap_values(j)
        return before + int(np.searchsorted(gap, value, side="left" if strict else "right"))

    def _gap_bounds(self, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The open gaps ``(points[j - 1], points[j])`` (infinite at the ends)."""
        j = np.asarray(j)
        last = self._points.size - 1
        if last < 0:
            return np.full(j.shape, -math.inf), np.full(j.shape, math.inf)
        lo = np.where(j > 0, self._points[np.clip(j - 1, 0, last)], -math.inf)
        hi = np.where(j <= last, self._points[np.clip(j, 0, last)], math.inf)
        return lo, hi

    def _gap_sizes(self, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(count before gap j, count inside it)``."""
        j = np.asarray(j)
        last = self._points.size - 1
        if last < 0:
            return np.zeros(j.shape, np.int64), np.full(j.shape, self.n)
        before = np.where(j > 0, self._le[np.clip(j - 1, 0, last)], 0)
        end = np.where(j <= last, self._lt[np.clip(j, 0, last)], self.n)
        return before, end - before

    def _kept_gap(self, j: np.ndarray) -> np.ndarray:
        """For gaps ``j``: the index of the kept gap holding it, or -1."""
        if not self._kept_lo.size:
            return np.full(np.shape(j), -1)
        lo, hi = self._gap_bounds(j)
        k = np.searchsorted(self._kept_lo, lo, side="right") - 1
        ok = k >= 0
        ok[ok] &= hi[ok] <= self._kept_hi[k[ok]]
        return np.where(ok, k, -1)

    def _gap_values(self, j: int) -> np.ndarray:
        """The sorted values inside gap ``j``, from the kept gap that holds it."""
        (k,) = self._kept_gap(np.array([j]))
        if k < 0:
            raise LookupError(f"{self.name}: gap {j} was not kept")
        (lo,), (hi,) = self._gap_bounds(np.array([j]))
        values = self._kept_all
        return values[np.searchsorted(values, lo, "right") : np.searchsorted(values, hi, "left")]

    def _locate_ranks(self, ranks: np.ndarray):
        """``(gap index j, at point j, count before gap j)``: a rank is at point ``j`` or in the
        gap before it."""
        j = np.searchsorted(self._le, ranks, side="right")  # the first point with le > rank
        last = self._points.size - 1
        at_point = (j <= last) & (self._lt[np.clip(j, 0, max(last, 0))] <= ranks)
        before, _ = self._gap_sizes(j)
        return j, at_point, before

    def _plan(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The next pass's new points to count and gaps to keep; None when all is answered."""
        if self.all_values is not None or self.n == 0:
            return None
        ranks = np.fromiter(self._ranks, np.int64, len(self._ranks))
        j, at_point, _ = self._locate_ranks(ranks)
        needed = np.unique(j[~at_point])
        needed = needed[self._kept_gap(needed) < 0]
        values = np.fromiter(self._values, np.float64, len(self._values))
        where = np.searchsorted(self._points, values, side="left")
        _, inside = self._gap_sizes(where)
        _, hi = self._gap_bounds(where)
        open_value = (hi != values) & (inside > 0)
        new_points = values[open_value & (self._kept_gap(where) < 0)]
        if not new_points.size and not needed.size:
            return None
        _, sizes = self._gap_sizes(needed)
        if int(sizes.sum()) > self.collect_values and not self._refined:
            # Too much to keep: count at finer points first (every chunk's order statistics).
            self._refined = True
            return np.union1d(new_points, np.concatenate(self._sample)), np.empty((0, 2))
        needed = self._with_ranges(needed, int(sizes.sum()))
        lo, hi = self._gap_bounds(needed)
        return np.unique(new_points), np.stack((lo, hi), axis=1)

    def _with_ranges(self, needed: np.ndarray, kept: int) -> np.ndarray:
        """``needed`` and the unkept, non-empty gaps meeting the asked ranges, if all together
        hold at most ``collect_values`` values (``kept`` of them are ``needed``'s)."""
        ranges, self._ranges = self._ranges, []
        if not ranges:
            return needed
        bounds = np.array(ranges)
        # Gap j, the open (points[j - 1], points[j]), meets [low, high] for first <= j <= last;
        # marked by +1 at first and -1 after last, so wide ranges cost no more than the gaps.
        first = np.searchsorted(self._points, bounds[:, 0], side="right")
        last = np.searchsorted(self._points, bounds[:, 1], side="left")
        cover = np.zeros(self._points.size + 2, np.int64)
        np.add.at(cover, first, 1)
        np.add.at(cover, last + 1, -1)
        extra = np.flatnonzero(np.cumsum(cover[:-1]) > 0)
        extra = np.setdiff1d(extra, needed, assume_unique=True)
        extra = extra[self._kept_gap(extra) < 0]
        _, sizes = self._gap_sizes(extra)
        extra = extra[sizes > 0]
        if kept + int(sizes.sum()) > self.collect_values:
            return needed
        return np.union1d(needed, extra)

    def next_pass(self) -> Callable[[int, pd.DataFrame], None] | None:
        """A visitor for one more pass, or None when everything asked can be answered."""
        if self.counts_only:
            return None
        plan = self._plan()
        if plan is None:
            return None
        new_points, gaps = plan
        new_points = np.setdiff1d(new_points, self._points, assume_unique=True)
        le = np.zeros(new_points.size, np.int64)
        lt = np.zeros(new_points.size, np.int64)
        kept: list[np.ndarray] = []
        # Neither the counts at a few points nor the gaps' values need the chunk sorted. On a
        # 262,144-value chunk the sort took 11.7 ms and the gaps' binary searches 3.6 ms; the
        # comparisons at a baseline's 9 new points take 0.7 ms and GapFilter 1.8 ms (a 10M-row
        # streamed baseline: 20.5 s CPU before, 14.3 s after).
        many_points = new_points.size > COMPARE_POINTS
        keep = GapFilter(gaps, *self._filter_span()) if len(gaps) else None

        def visit(offset: int, chunk: pd.DataFrame) -> None:
            if many_points:
                data = numeric_values(self.select(chunk)).sorted_values
                at_or_below, below = counts_at(data, new_points)
                le[:] += at_or_below
                lt[:] += below
            else:
                data = finite_values(self.select(chunk))
                for i, point in enumerate(new_points):
                    le[i] += np.count_nonzero(data <= point)
                    lt[i] += np.count_nonzero(data < point)
            if keep is not None:
                kept.append(keep(data))

        def finish() -> None:
            order = np.argsort(np.concatenate((self._points, new_points)), kind="stable")
            self._points = np.concatenate((self._points, new_points))[order]
            self._le = np.concatenate((self._le, le))[order]
            self._lt = np.concatenate((self._lt, lt))[order]
            if len(gaps):
                # Kept gaps never overlap: all their values make one sorted array.
                self._kept_all = np.sort(np.concatenate((self._kept_all, *kept)))
                lows = np.concatenate((self._kept_lo, gaps[:, 0]))
                by_low = np.argsort(lows, kind="stable")
                self._kept_lo = lows[by_low]
                self._kept_hi = np.concatenate((self._kept_hi, gaps[:, 1]))[by_low]
            self.passes += 1

        visit.finish = finish  # type: ignore[attr-defined]
        visit.columns = self.columns  # type: ignore[attr-defined]
        return visit

    def _filter_span(self) -> tuple[float, float]:
        """The points at about the :data:`FILTER_SPAN` shares of the column (its ends when
        there are no such points)."""
        if not self._points.size:
            return self.low, self.high
        share = np.searchsorted(self._le, np.multiply(FILTER_SPAN, self.n))
        low, high = self._points[np.minimum(share, self._points.size - 1)]
        return (float(low), float(high)) if low < high else (self.low, self.high)


class GapFilter:
    """The values of a chunk, in any order, inside open gaps ``(lo, hi)`` (sorted, disjoint).

    A coarse test first: the values between ``low`` and ``high`` fall in equal-width bins (those
    beyond share the end bins); a value in a bin no gap meets is dropped, one in a bin some gaps
    meet is tested against the lowest ``lo`` and highest ``hi`` of those gaps (so values tied at
    a gap's end, a point, are dropped here too), and only the rest are compared with the gaps
    one by one. A value's bin never decreases as the value grows, so a value inside a gap is in
    a bin that gap meets: none is lost.
    """

    def __init__(self, gaps: np.ndarray, low: float, high: float, bins: int | None = None):
        # Read at construction, not definition, so that a test can change the module's bins.
        self.bins = FILTER_BINS if bins is None else bins
        self.lo = gaps[:, 0]
        self.hi = gaps[:, 1]
        self.low = float(low)
        # Python floats: a span or a scale too large for a float is an infinity (no filter).
        self.scale = self.bins / (float(high) - self.low) if high > low else 0.0
        self.met = None
        if math.isfinite(self.scale) and self.scale > 0:
            # The bins' ends never decrease along the gaps: the gaps meeting bin b run from the
            # first whose last bin is b or more to the last whose first bin is b or less.
            every = np.arange(self.bins)
            first = np.searchsorted(self._bin(self.hi), every, side="left")
            last = np.searchsorted(self._bin(self.lo), every, side="right") - 1
            self.met = first <= last
            self.lower = np.full(self.bins, np.inf)
            self.upper = np.full(self.bins, -np.inf)
            self.lower[self.met] = self.lo[first[self.met]]
            self.upper[self.met] = self.hi[last[self.met]]

    def _bin(self, values: np.ndarray) -> np.ndarray:
        # low is finite and scale finite and positive: an infinite gap end (or a value so far
        # out that it overflows) scales to an infinity, which the clip puts in an end bin.
        with np.errstate(over="ignore"):
            scaled = (values - self.low) * self.scale
        np.clip(scaled, 0, self.bins - 1, out=scaled)
        return scaled.astype(np.intp)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """The values inside a gap, sorted."""
        if self.met is None:
            candidates = np.sort(values)
        else:
            # The byte table first (64 KB, in cache): most values leave here. One flatnonzero
            # and two takes: two boolean selections took twice as long (0.9 ms vs 0.4 ms).
            b = self._bin(values)
            met = np.flatnonzero(self.met[b])
            candidates, b = values[met], b[met]
            candidates = candidates[(self.lower[b] < candidates) & (candidates < self.upper[b])]
            candidates.sort()
        # The gap each value could be in (the first with hi > value), then inside it?
        k = np.searchsorted(self.hi, candidates, side="right")
        inside = k < self.hi.size
        inside[inside] &= self.lo[k[inside]] < candidates[inside]
        return candidates[inside]


def counts_at(sorted_values: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(count <= p, count < p)`` of sorted values for each of ``points``: the two differ only
    at points among the values, so only those take a second binary search."""
    at_or_below = np.searchsorted(sorted_values, points, side="right")
    present = at_or_below > 0
    present[present] = sorted_values[at_or_below[present] - 1] == points[present]
    below = at_or_below.copy()
    if present.any():
        below[present] = np.searchsorted(sorted_values, points[present], side="left")
    return at_or_below, below


def resolve(source: ChunkSource, streams: Sequence[NumericStream]) -> None:
    """Run the passes the streams need until every rank and count they were asked is known.

    Each pass either keeps the gaps holding the asked ranks (after which they are known), or,
    once, counts at finer points; a value to count below becomes a point. So a stream is done
    after at most three more passes.
    """
    for _ in range(MAX_PASSES):
        visitors = [v for v in (s.next_pass() for s in streams) if v is not None]
        if not visitors:
            return
        columns = sorted({name for v in visitors for name in v.columns})
        run_pass(source, visitors, columns)
        for visit in visitors:
            visit.finish()  # type: ignore[attr-defined]
    raise RuntimeError(f"monitoring statistics not resolved after {MAX_PASSES} passes")


# --- numpy's quantile from order statistics -----------------------------------------------------


def quantile_ranks(n: int, probabilities: np.ndarray) -> np.ndarray:
    """The ranks ``np.quantile`` (method linear) reads for ``probabilities`` of ``n`` values."""
    previous, following, _ = _quantile_indexes(n, probabilities)
    return np.unique(np.concatenate((previous, following)))


def quantiles(stream: NumericStream, probabilities: np.ndarray) -> np.ndarray:
    """``np.quantile(sorted values, probabilities)``, the same floats, from order statistics."""
    previous, following, gamma = _quantile_indexes(stream.n, probabilities)
    a = stream.values_at(previous)
    b = stream.values_at(following)
    # numpy's _lerp: from the lower value below a half, from the upper one from a half up.
    diff = b - a
    out = a + diff * gamma
    upper = gamma >= 0.5
    out[upper] = (b - diff * (1 - gamma))[upper]
    return out


def _quantile_indexes(n: int, probabilities: np.ndarray):
    """numpy's virtual index of method linear, ``_get_indexes`` and ``_get_gamma``."""
    q = np.asarray(probabilities, dtype=np.float64)
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = n - 1
    following[above] = n - 1
    below = virtual < 0
    previous[below] = 0
    following[below] = 0
    gamma = virtual - np.floor(virtual)
    return previous.astype(np.int64), following.astype(np.int64), gamma
