"""Dataset-level quality rules: loaded from ``<dataset>.quality.yaml``, checked, resolved per partition.

A rules file sits beside the dataset spec it constrains (``include/datasets/churn.quality.yaml``
beside ``churn.yaml``) and lists rules of the kinds in :data:`RULE_KINDS`, each with a severity:
``error`` rules block the partition from being validated, ``warn`` rules only report. The spec is
the source of truth for what curated data holds, so rule columns are checked against its curated
columns (PII already hashed, masked or dropped) and the ``schema`` rule takes its column list and
types from it.

Two rules depend on the partition being checked: ``row_count_change`` (relative to the previous
partition's row count) and ``freshness`` (relative to the end of the partition's day), and a date
``range`` may be bounded by ``$ds``. :func:`resolve_rules` turns them into concrete numbers and
timestamps before any engine sees them, so Great Expectations, Deequ and Glue Data Quality all
evaluate the same thresholds.

Two kinds judge what ingestion did rather than the curated rows (:data:`INGESTION_KINDS`):
``quarantine_rate`` (the share of the day's landing rows that ingest quarantined, overall or for
one reason) and ``rows_in_change`` (the day's landing rows against the median of recent validated
days). No engine compiles them: the gate evaluates them from the ingest job's manifest
(``include/dq/ingestion.py``), once for every engine. Every problem in a rules file is reported at once, naming the file,
the rule's index and id, and the field, e.g.
``churn.quality.yaml: rules[3] (plan_allowed).values: must be a non-empty list``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from spark_jobs.dataset_spec import (
    DS_TOKEN,
    NUMERIC_TYPES,
    REASON_CODES,
    DatasetSpec,
    load_spec,
    safe_load_yaml,
)

# What each kind checks; the compilers handle exactly these.
RULE_KINDS: dict[str, str] = {
    "completeness": "the share of non-null values of `column` is at least `min_fraction` (1.0)",
    "uniqueness": "no two rows share the values of `columns` (one column or a compound key)",
    "range": "every non-null value of `column` lies within [`min`, `max`] (inclusive)",
    "allowed_values": "every non-null value of `column` is one of `values`",
    "regex": "every non-null value of `column` matches `pattern`",
    "row_count": "the partition has between `min` and `max` rows",
    "row_count_change": "the partition has between `min_ratio` and `max_ratio` times the rows of "
    "the previous day's partition",
    "freshness": "the newest `column` value is at most `max_age_hours` before the end of the "
    "partition's day",
    "schema": "the partition has exactly the dataset spec's curated columns, with their types",
    "mean": "the mean of `column` lies within [`min`, `max`]",
    "stdev": "the standard deviation of `column` lies within [`min`, `max`]",
    "quarantine_rate": "at most `max_fraction` of the day's landing rows were quarantined by "
    "ingest (all reasons, or only `reason`: a code such as required_null, or code:column)",
    "rows_in_change": "the day's landing rows are between `min_ratio` and `max_ratio` times the "
    "median of the `days` most recent validated days within the previous `lookback_days`",
}
# Kinds the gate evaluates from the ingest manifest (include/dq/ingestion.py), not an engine.
INGESTION_KINDS = frozenset({"quarantine_rate", "rows_in_change"})
ROWS_IN_DEFAULT_DAYS = 7
ROWS_IN_DEFAULT_LOOKBACK_DAYS = 30
SEVERITIES = ("error", "warn")
# Kinds whose failure is a set of rows: the result carries a sample of their keys.
ROW_LEVEL_KINDS = frozenset({"completeness", "uniqueness", "range", "allowed_values", "regex"})

_COLUMN_KINDS = frozenset(
    {"completeness", "range", "allowed_values", "regex", "freshness", "mean", "stdev"}
)
_FIELDS: dict[str, set[str]] = {
    "completeness": {"column", "min_fraction"},
    "uniqueness": {"columns"},
    "range": {"column", "min", "max"},
    "allowed_values": {"column", "values"},
    "regex": {"column", "pattern"},
    "row_count": {"min", "max"},
    "row_count_change": {"min_ratio", "max_ratio"},
    "freshness": {"column", "max_age_hours"},
    "schema": set(),
    "mean": {"column", "min", "max"},
    "stdev": {"column", "min", "max"},
    "quarantine_rate": {"max_fraction", "reason"},
    "rows_in_change": {"min_ratio", "max_ratio", "days", "lookback_days"},
}
_COMMON_FIELDS = {"id", "kind", "severity", "description"}
_TOP_KEYS = {"dataset", "spec", "rules"}
_RULE_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class QualityRulesError(ValueError):
    """A rules file is invalid; ``problems`` name the file, rule index, rule id and field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(
            f"invalid quality rules {source}:\n  - "
            + "\n  - ".join(f"{Path(source).name}: {p}" for p in problems)
        )


