"""The gate's rules over ingestion, evaluated from the ingest job's facts, the same for every engine.

``quarantine_rate`` and ``rows_in_change`` (:data:`include.dq.rules.INGESTION_KINDS`) judge what
ingest did with the day's landing rows: how many it quarantined, and for which reasons, and how
many rows came in against recent days. The ingest job records all of it in the curated
partition's ``_manifest.json`` (``totals.rows_read``, ``totals.rows_quarantined``,
``totals.quarantined_by_reason`` and ``quarantine_examples``), so the gate reads manifests (and
earlier days' gate results) only, never a data file: the worker orchestrates, jobs compute. Great
Expectations, Glue Data Quality and Deequ check the curated rows; these rules give one
:class:`~include.dq.results.RuleOutcome` each beside theirs, counted in the verdict alike.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from include.dq.results import FAIL, PASS, SAMPLE_SIZE, RuleOutcome, _jsonable
from include.dq.rules import INGESTION_KINDS, Rule

# A previous day's rows read if the gate validated that day, else None (see rows_in_of_day).
HistoryReader = Callable[[str], int | None]


def ingestion_summary(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ingestion facts the report shows: rows in, accepted and quarantined, the
    quarantine by reason (rows, share of rows read) with the ingest job's example rows."""
    totals = manifest.get("totals") or {}
    rows_read = totals.get("rows_read")
    quarantined = _rows_quarantined(totals)
    examples = manifest.get("quarantine_examples") or {}
    by_reason = []
    for reason, rows in sorted(
        (totals.get("quarantined_by_reason") or {}).items(), key=lambda item: (-item[1], item[0])
    ):
        by_reason.append(
            {
                "reason": reason,
                "rows": rows,
                "fraction": _fraction(rows, rows_read),
                "examples": list(examples.get(reason) or []),
            }
        )
    return _jsonable(
        {
            "rows_read": rows_read,
            "rows_accepted": totals.get("rows_accepted"),
            "rows_quarantined": quarantined,
            "quarantined_fraction": _fraction(quarantined, rows_read),
            "quarantined_by_reason": by_reason,
            # Older manifests carry counts but no examples: say so rather than show none.
            "examples_recorded": "quarantine_examples" in manifest,
        }
    )


def evaluate_ingestion_rules(
    rules: Sequence[Rule], ds: str, manifest: Mapping[str, Any], rows_in_of: HistoryReader
) -> list[RuleOutcome]:
    """One outcome per rule of :data:`INGESTION_KINDS` in ``rules``, in their order.

    :param ds: the partition date.
    :param manifest: the day's curated ``_manifest.json``.
    :param rows_in_of: a day's rows read if the gate validated that day (its result passed, on
        the rows its manifest lists now), else ``None``.
    """
    outcomes = []
    for rule in rules:
        if rule.kind == "quarantine_rate":
            outcomes.append(quarantine_rate_outcome(rule, manifest))
        elif rule.kind == "rows_in_change":
            outcomes.append(rows_in_change_outcome(rule, ds, manifest, rows_in_of))
    return outcomes


def _outcome(rule: Rule, expected: dict[str, Any] | None = None) -> RuleOutcome:
    return RuleOutcome(
        rule=rule.id,
        kind=rule.kind,
        column=rule.target,
        severity=rule.severity,
        status=PASS,
        expected=_jsonable(expected if expected is not None else rule.expected()),
        description=rule.description,
    )


def _fraction(part: int | None, whole: int | None) -> float | None:
    if part is None or whole is None:
        return None
    return round(part / whole, 6) if whole else 0.0


def _rows_quarantined(totals: Mapping[str, Any]) -> int | None:
    if totals.get("rows_quarantined") is not None:
        return int(totals["rows_quarantined"])
    # Ingest's invariant: every row read was accepted or quarantined.
    if totals.get("rows_read") is not None and totals.get("rows_accepted") is not None:
        return int(totals["rows_read"]) - int(totals["rows_accepted"])
    return None


def _matches(rule_reason: str | None, reason: str) -> bool:
    """Whether ingest's reason label (``code`` or ``code:column``) is one the rule counts."""
    if rule_reason is None:
        return True
    if ":" in rule_reason:
        return reason == rule_reason
    return reason.split(":", 1)[0] == rule_reason


