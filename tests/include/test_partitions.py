"""Which partition a run works on: the ds param, the triggering Asset event, the newest one."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from include.partitions import (
    PartitionError,
    latest_committed_partition,
    partition_from_asset_events,
    resolve_partition,
)


def event(ds: str | None, minute: int):
    return SimpleNamespace(
        extra={"ds": ds} if ds else {}, timestamp=datetime(2026, 1, 9, 0, minute, tzinfo=UTC)
    )


def test_the_newest_event_with_a_ds_wins():
    events = {
        "churn_features": [event("2026-01-07", 1), event("2026-01-08", 5)],
        "churn_drift": [event(None, 9)],
    }
    assert partition_from_asset_events(events) == "2026-01-08"
    assert partition_from_asset_events({}) is None


def test_a_malformed_event_ds_is_named():
    with pytest.raises(PartitionError, match="triggering asset event's ds extra='2026-13-01'"):
        partition_from_asset_events({"a": [event("2026-13-01", 1)]})


def test_param_then_event_then_newest_committed_partition(tmp_path):
    dataset = tmp_path / "features" / "churn"
    for ds, committed in (("2026-01-06", True), ("2026-01-07", True), ("2026-01-08", False)):
        (dataset / f"ds={ds}" / "split=train").mkdir(parents=True)
        if committed:
            (dataset / f"ds={ds}" / "_manifest.json").write_text("{}")
    uri = dataset.as_uri()
    # 2026-01-08 has no manifest: an uncommitted (or half-written) partition is never picked.
    assert latest_committed_partition(uri) == "2026-01-07"
    assert resolve_partition(None, {}, uri) == "2026-01-07"
    assert resolve_partition(None, {"a": [event("2026-01-06", 1)]}, uri) == "2026-01-06"
    assert resolve_partition("2026-01-05", {"a": [event("2026-01-06", 1)]}, uri) == "2026-01-05"
    with pytest.raises(PartitionError, match=r"params\.ds='5 Jan'"):
        resolve_partition("5 Jan", {}, uri)
    with pytest.raises(PartitionError, match="no committed partition under"):
        resolve_partition(None, {}, (tmp_path / "empty").as_uri())
