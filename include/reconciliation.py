"""How far each day of a dataset has come, and which days are stuck: the reconciliation report.

One row per day key found in any zone of the dataset (landing, curated, quality results,
features, predictions, monitoring), with what each stage committed — landed files and bytes,
curated rows accepted and quarantined, the gate's verdict and failed error rules, features
written, rows scored, the drift verdict and the model version — and the day's ``stage`` (the
furthest it reached), ``status`` and ``reason``:

- ``done``: the day was monitored (or needs nothing more: featurized before any model scored);
- ``waiting``: the next stage has not happened yet, for less than the stuck threshold;
- ``stuck``: the day has sat at its stage for longer than the threshold (a day that never
  completes, a job that failed or never ran); the reason says what it waits for;
- ``failed``: it cannot move without a person: the gate failed, the key is not a date, an
  artifact cannot be read.

How long a day has sat at its stage is measured from the commit time of that stage's artifact:
the manifests and results carry no clock (their bytes are deterministic), so it is the storage
object's modification time (:meth:`include.storage.LakeStorage.list_objects`). A stage older
than the stage before it (a day re-ingested, not yet re-validated) is pending again.

Also reported: every rejected landing event, files in the landing zone (and the local inbox)
for a dataset that has no spec, files outside any ``ds=`` folder, and inbox files the watcher
parked or has not taken. Only listings and the small JSON manifests and results are read,
never a data file: this runs in an Airflow worker.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from include.config import Settings
from include.landing import LandingDay, landing_days
from include.storage import LakeObject, storage_for

REPORT_FORMAT = "headrace-reconciliation/1"
DONE, WAITING, STUCK, FAILED = "done", "waiting", "stuck", "failed"
STATUSES = (DONE, WAITING, STUCK, FAILED)
# Attention: what an alert names.
ATTENTION = (STUCK, FAILED)
REPORT_JSON, REPORT_HTML = "reconciliation.json", "reconciliation.html"
# An alert names at most this many items (the report names them all).
ALERT_ITEMS = 200
# The Markdown summary lists every day that is not done, and this many of the newest done days.
MARKDOWN_DONE_DAYS = 7
# The inbox watcher's folder of files it could not land (plugins/headrace_operators/
# landing_triggers.py PARKED_DIR; not imported: plugins import include, not the other way).
INBOX_PARKED_DIR = "_parked"

# Committed artifacts of a day, by path relative to the dataset's folder in each zone.
_LANDING_FILE = re.compile(r"^ds=([^/]+)/([^/]+)$")
_MANIFEST = re.compile(r"^ds=([^/]+)/_manifest\.json$")
_QUALITY_RESULT = re.compile(r"^quality/ds=([^/]+)/result\.json$")
_QUALITY_HTML = re.compile(r"^quality/ds=([^/]+)/report\.html$")
_DRIFT_HTML = re.compile(r"^drift/ds=([^/]+)/drift_report\.html$")
_DRIFT_REPORT = re.compile(r"^model_version=([^/]+)/ds=([^/]+)/drift_report\.json$")


@dataclass(frozen=True)
class Artifact:
    """One committed JSON artifact of a day: where, when, and its document (None if unreadable)."""

    uri: str
    modified: datetime
    doc: dict | None
    error: str = ""


def report_folder_uri(settings: Settings, dataset: str) -> str:
    return f"{settings.zone_uri('reports')}/{dataset}/reconciliation"


def key_problem(key: str) -> str:
    """Why ``key`` cannot be a day (``""`` when it is a YYYY-MM-DD date)."""
    try:
        if date.fromisoformat(key).isoformat() == key:
            return ""
    except ValueError:
        pass
    return f"ds={key} is not a date (YYYY-MM-DD)"


def _hours(since: datetime, now: datetime) -> float:
    return round(max((now - since).total_seconds(), 0.0) / 3600, 1)


def _list(uri: str) -> list[LakeObject]:
    return storage_for(uri).list_objects(uri)


def _relative(objects: Iterable[LakeObject], root: str) -> list[tuple[str, LakeObject]]:
    prefix = root.rstrip("/") + "/"
    return [(o.uri[len(prefix) :], o) for o in objects if o.uri.startswith(prefix)]


def _read(obj: LakeObject) -> Artifact:
    """A small JSON object of the lake; an unreadable one keeps its error, never raises."""
    try:
        doc = json.loads(storage_for(obj.uri).read_bytes(obj.uri))
    # Whatever the backend raises (not JSON, gone since the listing, access denied): the day's
    # row reports it as failed, naming the object, instead of failing the whole report.
    except Exception as error:
        return Artifact(obj.uri, obj.modified, None, f"{type(error).__name__}: {error}")
    if not isinstance(doc, dict):
        return Artifact(obj.uri, obj.modified, None, "not a JSON object")
    return Artifact(obj.uri, obj.modified, doc)


def _manifests(settings: Settings, zone: str, dataset: str) -> dict[str, Artifact]:
    """``{day key: manifest}`` of a zone's committed partitions (``<zone>/<dataset>/ds=K/``)."""
    root = f"{settings.zone_uri(zone)}/{dataset}"
    found = {}
    for path, obj in _relative(_list(root), root):
        if match := _MANIFEST.match(path):
            found[match.group(1)] = _read(obj)
    return found


