"""The left join of streamed curated rows with their scores by key, in memory that does not grow
with the day.

The monitoring jobs read the curated rows a record batch at a time, in several passes, and each
row needs its score. :func:`align_scores` lines the scores up with the rows once, on disk: it
spills the scores and the rows' keys into buckets by key hash, joins bucket by bucket, and writes
each score column in the rows' order (:class:`AlignedScores`); every pass then reads the slice of
its chunk (:class:`ScoreJoin`). Memory holds one bucket (at most about :data:`BUCKET_ROWS` keys)
and one block of the output, whatever the day's size; the disk holds about 75 bytes a row while
the job runs.

Keys are matched by a 128-bit hash of their text (two 64-bit SipHash values under different
keys, pandas' ``hash_array``): keys join as text, as they always did, so a key column read as
integers on one side and as text on the other still meets. Two different keys share both hashes
with probability about n²/2¹²⁹ for n keys (below 10⁻²² at 200M), so a join by hash is a join by
key. Where the first 64 bits alone collide (about 3·10⁻⁴ at 100M keys) the lookup searches the
run of equal first hashes for the second.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from include.monitoring.streaming import ChunkSource

# Two independent 16-byte SipHash keys (hash_array's hash_key is 16 characters).
_HASH_KEYS = ("headrace-score-1", "headrace-score-2")
# Keys joined at once, scores or rows, whichever are more: 24 bytes each (two hashes and a row or
# a score) plus the lookup's temporaries, about 0.3 GB.
BUCKET_ROWS = 4_000_000
# Rows of the aligned output written at once.
BLOCK_ROWS = 1 << 20
# The aligned column that says whether a row had a score.
MATCHED = "_matched"


def key_hashes(keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit hashes of each key's text."""
    text = keys.astype(str).to_numpy(dtype=object)
    return tuple(pd.util.hash_array(text, hash_key=k, categorize=False) for k in _HASH_KEYS)


class KeyedScores:
    """Score columns by the hash of the key column ``key``'s text, sorted by hash.

    :attr repeats: how many keys appeared more than once (0 for scores one can join).
    """

    def __init__(
        self, key: str, high: np.ndarray, low: np.ndarray, columns: Mapping[str, np.ndarray]
    ):
        """``high`` and ``low`` are the hashes sorted by (high, low); ``columns`` in that order."""
        same_high = high[1:] == high[:-1]
        if (high[1:] < high[:-1]).any() or (same_high & (low[1:] < low[:-1])).any():
            raise ValueError("the key hashes are not sorted")
        self.key, self.high, self.low, self.columns = key, high, low, dict(columns)
        self.repeats = int((same_high & (low[1:] == low[:-1])).sum())
        self._high_runs = bool(same_high.any())

    def __len__(self) -> int:
        return len(self.high)

    def find(self, high: np.ndarray, low: np.ndarray) -> np.ndarray:
        """The row of each hash pair among the scores, or -1 where it is absent."""
        if not len(self):
            return np.full(len(high), -1, dtype=np.int64)
        position = np.minimum(np.searchsorted(self.high, high), len(self) - 1)
        if self._high_runs:  # some first hashes are shared: find the second within their run
            for i in np.flatnonzero((self.high[position] == high) & (self.low[position] != low)):
                start = position[i]
                end = np.searchsorted(self.high, high[i], side="right")
                position[i] = min(start + np.searchsorted(self.low[start:end], low[i]), end - 1)
        found = (self.high[position] == high) & (self.low[position] == low)
        return np.where(found, position, -1)

    def repeated_key(self, chunks: Iterable[pd.DataFrame]) -> str | None:
        """The text of a key that appears more than once, found by reading ``chunks`` (the
        frames the scores came from) again; None when no key repeats."""
        if not self.repeats:
            return None
        same = (self.high[1:] == self.high[:-1]) & (self.low[1:] == self.low[:-1])
        first = int(np.flatnonzero(same)[0])
        wanted = (self.high[first], self.low[first])
        for chunk in chunks:
            high, low = key_hashes(chunk[self.key])
            hit = np.flatnonzero((high == wanted[0]) & (low == wanted[1]))
            if len(hit):
                return str(chunk[self.key].iloc[hit[0]])
        return None