def quarantine_rate_outcome(rule: Rule, manifest: Mapping[str, Any]) -> RuleOutcome:
    """The share of the day's landing rows quarantined (for ``rule.reason``, or all) against
    ``max_fraction``; a failure names the reasons with their counts and example rows."""
    outcome = _outcome(rule)
    totals = manifest.get("totals") or {}
    rows_read = totals.get("rows_read")
    quarantined = _rows_quarantined(totals)
    by_reason: dict[str, int] = dict(totals.get("quarantined_by_reason") or {})
    if rows_read is None or quarantined is None:
        outcome.status = FAIL
        outcome.detail = (
            "the ingest manifest records no totals.rows_read/rows_quarantined; re-run ingestion "
            "of the day so the gate can see what it quarantined"
        )
        return outcome
    if quarantined and not by_reason and rule.reason is not None:
        outcome.status = FAIL
        outcome.detail = (
            f"the ingest manifest counts {quarantined} quarantined rows but no "
            "totals.quarantined_by_reason; re-run ingestion of the day"
        )
        return outcome
    matching = {r: n for r, n in by_reason.items() if _matches(rule.reason, r) and n}
    count = quarantined if rule.reason is None else sum(matching.values())
    fraction = _fraction(count, rows_read)
    outcome.observed = {
        "rows_read": rows_read,
        "rows_quarantined": count,
        "quarantined_fraction": fraction,
        "by_reason": dict(sorted(matching.items(), key=lambda item: (-item[1], item[0]))),
    }
    outcome.unexpected_count = count
    examples = manifest.get("quarantine_examples") or {}
    for reason in outcome.observed["by_reason"]:
        for example in examples.get(reason) or []:
            if len(outcome.offending_keys) >= SAMPLE_SIZE:
                break
            outcome.offending_keys.append(
                {
                    "reason": reason,
                    "record_key": example.get("record_key"),
                    "source_file": example.get("source_file"),
                }
            )
            outcome.unexpected_values.append(example.get("value"))
    if rows_read == 0:
        outcome.detail = "no landing rows were read: nothing was quarantined"
    if fraction is not None and fraction > rule.max_fraction:
        outcome.status = FAIL
        named = ", ".join(f"{r} {n}" for r, n in outcome.observed["by_reason"].items())
        outcome.detail = (
            f"ingest quarantined {count} of {rows_read} landing rows "
            f"({fraction:.1%}, above {rule.max_fraction:.1%})"
            + (f"; by reason: {named}" if named else "")
        )
    outcome.observed = _jsonable(outcome.observed)
    outcome.offending_keys = _jsonable(outcome.offending_keys)
    outcome.unexpected_values = _jsonable(outcome.unexpected_values)
    return outcome


def rows_in_change_outcome(
    rule: Rule, ds: str, manifest: Mapping[str, Any], rows_in_of: HistoryReader
) -> RuleOutcome:
    """The day's landing rows against the median of the ``days`` most recent validated days
    within ``lookback_days`` before ``ds``; with none of them the rule passes, saying so."""
    totals = manifest.get("totals") or {}
    rows_in = totals.get("rows_read")
    day = date.fromisoformat(ds)
    history: list[tuple[str, int]] = []
    for back in range(1, rule.lookback_days + 1):
        previous = (day - timedelta(days=back)).isoformat()
        rows = rows_in_of(previous)
        if rows is not None:
            history.append((previous, rows))
            if len(history) == rule.days:
                break
    median = statistics.median(rows for _, rows in history) if history else None
    expected = rule.expected()
    if median is not None:
        if rule.min_ratio is not None:
            expected["min_rows"] = int(-(-median * rule.min_ratio // 1))
        if rule.max_ratio is not None:
            expected["max_rows"] = int(median * rule.max_ratio // 1)
    outcome = _outcome(rule, expected)
    outcome.observed = _jsonable(
        {
            "rows_in": rows_in,
            "median_rows_in": median,
            "ratio": round(rows_in / median, 4) if median and rows_in is not None else None,
            "history": dict(history),
        }
    )
    window = f"the previous {rule.lookback_days} days"
    if rows_in is None:
        outcome.status = FAIL
        outcome.detail = "the ingest manifest records no totals.rows_read; re-run ingestion"
    elif median is None:
        outcome.detail = f"no validated day in {window} to compare with: passes (no history yet)"
    elif median == 0:
        if rows_in:
            outcome.status = FAIL
        outcome.detail = f"the validated days of {window} read no rows (median 0)"
    else:
        ratio = rows_in / median
        low, high = rule.min_ratio, rule.max_ratio
        if (low is not None and ratio < low) or (high is not None and ratio > high):
            outcome.status = FAIL
            outcome.detail = (
                f"{rows_in} landing rows is {ratio:.2f}x the median {median:g} of "
                f"{len(history)} validated day(s) ({', '.join(d for d, _ in history)})"
            )
        elif len(history) < rule.days:
            outcome.detail = (
                f"compared with {len(history)} validated day(s), fewer than {rule.days} in {window}"
            )
    return outcome


def merge_outcomes(
    rules: Sequence[Rule],
    engine_outcomes: Sequence[RuleOutcome],
    ingestion_outcomes: Sequence[RuleOutcome],
) -> list[RuleOutcome]:
    """One outcome per rule in the rules file's order, each carrying its rule's description.

    Outcomes of rules the rules file does not hold (none expected) keep their place at the end.
    """
    by_rule = {o.rule: o for o in [*engine_outcomes, *ingestion_outcomes]}
    merged = []
    for rule in rules:
        outcome = by_rule.pop(rule.id, None)
        if outcome is None:
            engine = "the gate" if rule.kind in INGESTION_KINDS else "the engine"
            outcome = _outcome(rule)
            outcome.status = FAIL
            outcome.detail = f"{engine} returned no result for this rule"
        outcome.description = rule.description
        merged.append(outcome)
    return [*merged, *by_rule.values()]


def read_json(storage, uri: str) -> dict[str, Any] | None:
    """A small JSON document, or ``None`` if it is absent or unreadable."""
    if not storage.exists(uri):
        return None
    try:
        document = json.loads(storage.read_bytes(uri))
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
