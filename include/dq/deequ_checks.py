"""Rules → a JSON description of pydeequ ``Check`` calls, which ``spark_jobs/quality_deequ.py`` applies on EMR.

``spark_jobs/`` ships to EMR on its own and may not import ``include/``, so the compile step
lives here and its output travels as data: the operator writes :func:`build_deequ_checks`'s
document next to the partition's report, and the job reads it (``--checks-uri``). Compiling
needs no JVM, so every rule kind's Deequ form is testable here.

Deequ has check *levels*, not per-rule severities: rules become constraints of two ``Check``\\ s,
``CheckLevel.Error`` for ``error`` rules and ``CheckLevel.Warning`` for ``warn`` rules. Each
constraint is ``{"method": <pydeequ Check method>, "args": [...], "assertion": …}``; the job calls
``getattr(check, method)(*args[, assertion])``, building the assertion lambda from
``{"op": "between"|">="|"<="|"==", …}`` (lambdas cannot be JSON). Where a rule is about rows, the
constraint also carries ``offending_rows_sql``, a Spark SQL predicate the job uses to sample the
keys of offending rows. The ``schema`` rule is checked by the job against the DataFrame's schema
(Deequ has no schema constraint); ``method`` is ``"schema"`` for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from include.dq.results import SAMPLE_SIZE
from include.dq.rules import Rule, engine_rules, require_resolved

CHECKS_FORMAT = "headrace-deequ-checks/1"
CHECK_LEVELS = {"error": "Error", "warn": "Warning"}
# Spark SQL type names (DataType.simpleString) of the spec's types, for the schema check.
SPARK_TYPES = {
    "string": "string",
    "int": "int",
    "long": "bigint",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


def _identifier(name: str) -> str:
    return f"`{name.replace('`', '``')}`"


def _sql_literal(value: Any, column_type: str | None = None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        if column_type == "date":
            return f"DATE '{escaped}'"
        if column_type == "timestamp":
            return f"TIMESTAMP '{escaped}'"
        return f"'{escaped}'"
    return repr(value) if isinstance(value, float) else str(value)


def _between(low: Any, high: Any) -> dict[str, Any]:
    if low is not None and high is not None:
        return {"op": "between", "min": low, "max": high}
    if low is not None:
        return {"op": ">=", "value": low}
    return {"op": "<=", "value": high}


def deequ_constraint(rule: Rule) -> dict[str, Any]:
    """One resolved rule as a constraint description (see the module docstring)."""
    require_resolved([rule])
    kind = rule.kind
    base: dict[str, Any] = {
        "rule": rule.id,
        "kind": kind,
        "column": rule.target,
        "severity": rule.severity,
        "expected": rule.expected(),
    }
    if rule.skip_reason:
        return {**base, "method": None, "skip_reason": rule.skip_reason}
    column = rule.column
    ident = _identifier(column) if column else ""
    if kind == "completeness":
        if rule.min_fraction >= 1.0:
            spec = {"method": "isComplete", "args": [column], "assertion": None}
        else:
            spec = {
                "method": "hasCompleteness",
                "args": [column],
                "assertion": {"op": ">=", "value": rule.min_fraction},
            }
        spec["offending_rows_sql"] = f"{ident} IS NULL"
    elif kind == "uniqueness":
        # Deequ's Uniqueness is the share of rows whose key occurs once: 1.0 means no duplicates.
        spec = {
            "method": "hasUniqueness",
            "args": [list(rule.columns)],
            "assertion": {"op": "==", "value": 1.0},
            "duplicate_key_columns": list(rule.columns),
        }
    elif kind == "range":
        conditions = []
        if rule.min is not None:
            conditions.append(f"{ident} >= {_sql_literal(rule.min, rule.column_type)}")
        if rule.max is not None:
            conditions.append(f"{ident} <= {_sql_literal(rule.max, rule.column_type)}")
        condition = f"{ident} IS NULL OR ({' AND '.join(conditions)})"
        spec = {
            "method": "satisfies",
            "args": [condition, f"{rule.id}: {rule.column} in range"],
            "assertion": {"op": "==", "value": 1.0},
            "offending_rows_sql": f"NOT ({condition})",
        }
    elif kind == "allowed_values":
        if rule.column_type == "string":
            # isContainedIn lets NULL through, as the rule does.
            spec = {
                "method": "isContainedIn",
                "args": [column, list(rule.values)],
                "assertion": None,
            }
        else:
            values = ", ".join(_sql_literal(v) for v in rule.values)
            spec = {
                "method": "satisfies",
                "args": [f"{ident} IS NULL OR {ident} IN ({values})", f"{rule.id}: allowed values"],
                "assertion": {"op": "==", "value": 1.0},
            }
        values = ", ".join(_sql_literal(v) for v in rule.values)
        spec["offending_rows_sql"] = f"{ident} IS NOT NULL AND {ident} NOT IN ({values})"
    elif kind == "regex":
        condition = f"{ident} IS NULL OR {ident} RLIKE {_sql_literal(rule.pattern)}"
        spec = {
            "method": "satisfies",
            "args": [condition, f"{rule.id}: {rule.column} matches pattern"],
            "assertion": {"op": "==", "value": 1.0},
            "offending_rows_sql": f"NOT ({condition})",
        }
    elif kind in ("row_count", "row_count_change"):
        spec = {"method": "hasSize", "args": [], "assertion": _between(rule.min, rule.max)}
    elif kind == "freshness":
        threshold = rule.not_before.removesuffix("+00:00").replace("T", " ")
        literal = _sql_literal(
            threshold[:10] if rule.column_type == "date" else threshold, rule.column_type
        )
        # The share of rows at or after the threshold is above zero ⇔ the newest value is.
        spec = {
            "method": "satisfies",
            "args": [f"{ident} >= {literal}", f"{rule.id}: newest {rule.column} is fresh"],
            "assertion": {"op": ">", "value": 0.0},
        }
    elif kind == "schema":
        spec = {
            "method": "schema",
            "args": [{name: SPARK_TYPES[ctype] for name, ctype in rule.schema}],
            "assertion": None,
        }
    elif kind == "mean":
        spec = {"method": "hasMean", "args": [column], "assertion": _between(rule.min, rule.max)}
    elif kind == "stdev":
        spec = {
            "method": "hasStandardDeviation",
            "args": [column],
            "assertion": _between(rule.min, rule.max),
        }
    else:
        raise ValueError(f"rule {rule.id}: no Deequ compilation for kind {kind!r}")
    return {**base, **spec}


def build_deequ_checks(
    rules: Sequence[Rule], *, dataset: str, ds: str, key_columns: Sequence[str]
) -> dict[str, Any]:
    """The document the Deequ job runs: two checks (Error, Warning) of resolved rules."""
    require_resolved(rules)
    checks = []
    for severity, level in CHECK_LEVELS.items():
        # Rules over ingestion are the gate's (include/dq/ingestion.py), not the job's.
        constraints = [
            deequ_constraint(rule) for rule in engine_rules(rules) if rule.severity == severity
        ]
        if constraints:
            checks.append(
                {
                    "level": level,
                    "severity": severity,
                    "description": f"headrace {dataset} ds={ds} {severity} rules",
                    "constraints": constraints,
                }
            )
    return {
        "format": CHECKS_FORMAT,
        "dataset": dataset,
        "ds": ds,
        "key_columns": list(key_columns),
        "sample_size": SAMPLE_SIZE,
        "checks": checks,
    }
