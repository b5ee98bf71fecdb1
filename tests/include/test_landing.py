"""When a landing day is complete, and which days an ingestion run ingests: the named ones,
plus every complete day never ingested or changed since (a lost event delays a day, never
drops it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from include.config import load_settings
from include.landing import landing_days, plan_ingestion

NOW = datetime(2026, 1, 10, 12, tzinfo=UTC)
EVENT_AT = datetime(2026, 1, 10, 11, tzinfo=UTC)
ONE_FILE = ("files", 1)


@pytest.fixture
def lake(tmp_path):
    return tmp_path


@pytest.fixture
def settings(lake):
    return load_settings({"HEADRACE_LAKE_ROOT": lake.as_uri()})


def land(lake, ds: str, name: str, data: str = "a,b\n1,2\n") -> None:
    day = lake / "landing" / "churn" / f"ds={ds}"
    day.mkdir(parents=True, exist_ok=True)
    (day / name).write_text(data)


def mark_ingested(lake, ds: str) -> None:
    """A curated manifest recording exactly the day's current landing files as its inputs."""
    day = lake / "landing" / "churn" / f"ds={ds}"
    inputs = [
        {"name": p.name, "size_bytes": p.stat().st_size}
        for p in sorted(day.iterdir())
        if not p.name.startswith(("_", "."))
    ]
    curated = lake / "curated" / "churn" / f"ds={ds}"
    curated.mkdir(parents=True, exist_ok=True)
    (curated / "_manifest.json").write_text(json.dumps({"inputs": inputs}))


def test_marker_files_and_temp_files_are_not_data(lake, settings):
    for name in ("part-0.csv", ".part-1.csv.landing.tmp", "_SUCCESS"):
        land(lake, "2026-01-07", name)
    (day,) = landing_days(settings, "churn", ONE_FILE, NOW).values()
    assert [name for name, _size in day.files] == ["part-0.csv"]
    assert day.markers == (".part-1.csv.landing.tmp", "_SUCCESS")
    assert day.complete


@pytest.mark.parametrize(
    ("rule", "names", "now", "waiting"),
    [
        (("files", 3), ["a.csv", "b.csv"], NOW, "2 of 3 expected files have landed"),
        (("files", 3), ["a.csv", "b.csv", "c.csv"], NOW, ""),
        (("marker", "_SUCCESS"), ["a.csv"], NOW, "completion marker _SUCCESS has not landed"),
        (("marker", "_SUCCESS"), ["a.csv", "_SUCCESS"], NOW, ""),
        # The day 2026-01-07 ends at 2026-01-08T00:00Z; two hours later it closes.
        (("cutoff_hours", 2), ["a.csv"], datetime(2026, 1, 8, 1, 59, tzinfo=UTC), "cut-off"),
        (("cutoff_hours", 2), ["a.csv"], datetime(2026, 1, 8, 2, 0, tzinfo=UTC), ""),
        (("marker", "_SUCCESS"), ["_SUCCESS"], NOW, "no data file has landed"),
    ],
)
def test_each_completeness_rule(lake, settings, rule, names, now, waiting):
    for name in names:
        land(lake, "2026-01-07", name)
    day = landing_days(settings, "churn", rule, now)["2026-01-07"]
    assert (waiting in day.waiting_for) if waiting else day.complete, day.waiting_for


def test_a_day_key_that_is_not_a_date_is_reported_not_ingested(lake, settings):
    land(lake, "2026-13-45", "a.csv")
    land(lake, "20260107", "a.csv")
    days = landing_days(settings, "churn", ONE_FILE, NOW)
    assert "not a date" in days["2026-13-45"].problem
    assert "not YYYY-MM-DD" in days["20260107"].problem
    plan = plan_ingestion(settings, "churn", {}, rule=ONE_FILE, sweep_days=31, now=NOW)
    assert plan.days == []


