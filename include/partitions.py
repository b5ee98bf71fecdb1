"""Which partition (``ds``) a run works on: its ``ds`` param, the Asset event that triggered it,
or the newest committed partition.

The DAGs after ingestion are scheduled on Assets, and an asset-triggered run has no logical date
to derive a day from: the upstream task puts the partition in its Asset event's ``extra``
(``{"ds": "YYYY-MM-DD"}``), and the downstream task reads it back here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

_PARTITION = re.compile(r"/ds=(\d{4}-\d{2}-\d{2})/")


class PartitionError(ValueError):
    """No partition could be determined, or a given one is malformed; the message says which."""


def check_partition_date(ds: Any, what: str = "ds") -> str:
    """``ds`` as YYYY-MM-DD, or a :class:`PartitionError` naming ``what``."""
    try:
        return date.fromisoformat(str(ds)).isoformat()
    except ValueError:
        raise PartitionError(f"{what}={ds!r} is not a date (YYYY-MM-DD)") from None


def partition_from_asset_events(
    triggering_asset_events: Mapping[Any, Iterable[Any]] | None,
) -> str | None:
    """The ``ds`` extra of the newest triggering Asset event that has one."""
    newest = None
    for events in (triggering_asset_events or {}).values():
        for event in events:
            extra = getattr(event, "extra", None) or {}
            if extra.get("ds") and (newest is None or event.timestamp > newest.timestamp):
                newest = event
    if newest is None:
        return None
    return check_partition_date(newest.extra["ds"], "the triggering asset event's ds extra")


def latest_committed_partition(dataset_uri: str) -> str | None:
    """The newest ``ds=`` partition under ``dataset_uri`` whose ``_manifest.json`` is written."""
    from include.storage import storage_for

    days = {
        match.group(1)
        for uri in storage_for(dataset_uri).list_uris(dataset_uri)
        if uri.endswith("/_manifest.json") and (match := _PARTITION.search(uri))
    }
    return max(days) if days else None


def resolve_partition(
    param_ds: Any, triggering_asset_events: Mapping[Any, Iterable[Any]] | None, dataset_uri: str
) -> str:
    """The ``ds`` param if set, else the triggering event's ``ds``, else the newest partition."""
    if param_ds:
        return check_partition_date(param_ds, "params.ds")
    from_event = partition_from_asset_events(triggering_asset_events)
    if from_event:
        return from_event
    latest = latest_committed_partition(dataset_uri)
    if latest is None:
        raise PartitionError(
            f"no partition to work on: no ds param, no ds in the triggering asset events, and no "
            f"committed partition under {dataset_uri}"
        )
    return latest
