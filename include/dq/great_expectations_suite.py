"""Rules → Great Expectations 1.x expectations, and the local engine that validates a partition with them.

Each resolved rule compiles to one expectation (``schema`` to one column-set expectation plus one
type expectation per column); every expectation carries the rule's id, kind and severity in its
``meta`` and GE's own ``severity`` (``critical`` for ``error``, ``warning`` for ``warn``), so
results map back to rules and GE's renderers show the severity.

The gate validates a pandas DataFrame (the partition's Parquet files read with pyarrow), chosen by
measurement (``bench/data_quality.py``): at 20k rows GE's pandas engine ran the suite 5-10x
faster than its Spark datasource; at 1M rows the Spark datasource was about 1.25x faster than
pandas (8.5 s against 10.7 s, both with the pass/fail format) but only once its JVM is up, and
starting local Spark took 7-10 s here, which every gate task, a fresh process, would pay.

The whole suite runs in one ``batch.validate(suite)`` call, which lets GE share metric
computations between expectations (one ``validate`` per expectation measured 3.5-8.5x slower),
with GE's cheap pass/fail result format; only what the gate's result needs details of
runs a second time (see :func:`validate_dataframe`).

Importing this module does not import great_expectations: DAG files may import the gate's
operator, and GE takes seconds to import.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from include.dq.results import FAIL, PASS, SAMPLE_SIZE, RuleOutcome, _jsonable, skipped_outcome
from include.dq.rules import (
    INGESTION_KINDS,
    ROW_LEVEL_KINDS,
    Rule,
    engine_rules,
    require_resolved,
)

if TYPE_CHECKING:
    import pandas as pd

# The type names GE reports per column, by the spec type, for each execution engine. pandas:
# what :func:`include.dq.gate.read_partition_frame` makes of curated Parquet (dates and
# timestamps as datetime64); GE checks object columns (strings) value by value, so their name is
# the Python value type.
GE_TYPE_NAMES: dict[str, dict[str, list[str]]] = {
    "pandas": {
        "string": ["str"],
        "int": ["int32"],
        "long": ["int64"],
        "double": ["float64"],
        "boolean": ["bool"],
        "date": ["datetime64[ms]", "datetime64[s]", "datetime64[ns]"],
        "timestamp": ["datetime64[us]", "datetime64[ns]"],
    },
    "spark": {
        "string": ["StringType"],
        "int": ["IntegerType"],
        "long": ["LongType"],
        "double": ["DoubleType"],
        "boolean": ["BooleanType"],
        "date": ["DateType"],
        "timestamp": ["TimestampType", "TimestampNTZType"],
    },
}
GE_SEVERITY = {"error": "critical", "warn": "warning"}


@functools.cache
def _gxe():
    import great_expectations.expectations as gxe

    return gxe


def compile_rule(rule: Rule, engine: str = "pandas") -> list:
    """The GE expectations that check ``rule`` (resolved); ``[]`` for a skipped rule and for a
    rule over ingestion, which the gate evaluates from the manifest (include/dq/ingestion.py)."""
    require_resolved([rule])
    if rule.skip_reason or rule.kind in INGESTION_KINDS:
        return []
    gxe = _gxe()
    common: dict[str, Any] = {
        "meta": {"rule": rule.id, "kind": rule.kind, "severity": rule.severity},
        "severity": GE_SEVERITY[rule.severity],
    }
    if rule.description:
        common["notes"] = rule.description
    kind = rule.kind
    if kind == "completeness":
        return [
            gxe.ExpectColumnValuesToNotBeNull(
                column=rule.column, mostly=rule.min_fraction, **common
            )
        ]
    if kind == "uniqueness":
        if len(rule.columns) == 1:
            return [gxe.ExpectColumnValuesToBeUnique(column=rule.columns[0], **common)]
        return [gxe.ExpectCompoundColumnsToBeUnique(column_list=list(rule.columns), **common)]
    if kind == "range":
        low, high = rule.min, rule.max
        if rule.column_type == "date" and engine == "pandas":
            # Dates are datetime64 in the frame; GE reads a bare date string as a date, which
            # does not compare with a Timestamp, and a midnight timestamp string as a Timestamp.
            low, high = (None if v is None else f"{v}T00:00:00" for v in (low, high))
        return [
            gxe.ExpectColumnValuesToBeBetween(
                column=rule.column, min_value=low, max_value=high, **common
            )
        ]
    if kind == "allowed_values":
        return [
            gxe.ExpectColumnValuesToBeInSet(
                column=rule.column, value_set=list(rule.values), **common
            )
        ]
    if kind == "regex":
        return [
            gxe.ExpectColumnValuesToMatchRegex(column=rule.column, regex=rule.pattern, **common)
        ]
    if kind in ("row_count", "row_count_change"):
        return [
            gxe.ExpectTableRowCountToBeBetween(min_value=rule.min, max_value=rule.max, **common)
        ]
    if kind == "freshness":
        # A date column is as fresh as its newest day: compare with the threshold's date. The
        # pandas frame holds naive UTC datetime64 values, which GE cannot compare with an offset.
        if rule.column_type == "date":
            bound = (
                f"{rule.not_before[:10]}T00:00:00" if engine == "pandas" else rule.not_before[:10]
            )
        elif engine == "pandas":
            bound = rule.not_before.removesuffix("+00:00")
        else:
            bound = rule.not_before
        return [gxe.ExpectColumnMaxToBeBetween(column=rule.column, min_value=bound, **common)]
    if kind == "schema":
        type_names = GE_TYPE_NAMES[engine]
        return [
            gxe.ExpectTableColumnsToMatchSet(
                column_set=[name for name, _ in rule.schema], exact_match=True, **common
            ),
            *(
                gxe.ExpectColumnValuesToBeInTypeList(
                    column=name, type_list=type_names[ctype], **common
                )
                for name, ctype in rule.schema
            ),
        ]
    if kind == "mean":
        return [
            gxe.ExpectColumnMeanToBeBetween(
                column=rule.column, min_value=rule.min, max_value=rule.max, **common
            )
        ]
    if kind == "stdev":
        return [
            gxe.ExpectColumnStdevToBeBetween(
                column=rule.column, min_value=rule.min, max_value=rule.max, **common
            )
        ]
    raise ValueError(f"rule {rule.id}: no Great Expectations compilation for kind {kind!r}")


def build_suite(rules: Sequence[Rule], name: str, engine: str = "pandas", context=None):
    """An ``ExpectationSuite`` holding every expectation of ``rules``.

    GE attaches suites to the active data context; ``context`` is created when none is given.
    """
    import great_expectations as gx

    require_resolved(rules)
    if context is None:
        ephemeral_context()
    suite = gx.ExpectationSuite(name=name)
    for rule in rules:
        for expectation in compile_rule(rule, engine):
            suite.add_expectation(expectation)
    return suite


def ephemeral_context():
    """An in-memory GE context without progress bars or usage statistics."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def result_format(key_columns: Sequence[str] = ()) -> dict[str, Any]:
    """BASIC results (counts, observed values, a few offending values); with ``key_columns``,
    SUMMARY results with the keys of a few offending rows too.

    Without keys BASIC, not SUMMARY: on pandas SUMMARY also indexes the offending rows.
    """
    if not key_columns:
        return {"result_format": "BASIC", "partial_unexpected_count": SAMPLE_SIZE}
    return {
        "result_format": "SUMMARY",
        "partial_unexpected_count": SAMPLE_SIZE,
        "unexpected_index_column_names": list(key_columns),
        # Not needed: GE would otherwise also build a pandas query string per expectation.
        "return_unexpected_index_query": False,
    }


