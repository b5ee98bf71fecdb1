"""Which day a per-day run works on: its ds param, else its partition key, never a guess."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from include.partitions import PartitionError, run_partition


def run(partition_key: str | None):
    return SimpleNamespace(partition_key=partition_key)


def test_the_param_wins_over_the_partition_key():
    assert run_partition("2026-01-05", run("2026-01-06")) == "2026-01-05"
    assert run_partition(None, run("2026-01-06")) == "2026-01-06"
    assert run_partition("", run("2026-01-06")) == "2026-01-06"


def test_a_run_that_names_no_day_fails_instead_of_picking_one():
    with pytest.raises(PartitionError, match="names no day: set the ds param"):
        run_partition(None, run(None))


def test_malformed_days_are_named_with_where_they_came_from():
    with pytest.raises(PartitionError, match=r"params\.ds='5 Jan' is not a date"):
        run_partition("5 Jan", run(None))
    with pytest.raises(PartitionError, match="the run's partition key='2026-13-01'"):
        run_partition(None, run("2026-13-01"))
