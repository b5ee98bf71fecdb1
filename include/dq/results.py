"""The gate's result, the same on every engine: one outcome per rule, the JSON and the failure message.

Great Expectations (local), Glue Data Quality and the Deequ job (``spark_jobs/quality_deequ.py``,
which writes this shape itself because it cannot import ``include/``) all produce
``result.json`` documents of :data:`RESULT_FORMAT`, so downstream tools and the report read one
shape whatever ran the checks.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from include.dq.rules import Rule

RESULT_FORMAT = "headrace-quality-result/1"
PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
# How many offending keys and values a result keeps per rule: enough to find the rows, small
# enough for XCom-sized JSON and a readable report.
SAMPLE_SIZE = 5


@dataclass
class RuleOutcome:
    """What one engine observed for one rule."""

    rule: str
    kind: str
    column: str
    severity: str
    status: str
    expected: dict[str, Any]
    observed: Any = None
    unexpected_count: int | None = None
    # Values of the rule's column in offending rows (never PII: curated data has none in clear).
    unexpected_values: list[Any] = field(default_factory=list)
    # The key columns of offending rows, so a person can find them.
    offending_keys: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""
    # The rule's description from the rules file: why it exists, for the report and messages.
    description: str = ""

    @property
    def passed(self) -> bool:
        return self.status != FAIL

    @property
    def blocks(self) -> bool:
        """A failed ``error`` rule: the partition must not be validated."""
        return self.status == FAIL and self.severity == "error"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        # Absent when the rule has none: the Deequ job's documents (which carry none) read back
        # to the same document.
        if not out["description"]:
            del out["description"]
        return _jsonable(out)

    def describe(self) -> str:
        """One line for the failure message: rule, column, observed and expected values."""
        parts = [f"{self.rule} ({self.kind}) on {self.column}: observed {_short(self.observed)}"]
        if self.unexpected_count:
            parts.append(f"{self.unexpected_count} offending rows")
        parts.append(f"expected {_short(self.expected)}")
        if self.unexpected_values:
            parts.append(f"e.g. values {_short(self.unexpected_values)}")
        if self.offending_keys:
            parts.append(f"keys {_short(self.offending_keys[:2])}")
        if self.detail:
            parts.append(self.detail)
        if self.description:
            parts.append(f"rule: {self.description}")
        return "; ".join(parts)


def skipped_outcome(rule: Rule) -> RuleOutcome:
    return RuleOutcome(
        rule=rule.id,
        kind=rule.kind,
        column=rule.target,
        severity=rule.severity,
        status=SKIPPED,
        expected=_jsonable(rule.expected()),
        detail=rule.skip_reason or "",
        description=rule.description,
    )


def _jsonable(value: Any) -> Any:
    """Dates, numpy scalars and tuples as JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy and pandas scalars
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(_jsonable(value), sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class GateResult:
    """Every rule's outcome for one partition, and whether it may be marked validated."""

    dataset: str
    ds: str
    engine: str
    outcomes: list[RuleOutcome]
    partition: dict[str, Any] = field(default_factory=dict)
    # What ingest did with the day's landing rows (include/dq/ingestion.ingestion_summary).
    ingestion: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not any(outcome.blocks for outcome in self.outcomes)

    def counts(self) -> dict[str, int]:
        return {
            "rules": len(self.outcomes),
            "passed": sum(o.status == PASS for o in self.outcomes),
            "failed_error": sum(o.status == FAIL and o.severity == "error" for o in self.outcomes),
            "failed_warn": sum(o.status == FAIL and o.severity == "warn" for o in self.outcomes),
            "skipped": sum(o.status == SKIPPED for o in self.outcomes),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": RESULT_FORMAT,
            "dataset": self.dataset,
            "ds": self.ds,
            "engine": self.engine,
            "passed": self.passed,
            "counts": self.counts(),
            "partition": _jsonable(self.partition),
            "results": [outcome.as_dict() for outcome in self.outcomes],
            # Set by the gate (with_ingestion_rules); absent in an engine's own document.
            **({"ingestion": _jsonable(self.ingestion)} if self.ingestion else {}),
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> GateResult:
        """A result document read back (e.g. the one the Deequ job wrote)."""
        if document.get("format") != RESULT_FORMAT:
            raise ValueError(
                f"not a quality result: format {document.get('format')!r}, expected {RESULT_FORMAT!r}"
            )
        fields = RuleOutcome.__dataclass_fields__
        outcomes = [
            RuleOutcome(**{key: value for key, value in item.items() if key in fields})
            for item in document["results"]
        ]
        return cls(
            dataset=document["dataset"],
            ds=document["ds"],
            engine=document["engine"],
            outcomes=outcomes,
            partition=document.get("partition", {}),
            ingestion=document.get("ingestion") or {},
        )

    def to_json(self) -> bytes:
        return (json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n").encode()

    def failure_message(self) -> str:
        """Names each failing error rule with its column and observed value."""
        blocking = [o for o in self.outcomes if o.blocks]
        lines = [
            f"quality gate failed for {self.dataset} ds={self.ds} ({self.engine}): "
            f"{len(blocking)} error rule(s) failed"
        ]
        lines += [f"  - {outcome.describe()}" for outcome in blocking]
        warned = [o for o in self.outcomes if o.status == FAIL and o.severity == "warn"]
        if warned:
            lines.append(
                f"  ({len(warned)} warn rule(s) also failed: {', '.join(o.rule for o in warned)})"
            )
        return "\n".join(lines)


def render_html_report(result: GateResult, title: str | None = None) -> bytes:
    """A self-contained HTML page of one gate run: a summary and one table row per rule."""
    data = result.as_dict()
    counts = data["counts"]
    colours = {"pass": "#d8f0d8", "fail": "#f6d0d0", "skipped": "#eeeeee"}
    rows = []
    for item in data["results"]:
        status = item["status"]
        colour = colours.get(status, "#ffffff")
        if status == FAIL and item["severity"] == "warn":
            colour = "#fbecc4"
        rows.append(
            "<tr style='background:{colour}'><td>{rule}</td><td>{kind}</td><td>{column}</td>"
            "<td>{description}</td>"
            "<td>{severity}</td><td><b>{status}</b></td><td><code>{observed}</code></td>"
            "<td><code>{expected}</code></td><td>{count}</td><td><code>{keys}</code></td>"
            "<td>{detail}</td></tr>".format(
                colour=colour,
                rule=html.escape(item["rule"]),
                kind=html.escape(item["kind"]),
                column=html.escape(item["column"]),
                description=html.escape(item.get("description") or ""),
                severity=html.escape(item["severity"]),
                status=html.escape(status),
                observed=html.escape(_short(item["observed"], 300)),
                expected=html.escape(_short(item["expected"], 300)),
                count="" if item["unexpected_count"] is None else item["unexpected_count"],
                keys=html.escape(_short(item["offending_keys"], 300))
                if item["offending_keys"]
                else "",
                detail=html.escape(item["detail"]),
            )
        )
    verdict = "PASSED" if data["passed"] else "FAILED"
    heading = html.escape(title or f"Data quality: {data['dataset']} ds={data['ds']}")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{heading}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:4px 8px;vertical-align:top;font-size:13px}}</style></head>
<body><h1>{heading}</h1>
<p><b>{verdict}</b> on {html.escape(data["engine"])}: {counts["rules"]} rules,
{counts["passed"]} passed, {counts["failed_error"]} error rule(s) failed,
{counts["failed_warn"]} warn rule(s) failed, {counts["skipped"]} skipped.</p>
<p>Partition: <code>{html.escape(_short(data["partition"], 400))}</code></p>
<table><tr><th>rule</th><th>kind</th><th>column</th><th>description</th><th>severity</th>
<th>status</th><th>observed</th><th>expected</th><th>offending rows</th><th>sample keys</th>
<th>detail</th></tr>
{"".join(rows)}
</table>
{_ingestion_html(data.get("ingestion") or {})}</body></html>
"""
    return page.encode()


def _ingestion_html(ingestion: dict[str, Any]) -> str:
    """The report's ingestion section: rows in and out, and the quarantine by reason with the
    ingest job's example rows (keys and the offending value, PII treated as in quarantine)."""
    if not ingestion:
        return ""
    fraction = ingestion.get("quarantined_fraction")
    share = "" if fraction is None else f" ({fraction:.2%} of rows read)"
    rows = []
    for item in ingestion.get("quarantined_by_reason") or []:
        examples = "<br>".join(
            html.escape(
                f"{example.get('record_key')}: {_short(example.get('value'), 120)}"
                f" ({example.get('source_file')})"
            )
            for example in item.get("examples") or []
        )
        reason_share = "" if item.get("fraction") is None else f"{item['fraction']:.2%}"
        rows.append(
            f"<tr><td>{html.escape(str(item['reason']))}</td><td>{item['rows']}</td>"
            f"<td>{reason_share}</td><td>{examples}</td></tr>"
        )
    if not ingestion.get("examples_recorded", True):
        note = "<p>The ingest manifest records no example rows (an older ingest run).</p>"
    else:
        note = ""
    table = (
        "<table><tr><th>reason</th><th>rows</th><th>share of rows read</th>"
        "<th>examples (record key: value)</th></tr>" + "".join(rows) + "</table>"
        if rows
        else "<p>Nothing was quarantined.</p>"
    )
    return (
        f"<h2>Ingestion</h2><p>{ingestion.get('rows_read')} landing rows read, "
        f"{ingestion.get('rows_accepted')} accepted, {ingestion.get('rows_quarantined')} "
        f"quarantined{share}.</p>{note}{table}"
    )
