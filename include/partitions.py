"""Which partition (``ds``) a run works on: its ``ds`` param, the Asset event that triggered it,
or the newest committed partition.

The DAGs after ingestion are scheduled on Assets, and an asset-triggered run has no logical date
to derive a day from: the upstream task puts the partition in its Asset event's ``extra``
(``{"ds": "YYYY-MM-DD"}``), and the downstream task reads it back here.

Ingestion is triggered by files landing (:func:`landing_partitions_from_asset_events`). An
Asset watcher's trigger event becomes an Asset event with ``extra = {"from_trigger": True,
"payload": <the trigger event's payload>}`` (Airflow 3.0's ``Trigger.submit_event``): the local
inbox trigger's payload names the day (``{"ds": …}``); the Amazon provider's
``SqsSensorTrigger`` payload is ``{"message_batch": [<SQS message>, …]}``, each message body an
S3 event notification whose object keys hold the day (``…/landing/<dataset>/ds=D/<file>``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import unquote_plus

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


def s3_notification_keys(message_body: str | Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(bucket, key)`` of every object-created record of an S3 event notification.

    Accepts the notification itself (S3 → SQS) or an SNS envelope around it (S3 → SNS → SQS
    without raw delivery). Keys come URL-encoded in notifications (``ds%3D2026-01-07``, ``+``
    for a space) and are returned decoded. ``s3:TestEvent`` and removal records give nothing.

    :raises PartitionError: the body is not JSON.
    """
    body = message_body
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as error:
            raise PartitionError(
                f"an SQS message body is not JSON: {error}: {body[:200]!r}"
            ) from None
    if isinstance(body, Mapping) and body.get("Type") == "Notification" and "Message" in body:
        return s3_notification_keys(body["Message"])
    if not isinstance(body, Mapping):
        return []
    keys = []
    for record in body.get("Records") or []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name", "")
        key = (s3.get("object") or {}).get("key")
        if key:
            keys.append((bucket, unquote_plus(key)))
    return keys


def landing_partition_of_key(key: str, dataset: str) -> str | None:
    """The ``ds`` of a landing object key ``[<prefix>/]landing/<dataset>/ds=D/<file>``; None for
    another dataset's or another zone's key (the queue may carry the whole lake's notifications)."""
    match = re.search(rf"(?:^|/)landing/{re.escape(dataset)}/ds=([^/]+)/[^/]+$", key)
    if match is None:
        return None
    return check_partition_date(match.group(1), f"the day of landing object {key}")


@dataclass(frozen=True)
class LandingDays:
    """The landing days asset events name, and the events that name no valid day."""

    days: list[str]
    # One entry per refused event: {"asset", "event", "reason"}, JSON-ready.
    rejected: list[dict[str, Any]] = field(default_factory=list)


def landing_partitions_from_asset_events(
    triggering_asset_events: Mapping[Any, Iterable[Any]] | None, dataset: str
) -> LandingDays:
    """Every landing day the triggering Asset events name, sorted, each once.

    One run may consume several events (the scheduler hands a run every event since the
    previous one), and one SQS batch may hold several days: no day is dropped. Reads a plain
    ``{"ds"}`` extra (an event posted through the REST API), the local inbox trigger's payload
    and S3 notifications inside an ``SqsSensorTrigger`` payload.

    An event that names a malformed day is refused on its own (``rejected`` says which and why)
    and takes none of its days along: the other events' days still go through.
    """
    days: set[str] = set()
    rejected: list[dict[str, Any]] = []
    for asset, events in (triggering_asset_events or {}).items():
        for event in events:
            try:
                days.update(_event_days(event, dataset))
            except PartitionError as error:
                rejected.append(
                    {
                        "asset": str(getattr(asset, "name", asset)),
                        "event": _event_identity(event),
                        "reason": str(error),
                    }
                )
    return LandingDays(sorted(days), rejected)


def _event_days(event: Any, dataset: str) -> set[str]:
    """The landing days one asset event names; PartitionError when one is malformed."""
    days = set()
    extra = getattr(event, "extra", None) or {}
    if extra.get("ds"):
        days.add(check_partition_date(extra["ds"], "the triggering asset event's ds extra"))
    payload = extra.get("payload")
    if not isinstance(payload, Mapping):
        return days
    if payload.get("ds") and payload.get("dataset", dataset) == dataset:
        days.add(check_partition_date(payload["ds"], "the landing watcher's ds"))
    for message in payload.get("message_batch") or []:
        body = message.get("Body", "") if isinstance(message, Mapping) else message
        for _bucket, key in s3_notification_keys(body):
            if day := landing_partition_of_key(key, dataset):
                days.add(day)
    return days


def _event_identity(event: Any) -> dict[str, Any]:
    """What names an asset event in a report: its id, source run and time, and its extra
    (cut to 2,000 characters: a refused event may be arbitrarily large)."""
    extra = getattr(event, "extra", None)
    return {
        "id": getattr(event, "id", None),
        "source_run_id": getattr(event, "source_run_id", None),
        "timestamp": str(getattr(event, "timestamp", "") or "") or None,
        "extra": json.dumps(extra, default=str, sort_keys=True)[:2000],
    }