@dataclass(frozen=True)
class Rule:
    """One rule. Only the fields of its kind are set; :func:`resolve_rules` fills the rest.

    After resolution, ``row_count_change`` carries absolute ``min``/``max`` rows, ``freshness``
    carries ``not_before`` (an ISO UTC timestamp) and date bounds of ``$ds`` are the partition
    date. ``skip_reason`` is set when the rule cannot be evaluated for this partition (no
    previous partition to compare with), and engines then report it as skipped.
    """

    id: str
    kind: str
    severity: str
    column: str | None = None
    columns: tuple[str, ...] = ()
    min: Any = None
    max: Any = None
    min_fraction: float = 1.0
    values: tuple[Any, ...] = ()
    pattern: str | None = None
    min_ratio: float | None = None
    max_ratio: float | None = None
    max_age_hours: float | None = None
    # quarantine_rate: the largest share quarantined, and the reason it counts (None: all).
    max_fraction: float | None = None
    reason: str | None = None
    # rows_in_change: how many recent validated days, searched how far back.
    days: int | None = None
    lookback_days: int | None = None
    # The schema rule's columns and spec types, from the dataset spec.
    schema: tuple[tuple[str, str], ...] = ()
    # The column's spec type, for compilers that type their literals (dates, numbers).
    column_type: str | None = None
    description: str = ""
    not_before: str | None = None
    skip_reason: str | None = None
    resolved: bool = False

    @property
    def target(self) -> str:
        """What the rule looks at, for messages: a column, a key, the table, or ingestion."""
        if self.kind in INGESTION_KINDS:
            return f"(ingestion) {self.reason}" if self.reason else "(ingestion)"
        if self.column:
            return self.column
        if self.columns:
            return ",".join(self.columns)
        return "(table)"

    def expected(self) -> dict[str, Any]:
        """The rule's thresholds as they are reported (resolved values where they exist)."""
        keys = {
            "completeness": ("min_fraction",),
            "uniqueness": ("columns",),
            "range": ("min", "max"),
            "allowed_values": ("values",),
            "regex": ("pattern",),
            "row_count": ("min", "max"),
            "row_count_change": ("min_ratio", "max_ratio", "min", "max"),
            "freshness": ("max_age_hours", "not_before"),
            "schema": ("schema",),
            "mean": ("min", "max"),
            "stdev": ("min", "max"),
            "quarantine_rate": ("max_fraction", "reason"),
            "rows_in_change": ("min_ratio", "max_ratio", "days", "lookback_days"),
        }[self.kind]
        out: dict[str, Any] = {}
        for key in keys:
            value = getattr(self, key)
            if key == "schema":
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class RuleSet:
    """A dataset's rules with the spec they were checked against."""

    dataset: str
    source: str
    spec: DatasetSpec
    rules: tuple[Rule, ...]
    # The columns that identify a row: what offending-row samples show (never PII).
    key_columns: tuple[str, ...] = field(default=())

    def curated_types(self) -> dict[str, str]:
        return dict(self.spec.curated_columns())