def _hash_order(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """The order that sorts the rows by (high, low). A stable radix sort of ``high`` alone, then
    the rare runs of a shared ``high`` by ``low``: 1.5 s for 10M rows where ``np.lexsort`` of
    both took 6.2 s (this machine)."""
    order = np.argsort(high, kind="stable")
    sorted_high = high[order]
    for value in np.unique(sorted_high[1:][sorted_high[1:] == sorted_high[:-1]]):
        start = np.searchsorted(sorted_high, value)
        end = np.searchsorted(sorted_high, value, side="right")
        run = order[start:end]
        order[start:end] = run[np.argsort(low[run], kind="stable")]
    return order


class AlignedScores:
    """Score columns lined up with a stream's rows, on disk under ``folder``: row i's values at
    position i of ``<column>.bin``, and in :data:`MATCHED` whether row i had a score."""

    def __init__(self, folder: Path, rows: int, dtypes: Mapping[str, np.dtype]):
        self.folder, self.rows = folder, rows
        self.dtypes = {name: np.dtype(dtype) for name, dtype in dtypes.items()}

    @property
    def columns(self) -> list[str]:
        return [name for name in self.dtypes if name != MATCHED]

    def read(self, name: str, offset: int, length: int) -> np.ndarray:
        """The values of rows ``offset`` to ``offset + length``."""
        if offset < 0 or offset + length > self.rows:
            raise ValueError(
                f"rows {offset}..{offset + length} are outside the {self.rows} aligned rows"
            )
        dtype = self.dtypes[name]
        return np.fromfile(
            self.folder / f"{name}.bin", dtype=dtype, count=length, offset=offset * dtype.itemsize
        )


class _Buckets:
    """Arrays appended bucket by bucket to raw files: ``<folder>/<bucket>.<name>``."""

    def __init__(self, folder: Path, buckets: int, dtypes: Mapping[str, np.dtype]):
        folder.mkdir(parents=True)
        self.folder, self.buckets = folder, buckets
        self.dtypes = {name: np.dtype(dtype) for name, dtype in dtypes.items()}

    def add(self, bucket: np.ndarray, arrays: Mapping[str, np.ndarray]) -> None:
        """Append each row of ``arrays`` to its ``bucket``, keeping their order within it."""
        bucket = np.asarray(bucket, dtype=np.int64)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(self.buckets + 1))
        for name, values in arrays.items():
            values = np.asarray(values).astype(self.dtypes[name], copy=False)[order]
            for number in np.flatnonzero(np.diff(bounds)):
                with (self.folder / f"{number}.{name}").open("ab") as out:
                    values[bounds[number] : bounds[number + 1]].tofile(out)

    def load(self, number: int, name: str, offset: int = 0, count: int = -1) -> np.ndarray:
        """Bucket ``number``'s ``name`` values from ``offset``: ``count`` of them (-1: all)."""
        path, dtype = self.folder / f"{number}.{name}", self.dtypes[name]
        if not path.exists():
            return np.zeros(0, dtype=dtype)
        return np.fromfile(path, dtype=dtype, count=count, offset=offset * dtype.itemsize)