def validate_dataframe(
    frame: pd.DataFrame,
    rules: Sequence[Rule],
    key_columns: Sequence[str],
    *,
    suite_name: str = "headrace",
    context=None,
) -> list[RuleOutcome]:
    """Run the rules' suite on ``frame`` with GE's pandas engine: one outcome per rule, in order.

    Two passes, because GE's detailed result formats cost more than its pass/fail one on a large
    frame (at 1M rows, in two runs of ``bench/data_quality.py``, BASIC took 1.2-2.2x and SUMMARY
    with row keys 1.5-3x as long as BOOLEAN_ONLY): the whole suite runs once with
    BOOLEAN_ONLY, then only what the result needs details of runs again with SUMMARY results and
    the keys of offending rows — failed expectations, the aggregate rules whose observed value is
    reported (row counts, freshness, mean, stdev, the schema's column set) and completeness rules
    with a ``min_fraction`` below 1. A passing row-level rule needs no second look: it has no
    offending rows.
    """
    import great_expectations as gx

    context = context or ephemeral_context()
    suite = build_suite(rules, suite_name, context=context)
    key_columns = [c for c in key_columns if c in frame.columns]
    batch_definition = (
        context.data_sources.add_or_update_pandas(f"{suite_name}_source")
        .add_dataframe_asset(f"{suite_name}_partition")
        .add_batch_definition_whole_dataframe(f"{suite_name}_batch")
    )
    import pandas as pd

    # pandas 3 reads strings as its "str" dtype, which GE 1.24's type check matches under no
    # name; as object columns GE checks them value by value (Python str), as on pandas 2.
    strings = [name for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype)]
    frame = frame.astype(dict.fromkeys(strings, object))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    first = batch.validate(suite, result_format="BOOLEAN_ONLY")
    results = {_result_key(r.expectation_config): r for r in first.results}
    wanted = [
        expectation
        for expectation in suite.expectations
        if _needs_details(expectation, results[_result_key(expectation.configuration)])
    ]
    if wanted:
        details = gx.ExpectationSuite(name=f"{suite_name}_details")
        for expectation in wanted:
            details.add_expectation(expectation.copy(update={"id": None}, deep=True))
        for result in batch.validate(details, result_format=result_format(key_columns)).results:
            results[_result_key(result.expectation_config)] = result
    outcomes = outcomes_from_results(list(results.values()), rules, key_columns)
    # Dates travel as datetime64 through GE; reported keys and values are dates again.
    date_columns = {name for r in rules for name, ctype in r.schema if ctype == "date"}
    date_columns |= {r.column for r in rules if r.column_type == "date"}
    for outcome in outcomes:
        outcome.offending_keys = [
            {k: _as_date(v) if k in date_columns else v for k, v in row.items()}
            for row in outcome.offending_keys
        ]
        if outcome.column in date_columns:
            outcome.unexpected_values = [_as_date(v) for v in outcome.unexpected_values]
    return outcomes


