"""LandingInboxTrigger: the local target's file-landing event, for an Asset watcher.

A producer (a person, a test, ``make demo``) drops raw files into the landing inbox of a dataset,
``<inbox>/<dataset>/``; the trigger runs in the triggerer, and for each *complete* file it first
moves the file into the lake's landing zone, ``<lake>/landing/<dataset>/ds=<D>/<file>`` (the
layout ``spark_jobs/ingest.py`` reads), and only then fires an event, one per day that got files:
``{"dataset", "ds", "files": [{"uri", "size", "sha256", "inbox_path"}]}``. Airflow 3 stores that
payload in the Asset event's extra (``extra["payload"]``), and the ingestion run reads the day
from it (:func:`include.partitions.landing_partitions_from_asset_events`).

The inbox naming convention (``<inbox>/<dataset>/`` is the root of the relative path):

- ``ds=YYYY-MM-DD/<file>`` — the day is the folder (what ``python -m include.datagen.churn
  --out <inbox>`` writes, and the landing zone's own layout), at any depth;
- ``<anything>YYYY-MM-DD<anything>.<ext>`` — otherwise the first ISO date in the file name,
  e.g. ``crm_export_2026-01-07.csv.gz``.

A file is complete when its size and modification time are the same at two consecutive looks,
``poll_interval`` seconds apart; names starting with ``.`` or ``_`` and names ending in
``.tmp``/``.part`` are in flight and never taken (write ``x.csv.tmp``, then rename to ``x.csv``).
Nothing is ever deleted unless the same bytes are in the lake: a file whose day cannot be told,
whose type the ingest job does not read, or whose name is already taken in the lake by other
bytes is *parked* under ``<inbox>/<dataset>/_parked/<reason>/`` with a warning naming it.

The move is idempotent, so a triggerer restart at any point neither loses nor duplicates a file:
the bytes are copied to a hidden temporary name in the day's folder (the ingest job skips
dot-files), renamed into place, and only then removed from the inbox; a file found in the inbox
whose checksum equals the landed file of the same name is a move that was interrupted after the
copy — the inbox copy is dropped and the day's event fired again (re-ingesting a day is
idempotent too).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

# What spark_jobs/ingest.py reads (its LANDING_SUFFIXES; a test keeps the two in step).
LANDING_SUFFIXES = (
    ".csv",
    ".csv.gz",
    ".jsonl",
    ".jsonl.gz",
    ".json",
    ".json.gz",
    ".ndjson",
    ".ndjson.gz",
)
# Names a producer is still writing, by the usual conventions.
IN_FLIGHT_SUFFIXES = (".tmp", ".part", ".crdownload")
PARKED_DIR = "_parked"
_DAY_FOLDER = re.compile(r"^ds=(.+)$")
_DAY_IN_NAME = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})(?!\d)")
_COPY_CHUNK = 1024 * 1024


class LandingDayError(ValueError):
    """The day of an inbox file cannot be told from its folder or name."""


def landing_day(relative_path: str) -> str:
    """The ``ds`` of an inbox file from its path relative to ``<inbox>/<dataset>/``.

    :raises LandingDayError: no ``ds=`` folder and no date in the name, or not a real date.
    """
    *folders, name = relative_path.split("/")
    candidate = None
    for folder in reversed(folders):
        if match := _DAY_FOLDER.match(folder):
            candidate = match.group(1)
            break
    if candidate is None and (match := _DAY_IN_NAME.search(name)):
        candidate = match.group(1)
    if candidate is None:
        raise LandingDayError(
            f"{relative_path}: no day in its path; put it in a ds=YYYY-MM-DD folder or put "
            "the date (YYYY-MM-DD) in its name"
        )
    try:
        return date.fromisoformat(candidate).isoformat()
    except ValueError:
        raise LandingDayError(
            f"{relative_path}: {candidate!r} is not a date (YYYY-MM-DD)"
        ) from None


def _in_flight(relative_path: str) -> bool:
    parts = relative_path.split("/")
    return any(part.startswith((".", "_")) for part in parts) or parts[-1].endswith(
        IN_FLIGHT_SUFFIXES
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class LandedFile:
    """One inbox file now in the landing zone: what the event carries."""

    ds: str
    uri: str
    size: int
    sha256: str
    inbox_path: str

    def as_event_file(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "size": self.size,
            "sha256": self.sha256,
            "inbox_path": self.inbox_path,
        }


class LandingInbox:
    """The inbox of one dataset and the landing zone its files move to (no Airflow, no async)."""

    def __init__(self, inbox_dir: str | Path, landing_dir: str | Path, log) -> None:
        self.inbox_dir = Path(inbox_dir)
        self.landing_dir = Path(landing_dir)
        self.log = log
        # (size, mtime_ns) of every candidate at the previous look.
        self._last_seen: dict[str, tuple[int, int]] = {}

    def stable_files(self) -> list[str]:
        """Inbox files (relative paths) unchanged since the previous look; remembers this look."""
        seen: dict[str, tuple[int, int]] = {}
        if self.inbox_dir.is_dir():
            for root, dirs, files in os.walk(self.inbox_dir):
                # Parked, hidden and in-flight folders are never entered.
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                for name in files:
                    path = Path(root, name)
                    relative = path.relative_to(self.inbox_dir).as_posix()
                    if _in_flight(relative):
                        continue
                    try:
                        stat = path.stat()
                    except FileNotFoundError:  # renamed or removed since the listing
                        continue
                    seen[relative] = (stat.st_size, stat.st_mtime_ns)
        stable = sorted(rel for rel, facts in seen.items() if self._last_seen.get(rel) == facts)
        self._last_seen = seen
        return stable

    def park(self, relative_path: str, reason: str, why: str) -> Path:
        """Move an inbox file aside under ``_parked/<reason>/`` (never over another file)."""
        target = self.inbox_dir / PARKED_DIR / reason / relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        stem, counter = target, 1
        while target.exists():
            target = stem.with_name(f"{stem.name}.{counter}")
            counter += 1
        os.replace(self.inbox_dir / relative_path, target)
        self.log.warning("landing inbox: parked %s in %s: %s", relative_path, target.parent, why)
        return target

    def land(self, relative_path: str) -> LandedFile | None:
        """Move one complete inbox file into ``<landing>/ds=<D>/``; None if it was parked."""
        source = self.inbox_dir / relative_path
        try:
            ds = landing_day(relative_path)
        except LandingDayError as error:
            self.park(relative_path, "no-day", str(error))
            return None
        name = source.name
        if not name.lower().endswith(LANDING_SUFFIXES):
            self.park(
                relative_path,
                "unsupported-type",
                f"the ingest job reads only {', '.join(LANDING_SUFFIXES)} files",
            )
            return None
        day_dir = self.landing_dir / f"ds={ds}"
        target = day_dir / name
        sha256 = _sha256(source)
        size = source.stat().st_size
        if target.exists():
            landed_sha256 = _sha256(target)
            if landed_sha256 != sha256:
                self.park(
                    relative_path,
                    "conflict",
                    f"{target} already holds other bytes (sha256 {landed_sha256}, this file "
                    f"{sha256}); rename the file or remove the landed one, then drop it again",
                )
                return None
            # The same bytes are in the lake already: an earlier move stopped after its copy.
            source.unlink()
            self.log.info("landing inbox: %s was already landed as %s", relative_path, target)
        else:
            day_dir.mkdir(parents=True, exist_ok=True)
            # Hidden while incomplete: the ingest job skips dot-files.
            partial = day_dir / f".{name}.landing.tmp"
            with open(source, "rb") as reader, open(partial, "wb") as writer:
                shutil.copyfileobj(reader, writer, _COPY_CHUNK)
                writer.flush()
                os.fsync(writer.fileno())
            os.replace(partial, target)
            source.unlink()
            self.log.info("landing inbox: moved %s to %s (%d bytes)", relative_path, target, size)
        # Spelled like every lake URI (f"{lake_root}/landing/…"); Path.as_uri() would quote "=".
        return LandedFile(ds, f"file://{target.as_posix()}", size, sha256, relative_path)

    def land_stable_files(self) -> dict[str, list[LandedFile]]:
        """One look: every complete file landed (or parked), grouped by day."""
        by_day: dict[str, list[LandedFile]] = {}
        for relative in self.stable_files():
            try:
                landed = self.land(relative)
            except FileNotFoundError:  # taken away by someone else between two steps
                continue
            if landed is not None:
                by_day.setdefault(landed.ds, []).append(landed)
        return by_day


class LandingInboxTrigger(BaseEventTrigger):
    """
    Watch a dataset's local landing inbox; land each complete file, then fire one event per day.

    For an ``AssetWatcher`` on the dataset's landing Asset: each event becomes an Asset event
    whose ``extra["payload"]`` is ``{"dataset", "ds", "files": [{"uri", "size", "sha256",
    "inbox_path"}]}``. Runs until the triggerer stops it; the filesystem work runs in a thread so
    the triggerer's event loop is never blocked by a large copy or checksum.

    :param dataset: the dataset whose files the inbox receives, e.g. ``"churn"``.
    :param inbox_dir: the dataset's inbox folder (``<inbox>/<dataset>``), an absolute path.
    :param landing_dir: the dataset's landing-zone folder (``<lake>/landing/<dataset>``).
    :param poll_interval: seconds between two looks at the inbox.
    """

    def __init__(
        self, *, dataset: str, inbox_dir: str, landing_dir: str, poll_interval: float = 2.0
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.inbox_dir = inbox_dir
        self.landing_dir = landing_dir
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "dataset": self.dataset,
                "inbox_dir": self.inbox_dir,
                "landing_dir": self.landing_dir,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        inbox = LandingInbox(self.inbox_dir, self.landing_dir, self.log)
        self.log.info("watching %s for %s landing files", self.inbox_dir, self.dataset)
        while True:
            landed_by_day = await asyncio.to_thread(inbox.land_stable_files)
            for ds, files in sorted(landed_by_day.items()):
                yield TriggerEvent(
                    {
                        "dataset": self.dataset,
                        "ds": ds,
                        "files": [landed.as_event_file() for landed in files],
                    }
                )
            await asyncio.sleep(self.poll_interval)