def load_rules(path: str | Path, spec: DatasetSpec | None = None) -> RuleSet:
    """Read and check a rules file; :class:`QualityRulesError` lists every problem.

    :param path: the ``<dataset>.quality.yaml`` file.
    :param spec: the dataset spec; by default the file named by its ``spec`` key, else
        ``<dataset>.yaml`` in the same folder.
    """
    import yaml

    path = Path(path)
    source = str(path)
    try:
        raw = safe_load_yaml(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise QualityRulesError(
            source, [f"cannot read the file: {error.strerror or error}"]
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise QualityRulesError(source, [f"not valid YAML{where}"]) from None
    if spec is None and isinstance(raw, Mapping):
        spec_name = raw.get("spec") or f"{raw.get('dataset')}.yaml"
        spec = load_spec(path.parent / str(spec_name))
    return parse_rules(raw, spec, source=source)


def parse_rules(raw: Any, spec: DatasetSpec | None, source: str = "<rules>") -> RuleSet:
    """Check an already-parsed rules mapping against ``spec``."""
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        raise QualityRulesError(
            source, [f"(top level): must be a mapping, got {type(raw).__name__}"]
        )
    _unknown_keys(problems, "", raw, _TOP_KEYS)
    if spec is None:
        raise QualityRulesError(source, ["spec: no dataset spec to check the rules against"])
    dataset = raw.get("dataset")
    if dataset != spec.dataset:
        problems.append(f"dataset: {dataset!r} does not match the dataset spec's {spec.dataset!r}")
    raw_rules = raw.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        problems.append("rules: must be a non-empty list of rules")
        raw_rules = []
    curated = dict(spec.curated_columns())
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw_rules):
        # Ingest's reasons name the spec's (source) columns; curated names differ for PII.
        rule = _parse_rule(problems, index, item, curated, spec.column_names)
        if rule is None:
            continue
        if rule.id in seen:
            problems.append(
                f"rules[{index}] ({rule.id}).id: already used by rules[{seen[rule.id]}]; "
                "give one of them an explicit id"
            )
            continue
        seen[rule.id] = index
        rules.append(rule)
    if problems:
        raise QualityRulesError(source, problems)
    return RuleSet(
        dataset=spec.dataset,
        source=source,
        spec=spec,
        rules=tuple(rules),
        key_columns=tuple(spec.primary_key),
    )


def _unknown_keys(problems: list[str], where: str, mapping: Mapping, allowed: set[str]) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}{'.' if where else ''}{key}: unknown key{hint}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse_rule(
    problems: list[str],
    index: int,
    raw: Any,
    curated: Mapping[str, str],
    spec_columns: Sequence[str] = (),
) -> Rule | None:
    where = f"rules[{index}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a mapping, got {type(raw).__name__}")
        return None
    kind = raw.get("kind")
    rule_id = raw.get("id")
    if rule_id is None:
        target = raw.get("column") or "_".join(map(str, raw.get("columns") or []))
        if kind == "quarantine_rate" and isinstance(raw.get("reason"), str):
            # quarantine_rate_required_null_churned: one default id per reason.
            target = re.sub(r"[^a-z0-9_]", "_", raw["reason"].lower())
        if not isinstance(kind, str):
            rule_id = f"rule_{index}"
        else:
            rule_id = f"{kind}_{target}" if target else kind
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        problems.append(f"{where}.id: must be a lower_snake_case name, got {rule_id!r}")
        return None
    where = f"{where} ({rule_id})"
    if kind not in RULE_KINDS:
        close = difflib.get_close_matches(str(kind), sorted(RULE_KINDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{where}.kind: {kind!r} is not one of {', '.join(RULE_KINDS)}{hint}")
        return None
    before = len(problems)
    _unknown_keys(problems, where, raw, _COMMON_FIELDS | _FIELDS[kind])
    severity = raw.get("severity", "error")
    if severity not in SEVERITIES:
        problems.append(
            f"{where}.severity: must be one of {', '.join(SEVERITIES)}, got {severity!r}"
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(f"{where}.description: must be a string")
        description = ""
    fields: dict[str, Any] = {}
    if kind in INGESTION_KINDS:
        fields.update(_ingestion_fields(problems, where, kind, raw, spec_columns))

    column = raw.get("column")
    column_type = None
    if kind in _COLUMN_KINDS:
        if not isinstance(column, str):
            problems.append(f"{where}.column: is required (a curated column name)")
        elif column not in curated:
            problems.append(
                f"{where}.column: {column!r} is not a curated column of the dataset "
                f"(curated columns: {', '.join(curated)})"
            )
        else:
            column_type = curated[column]
            fields["column"] = column
            fields["column_type"] = column_type

    if kind == "completeness":
        fraction = raw.get("min_fraction", 1.0)
        if not _is_number(fraction) or not 0 < fraction <= 1:
            problems.append(f"{where}.min_fraction: must be a number in (0, 1], got {fraction!r}")
        else:
            fields["min_fraction"] = float(fraction)
    elif kind == "uniqueness":
        columns = raw.get("columns")
        if not isinstance(columns, list) or not columns:
            problems.append(f"{where}.columns: must be a non-empty list of curated columns")
        else:
            missing = [c for c in columns if c not in curated]
            if missing:
                problems.append(f"{where}.columns: {missing} are not curated columns")
            elif len(set(columns)) != len(columns):
                problems.append(f"{where}.columns: lists a column more than once")
            else:
                fields["columns"] = tuple(columns)
    elif kind == "range":
        if column_type is not None:
            low = _typed_bound(problems, f"{where}.min", raw.get("min"), column_type)
            high = _typed_bound(problems, f"{where}.max", raw.get("max"), column_type)
            if raw.get("min") is None and raw.get("max") is None:
                problems.append(f"{where}: a range needs min, max or both")
            elif _is_number(low) and _is_number(high) and low > high:
                problems.append(f"{where}.min: {low} is above max {high}")
            fields.update(min=low, max=high)
    elif kind == "allowed_values":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            problems.append(f"{where}.values: must be a non-empty list")
        elif column_type is not None:
            wrong = [v for v in values if not _value_fits(v, column_type)]
            if wrong:
                problems.append(f"{where}.values: {wrong} are not {column_type} values")
            fields["values"] = tuple(values)
    elif kind == "regex":
        pattern = raw.get("pattern")
        if column_type is not None and column_type != "string":
            problems.append(
                f"{where}.column: regex rules apply to string columns, not {column_type}"
            )
        if not isinstance(pattern, str) or not pattern:
            problems.append(f"{where}.pattern: must be a non-empty regex string")
        else:
            try:
                re.compile(pattern)
            except re.error as error:
                problems.append(f"{where}.pattern: is not a valid regex: {error}")
            # The pattern also runs in Java (Deequ, Glue DQ) and is embedded in SQL and DQDL
            # string literals; these characters would need escaping rules that differ per engine.
            if '"' in pattern or "'" in pattern:
                problems.append(f"{where}.pattern: must not contain quote characters")
            # GE and Spark's RLIKE search for the pattern anywhere in a value, DQDL's matches
            # may not: anchored at both ends, all three engines judge the whole value alike.
            if not (pattern.startswith("^") and pattern.endswith("$")):
                problems.append(f"{where}.pattern: must be anchored with ^ and $, got {pattern!r}")
            fields["pattern"] = pattern
    elif kind == "row_count":
        low, high = raw.get("min"), raw.get("max")
        for name, value in (("min", low), ("max", high)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                problems.append(f"{where}.{name}: must be a non-negative integer, got {value!r}")
        if low is None and high is None:
            problems.append(f"{where}: a row count needs min, max or both")
        elif isinstance(low, int) and isinstance(high, int) and low > high:
            problems.append(f"{where}.min: {low} is above max {high}")
        fields.update(min=low, max=high)
    elif kind in ("row_count_change", "rows_in_change"):
        low, high = raw.get("min_ratio"), raw.get("max_ratio")
        for name, value in (("min_ratio", low), ("max_ratio", high)):
            if value is not None and (not _is_number(value) or value < 0):
                problems.append(f"{where}.{name}: must be a non-negative number, got {value!r}")
        if low is None and high is None:
            problems.append(f"{where}: a {kind} rule needs min_ratio, max_ratio or both")
        elif _is_number(low) and _is_number(high) and low > high:
            problems.append(f"{where}.min_ratio: {low} is above max_ratio {high}")
        fields.update(min_ratio=low, max_ratio=high)
    elif kind == "freshness":
        hours = raw.get("max_age_hours")
        if column_type is not None and column_type not in ("timestamp", "date"):
            problems.append(
                f"{where}.column: freshness needs a timestamp or date column, not {column_type}"
            )
        if not _is_number(hours) or hours <= 0:
            problems.append(f"{where}.max_age_hours: must be a positive number, got {hours!r}")
        else:
            fields["max_age_hours"] = float(hours)
    elif kind == "schema":
        fields["schema"] = tuple(curated.items())
    elif kind in ("mean", "stdev"):
        if column_type is not None and column_type not in NUMERIC_TYPES | {"boolean"}:
            problems.append(f"{where}.column: {kind} needs a numeric column, not {column_type}")
        low, high = raw.get("min"), raw.get("max")
        for name, value in (("min", low), ("max", high)):
            if value is not None and not _is_number(value):
                problems.append(f"{where}.{name}: must be a number, got {value!r}")
        if low is None and high is None:
            problems.append(f"{where}: a {kind} rule needs min, max or both")
        elif _is_number(low) and _is_number(high) and low > high:
            problems.append(f"{where}.min: {low} is above max {high}")
        fields.update(min=low, max=high)

    if len(problems) > before:
        return None
    return Rule(id=rule_id, kind=kind, severity=severity, description=description, **fields)


def _ingestion_fields(
    problems: list[str], where: str, kind: str, raw: Mapping, spec_columns: Sequence[str]
) -> dict[str, Any]:
    """The fields of a rule over ingestion (``quarantine_rate``'s, ``rows_in_change``'s days)."""
    fields: dict[str, Any] = {}
    if kind == "quarantine_rate":
        fraction = raw.get("max_fraction")
        if not _is_number(fraction) or not 0 <= fraction <= 1:
            problems.append(f"{where}.max_fraction: must be a number in [0, 1], got {fraction!r}")
        else:
            fields["max_fraction"] = float(fraction)
        reason = raw.get("reason")
        if reason is not None:
            if not isinstance(reason, str) or not reason:
                problems.append(
                    f"{where}.reason: must be a reason code or code:column, got {reason!r}"
                )
            else:
                code, _, column = reason.partition(":")
                if code not in REASON_CODES:
                    close = difflib.get_close_matches(code, sorted(REASON_CODES), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    problems.append(
                        f"{where}.reason: {code!r} is not an ingest reason code "
                        f"({', '.join(REASON_CODES)}){hint}"
                    )
                # Reasons name the spec's (source) columns; curated names differ only for PII.
                elif column and column not in spec_columns:
                    problems.append(
                        f"{where}.reason: {column!r} is not a column of the dataset spec"
                    )
                else:
                    fields["reason"] = reason
        return fields
    for name, default, largest in (
        ("days", ROWS_IN_DEFAULT_DAYS, 366),
        ("lookback_days", ROWS_IN_DEFAULT_LOOKBACK_DAYS, 366),
    ):
        value = raw.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= largest:
            problems.append(
                f"{where}.{name}: must be a whole number of days in [1, {largest}], got {value!r}"
            )
        else:
            fields[name] = value
    if fields.get("days", 0) > fields.get("lookback_days", largest):
        problems.append(
            f"{where}.days: {fields['days']} days cannot be found within "
            f"lookback_days {fields['lookback_days']}"
        )
    return fields


def _typed_bound(problems: list[str], where: str, value: Any, ctype: str) -> Any:
    if value is None:
        return None
    if ctype in NUMERIC_TYPES:
        if not _is_number(value):
            problems.append(f"{where}: must be a number for a {ctype} column, got {value!r}")
            return None
        return value
    if ctype == "date":
        text = value.isoformat() if isinstance(value, date) else value
        if text == DS_TOKEN:
            return text
        if not isinstance(text, str) or not _DATE.match(text):
            problems.append(f"{where}: must be a YYYY-MM-DD date or {DS_TOKEN!r}, got {value!r}")
            return None
        try:
            date.fromisoformat(text)
        except ValueError:
            problems.append(f"{where}: {text!r} is not a calendar date")
            return None
        return text
    problems.append(f"{where}: a range applies to numeric and date columns, not {ctype}")
    return None


def _value_fits(value: Any, ctype: str) -> bool:
    if ctype == "string":
        return isinstance(value, str)
    if ctype in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if ctype == "double":
        return _is_number(value)
    if ctype == "boolean":
        return isinstance(value, bool)
    return False


# --- resolution per partition --------------------------------------------------------------


def previous_partition(ds: str) -> str:
    """The partition ``row_count_change`` compares with: the day before ``ds``."""
    return (date.fromisoformat(ds) - timedelta(days=1)).isoformat()


def resolve_rules(rules: Sequence[Rule], ds: str, previous_row_count: int | None) -> list[Rule]:
    """``rules`` with every partition-relative threshold made concrete for partition ``ds``.

    :param ds: the partition date, YYYY-MM-DD.
    :param previous_row_count: rows of the previous day's partition (from its manifest), or
        ``None`` when it does not exist; ``row_count_change`` is then skipped, not failed.
    """
    try:
        day = date.fromisoformat(ds)
    except (TypeError, ValueError):
        raise ValueError(f"partition date {ds!r} is not a YYYY-MM-DD date") from None
    end_of_day = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
    resolved = []
    for rule in rules:
        changes: dict[str, Any] = {"resolved": True}
        if rule.kind == "row_count_change":
            if previous_row_count is None:
                changes["skip_reason"] = (
                    f"no previous partition ds={previous_partition(ds)} to compare with"
                )
            else:
                # Whole rows: the bounds widen to the nearest integers so the ratio is honoured.
                if rule.min_ratio is not None:
                    changes["min"] = math.ceil(previous_row_count * rule.min_ratio)
                if rule.max_ratio is not None:
                    changes["max"] = math.floor(previous_row_count * rule.max_ratio)
        elif rule.kind == "freshness":
            not_before = end_of_day - timedelta(hours=rule.max_age_hours)
            changes["not_before"] = not_before.isoformat()
        elif rule.kind == "range" and rule.column_type == "date":
            changes["min"] = ds if rule.min == DS_TOKEN else rule.min
            changes["max"] = ds if rule.max == DS_TOKEN else rule.max
        resolved.append(replace(rule, **changes))
    return resolved


def require_resolved(rules: Sequence[Rule]) -> None:
    """Compilers call this: a rule with ``$ds`` or ratios left in would mean different things per engine."""
    unresolved = [rule.id for rule in rules if not rule.resolved]
    if unresolved:
        raise ValueError(
            f"rules {unresolved} are not resolved for a partition; call resolve_rules() first"
        )


def engine_rules(rules: Sequence[Rule]) -> list[Rule]:
    """The rules an engine compiles and checks on the curated rows: all but :data:`INGESTION_KINDS`."""
    return [rule for rule in rules if rule.kind not in INGESTION_KINDS]
