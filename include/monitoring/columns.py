"""Which columns a model's monitoring watches, how each is typed, and their values as numpy arrays.

Monitoring reads the curated columns the model was trained from, not the one-hot features: a
Kolmogorov-Smirnov test on a 0/1 column says nothing, and Model Monitor's string domains need the
raw categories. The typing comes from the dataset spec's ``features:`` block (numeric columns are
``Integral`` or ``Fractional`` by their declared type; categorical and boolean columns are
``String``), so keys, timestamps and PII columns are never monitored. The model's prediction score,
when the frame has one, is monitored as a ``Fractional`` column too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

NUMERIC = "numeric"
CATEGORICAL = "categorical"
# Model Monitor's inferred_type values (the statistics.json / constraints.json documentation).
INTEGRAL, FRACTIONAL, STRING = "Integral", "Fractional", "String"
_INTEGRAL_SPEC_TYPES = frozenset({"int", "long"})


@dataclass(frozen=True)
class MonitoredColumn:
    """One column: ``kind`` picks its drift metrics, ``inferred_type`` is Model Monitor's type."""

    name: str
    kind: str
    inferred_type: str

    def __post_init__(self) -> None:
        expected = {NUMERIC: (INTEGRAL, FRACTIONAL), CATEGORICAL: (STRING,)}
        if self.inferred_type not in expected.get(self.kind, ()):
            raise ValueError(
                f"monitored column {self.name!r}: kind {self.kind!r} with inferred_type "
                f"{self.inferred_type!r} (numeric takes Integral/Fractional, categorical String)"
            )

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "inferred_type": self.inferred_type}


def monitored_columns(
    spec, frame_columns: Iterable[str], *, score_column: str | None = None
) -> tuple[MonitoredColumn, ...]:
    """The monitored columns of a frame of ``spec``'s curated data, in the spec's feature order.

    :param spec: the dataset spec (``spark_jobs.dataset_spec.DatasetSpec``) whose ``features:``
        block lists the numeric, categorical and boolean columns.
    :param frame_columns: the columns the frame holds; every spec feature must be among them.
    :param score_column: the prediction score's column, monitored when the frame has it.
    """
    if spec.features is None:
        raise ValueError(f"{spec.source}: the spec has no features: block to monitor")
    available = set(frame_columns)
    features = spec.features
    declared = [
        *(("numeric", name) for name in features.numeric),
        *(("categorical", name) for name in features.categorical),
        *(("boolean", name) for name in features.boolean),
    ]
    absent = [f"features.{block}: {name!r}" for block, name in declared if name not in available]
    if absent:
        raise ValueError(
            f"the frame lacks columns that {spec.source} declares as features: " + ", ".join(absent)
        )
    columns = []
    for block, name in declared:
        if block == "numeric":
            integral = spec.column(name).type in _INTEGRAL_SPEC_TYPES
            columns.append(MonitoredColumn(name, NUMERIC, INTEGRAL if integral else FRACTIONAL))
        else:
            columns.append(MonitoredColumn(name, CATEGORICAL, STRING))
    if score_column and score_column in available:
        if score_column in {c.name for c in columns}:
            raise ValueError(f"score column {score_column!r} is also a feature of {spec.source}")
        columns.append(MonitoredColumn(score_column, NUMERIC, FRACTIONAL))
    return tuple(columns)


@dataclass(frozen=True)
class NumericValues:
    """A numeric column's finite values, sorted, and what was not one.

    ``invalid`` counts present values that are not finite numbers (text, booleans, infinities);
    ``first_invalid`` is ``(row position, value)`` of the first of them, for error messages.
    """

    sorted_values: np.ndarray
    missing: int
    invalid: int = 0
    first_invalid: tuple[int, object] | None = None

    @property
    def present(self) -> int:
        return int(self.sorted_values.size)


def numeric_values(series: pd.Series) -> NumericValues:
    """``series`` as sorted float64 values (numpy's SIMD sort: the drift check's main cost)."""
    values, raw_invalid = _float_values(series)
    finite = np.isfinite(values)
    if raw_invalid is None and np.count_nonzero(finite) == values.size:
        # The common case, one pass: np.sort copies, so the caller's frame is never reordered.
        return NumericValues(sorted_values=np.sort(values), missing=0)
    infinite = np.isinf(values)
    invalid = infinite if raw_invalid is None else raw_invalid | infinite
    n_invalid = int(np.count_nonzero(invalid))
    first_invalid = None
    if n_invalid:
        row = int(np.flatnonzero(invalid)[0])
        first_invalid = (row, series.iloc[row])
    present = values[finite]  # a boolean mask copies: sorting in place is safe
    present.sort()
    return NumericValues(
        sorted_values=present,
        missing=len(series) - int(present.size) - n_invalid,
        invalid=n_invalid,
        first_invalid=first_invalid,
    )


def finite_values(series: pd.Series) -> np.ndarray:
    """The values :func:`numeric_values` sorts, in the series' order (not to be modified: it can
    be the frame's own array), for a pass that needs no order."""
    values, _ = _float_values(series)
    finite = np.isfinite(values)
    return values if np.count_nonzero(finite) == values.size else values[finite]


def _float_values(series: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """``(float64 values with NaN for missing, present values that are not numbers)``; the
    second is None for a numeric column (it has none)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return np.full(len(series), np.nan), series.notna().to_numpy()
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iuf":
        # A plain numpy column: NaN already marks missing floats, and asking for na_value would
        # copy the column for nothing (the caller's frame is never modified either way).
        return series.to_numpy(dtype=np.float64), None
    if pd.api.types.is_numeric_dtype(series.dtype):  # nullable Int64 / Float64
        return series.to_numpy(dtype=np.float64, na_value=np.nan), None
    coerced = pd.to_numeric(series, errors="coerce")
    values = coerced.to_numpy(dtype=np.float64, na_value=np.nan)
    return values, (series.notna() & coerced.isna()).to_numpy()


def category_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """``({category: count}, missing)`` of a categorical or boolean column.

    Categories are compared as text, booleans as ``"true"`` / ``"false"`` (how the landing files
    and Model Monitor's CSV reader spell them). Counted with one hash pass (``value_counts``),
    never per row in Python.
    """
    counts = series.value_counts(dropna=False, sort=False)
    missing = 0
    out: dict[str, int] = {}
    for value, count in counts.items():
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            missing += int(count)
            continue
        key = str(value).lower() if isinstance(value, bool | np.bool_) else str(value)
        out[key] = out.get(key, 0) + int(count)
    return dict(sorted(out.items())), missing