# --- the facts of each stage ---------------------------------------------------------------


def _landed_facts(day: LandingDay, files: list[LakeObject]) -> dict[str, Any]:
    return {
        "files": len(day.files),
        "bytes": sum(size for _name, size in day.files),
        "markers": list(day.markers),
        "complete": day.complete,
        "waiting_for": day.problem or day.waiting_for,
        "last_file_at": max(o.modified for o in files).isoformat() if files else None,
    }


def _curated_facts(doc: dict) -> dict[str, Any]:
    totals = doc.get("totals", {})
    return {
        "rows_read": totals.get("rows_read"),
        "rows_accepted": totals.get("rows_accepted"),
        "rows_quarantined": totals.get("rows_quarantined"),
        "quarantined_by_code": totals.get("quarantined_by_code", {}),
    }


def _gate_facts(doc: dict) -> dict[str, Any]:
    """The verdict the way the gate and the features job read it: a failed ``error`` rule (or a
    result whose ``passed`` is not true) fails; failed ``warn`` rules are only reported."""
    results = [item for item in doc.get("results", []) if isinstance(item, dict)]

    def failed(severity: str) -> list[str]:
        return [
            str(item.get("rule"))
            for item in results
            if item.get("status") == "fail" and item.get("severity") == severity
        ]

    errors = failed("error")
    return {
        "verdict": "pass" if doc.get("passed") is True and not errors else "fail",
        "engine": doc.get("engine"),
        "failed_error_rules": errors,
        "failed_warn_rules": failed("warn"),
    }


def _features_facts(doc: dict) -> dict[str, Any]:
    splits = doc.get("splits", {})
    window = doc.get("window") or {}
    # Days of the lookback window left out of the features (missing or not validated).
    left_out = window.get("reasons") or dict.fromkeys(doc.get("missing_days", []), "")
    return {
        "rows": sum(int(s.get("rows", 0)) for s in splits.values() if isinstance(s, dict)),
        "splits": {name: s.get("rows") for name, s in splits.items() if isinstance(s, dict)},
        "left_out_days": left_out,
    }


# --- one day's row ------------------------------------------------------------------------


@dataclass
class _Day:
    """Everything the lake holds for one day key."""

    key: str
    landing: LandingDay | None = None
    landing_objects: tuple[LakeObject, ...] = ()
    curated: Artifact | None = None
    quality: Artifact | None = None
    features: Artifact | None = None
    predictions: Artifact | None = None
    drift: dict[str, Artifact] | None = None  # by model version
    quality_html: bool = False
    drift_html: bool = False


