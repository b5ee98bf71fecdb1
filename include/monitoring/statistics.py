"""``statistics.json`` and ``constraints.json`` in the SageMaker Model Monitor format.

The structure follows the Model Monitor documentation ("Schema for Statistics (statistics.json
file)": https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-statistics.html and
"Schema for Constraints (constraints.json file)":
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-constraints.html), so the drift
stage here and AWS tooling read the same files. The same functions describe the training
partition (the baseline) and every scored batch.

Two deliberate departures, both within what the documentation allows a custom container:
- ``distribution.kll`` holds exact buckets, not a KLL sketch's estimate: 10 equal-width buckets
  from min to max (Model Monitor's default bucket count), counted exactly. Its
  ``sketch.data`` is a single level holding the exact order statistics at ``k`` evenly spaced
  ranks (all values when there are fewer), with Deequ's KLL defaults as ``parameters``.
- ``std_dev`` is the population standard deviation (ddof 0, as Deequ's ``StandardDeviation``).
"""

from __future__ import annotations

import numpy as np

from include.monitoring.columns import NUMERIC, MonitoredColumn
from include.monitoring.streaming import NumericStream

# Model Monitor's statistics and constraints files carry this version number.
FORMAT_VERSION = 0.0
HISTOGRAM_BUCKETS = 10
# Deequ's KLL sketch defaults (sketchSize 2048, shrinkingFactor 0.64).
KLL_PARAMETERS = {"c": 0.64, "k": 2048}


def ask_numeric_statistics(stream: NumericStream) -> None:
    """Ask a stream (after its first pass) for what :func:`numeric_feature_statistics` reads."""
    if stream.n:
        stream.ask(ranks=sketch_ranks(stream.n), values=bucket_edges(stream.low, stream.high)[1:-1])


def numeric_feature_statistics(column: MonitoredColumn, stream: NumericStream) -> dict:
    """One numeric feature's entry of ``statistics.json``, from a resolved stream
    (:func:`ask_numeric_statistics`).

    ``num_missing`` counts every row without a finite number (nulls and invalid values alike).
    """
    n = stream.n
    common = {"num_present": n, "num_missing": stream.missing + stream.invalid}
    if n == 0:
        # Nothing to describe; the documentation has numbers here, null says "no value" honestly.
        summary = {"mean": None, "sum": 0.0, "std_dev": None, "min": None, "max": None}
        buckets, sketch = [], []
    else:
        summary = {
            "mean": stream.mean,
            "sum": stream.total,
            "std_dev": stream.std,
            "min": stream.low,
            "max": stream.high,
        }
        buckets = equal_width_buckets(stream)
        sketch = stream.values_at(sketch_ranks(n)).tolist()
    return {
        "name": column.name,
        "inferred_type": column.inferred_type,
        "numerical_statistics": {
            "common": common,
            **summary,
            "distribution": {
                "kll": {
                    "buckets": buckets,
                    "sketch": {"parameters": dict(KLL_PARAMETERS), "data": [sketch]},
                }
            },
        },
    }


def string_feature_statistics(
    column: MonitoredColumn, counts: dict[str, int], missing: int
) -> dict:
    """One categorical feature's entry of ``statistics.json`` (buckets sorted by value)."""
    return {
        "name": column.name,
        "inferred_type": column.inferred_type,
        "string_statistics": {
            "common": {"num_present": int(sum(counts.values())), "num_missing": int(missing)},
            "distinct_count": len(counts),
            "distribution": {
                "categorical": {
                    "buckets": [
                        {"value": value, "count": int(count)}
                        for value, count in sorted(counts.items())
                    ]
                }
            },
        },
    }


def statistics_document(item_count: int, features: list[dict]) -> dict:
    """The whole ``statistics.json``."""
    return {
        "version": FORMAT_VERSION,
        "dataset": {"item_count": int(item_count)},
        "features": features,
    }


def feature_constraints(
    column: MonitoredColumn, feature_statistics: dict, item_count: int, *, domain_max_values: int
) -> dict:
    """One feature's entry of ``constraints.json``, suggested from its baseline statistics.

    ``completeness`` is the observed share of non-null values; a numeric column is non-negative
    when its minimum is; a string column's domain is its observed values when there are at most
    ``domain_max_values`` of them ("observed values for small cardinality").
    """
    stats_key = "numerical_statistics" if column.kind == NUMERIC else "string_statistics"
    stats = feature_statistics[stats_key]
    present = stats["common"]["num_present"]
    entry = {
        "name": column.name,
        "inferred_type": column.inferred_type,
        "completeness": present / item_count if item_count else 1.0,
    }
    if column.kind == NUMERIC:
        entry["num_constraints"] = {
            "is_non_negative": stats["min"] is not None and stats["min"] >= 0
        }
    else:
        values = [b["value"] for b in stats["distribution"]["categorical"]["buckets"]]
        if len(values) <= domain_max_values:
            entry["string_constraints"] = {"domains": values}
    entry["monitoringConfigOverrides"] = {}
    return entry


def constraints_document(features: list[dict], monitoring_config: dict) -> dict:
    """The whole ``constraints.json``."""
    return {"version": FORMAT_VERSION, "features": features, "monitoring_config": monitoring_config}


def bucket_edges(low: float, high: float, buckets: int = HISTOGRAM_BUCKETS) -> np.ndarray:
    """The edges of ``buckets`` equal-width buckets from ``low`` to ``high``."""
    return np.array([low, high]) if low == high else np.linspace(low, high, buckets + 1)


def equal_width_buckets(stream: NumericStream, buckets: int = HISTOGRAM_BUCKETS) -> list[dict]:
    """``[{lower_bound, upper_bound, count}]``: equal-width buckets from min to max, each holding
    ``lower <= x < upper`` (the last one closed), from the counts below the inner edges."""
    low, high, n = stream.low, stream.high, stream.n
    if low == high:
        return [{"lower_bound": low, "upper_bound": high, "count": n}]
    edges = bucket_edges(low, high, buckets)
    inner = [stream.count_below(float(edge)) for edge in edges[1:-1]]
    counts = np.diff(np.concatenate(([0], inner, [n])))
    return [
        {"lower_bound": float(lo), "upper_bound": float(hi), "count": int(c)}
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
    ]


def sketch_ranks(n: int, k: int = KLL_PARAMETERS["k"]) -> np.ndarray:
    """The ranks of the sketch's order statistics: every value up to ``k``, else ``k`` evenly
    spaced ones."""
    if n <= k:
        return np.arange(n)
    return np.linspace(0, n - 1, k).round().astype(np.int64)
