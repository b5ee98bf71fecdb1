"""Rules → AWS Glue Data Quality's DQDL: one ruleset per severity, and a map from DQDL back to rules.

DQDL has no per-rule severity, so the rules are split into two rulesets evaluated in the same
run: ``…-error`` (a failure blocks the partition) and ``…-warn`` (reported only). Each rule
compiles to one DQDL rule — ``schema`` to one ``ColumnCount`` plus a ``ColumnExists`` /
``ColumnDataType`` per column — and :func:`compile_rulesets` remembers which rule each DQDL line
came from, so Glue's ``RuleResults`` (whose ``Description`` is the DQDL text) map back to rules.

Semantics follow the other engines exactly, which shapes a few choices (DQDL reference:
https://docs.aws.amazon.com/glue/latest/dg/dqdl.html):

- bounds use ``>=`` / ``<=`` joined by ``and``, never ``between``, so they are inclusive as in
  GE and Deequ;
- ``ColumnValues`` rules fail NULL rows, while our range and regex rules judge only non-null
  values (completeness is its own rule), hence ``where "<col> IS NOT NULL"`` and ``NULL`` in
  allowed sets;
- freshness is relative to the partition's day, not to ``now()`` as ``DataFreshness`` is, so it
  is a ``CustomSql`` counting rows at or after the resolved timestamp (> 0 ⇔ newest ≥ it);
- a compound key is checked with ``IsPrimaryKey``, which also requires completeness: the key
  columns of a curated dataset are non-nullable by spec, so the two agree there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from include.dq.rules import INGESTION_KINDS, SEVERITIES, Rule, require_resolved

# ColumnDataType's type names for the spec's types; strings have no type check in DQDL.
DQDL_TYPES = {
    "int": "INTEGER",
    "long": "LONG",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


@dataclass(frozen=True)
class CompiledRuleset:
    """One severity's ruleset: its DQDL document and, per DQDL rule, the rule it checks."""

    severity: str
    text: str
    lines: tuple[tuple[str, str], ...]  # (DQDL rule, rule id)

    def rule_for(self, dqdl_rule: str) -> str | None:
        for line, rule_id in self.lines:
            if line == dqdl_rule.strip():
                return rule_id
        return None


def _quote(text: str) -> str:
    """A DQDL string literal (double quotes; JSON's escaping is DQDL's)."""
    return json.dumps(text, ensure_ascii=False)


def _literal(value: Any, column_type: str | None) -> str:
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _bounds(
    subject: str, low: Any, high: Any, column_type: str | None = None, where: str = ""
) -> str:
    """``subject >= low`` and/or ``subject <= high``, inclusive, as one (composite) DQDL rule."""
    parts = []
    if low is not None:
        parts.append(f"{subject} >= {_literal(low, column_type)}{where}")
    if high is not None:
        parts.append(f"{subject} <= {_literal(high, column_type)}{where}")
    if len(parts) == 1:
        return parts[0]
    return " and ".join(f"({part})" for part in parts)


def dqdl_rules(rule: Rule) -> list[str]:
    """The DQDL rule(s) that check one resolved rule; ``[]`` for a skipped rule and for a rule
    over ingestion, which the gate evaluates from the manifest (include/dq/ingestion.py)."""
    require_resolved([rule])
    if rule.skip_reason or rule.kind in INGESTION_KINDS:
        return []
    kind = rule.kind
    column = _quote(rule.column) if rule.column else ""
    not_null = f' where "{rule.column} IS NOT NULL"' if rule.column else ""
    if kind == "completeness":
        if rule.min_fraction >= 1.0:
            return [f"IsComplete {column}"]
        return [f"Completeness {column} >= {rule.min_fraction!r}"]
    if kind == "uniqueness":
        if len(rule.columns) == 1:
            return [f"IsUnique {_quote(rule.columns[0])}"]
        return ["IsPrimaryKey " + " ".join(_quote(c) for c in rule.columns)]
    if kind == "range":
        return [_bounds(f"ColumnValues {column}", rule.min, rule.max, rule.column_type, not_null)]
    if kind == "allowed_values":
        values = ", ".join(_literal(v, rule.column_type) for v in rule.values)
        return [f"ColumnValues {column} in [{values}, NULL]"]
    if kind == "regex":
        return [f"ColumnValues {column} matches {_quote(rule.pattern)}{not_null}"]
    if kind in ("row_count", "row_count_change"):
        return [_bounds("RowCount", rule.min, rule.max)]
    if kind == "freshness":
        threshold = rule.not_before.removesuffix("+00:00").replace("T", " ")
        literal = (
            f"DATE '{threshold[:10]}'" if rule.column_type == "date" else f"TIMESTAMP '{threshold}'"
        )
        # Built from the checked rules file (a curated column name, a resolved timestamp).
        sql = f"select count(*) from primary where {rule.column} >= {literal}"  # noqa: S608
        return [f"CustomSql {_quote(sql)} > 0"]
    if kind == "schema":
        lines = [f"ColumnCount = {len(rule.schema)}"]
        for name, ctype in rule.schema:
            lines.append(f"ColumnExists {_quote(name)}")
            if ctype in DQDL_TYPES:
                lines.append(f"ColumnDataType {_quote(name)} = {_quote(DQDL_TYPES[ctype])}")
        return lines
    if kind == "mean":
        return [_bounds(f"Mean {column}", rule.min, rule.max)]
    if kind == "stdev":
        return [_bounds(f"StandardDeviation {column}", rule.min, rule.max)]
    raise ValueError(f"rule {rule.id}: no DQDL compilation for kind {kind!r}")


def compile_rulesets(rules: Sequence[Rule]) -> dict[str, CompiledRuleset]:
    """``{"error": …, "warn": …}``: one DQDL ruleset per severity that has rules to check."""
    require_resolved(rules)
    out = {}
    for severity in SEVERITIES:
        lines = tuple(
            (line, rule.id)
            for rule in rules
            if rule.severity == severity
            for line in dqdl_rules(rule)
        )
        if lines:
            body = ",\n    ".join(line for line, _ in lines)
            out[severity] = CompiledRuleset(severity, f"Rules = [\n    {body}\n]", lines)
    return out