def _day_row(
    day: _Day,
    *,
    rule: tuple[str, object],
    first_scored: str | None,
    stuck_after_hours: float,
    now: datetime,
) -> dict[str, Any]:
    """The report's row of one day: what each stage committed, then stage, status and reason."""
    drift, model_version, drift_artifact = None, None, None
    if day.predictions and day.predictions.doc:
        model_version = str(day.predictions.doc.get("model_version"))
        # The drift check of the version that scored the day, not of an earlier one.
        drift_artifact = (day.drift or {}).get(model_version)
    if drift_artifact and drift_artifact.doc:
        drift = {
            "verdict": drift_artifact.doc.get("verdict"),
            "drifted": drift_artifact.doc.get("drifted"),
            "model_version": model_version,
        }
    row: dict[str, Any] = {
        "ds": day.key,
        "landed": _landed_facts(day.landing, list(day.landing_objects)) if day.landing else None,
        "curated": _curated_facts(day.curated.doc) if day.curated and day.curated.doc else None,
        "gate": _gate_facts(day.quality.doc) if day.quality and day.quality.doc else None,
        "features": (
            _features_facts(day.features.doc) if day.features and day.features.doc else None
        ),
        "scored": (
            {"rows": day.predictions.doc.get("rows"), "model_version": model_version}
            if day.predictions and day.predictions.doc
            else None
        ),
        "drift": drift,
        "model_version": model_version,
        "links": {
            name: f"../{folder}/ds={day.key}/{page}"
            for name, folder, page, present in (
                ("quality_report", "quality", "report.html", day.quality_html),
                ("drift_report", "drift", "drift_report.html", day.drift_html),
            )
            if present
        },
    }
    progress = _progress(day, drift_artifact, rule, first_scored, stuck_after_hours, now)
    since = progress.since
    row.update(
        stage=progress.stage,
        status=progress.status,
        reason=progress.reason,
        since=since.isoformat() if since else None,
        hours_at_stage=_hours(since, now) if since else None,
    )
    return row


class Progress(NamedTuple):
    """How far a day got, and why it is not further."""

    stage: str
    status: str
    reason: str
    since: datetime | None  # when the day reached ``stage`` (its artifact's commit time)


