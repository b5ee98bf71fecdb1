"""LandingInboxTrigger on real files: the day from the path, complete files only, the move into
the landing zone before the event, parking instead of deleting, and restarts that neither lose
nor duplicate a file."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import importlib
import logging
import os

import pytest

from headrace_operators.landing_triggers import (
    LANDING_SUFFIXES,
    LandingDayError,
    LandingInbox,
    LandingInboxTrigger,
    landing_day,
)

POLL_S = 0.05


@pytest.fixture
def dirs(tmp_path):
    inbox, landing = tmp_path / "inbox" / "churn", tmp_path / "lake" / "landing" / "churn"
    inbox.mkdir(parents=True)
    return inbox, landing


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def next_events(trigger, count: int, timeout: float = 10.0) -> list[dict]:
    """The first ``count`` events ``trigger.run()`` yields, then the generator is closed."""

    async def collect():
        events = []
        generator = trigger.run()
        try:
            while len(events) < count:
                event = await asyncio.wait_for(generator.__anext__(), timeout)
                events.append(event.payload)
        finally:
            await generator.aclose()
        return events

    return asyncio.run(collect())


def trigger_for(inbox, landing) -> LandingInboxTrigger:
    return LandingInboxTrigger(
        dataset="churn", inbox_dir=str(inbox), landing_dir=str(landing), poll_interval=POLL_S
    )


def test_the_day_comes_from_a_ds_folder_else_from_the_file_name():
    assert landing_day("ds=2026-01-07/part-00000.csv.gz") == "2026-01-07"
    assert landing_day("crm/export_2026-01-08_eu.csv") == "2026-01-08"
    # The folder wins over a date in the name (a re-delivery of an old export into today).
    assert landing_day("ds=2026-01-09/export_2025-12-31.csv") == "2026-01-09"
    with pytest.raises(LandingDayError, match=r"export\.csv: no day in its path"):
        landing_day("export.csv")
    with pytest.raises(LandingDayError, match="'2026-02-30' is not a date"):
        landing_day("ds=2026-02-30/part.csv")
    # Digits around a date are not a date: a timestamp-like name has no day.
    with pytest.raises(LandingDayError):
        landing_day("dump_120260107.csv")


def test_the_suffixes_taken_are_the_ones_the_ingest_job_reads():
    from spark_jobs.ingest import LANDING_SUFFIXES as INGEST_SUFFIXES

    assert set(LANDING_SUFFIXES) == set(INGEST_SUFFIXES)


def test_files_are_landed_first_and_one_event_per_day_names_them(dirs):
    inbox, landing = dirs
    csv = b"customer_id,plan\nC1,basic\n"
    sha_a = write(inbox / "ds=2026-01-07" / "part-00000.csv", csv)
    sha_b = write(inbox / "ds=2026-01-07" / "part-00001.jsonl.gz", gzip.compress(b'{"a": 1}\n'))
    sha_c = write(inbox / "crm_2026-01-08.csv", csv + b"C2,premium\n")

    first, second = next_events(trigger_for(inbox, landing), 2)

    assert first["dataset"] == "churn" and first["ds"] == "2026-01-07"
    assert [(f["inbox_path"], f["sha256"]) for f in first["files"]] == [
        ("ds=2026-01-07/part-00000.csv", sha_a),
        ("ds=2026-01-07/part-00001.jsonl.gz", sha_b),
    ]
    assert first["files"][0]["uri"] == f"file://{landing}/ds=2026-01-07/part-00000.csv"
    assert first["files"][0]["size"] == len(csv)
    assert second["ds"] == "2026-01-08"
    assert second["files"] == [
        {
            "uri": f"file://{landing}/ds=2026-01-08/crm_2026-01-08.csv",
            "size": len(csv) + 11,
            "sha256": sha_c,
            "inbox_path": "crm_2026-01-08.csv",
        }
    ]
    # Moved, not copied: in the lake with the same bytes, gone from the inbox.
    assert (landing / "ds=2026-01-07" / "part-00000.csv").read_bytes() == csv
    assert sorted(p.name for p in (landing / "ds=2026-01-07").iterdir()) == [
        "part-00000.csv",
        "part-00001.jsonl.gz",
    ]
    assert [p for p in inbox.rglob("*") if p.is_file()] == []


def test_files_still_being_written_are_left_alone(dirs):
    inbox, landing = dirs
    watcher = LandingInbox(inbox, landing, logging.getLogger("test"))
    growing = inbox / "ds=2026-01-07" / "part-0.csv"
    write(growing, b"customer_id\n")
    write(inbox / "ds=2026-01-07" / "part-1.csv.tmp", b"customer_id\nC1\n")
    write(inbox / "ds=2026-01-07" / ".part-2.csv", b"customer_id\nC1\n")

    assert watcher.stable_files() == []  # first look: nothing is known to be complete yet
    with open(growing, "ab") as handle:
        handle.write(b"C1\n")
    assert watcher.stable_files() == []  # it grew since the previous look
    # The in-flight names are never taken; renaming the .tmp file completes it.
    os.replace(inbox / "ds=2026-01-07" / "part-1.csv.tmp", inbox / "ds=2026-01-07" / "part-1.csv")
    landed = watcher.land_stable_files()  # part-1.csv is new at this look: not yet
    assert [f.inbox_path for f in landed["2026-01-07"]] == ["ds=2026-01-07/part-0.csv"]
    landed = watcher.land_stable_files()
    assert [f.inbox_path for f in landed["2026-01-07"]] == ["ds=2026-01-07/part-1.csv"]
    assert watcher.land_stable_files() == {}
    assert (inbox / "ds=2026-01-07" / ".part-2.csv").exists()
    assert sorted(p.name for p in (landing / "ds=2026-01-07").iterdir()) == [
        "part-0.csv",
        "part-1.csv",
    ]


def test_a_file_without_a_day_or_of_an_unknown_type_is_parked_not_deleted(dirs, caplog):
    inbox, landing = dirs
    watcher = LandingInbox(inbox, landing, logging.getLogger("test.landing"))
    write(inbox / "export.csv", b"customer_id\nC1\n")
    write(inbox / "ds=2026-01-07" / "notes.xlsx", b"not csv")
    watcher.stable_files()
    with caplog.at_level(logging.WARNING, logger="test.landing"):
        assert watcher.land_stable_files() == {}

    assert (inbox / "_parked" / "no-day" / "export.csv").read_bytes() == b"customer_id\nC1\n"
    assert (inbox / "_parked" / "unsupported-type" / "ds=2026-01-07" / "notes.xlsx").exists()
    assert not landing.exists()
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "parked export.csv" in messages and "no day in its path" in messages
    assert "parked ds=2026-01-07/notes.xlsx" in messages
    # Parked files are not looked at again.
    assert watcher.stable_files() == [] and watcher.stable_files() == []


def test_a_restart_after_the_copy_neither_duplicates_nor_loses_the_file(dirs):
    """The triggerer stopped after the file reached the lake but before the inbox copy was
    removed: the next trigger drops the inbox copy and fires the day's event again."""
    inbox, landing = dirs
    data = b"customer_id\nC1\n"
    sha = write(inbox / "ds=2026-01-07" / "part-0.csv", data)
    write(landing / "ds=2026-01-07" / "part-0.csv", data)
    # A copy the crash left half-written: hidden, and replaced by the next move.
    write(landing / "ds=2026-01-07" / ".part-1.csv.landing.tmp", b"customer_id\nC")
    sha_new = write(inbox / "ds=2026-01-07" / "part-1.csv", b"customer_id\nC2\n")

    (event,) = next_events(trigger_for(inbox, landing), 1)

    assert event["ds"] == "2026-01-07"
    assert [(f["inbox_path"], f["sha256"]) for f in event["files"]] == [
        ("ds=2026-01-07/part-0.csv", sha),
        ("ds=2026-01-07/part-1.csv", sha_new),
    ]
    # One file per name, and the half-written copy was replaced by the finished move.
    assert sorted(p.name for p in (landing / "ds=2026-01-07").iterdir()) == [
        "part-0.csv",
        "part-1.csv",
    ]
    assert (landing / "ds=2026-01-07" / "part-0.csv").read_bytes() == data
    assert (landing / "ds=2026-01-07" / "part-1.csv").read_bytes() == b"customer_id\nC2\n"
    assert not (inbox / "ds=2026-01-07" / "part-0.csv").exists()


def test_other_bytes_under_a_landed_name_are_parked_and_the_landed_file_kept(dirs, caplog):
    inbox, landing = dirs
    write(landing / "ds=2026-01-07" / "part-0.csv", b"customer_id\nC1\n")
    write(inbox / "ds=2026-01-07" / "part-0.csv", b"customer_id\nC9\n")
    watcher = LandingInbox(inbox, landing, logging.getLogger("test.landing"))
    watcher.stable_files()
    with caplog.at_level(logging.WARNING, logger="test.landing"):
        assert watcher.land_stable_files() == {}
    assert (landing / "ds=2026-01-07" / "part-0.csv").read_bytes() == b"customer_id\nC1\n"
    parked = inbox / "_parked" / "conflict" / "ds=2026-01-07" / "part-0.csv"
    assert parked.read_bytes() == b"customer_id\nC9\n"
    assert "already holds other bytes" in caplog.text


def test_the_trigger_serializes_to_an_importable_classpath_and_its_kwargs(dirs):
    inbox, landing = dirs
    classpath, kwargs = trigger_for(inbox, landing).serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {
        "dataset": "churn",
        "inbox_dir": str(inbox),
        "landing_dir": str(landing),
        "poll_interval": POLL_S,
    }