def align_scores(
    scores: Callable[[], Iterable[pd.DataFrame]],
    rows: ChunkSource,
    key: str,
    columns: Mapping[str, np.dtype],
    folder: Path,
    *,
    score_rows: int,
    what: str,
    bucket_rows: int = BUCKET_ROWS,
) -> AlignedScores:
    """Line up the scores with the rows of ``rows`` (with the column ``key``) under ``folder``.

    :param scores: a new pass over the scores at each call: frames with ``key`` and ``columns``
        (the values cast to their dtype); ``score_rows`` of them in all.
    :param what: the scores in words, for the error of a key scored twice.
    :raises ValueError: a key scored twice (naming one), or a key twice among the rows.
    """
    buckets = max(1, -(-max(score_rows, rows.rows) // bucket_rows))
    hashes = {"high": np.uint64, "low": np.uint64}
    scored = _Buckets(folder / "scores", buckets, {**hashes, **columns})
    for chunk in scores():
        high, low = key_hashes(chunk[key])
        scored.add(high % buckets, {"high": high, "low": low, **{c: chunk[c] for c in columns}})
    keyed = _Buckets(folder / "rows", buckets, {**hashes, "row": np.int64})
    total = 0
    for offset, chunk in rows.chunks([key]):
        high, low = key_hashes(chunk[key])
        row = np.arange(offset, offset + len(chunk), dtype=np.int64)
        keyed.add(high % buckets, {"high": high, "low": low, "row": row})
        total = offset + len(chunk)
    if total != rows.rows:
        raise ValueError(f"the rows' source yielded {total} rows, not the {rows.rows} it counts")

    # Bucket by bucket: the rows' scores, in the rows' order within the bucket.
    joined = _Buckets(folder / "joined", buckets, {"row": np.int64, MATCHED: bool, **columns})
    for number in range(buckets):
        high, low = scored.load(number, "high"), scored.load(number, "low")
        order = _hash_order(high, low)
        bucket = KeyedScores(
            key, high[order], low[order], {c: scored.load(number, c)[order] for c in columns}
        )
        del high, low, order
        if bucket.repeats:
            repeated = bucket.repeated_key(scores())
            raise ValueError(
                f"{what} hold {key} values more than once, e.g. {repeated!r} "
                f"({bucket.repeats} repeats in one of {buckets} bucket(s))"
            )
        position = bucket.find(keyed.load(number, "high"), keyed.load(number, "low"))
        matched = position >= 0
        if np.unique(position[matched]).size != matched.sum():
            raise ValueError(f"the batch holds {key} values more than once")
        row = keyed.load(number, "row")
        values = {
            c: bucket.columns[c][np.maximum(position, 0)]
            if len(bucket)
            else np.zeros(len(row), dtype=columns[c])
            for c in columns
        }
        joined.add(np.full(len(row), number), {"row": row, MATCHED: matched, **values})
    shutil.rmtree(folder / "scores")
    shutil.rmtree(folder / "rows")

    # Merge the buckets' rows, each bucket in row order, into columns in the rows' order.
    aligned = AlignedScores(folder, rows.rows, {**columns, MATCHED: bool})
    read = [0] * buckets
    with contextlib.ExitStack() as stack:
        outputs = {
            name: stack.enter_context((folder / f"{name}.bin").open("wb"))
            for name in aligned.dtypes
        }
        for start in range(0, rows.rows, BLOCK_ROWS):
            stop = min(rows.rows, start + BLOCK_ROWS)
            block = {n: np.zeros(stop - start, dtype=d) for n, d in aligned.dtypes.items()}
            for number in range(buckets):
                row = joined.load(number, "row", read[number], stop - start)
                taken = int(np.searchsorted(row, stop))
                for name in aligned.dtypes:
                    block[name][row[:taken] - start] = joined.load(
                        number, name, read[number], taken
                    )
                read[number] += taken
            for name, handle in outputs.items():
                block[name].tofile(handle)
    shutil.rmtree(folder / "joined")
    return aligned


class ScoreJoin:
    """The left join of each chunk of a stream with its aligned scores (:func:`align_scores`):
    a row's score columns are its key's, or ``fill`` (NaN by default) where it has none.

    A :data:`~include.monitoring.streaming.ChunkSource` transform of the stream the scores were
    aligned with: called with each chunk's offset, it reads that slice. ``columns``: the aligned
    columns it adds (default: all)."""

    def __init__(
        self,
        aligned: AlignedScores,
        columns: Sequence[str] | None = None,
        fill: Mapping | None = None,
    ):
        self.aligned = aligned
        self.columns = aligned.columns if columns is None else list(columns)
        self.fill = dict(fill or {})

    def __call__(self, offset: int, chunk: pd.DataFrame) -> pd.DataFrame:
        matched = self.aligned.read(MATCHED, offset, len(chunk))
        out = chunk.copy()
        for name in self.columns:
            values = self.aligned.read(name, offset, len(chunk))
            if name in self.fill:
                out[name] = np.where(matched, values, self.fill[name])
            else:
                out[name] = np.where(matched, values.astype(np.float64), np.nan)
        return out