def _progress(
    day: _Day,
    drift: Artifact | None,
    rule: tuple[str, object],
    first_scored: str | None,
    limit_h: float,
    now: datetime,
) -> Progress:
    """The day's stage, status and reason, walking the stages in order."""
    # The landing folder was listed twice (here and by landing_days); a file landing in between
    # may leave no time of its own: count it as just landed.
    landing_time = max((o.modified for o in day.landing_objects), default=now)
    chain = [
        ("curated", day.curated),
        ("validated", day.quality),
        ("featurized", day.features),
        ("scored", day.predictions),
        ("monitored", drift),
    ]
    furthest = next((stage for stage, artifact in reversed(chain) if artifact), "landed")

    def pending(stage: str, since: datetime, waiting: str, stuck: str) -> Progress:
        """Waiting, or stuck once the day has sat at ``stage`` for the limit; ``{h}`` in the
        texts is replaced by the hours (``replace``: the texts hold file names and rules)."""
        hours = _hours(since, now)
        if hours >= limit_h:
            return Progress(stage, STUCK, stuck.replace("{h}", str(hours)), since)
        return Progress(stage, WAITING, waiting.replace("{h}", str(hours)), since)

    if problem := key_problem(day.key):
        detail = day.landing.problem if day.landing and day.landing.problem else problem
        return Progress(furthest, FAILED, f"not a date: {detail}", landing_time)
    for stage, artifact in chain:
        if artifact is not None and artifact.doc is None:
            reason = f"{artifact.uri} is unreadable: {artifact.error}"
            return Progress(stage, FAILED, reason, artifact.modified)

    # 1. Landing to curated.
    if day.curated is None:
        later = [stage for stage, artifact in chain[1:] if artifact]
        if day.drift and not drift:
            later.append("drift report")
        if later or day.landing is None:
            reason = (
                f"no committed curated partition, but {', '.join(later)} artifacts exist "
                "(deleted, or written by hand?)"
            )
            return Progress(furthest, FAILED, reason, None)
        if not day.landing.complete:
            waiting = f"landing incomplete: {day.landing.waiting_for}"
            if rule[0] == "cutoff_hours":  # it completes at its cut-off, whatever has landed
                return Progress("landed", WAITING, waiting, landing_time)
            return pending(
                "landed",
                landing_time,
                f"{waiting} ({{h}} h since its last file landed)",
                f"{waiting} ({{h}} h since its last file landed: the day never completed)",
            )
        return pending(
            "landed",
            landing_time,
            "landed {h} h ago, waiting for ingestion",
            "landed, not ingested after {h} h (ingestion failed or never ran)",
        )
    curated_time = day.curated.modified
    if day.landing is not None and day.landing.complete:
        # As include.landing.plan_ingestion decides: the files ingested are not those landed.
        ingested = {
            (item.get("name"), int(item.get("size_bytes", -1)))
            for item in day.curated.doc.get("inputs", [])
            if isinstance(item, dict)
        }
        if ingested != set(day.landing.files):
            return pending(
                "curated",
                max(landing_time, curated_time),
                "landing files changed since ingestion {h} h ago, waiting for re-ingestion",
                "landing files changed since ingestion, not re-ingested after {h} h (ingestion "
                "failed or never ran; days outside landing.sweep_days need a run by hand)",
            )

    # 2. Curated to the gate's verdict on this very partition (not one of an earlier ingest).
    if day.quality is None or day.quality.modified < curated_time:
        again = "re-" if day.quality else ""
        return pending(
            "curated",
            curated_time,
            f"{again}ingested {{h}} h ago, waiting for the quality gate",
            f"{again}ingested, no quality verdict after {{h}} h (validation failed or never ran)",
        )
    gate = _gate_facts(day.quality.doc)
    if gate["verdict"] != "pass":
        rules = ", ".join(gate["failed_error_rules"]) or "no error rule named, passed is not true"
        return Progress("curated", FAILED, f"gate failed: {rules}", day.quality.modified)

    # 3. Validated to features, scored, monitored.
    quality_time = day.quality.modified
    if day.features is None or day.features.modified < quality_time:
        return pending(
            "validated",
            quality_time,
            "validated {h} h ago, waiting for the features job",
            "validated, no features after {h} h (the features job failed or never ran)",
        )
    features_time = day.features.modified
    if day.predictions is None or day.predictions.modified < features_time:
        # Scoring needs an approved model, and a model is trained on featurized days first:
        # days before the first scored one are never scored, and that is no fault.
        if first_scored is None:
            reason = "featurized; no day of this dataset has been scored yet (no approved model?)"
            return Progress("featurized", WAITING, reason, features_time)
        if day.key < first_scored and day.predictions is None:
            reason = f"featurized before the first scored day ({first_scored}): not scored"
            return Progress("featurized", DONE, reason, features_time)
        return pending(
            "featurized",
            features_time,
            "featurized {h} h ago, waiting for scoring",
            "featurized, not scored after {h} h (scoring failed or never ran)",
        )
    predictions_time = day.predictions.modified
    if drift is None or drift.modified < predictions_time:
        return pending(
            "scored",
            predictions_time,
            "scored {h} h ago, waiting for the drift check",
            "scored, no drift verdict after {h} h (monitoring failed or never ran)",
        )
    return Progress("monitored", DONE, "", drift.modified)


# --- the whole report ---------------------------------------------------------------------


