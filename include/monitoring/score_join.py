"""The left join of curated rows with their scores by key, in memory a 100M-row day can afford.

The monitoring jobs stream the curated rows a record batch at a time but must hold the day's
scores to join each batch with them. :class:`KeyedScores` holds them by a 128-bit hash of each
key's text (two 64-bit SipHash values under different keys, pandas' ``hash_array``), sorted for
binary search: 16 bytes a key where a pandas index of the keys' text took about 100 (the
``bench/monitoring_memory.py`` drift job at 10M rows). Keys join as text, as they always did: a
key column read as integers on one side and as text on the other still meets.

Two different keys share both hashes with probability about n²/2¹²⁹ for n keys (below 10⁻²²
at 200M), so a join by hash is a join by key. Where the first 64 bits alone collide (about
3·10⁻⁴ at 100M keys) the lookup searches the run of equal first hashes for the second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

# Two independent 16-byte SipHash keys (hash_array's hash_key is 16 characters).
_HASH_KEYS = ("headrace-score-1", "headrace-score-2")


def key_hashes(keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit hashes of each key's text."""
    text = keys.astype(str).to_numpy(dtype=object)
    return tuple(pd.util.hash_array(text, hash_key=k, categorize=False) for k in _HASH_KEYS)


class KeyedScores:
    """A day's score columns by the hash of the key column ``key``'s text, sorted by hash.

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

    @classmethod
    def from_chunks(
        cls, key: str, chunks: Iterable[pd.DataFrame], columns: Sequence[str]
    ) -> KeyedScores:
        """The scores in ``chunks`` (frames with the column ``key`` and ``columns``), read once;
        only the hashes and the columns' values are kept. Each array is joined and reordered on
        its own, so the peak is the held arrays plus about two of them (16 bytes a row)."""
        parts: dict[str, list[np.ndarray]] = {"high": [], "low": [], **{c: [] for c in columns}}
        for chunk in chunks:
            high, low = key_hashes(chunk[key])
            parts["high"].append(high)
            parts["low"].append(low)
            for name in columns:
                parts[name].append(chunk[name].to_numpy())
        joined = {}
        for name in list(parts):
            pieces = parts.pop(name)
            joined[name] = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint64)
            del pieces
        order = _hash_order(joined["high"], joined["low"])
        for name in joined:
            joined[name] = joined[name][order]
        del order
        return cls(key, joined.pop("high"), joined.pop("low"), joined)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, key: str, columns: Sequence[str]) -> KeyedScores:
        return cls.from_chunks(key, [frame], columns)

    def __len__(self) -> int:
        return len(self.high)

    def positions(self, keys: pd.Series) -> np.ndarray:
        """Each key's row among the scores, or -1 where it has none."""
        return self.find(*key_hashes(keys))

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


class ScoreJoin:
    """The left join of a batch with the day's scores on the key: a batch row's score columns
    are its key's, or ``fill`` (NaN by default) when the key has none. A key of the batch seen
    twice among scored rows is an error, as the whole-day join's one-to-one check.

    A :data:`~include.monitoring.streaming.ChunkSource` transform: called with each chunk's
    offset, a new pass starting at offset 0."""

    def __init__(self, scores: KeyedScores, columns: Sequence[str], fill: Mapping | None = None):
        if scores.repeats:
            raise ValueError(f"the scores hold {scores.key} values more than once")
        self.scores, self.key, self.columns = scores, scores.key, list(columns)
        self.fill = dict(fill or {})
        self.seen = np.zeros(len(scores), dtype=bool)

    def __call__(self, offset: int, chunk: pd.DataFrame) -> pd.DataFrame:
        if offset == 0:  # a new pass over the rows
            self.seen[:] = False
        position = self.scores.positions(chunk[self.key])
        matched = position[position >= 0]
        if self.seen[matched].any() or np.unique(matched).size != matched.size:
            raise ValueError(f"the batch holds {self.key} values more than once")
        self.seen[matched] = True
        out = chunk.copy()
        for name in self.columns:
            column = self.scores.columns[name]
            if not len(column):  # no scores at all: every row takes the fill
                column = np.zeros(1, dtype=column.dtype)
            values = column[np.maximum(position, 0)]
            if name in self.fill:
                values = np.where(position >= 0, values, self.fill[name])
            else:
                values = np.where(position >= 0, values.astype(np.float64), np.nan)
            out[name] = values
        return out