_AGGREGATE_KINDS = frozenset({"row_count", "row_count_change", "freshness", "mean", "stdev"})


def _result_key(configuration) -> tuple:
    """Which expectation a result belongs to: its rule, type and column (unique per rule)."""
    return (
        configuration.meta["rule"],
        configuration.type,
        configuration.kwargs.get("column"),
    )


def _needs_details(expectation, result) -> bool:
    kind = expectation.meta["kind"]
    if not result.success or kind in _AGGREGATE_KINDS:
        return True
    if kind == "schema":
        return expectation.expectation_type == "expect_table_columns_to_match_set"
    return kind == "completeness" and (expectation.mostly or 1.0) < 1.0


def _as_date(value: Any) -> Any:
    """``2026-01-10T00:00:00`` → ``2026-01-10``; anything else unchanged."""
    if isinstance(value, str) and value.endswith("T00:00:00") and len(value) == 19:
        return value[:10]
    return value


def outcomes_from_results(
    results: Sequence, rules: Sequence[Rule], key_columns: Sequence[str]
) -> list[RuleOutcome]:
    """Fold GE's expectation results back into one :class:`RuleOutcome` per rule."""
    by_rule: dict[str, list] = {}
    for result in results:
        by_rule.setdefault(result.expectation_config.meta["rule"], []).append(result)
    return [
        skipped_outcome(rule)
        if rule.skip_reason
        else _outcome(rule, by_rule.get(rule.id, []), key_columns)
        for rule in engine_rules(rules)
    ]


