"""Which partition (``ds``) a run works on, and which landing days asset events name.

The per-day stages after ingestion are scheduled per partition of an Asset (Airflow's
partitioned assets, ``PartitionedAssetTimetable``): the upstream task emits its Asset event with
the day as partition key, and the scheduler makes one run per day key, with
``dag_run.partition_key`` set (:func:`run_partition`). Several days landing at once give several
runs, never one run that picks a day.

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
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote_plus


class PartitionError(ValueError):
    """No partition could be determined, or a given one is malformed; the message says which."""


def check_partition_date(ds: Any, what: str = "ds") -> str:
    """``ds`` as YYYY-MM-DD, or a :class:`PartitionError` naming ``what``."""
    try:
        return date.fromisoformat(str(ds)).isoformat()
    except ValueError:
        raise PartitionError(f"{what}={ds!r} is not a date (YYYY-MM-DD)") from None


def run_partition(param_ds: Any, dag_run: Any) -> str:
    """The day a per-day run works on: its ``ds`` param (a run by hand or through the REST
    API), else its partition key (a run the scheduler made for one partition of an Asset, or
    one triggered with a partition key). Never "the newest" day: a run that names no day fails.
    """
    if param_ds:
        return check_partition_date(param_ds, "params.ds")
    key = getattr(dag_run, "partition_key", None)
    if key:
        return check_partition_date(key, "the run's partition key")
    raise PartitionError(
        "the run names no day: set the ds param, or trigger it with a partition key (the "
        "scheduler gives one to every run it makes for a day's asset event)"
    )


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
    # The newest event naming each day, when Airflow recorded it: an event older than the day's
    # last ingest was already served by it (include/landing.py plan_ingestion).
    named_at: dict[str, datetime] = field(default_factory=dict)


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
    named_at: dict[str, datetime] = {}
    rejected: list[dict[str, Any]] = []
    for asset, events in (triggering_asset_events or {}).items():
        for event in events:
            try:
                event_days = _event_days(event, dataset)
            except PartitionError as error:
                rejected.append(
                    {
                        "asset": str(getattr(asset, "name", asset)),
                        "event": _event_identity(event),
                        "reason": str(error),
                    }
                )
                continue
            at = _event_time(event)
            for day in event_days:
                named_at[day] = max(named_at.get(day, at), at)
    return LandingDays(sorted(named_at), rejected, named_at)


def _event_time(event: Any) -> datetime:
    """When Airflow recorded ``event`` (UTC); an event without a time counts as the newest."""
    stamp = getattr(event, "timestamp", None)
    if isinstance(stamp, str):
        stamp = datetime.fromisoformat(stamp)
    if not isinstance(stamp, datetime):
        return datetime.max.replace(tzinfo=UTC)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


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
