"""The join of streamed rows with their scores: lined up on disk by key hash, the same rows as a
join on the key's text, in any number of buckets; first-hash collisions resolved; a key twice
named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.monitoring.score_join import (
    MATCHED,
    KeyedScores,
    ScoreJoin,
    _hash_order,
    align_scores,
)
from include.monitoring.streaming import frame_source


def align(tmp_path, scores: pd.DataFrame, rows: pd.DataFrame, *, bucket_rows, chunks=1):
    parts = np.array_split(np.arange(len(scores)), chunks)
    return align_scores(
        lambda: (scores.iloc[part] for part in parts), frame_source(rows, batch_rows=7_000),
        "id", {"score": np.float64, "held": bool}, tmp_path / "aligned",
        score_rows=len(scores), what="the scores", bucket_rows=bucket_rows,
    )  # fmt: skip


@pytest.mark.parametrize("bucket_rows", [1_000_000, 9_000])
def test_aligned_scores_are_a_left_join_on_the_keys_text(tmp_path, bucket_rows):
    rng = np.random.default_rng(3)
    ids = rng.permutation(50_000)
    scores = pd.DataFrame(
        {
            "id": ids[:40_000].astype(str),
            "score": rng.random(40_000),
            "held": rng.random(40_000) < 0.3,
        }
    )
    # The rows' key column is read as integers: it meets the scores' text as it always did.
    rows = pd.DataFrame({"id": rng.permutation(ids)[:30_000]})
    aligned = align(tmp_path, scores, rows, bucket_rows=bucket_rows, chunks=3)
    expected = rows.assign(id=rows["id"].astype(str)).merge(scores, on="id", how="left")
    matched = aligned.read(MATCHED, 0, len(rows))
    np.testing.assert_array_equal(matched, expected["score"].notna())
    assert matched.sum() > 20_000
    np.testing.assert_array_equal(
        aligned.read("score", 0, len(rows))[matched], expected["score"][matched]
    )
    np.testing.assert_array_equal(
        aligned.read("held", 0, len(rows))[matched], expected["held"][matched]
    )
    # Only the aligned columns stay on disk; the buckets are gone.
    assert sorted(p.name for p in (tmp_path / "aligned").iterdir()) == [
        "_matched.bin", "held.bin", "score.bin"
    ]  # fmt: skip

    join = ScoreJoin(aligned, ["score", "held"], fill={"held": False})
    out = join(10_000, rows.iloc[10_000:10_500])
    window = expected.iloc[10_000:10_500]
    np.testing.assert_array_equal(out["score"], window["score"])
    np.testing.assert_array_equal(out["held"], window["held"].fillna(False).astype(bool))
    with pytest.raises(ValueError, match="outside the 30000 aligned rows"):
        join(29_900, rows.iloc[:200])


def test_keys_sharing_the_first_hash_are_told_apart_by_the_second():
    high = np.array([3, 7, 7, 7, 9], dtype=np.uint64)
    low = np.array([10, 10, 20, 30, 10], dtype=np.uint64)
    keyed = KeyedScores("id", high, low, {"score": np.array([0.0, 0.1, 0.2, 0.3, 0.9])})
    query_high = np.array([7, 7, 7, 7, 3, 9, 9, 1, 10], dtype=np.uint64)
    query_low = np.array([10, 20, 30, 25, 10, 10, 11, 10, 10], dtype=np.uint64)
    position = keyed.find(query_high, query_low)
    scores = np.where(position >= 0, keyed.columns["score"][position], np.nan)
    np.testing.assert_array_equal(scores, [0.1, 0.2, 0.3, np.nan, 0.0, 0.9, np.nan, np.nan, np.nan])
    assert keyed.repeats == 0
    with pytest.raises(ValueError, match="not sorted"):
        KeyedScores("id", high, low[::-1].copy(), {})


def test_rows_sharing_the_first_hash_are_ordered_by_the_second():
    high = np.array([9, 7, 3, 7, 7, 9], dtype=np.uint64)
    low = np.array([5, 30, 1, 10, 20, 4], dtype=np.uint64)
    np.testing.assert_array_equal(_hash_order(high, low), np.lexsort((low, high)))


def test_a_key_scored_twice_is_named_and_a_key_twice_among_the_rows_refused(tmp_path):
    scores = pd.DataFrame({"id": ["a", "b", "c", "b", "d"], "score": np.arange(5.0), "held": True})
    rows = pd.DataFrame({"id": ["a", "c"]})
    with pytest.raises(ValueError, match=r"the scores hold id values more than once, e\.g\. 'b'"):
        align(tmp_path / "1", scores, rows, bucket_rows=2, chunks=2)
    rows = pd.DataFrame({"id": ["a", "c", "a"]})
    with pytest.raises(ValueError, match="the batch holds id values more than once"):
        align(tmp_path / "2", scores.drop_duplicates("id"), rows, bucket_rows=2)


def test_the_drift_jobs_predictions_are_checked_by_file(tmp_path):
    from include.monitoring.job import MonitoringJobError, align_predictions

    paths = [tmp_path / "part-0.parquet", tmp_path / "part-1.parquet"]
    pd.DataFrame({"id": [1, 2, 3], "score": [0.1, 0.2, 0.3]}).to_parquet(paths[0])
    pd.DataFrame({"id": [4, 2], "score": [0.4, 0.5]}).to_parquet(paths[1])
    rows = frame_source(pd.DataFrame({"id": ["3", "9"]}))
    with pytest.raises(
        MonitoringJobError, match=r"day 7 hold id values more than once, e\.g\. '2'"
    ):
        align_predictions(paths, rows, "id", "score", tmp_path / "a", what="day 7")
    aligned = align_predictions(paths[:1], rows, "id", "score", tmp_path / "b", what="day 7")
    assert aligned.read("score", 0, 1)[0] == 0.3 and not aligned.read(MATCHED, 1, 1)[0]
    with pytest.raises(MonitoringJobError, match=r"part-0.parquet lacks the column\(s\) \['p'\]"):
        align_predictions(paths, rows, "id", "p", tmp_path / "c", what="day 7")
