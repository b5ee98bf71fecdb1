"""The join of streamed rows with a day's scores by key hash: the same rows as a join by the
key's text, first-hash collisions resolved, a key scored twice named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.monitoring.score_join import KeyedScores, ScoreJoin


def test_positions_agree_with_a_join_on_the_keys_text():
    rng = np.random.default_rng(3)
    ids = rng.permutation(50_000)
    scores = pd.DataFrame({"id": ids[:40_000].astype(str), "score": rng.random(40_000)})
    keyed = KeyedScores.from_chunks("id", [scores.iloc[:15_000], scores.iloc[15_000:]], ["score"])
    # The batch's key column is read as integers: it meets the scores' text as it always did.
    batch = pd.DataFrame({"id": rng.permutation(ids)[:30_000]})
    position = keyed.positions(batch["id"])
    expected = batch.assign(id=batch["id"].astype(str)).merge(scores, on="id", how="left")
    found = position >= 0
    assert found.sum() == expected["score"].notna().sum() > 20_000
    np.testing.assert_array_equal(keyed.columns["score"][position[found]], expected["score"][found])
    assert keyed.repeats == 0 and len(keyed) == 40_000


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


def test_a_key_scored_twice_is_counted_and_named():
    frame = pd.DataFrame({"id": ["a", "b", "c", "b", "d", "b"], "score": np.arange(6.0)})
    keyed = KeyedScores.from_frame(frame, "id", ["score"])
    assert keyed.repeats == 2
    assert keyed.repeated_key([frame.iloc[:2], frame.iloc[2:]]) == "b"
    with pytest.raises(ValueError, match="the scores hold id values more than once"):
        ScoreJoin(keyed, ["score"])


def test_the_join_fills_rows_without_a_score_and_refuses_a_key_seen_twice():
    scores = pd.DataFrame({"id": ["a", "b", "c"], "score": [0.1, 0.2, 0.3], "held": [1, 0, 1]})
    join = ScoreJoin(
        KeyedScores.from_frame(scores, "id", ["score", "held"]), ["score", "held"], {"held": 0}
    )
    out = join(0, pd.DataFrame({"id": ["c", "x", "a"]}))
    np.testing.assert_array_equal(out["score"], [0.3, np.nan, 0.1])
    np.testing.assert_array_equal(out["held"], [1, 0, 1])
    with pytest.raises(ValueError, match="the batch holds id values more than once"):
        join(3, pd.DataFrame({"id": ["a"]}))
    join(0, pd.DataFrame({"id": ["a"]}))  # a new pass over the rows starts afresh


def test_the_drift_jobs_predictions_name_a_key_scored_twice_across_files(tmp_path):
    from include.monitoring.job import MonitoringJobError, read_keyed_scores

    paths = [tmp_path / "part-0.parquet", tmp_path / "part-1.parquet"]
    pd.DataFrame({"id": [1, 2, 3], "score": [0.1, 0.2, 0.3]}).to_parquet(paths[0])
    pd.DataFrame({"id": [4, 2], "score": [0.4, 0.5]}).to_parquet(paths[1])
    with pytest.raises(
        MonitoringJobError, match=r"day 7 hold id values more than once, e\.g\. '2' \(1 repeats\)"
    ):
        read_keyed_scores(paths, "id", "score", what="day 7")
    keyed = read_keyed_scores(paths[:1], "id", "score", what="day 7")
    assert keyed.columns["score"][keyed.positions(pd.Series(["3", "9"]))[0]] == 0.3
    with pytest.raises(MonitoringJobError, match=r"part-0.parquet lacks the column\(s\) \['p'\]"):
        read_keyed_scores(paths, "id", "p", what="day 7")


def test_rows_sharing_the_first_hash_are_ordered_by_the_second():
    from include.monitoring.score_join import _hash_order

    high = np.array([9, 7, 3, 7, 7, 9], dtype=np.uint64)
    low = np.array([5, 30, 1, 10, 20, 4], dtype=np.uint64)
    order = _hash_order(high, low)
    np.testing.assert_array_equal(order, np.lexsort((low, high)))