def _outcome(rule: Rule, results: list, key_columns: Sequence[str]) -> RuleOutcome:
    outcome = RuleOutcome(
        rule=rule.id,
        kind=rule.kind,
        column=rule.target,
        severity=rule.severity,
        status=PASS,
        expected=_jsonable(rule.expected()),
    )
    if not results:
        outcome.status = FAIL
        outcome.detail = "Great Expectations returned no result for this rule"
        return outcome
    errors = []
    for result in results:
        errors.extend(_exception_messages(result.exception_info))
        if not result.success:
            outcome.status = FAIL
    if errors:
        outcome.status = FAIL
        outcome.detail = "could not be evaluated: " + "; ".join(sorted(set(errors)))
    if rule.kind == "schema":
        outcome.observed = _schema_observed(rule, results)
        return outcome
    values = results[0].result or {}
    if rule.kind in ROW_LEVEL_KINDS:
        count = values.get("unexpected_count")
        if not values and results[0].success and rule.min_fraction >= 1.0:
            # Passed with no details asked for: nothing unexpected, by definition.
            count = 0
            values = {"unexpected_count": 0}
        outcome.unexpected_count = count
        element_count = values.get("element_count")
        if rule.kind == "completeness":
            if element_count and count is not None:
                outcome.observed = round(1 - count / element_count, 6)
            else:
                outcome.observed = 1.0 if count == 0 else None
            outcome.observed = {"non_null_fraction": outcome.observed, "null_rows": count}
        elif rule.kind == "uniqueness":
            outcome.observed = {"rows_with_duplicate_key": count}
        else:
            outcome.observed = {"unexpected_rows": count}
            outcome.unexpected_values = list(values.get("partial_unexpected_list") or [])[
                :SAMPLE_SIZE
            ]
        outcome.offending_keys = [
            {key: row.get(key) for key in key_columns}
            for row in (values.get("partial_unexpected_index_list") or [])[:SAMPLE_SIZE]
            if isinstance(row, dict)
        ]
    else:
        outcome.observed = values.get("observed_value")
    outcome.observed = _jsonable(outcome.observed)
    outcome.unexpected_values = _jsonable(outcome.unexpected_values)
    outcome.offending_keys = _jsonable(outcome.offending_keys)
    return outcome


def _exception_messages(info: dict | None) -> list[str]:
    """GE reports an exception either flat or keyed by the metric that raised it."""
    if not info:
        return []
    if "raised_exception" in info:
        return [info.get("exception_message") or "an exception"] if info["raised_exception"] else []
    return [
        message
        for nested in info.values()
        if isinstance(nested, dict)
        for message in _exception_messages(nested)
    ]


def _schema_observed(rule: Rule, results: list) -> dict[str, Any]:
    expected = dict(rule.schema)
    # GE returns results in its own order, not the suite's: find the column-set one by type.
    column_set = [
        r for r in results if r.expectation_config.type == "expect_table_columns_to_match_set"
    ]
    columns_result = (column_set[0].result if column_set else None) or {}
    observed_columns = list(columns_result.get("observed_value") or [])
    details = columns_result.get("details", {}).get("mismatched", {}) if columns_result else {}
    wrong_types = {}
    for result in results:
        if result.expectation_config.type == "expect_table_columns_to_match_set":
            continue
        column = result.expectation_config.kwargs.get("column")
        if not result.success and not _exception_messages(result.exception_info):
            wrong_types[column] = _jsonable((result.result or {}).get("observed_value"))
    return {
        "missing_columns": sorted(set(expected) - set(observed_columns))
        or details.get("missing", []),
        "unexpected_columns": sorted(set(observed_columns) - set(expected)),
        "wrong_types": wrong_types,
    }
