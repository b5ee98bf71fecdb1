"""What has landed: the days of a dataset's landing zone, whether each is complete, and which
still need ingesting.

A landing day is complete by the rule its dataset spec names (``landing.complete_when``, one of):

- ``files: N`` — once N data files have landed (the default is 1: a producer that delivers a
  day in one file);
- ``marker: _SUCCESS`` — once the producer has written that marker file, after the day's last
  data file (the Hadoop/Spark convention);
- ``cutoff_hours: H`` — H hours after the day ends (UTC), whatever has landed by then.

Only complete days are ingested, so a day delivered in several files flows downstream once, whole.
A file that lands after the day was complete makes the day differ from what its curated manifest
says was ingested, and the next ingestion run ingests it again (idempotently: the same files give
the same bytes).

An ingestion run ingests the days its landing events (or its ``ds`` param) name, plus every
complete day of the last ``landing.sweep_days`` that was never ingested or has changed since:
a lost or coalesced landing event delays a day until the next run, and never drops it. An event
that an earlier run's sweep already served (the day's last ingest is newer than the event and
took the same files) is not served twice; an event after the last ingest (the same file dropped
again) re-runs the day. Only listings and the small curated manifests are read here, never a
data file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from include.config import Settings
from include.partitions import PartitionError, check_partition_date

_DAY_FOLDER = re.compile(r"/ds=([^/]+)/([^/]+)$")
MANIFEST_NAME = "_manifest.json"


@dataclass(frozen=True)
class LandingDay:
    """One ``landing/<dataset>/ds=<key>/`` folder as it stands now."""

    key: str  # the folder's day key as spelled (``problem`` says when it is not a date)
    files: tuple[tuple[str, int], ...] = ()  # data files: (name, size in bytes)
    markers: tuple[str, ...] = ()  # names starting with "_" or "." (markers, temp files)
    problem: str = ""  # why the key cannot be ingested (not a date)
    waiting_for: str = ""  # why the day is not complete yet; "" when complete

    @property
    def complete(self) -> bool:
        return not self.problem and not self.waiting_for


@dataclass(frozen=True)
class IngestPlan:
    """The days one ingestion run ingests, and the days it leaves, each with the reason."""

    days: list[str]
    # {day: reason} for named days that are not ingested now (incomplete, no files).
    waiting: dict[str, str] = field(default_factory=dict)
    # {day: reason} for named days whose event an earlier ingest already served.
    served: dict[str, str] = field(default_factory=dict)
    # Days the sweep found (complete, never ingested or changed since), not named by any event.
    swept: list[str] = field(default_factory=list)


def landing_root(settings: Settings, dataset: str) -> str:
    return f"{settings.zone_uri('landing')}/{dataset}"


def completeness(rule: tuple[str, object], key: str, data_files: int, markers: Iterable[str],
                 now: datetime) -> str:  # fmt: skip
    """Why day ``key`` is not complete under ``rule`` (the spec's ``landing_complete_when``);
    ``""`` when it is."""
    kind, value = rule
    if data_files == 0:
        return "no data file has landed"
    if kind == "files" and data_files < int(value):
        return f"{data_files} of {value} expected files have landed (landing.complete_when.files)"
    if kind == "marker" and value not in set(markers):
        return f"the producer's completion marker {value} has not landed"
    if kind == "cutoff_hours":
        closes = datetime.combine(date.fromisoformat(key), datetime.min.time(), UTC) + timedelta(
            days=1, hours=float(value)
        )
        if now < closes:
            return f"the day closes at its cut-off, {closes.isoformat()} ({value} h after it ends)"
    return ""


def landing_days(
    settings: Settings, dataset: str, rule: tuple[str, object], now: datetime
) -> dict[str, LandingDay]:
    """Every ``ds=`` folder under ``landing/<dataset>/`` by key, in one listing."""
    from include.storage import storage_for

    root = landing_root(settings, dataset)
    found: dict[str, tuple[list, list]] = {}
    for uri, size, _modified in storage_for(root).list_objects(root):
        match = _DAY_FOLDER.search(uri[len(root) :])
        if match is None:
            continue  # a file outside any ds= folder is not a day's
        key, name = match.groups()
        files, markers = found.setdefault(key, ([], []))
        if name.startswith(("_", ".")):
            markers.append(name)
        else:
            files.append((name, size))
    return {
        key: day_state(key, files, markers, rule, now)
        for key, (files, markers) in sorted(found.items())
    }


def day_state(key: str, files: list, markers: list, rule: tuple[str, object],
              now: datetime) -> LandingDay:  # fmt: skip
    """The :class:`LandingDay` of one folder's listing."""
    try:
        check_partition_date(key, f"landing folder ds={key}")
    except PartitionError as error:
        return LandingDay(key, tuple(files), tuple(markers), problem=str(error))
    if date.fromisoformat(key).isoformat() != key:
        return LandingDay(key, tuple(files), tuple(markers), problem=f"ds={key} is not YYYY-MM-DD")
    waiting = completeness(rule, key, len(files), markers, now)
    return LandingDay(key, tuple(sorted(files)), tuple(sorted(markers)), waiting_for=waiting)


def last_ingest(
    settings: Settings, dataset: str, ds: str
) -> tuple[set[tuple[str, int]], datetime] | None:
    """``(name, size)`` of the landing files the curated manifest of ``ds`` says were ingested,
    and when that manifest was committed; None when the day was never ingested."""
    from include.storage import storage_for

    folder = f"{settings.zone_uri('curated')}/{dataset}/ds={ds}"
    uri = f"{folder}/{MANIFEST_NAME}"
    committed = [item for item in storage_for(folder).list_objects(folder) if item.uri == uri]
    if not committed:
        return None
    manifest = json.loads(storage_for(uri).read_bytes(uri))
    inputs = {(item["name"], int(item["size_bytes"])) for item in manifest.get("inputs", [])}
    return inputs, committed[0].modified


def needs_ingest(
    settings: Settings, dataset: str, day: LandingDay, asked_at: datetime | None = None
) -> bool:
    """Whether complete ``day`` should be ingested: never ingested, its files changed since, or
    ``asked_at`` (a landing event's time) is after its last ingest."""
    last = last_ingest(settings, dataset, day.key)
    if last is None:
        return True
    inputs, committed_at = last
    return inputs != set(day.files) or (asked_at is not None and asked_at > committed_at)


def plan_ingestion(
    settings: Settings,
    dataset: str,
    named: Mapping[str, datetime | None],
    *,
    rule: tuple[str, object],
    sweep_days: int,
    sweep: bool = True,
    now: datetime | None = None,
) -> IngestPlan:
    """The days to ingest: the complete ``named`` days, then (with ``sweep``) every complete
    day of the sweep window that was never ingested or whose landing files changed since.

    ``named`` maps a day to why it is named: None, a person asked for it (always ingested);
    a time, the newest landing event naming it (ingested unless the day's last ingest came
    after that event with the same files: an earlier run's sweep served it).
    """
    now = now or datetime.now(UTC)
    days = landing_days(settings, dataset, rule, now)
    plan: dict[str, None] = {}
    waiting: dict[str, str] = {}
    served: dict[str, str] = {}
    for ds, asked_at in named.items():
        day = days.get(ds)
        if day is None:
            waiting[ds] = "no data file has landed"
        elif not day.complete:
            waiting[ds] = day.problem or day.waiting_for
        elif asked_at is None or needs_ingest(settings, dataset, day, asked_at):
            plan[ds] = None
        else:
            served[ds] = "ingested after its landing event, with the same files"
    valid = [key for key, day in days.items() if not day.problem]
    swept = []
    if valid and sweep:
        oldest = (date.fromisoformat(max(valid)) - timedelta(days=sweep_days - 1)).isoformat()
        for key in valid:
            day = days[key]
            if key in plan or key in named or key < oldest or not day.complete:
                continue
            if needs_ingest(settings, dataset, day):
                swept.append(key)
    return IngestPlan(sorted({*plan, *swept}), waiting, served, swept)