def build_report(
    settings: Settings,
    dataset: str,
    *,
    stuck_after_hours: float | None = None,
    now: datetime | None = None,
    rule: tuple[str, object] | None = None,
    known_datasets: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The reconciliation report of ``dataset`` as a JSON-ready dict (:data:`REPORT_FORMAT`).

    :param stuck_after_hours: hours at one stage before a day is stuck (default: settings).
    :param rule: the landing completeness rule (default: the dataset spec's).
    :param known_datasets: datasets with a spec (default: ``include/datasets/``).
    """
    from include.pipelines.datasets import DATASETS_DIR, pipeline_datasets

    now = now or datetime.now(UTC)
    limit_h = settings.stuck_after_hours if stuck_after_hours is None else stuck_after_hours
    if rule is None:
        from spark_jobs.dataset_spec import load_spec

        rule = load_spec(DATASETS_DIR / f"{dataset}.yaml").landing_complete_when
    known = set(pipeline_datasets() if known_datasets is None else known_datasets)

    landing_zone = settings.zone_uri("landing")
    landing_objects = _list(landing_zone)
    inbox = settings.landing_inbox_uri.rstrip("/") if settings.is_local else ""
    if inbox:
        landing_objects = [o for o in landing_objects if not o.uri.startswith(inbox + "/")]
    landing_root = f"{landing_zone}/{dataset}"
    day_files: dict[str, list[LakeObject]] = {}
    stray = []
    for path, obj in _relative(landing_objects, landing_root):
        if match := _LANDING_FILE.match(path):
            day_files.setdefault(match.group(1), []).append(obj)
        else:
            stray.append(
                {"uri": obj.uri, "reason": "outside any ds= folder of the dataset: never ingested"}
            )

    days: dict[str, _Day] = {}

    def day(key: str) -> _Day:
        return days.setdefault(key, _Day(key))

    for key, landing in landing_days(settings, dataset, rule, now).items():
        day(key).landing = landing
        day(key).landing_objects = tuple(day_files.get(key, ()))
    for key, artifact in _manifests(settings, "curated", dataset).items():
        day(key).curated = artifact
    for key, artifact in _manifests(settings, "features", dataset).items():
        day(key).features = artifact
    for key, artifact in _manifests(settings, "predictions", dataset).items():
        day(key).predictions = artifact
    reports_root = f"{settings.zone_uri('reports')}/{dataset}"
    for path, obj in _relative(_list(reports_root), reports_root):
        if match := _QUALITY_RESULT.match(path):
            day(match.group(1)).quality = _read(obj)
        elif match := _QUALITY_HTML.match(path):
            day(match.group(1)).quality_html = True
        elif match := _DRIFT_HTML.match(path):
            day(match.group(1)).drift_html = True
    monitoring_root = f"{settings.zone_uri('monitoring')}/{dataset}"
    for path, obj in _relative(_list(monitoring_root), monitoring_root):
        if match := _DRIFT_REPORT.match(path):
            version, key = match.groups()
            drift = day(key).drift = day(key).drift or {}
            drift[version] = _read(obj)
    # A key known only from an HTML page is no day of the pipeline.
    days = {
        key: d
        for key, d in days.items()
        if d.landing or d.curated or d.quality or d.features or d.predictions or d.drift
    }

    scored = [key for key, d in days.items() if d.predictions and not key_problem(key)]
    first_scored = min(scored) if scored else None
    rows = [
        _day_row(
            days[key],
            rule=rule,
            first_scored=first_scored,
            stuck_after_hours=limit_h,
            now=now,
        )
        for key in sorted(days)
    ]
    lake = {
        **_lake_findings(settings, dataset, known, landing_objects, inbox, limit_h, now),
        "stray_files": stray,
    }
    report = {
        "format": REPORT_FORMAT,
        "dataset": dataset,
        "generated_at": now.isoformat(),
        "stuck_after_hours": limit_h,
        "landing_complete_when": {str(rule[0]): rule[1]},
        "counts": {"days": len(rows), **{s: sum(r["status"] == s for r in rows) for s in STATUSES}},
        "days": rows,
        "rejected_events": _rejected_events(settings, dataset),
        "lake": lake,
    }
    report["attention"] = attention(report)
    return report


def _rejected_events(settings: Settings, dataset: str) -> list[dict[str, Any]]:
    """Landing events ingestion refused (``include.ingestion.quarantine_rejected_events``)."""
    root = f"{settings.zone_uri('quarantine')}/{dataset}/_rejected_events"
    found = []
    for obj in _list(root):
        artifact = _read(obj)
        if artifact.doc is None:
            found.append(
                {
                    "uri": obj.uri,
                    "run_id": None,
                    "event": None,
                    "reason": f"unreadable: {artifact.error}",
                }
            )
            continue
        for entry in artifact.doc.get("rejected_events", []):
            found.append(
                {
                    "uri": obj.uri,
                    "run_id": artifact.doc.get("run_id"),
                    "at": obj.modified.isoformat(),
                    "event": entry.get("event"),
                    "reason": entry.get("reason"),
                }
            )
    return found


def _lake_findings(
    settings: Settings,
    dataset: str,
    known: set[str],
    landing_objects: list[LakeObject],
    inbox: str,
    limit_h: float,
    now: datetime,
) -> dict[str, Any]:
    """Landing (and inbox) folders of datasets without a spec, and this dataset's inbox files
    the watcher parked or has not taken yet."""
    unknown = _unknown_dataset_folders(settings.zone_uri("landing"), landing_objects, known, now)
    pending, parked = [], []
    if inbox:
        inbox_objects = _list(inbox)
        unknown += _unknown_dataset_folders(inbox, inbox_objects, known, now, where="inbox")
        for path, obj in _relative(inbox_objects, f"{inbox}/{dataset}"):
            entry = {"uri": obj.uri, "bytes": obj.size, "modified": obj.modified.isoformat()}
            if path.startswith(INBOX_PARKED_DIR + "/"):
                reason = path.split("/")[1]
                parked.append({**entry, "reason": f"parked by the inbox watcher: {reason}"})
                continue
            hours = _hours(obj.modified, now)
            if hours >= limit_h:
                reason = (
                    f"in the inbox for {hours} h, not taken by the watcher (in-flight name, or "
                    "the ingestion DAG's watcher not running?)"
                )
                pending.append({**entry, "status": STUCK, "reason": reason})
            else:
                pending.append({**entry, "status": WAITING, "reason": "waiting for the watcher"})
    return {
        "unknown_datasets": unknown,
        "inbox": {"uri": inbox or None, "pending": pending, "parked": parked},
    }


def _unknown_dataset_folders(
    root: str,
    objects: Iterable[LakeObject],
    known: set[str],
    now: datetime,
    where: str = "landing",
) -> list[dict[str, Any]]:
    """One entry per top-level folder of ``root`` that names no dataset with a spec (names
    starting with ``_`` or ``.`` are the zone's own: its marker, the inbox), and one per file
    lying directly in ``root``."""
    folders: dict[str, list[LakeObject]] = {}
    found = []
    for path, obj in _relative(objects, root):
        name, sep, _rest = path.partition("/")
        if name.startswith(("_", ".")) or name in known:
            continue
        if not sep:
            found.append(
                {
                    "where": where,
                    "name": name,
                    "uri": obj.uri,
                    "files": 1,
                    "bytes": obj.size,
                    "newest": obj.modified.isoformat(),
                    "reason": f"a file directly in the {where}, outside any dataset folder",
                }
            )
            continue
        folders.setdefault(name, []).append(obj)
    for name, files in sorted(folders.items()):
        found.append(
            {
                "where": where,
                "name": name,
                "uri": f"{root}/{name}",
                "files": len(files),
                "bytes": sum(o.size for o in files),
                "newest": max(o.modified for o in files).isoformat(),
                "reason": (
                    f"no dataset spec include/datasets/{name}.yaml: no pipeline reads these "
                    f"files ({_hours(max(o.modified for o in files), now)} h since the newest)"
                ),
            }
        )
    return found


def attention(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What needs a person: stuck and failed days, folders of unknown datasets, stray and
    parked files, inbox files the watcher has not taken in time."""
    items = [
        {
            "kind": "day",
            "subject": f"ds={row['ds']}",
            "status": row["status"],
            "stage": row["stage"],
            "reason": row["reason"],
        }
        for row in report["days"]
        if row["status"] in ATTENTION
    ]
    lake = report["lake"]
    items += [
        {
            "kind": f"unknown_dataset_{e['where']}",
            "subject": e["uri"],
            "status": FAILED,
            "reason": e["reason"],
        }
        for e in lake["unknown_datasets"]
    ]
    items += [
        {"kind": "stray_file", "subject": e["uri"], "status": FAILED, "reason": e["reason"]}
        for e in lake["stray_files"]
    ]
    items += [
        {"kind": "inbox_parked", "subject": e["uri"], "status": FAILED, "reason": e["reason"]}
        for e in lake["inbox"]["parked"]
    ]
    items += [
        {"kind": "inbox_pending", "subject": e["uri"], "status": STUCK, "reason": e["reason"]}
        for e in lake["inbox"]["pending"]
        if e["status"] == STUCK
    ]
    return items


# --- outputs ------------------------------------------------------------------------------


def write_report(settings: Settings, report: Mapping[str, Any]) -> dict[str, str]:
    """``reconciliation.json`` and ``reconciliation.html`` under
    ``reports/<dataset>/reconciliation/``, and a copy of the JSON per day it was made
    (``history/<YYYY-MM-DD>.json``); returns their URIs."""
    folder = report_folder_uri(settings, report["dataset"])
    uris = {
        "json": f"{folder}/{REPORT_JSON}",
        "html": f"{folder}/{REPORT_HTML}",
        "history": f"{folder}/history/{report['generated_at'][:10]}.json",
    }
    data = (json.dumps(report, indent=2, sort_keys=True) + "\n").encode()
    storage = storage_for(folder)
    storage.write_bytes(uris["history"], data)
    storage.write_bytes(uris["html"], render_html(report))
    storage.write_bytes(uris["json"], data)
    return uris


def read_report(uri: str) -> dict[str, Any]:
    return json.loads(storage_for(uri).read_bytes(uri))


def _cells(row: Mapping[str, Any]) -> dict[str, str]:
    """The table cells of one day, as text (Markdown and HTML render the same facts)."""
    landed, curated, gate = row["landed"], row["curated"], row["gate"]
    features, scored, drift = row["features"], row["scored"], row["drift"]
    gate_text = ""
    if gate:
        gate_text = gate["verdict"]
        if gate["failed_error_rules"]:
            gate_text += f" ({', '.join(gate['failed_error_rules'])})"
        elif gate["failed_warn_rules"]:
            gate_text += f" (warn: {', '.join(gate['failed_warn_rules'])})"
    return {
        "ds": row["ds"],
        "stage": row["stage"],
        "status": row["status"],
        "landed": (
            f"{landed['files']} files, {landed['bytes']} B"
            + ("" if landed["complete"] else " (incomplete)")
            if landed
            else ""
        ),
        "curated": f"{curated['rows_accepted']}" if curated else "",
        "quarantined": f"{curated['rows_quarantined']}" if curated else "",
        "gate": gate_text,
        "features": f"{features['rows']}" if features else "",
        "scored": f"{scored['rows']}" if scored else "",
        "drift": (drift["verdict"] or "").split(":")[0] if drift else "",
        "model": row["model_version"] or "",
        "reason": row["reason"],
    }


_COLUMNS = (
    "ds",
    "stage",
    "status",
    "landed",
    "curated",
    "quarantined",
    "gate",
    "features",
    "scored",
    "drift",
    "model",
    "reason",
)


def render_markdown(report: Mapping[str, Any], done_days: int = MARKDOWN_DONE_DAYS) -> str:
    """The summary a person reads in the task log: counts, what needs attention, and a table of
    every day not done plus the ``done_days`` newest done days."""
    counts = report["counts"]
    lines = [
        f"### Reconciliation of {report['dataset']} at {report['generated_at']}",
        "",
        f"{counts['days']} days: {counts['done']} done, {counts['waiting']} waiting, "
        f"{counts['stuck']} stuck, {counts['failed']} failed "
        f"(stuck after {report['stuck_after_hours']} h at one stage).",
        "",
    ]
    if report["attention"]:
        lines += ["**Needs attention:**", ""]
        lines += [
            f"- {item['status']}: {item['subject']}: {_md(item['reason'])}"
            for item in report["attention"]
        ]
        lines.append("")
    newest_done = {row["ds"] for row in report["days"] if row["status"] == DONE}
    newest_done = set(sorted(newest_done)[-done_days:]) if done_days else set()
    shown = [row for row in report["days"] if row["status"] != DONE or row["ds"] in newest_done]
    lines += [
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    lines += ["| " + " | ".join(_md(_cells(row)[c]) for c in _COLUMNS) + " |" for row in shown]
    hidden = len(report["days"]) - len(shown)
    if hidden:
        lines += ["", f"{hidden} older done days are in the HTML and JSON reports."]
    if report["rejected_events"]:
        lines += ["", f"{len(report['rejected_events'])} rejected landing events (see the report)."]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_STATUS_COLOURS = {DONE: "#d8f0d8", WAITING: "#eeeeee", STUCK: "#fbecc4", FAILED: "#f6d0d0"}


def render_html(report: Mapping[str, Any]) -> bytes:
    """A self-contained HTML page: the counts, what needs attention, one table row per day
    (linking the day's quality and drift reports), inbox files and rejected landing events."""
    esc = html.escape
    counts = report["counts"]
    rows = []
    for row in report["days"]:
        cells = {column: esc(text) for column, text in _cells(row).items()}
        # The reports beside this page's folder: reports/<dataset>/{quality,drift}/ds=D/.
        for column, link in (("gate", "quality_report"), ("drift", "drift_report")):
            if cells[column] and link in row["links"]:
                cells[column] = f"<a href='{esc(row['links'][link])}'>{cells[column]}</a>"
        body = "".join(f"<td>{cells[column]}</td>" for column in _COLUMNS)
        rows.append(f"<tr style='background:{_STATUS_COLOURS[row['status']]}'>{body}</tr>")
    attention_items = "".join(
        f"<li><b>{esc(i['status'])}</b> {esc(i['subject'])}: {esc(i['reason'])}</li>"
        for i in report["attention"]
    )
    rejected = "".join(
        f"<li>{esc(str(e.get('run_id')))}: {esc(str(e.get('reason')))}</li>"
        for e in report["rejected_events"]
    )
    inbox = report["lake"]["inbox"]
    pending = "".join(
        f"<li>{esc(e['status'])} {esc(e['uri'])}: {esc(e['reason'])}</li>" for e in inbox["pending"]
    )
    title = esc(f"Reconciliation: {report['dataset']}")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:4px 8px;vertical-align:top;font-size:13px}}</style></head>
<body><h1>{title}</h1>
<p>At {esc(report["generated_at"])}: {counts["days"]} days, {counts["done"]} done,
{counts["waiting"]} waiting, <b>{counts["stuck"]} stuck</b>, <b>{counts["failed"]} failed</b>
(a day is stuck after {report["stuck_after_hours"]} h at one stage).</p>
<h2>Needs attention</h2><ul>{attention_items or "<li>nothing</li>"}</ul>
<h2>Days</h2>
<table><tr>{"".join(f"<th>{c}</th>" for c in _COLUMNS)}</tr>
{"".join(rows)}
</table>
<h2>Inbox files not yet landed</h2><ul>{pending or "<li>none</li>"}</ul>
<h2>Rejected landing events</h2><ul>{rejected or "<li>none</li>"}</ul>
</body></html>
"""
    return page.encode()


# --- the alert ----------------------------------------------------------------------------


def raise_stuck_days_alert(
    settings: Settings, report: Mapping[str, Any], *, topic_arn: str | None = None
) -> dict[str, Any]:
    """Tell people what in ``report`` needs attention, through the one alert path
    (:func:`include.alerts.send_alert`): ``monitoring/<dataset>/alerts/reconciliation/<day>.json``
    on both targets, SNS on aws, a warning log line locally."""
    from include.alerts import alert_uri, send_alert

    dataset, items = report["dataset"], report["attention"]
    days = [i for i in items if i["kind"] == "day"]
    stuck = sum(i["status"] == STUCK for i in days)
    failed = len(days) - stuck
    subject = (
        f"headrace: {dataset}: {stuck} stuck, {failed} failed days, {len(items) - len(days)} other"
    )
    body = {
        "dataset": dataset,
        "generated_at": report["generated_at"],
        "stuck_after_hours": report["stuck_after_hours"],
        "counts": report["counts"],
        # SNS takes messages up to 256 KB: the first items here, every item in the report.
        "attention": items[:ALERT_ITEMS],
        "attention_total": len(items),
        "report": report_folder_uri(settings, dataset) + f"/{REPORT_HTML}",
    }
    summary = "; ".join(f"{i['subject']}: {i['reason']}" for i in items[:5])
    if len(items) > 5:
        summary += f"; and {len(items) - 5} more"
    return send_alert(
        settings,
        uri=alert_uri(settings, dataset, f"reconciliation/{report['generated_at'][:10]}"),
        subject=subject,
        body=body,
        summary=summary,
        topic_arn=topic_arn,
    )