def test_days_no_event_named_are_swept_up_and_ingested_days_are_not(lake, settings):
    # Four days landed, their events coalesced: the run was told about 2026-01-06 only.
    for ds in ("2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"):
        land(lake, ds, "a.csv")
    mark_ingested(lake, "2026-01-05")
    named = {"2026-01-06": EVENT_AT}
    plan = plan_ingestion(settings, "churn", named, rule=ONE_FILE, sweep_days=31, now=NOW)
    assert plan.days == ["2026-01-06", "2026-01-07", "2026-01-08"]
    assert plan.swept == ["2026-01-07", "2026-01-08"]
    # A run by hand ingests what a person asked for, and nothing else.
    plan = plan_ingestion(
        settings, "churn", {"2026-01-06": None}, rule=ONE_FILE, sweep_days=31, sweep=False, now=NOW
    )
    assert (plan.days, plan.swept) == (["2026-01-06"], [])


def test_an_event_after_the_last_ingest_re_runs_the_day_even_when_unchanged(lake, settings):
    """Re-dropping a day re-runs it (idempotent downstream); so does a person asking for it."""
    land(lake, "2026-01-05", "a.csv")
    mark_ingested(lake, "2026-01-05")
    later = datetime.now(UTC) + timedelta(seconds=5)
    for asked_at in (later, None):
        plan = plan_ingestion(
            settings, "churn", {"2026-01-05": asked_at}, rule=ONE_FILE, sweep_days=31, now=NOW
        )
        assert (plan.days, plan.swept) == (["2026-01-05"], [])


def test_an_event_an_earlier_sweep_already_served_is_not_served_twice(lake, settings):
    """The event of a day landed before the run whose sweep ingested it: the day's last ingest
    is newer than the event and took the same files."""
    land(lake, "2026-01-05", "a.csv")
    before_the_ingest = datetime.now(UTC) - timedelta(seconds=5)
    mark_ingested(lake, "2026-01-05")
    plan = plan_ingestion(
        settings, "churn", {"2026-01-05": before_the_ingest}, rule=ONE_FILE, sweep_days=31, now=NOW
    )
    assert plan.days == []
    assert "ingested after its landing event" in plan.served["2026-01-05"]
    # Unless a file landed since: then the day changed, whenever the event was.
    land(lake, "2026-01-05", "b.csv")
    plan = plan_ingestion(
        settings, "churn", {"2026-01-05": before_the_ingest}, rule=ONE_FILE, sweep_days=31, now=NOW
    )
    assert plan.days == ["2026-01-05"]


def test_a_late_file_makes_an_ingested_day_pending_again(lake, settings):
    land(lake, "2026-01-05", "a.csv")
    mark_ingested(lake, "2026-01-05")
    land(lake, "2026-01-05", "b.csv")
    plan = plan_ingestion(settings, "churn", {}, rule=ONE_FILE, sweep_days=31, now=NOW)
    assert plan.swept == ["2026-01-05"]
    # The same file name with other bytes (a redelivery) is a change too.
    mark_ingested(lake, "2026-01-05")
    land(lake, "2026-01-05", "b.csv", data="a,b\n1,2\n3,4\n")
    assert plan_ingestion(settings, "churn", {}, rule=ONE_FILE, sweep_days=31, now=NOW).swept == [
        "2026-01-05"
    ]


def test_incomplete_days_wait_with_the_reason(lake, settings):
    land(lake, "2026-01-07", "a.csv")
    named = {"2026-01-07": EVENT_AT, "2026-01-09": EVENT_AT}
    plan = plan_ingestion(settings, "churn", named, rule=("files", 2), sweep_days=31, now=NOW)
    assert plan.days == []
    assert "1 of 2 expected files" in plan.waiting["2026-01-07"]
    assert plan.waiting["2026-01-09"] == "no data file has landed"


def test_the_sweep_looks_back_sweep_days_from_the_newest_landed_day(lake, settings):
    for ds in ("2026-01-01", "2026-01-08", "2026-01-09"):
        land(lake, ds, "a.csv")
    plan = plan_ingestion(settings, "churn", {}, rule=ONE_FILE, sweep_days=2, now=NOW)
    assert plan.swept == ["2026-01-08", "2026-01-09"]
