"""The monitoring baseline: Model Monitor's statistics.json / constraints.json, checked against the
structure AWS documents, with values recomputed independently; the stored profile round-trips."""

from __future__ import annotations

import io
import json

import jsonschema
import numpy as np
import pandas as pd
import pytest

from include.monitoring.baseline import build_baseline, load_baseline, write_baseline
from include.monitoring.columns import (
    CATEGORICAL,
    FRACTIONAL,
    INTEGRAL,
    NUMERIC,
    STRING,
    MonitoredColumn,
    monitored_columns,
)
from include.monitoring.thresholds import MonitoringConfig
from include.storage import storage_for

# Written down from "Schema for Statistics (statistics.json file)",
# https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-statistics.html
# (also model-monitor-interpreting-statistics.html): version, dataset.item_count, and per feature
# name, inferred_type and numerical_statistics {common, mean, sum, std_dev, min, max,
# distribution.kll {buckets [{lower_bound, upper_bound, count}], sketch {parameters {c, k},
# data [[...]]}}} or string_statistics {common, distinct_count, distribution.categorical.buckets
# [{value, count}]}.
_COMMON = {
    "type": "object",
    "required": ["num_present", "num_missing"],
    "properties": {
        "num_present": {"type": "integer", "minimum": 0},
        "num_missing": {"type": "integer", "minimum": 0},
    },
}
_NUMBER = {"type": "number"}
STATISTICS_SCHEMA = {
    "type": "object",
    "required": ["version", "dataset", "features"],
    "properties": {
        "version": {"const": 0},
        "dataset": {
            "type": "object",
            "required": ["item_count"],
            "properties": {"item_count": {"type": "integer", "minimum": 0}},
        },
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "inferred_type"],
                "properties": {
                    "name": {"type": "string"},
                    "inferred_type": {"enum": ["Integral", "Fractional", "String", "Unknown"]},
                    "numerical_statistics": {
                        "type": "object",
                        "required": [
                            "common",
                            "mean",
                            "sum",
                            "std_dev",
                            "min",
                            "max",
                            "distribution",
                        ],
                        "properties": {
                            "common": _COMMON,
                            "mean": _NUMBER,
                            "sum": _NUMBER,
                            "std_dev": _NUMBER,
                            "min": _NUMBER,
                            "max": _NUMBER,
                            "distribution": {
                                "type": "object",
                                "required": ["kll"],
                                "properties": {
                                    "kll": {
                                        "type": "object",
                                        "required": ["buckets", "sketch"],
                                        "properties": {
                                            "buckets": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "required": [
                                                        "lower_bound",
                                                        "upper_bound",
                                                        "count",
                                                    ],
                                                    "properties": {
                                                        "lower_bound": _NUMBER,
                                                        "upper_bound": _NUMBER,
                                                        "count": {"type": "integer", "minimum": 0},
                                                    },
                                                },
                                            },
                                            "sketch": {
                                                "type": "object",
                                                "required": ["parameters", "data"],
                                                "properties": {
                                                    "parameters": {
                                                        "type": "object",
                                                        "required": ["c", "k"],
                                                        "properties": {"c": _NUMBER, "k": _NUMBER},
                                                    },
                                                    "data": {
                                                        "type": "array",
                                                        "items": {
                                                            "type": "array",
                                                            "items": _NUMBER,
                                                        },
                                                    },
                                                },
                                            },
                                        },
                                    }
                                },
                            },
                        },
                    },
                    "string_statistics": {
                        "type": "object",
                        "required": ["common", "distinct_count", "distribution"],
                        "properties": {
                            "common": _COMMON,
                            "distinct_count": {"type": "integer", "minimum": 0},
                            "distribution": {
                                "type": "object",
                                "required": ["categorical"],
                                "properties": {
                                    "categorical": {
                                        "type": "object",
                                        "required": ["buckets"],
                                        "properties": {
                                            "buckets": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "required": ["value", "count"],
                                                    "properties": {
                                                        "value": {"type": "string"},
                                                        "count": {"type": "integer", "minimum": 0},
                                                    },
                                                },
                                            }
                                        },
                                    }
                                },
                            },
                        },
                    },
                },
                # A feature carries the statistics of its type, never both.
                "oneOf": [
                    {
                        "required": ["numerical_statistics"],
                        "not": {"required": ["string_statistics"]},
                    },
                    {
                        "required": ["string_statistics"],
                        "not": {"required": ["numerical_statistics"]},
                    },
                ],
            },
        },
    },
}

# Written down from "Schema for Constraints (constraints.json file)",
# https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-constraints.html: version,
# features [{name, inferred_type, completeness, num_constraints.is_non_negative,
# string_constraints.domains, monitoringConfigOverrides}], monitoring_config {evaluate_constraints,
# emit_metrics, datatype_check_threshold, domain_content_threshold, distribution_constraints
# {perform_comparison, comparison_threshold, comparison_method, categorical_comparison_threshold,
# categorical_drift_method}}.
_ENABLED = {"enum": ["Enabled", "Disabled"]}
CONSTRAINTS_SCHEMA = {
    "type": "object",
    "required": ["version", "features", "monitoring_config"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": 0},
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "inferred_type", "completeness", "monitoringConfigOverrides"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "inferred_type": {"enum": ["Integral", "Fractional", "String", "Unknown"]},
                    "completeness": {"type": "number", "minimum": 0, "maximum": 1},
                    "num_constraints": {
                        "type": "object",
                        "required": ["is_non_negative"],
                        "additionalProperties": False,
                        "properties": {"is_non_negative": {"type": "boolean"}},
                    },
                    "string_constraints": {
                        "type": "object",
                        "required": ["domains"],
                        "additionalProperties": False,
                        "properties": {"domains": {"type": "array", "items": {"type": "string"}}},
                    },
                    "monitoringConfigOverrides": {"type": "object"},
                },
            },
        },
        "monitoring_config": {
            "type": "object",
            "required": [
                "evaluate_constraints",
                "emit_metrics",
                "datatype_check_threshold",
                "domain_content_threshold",
                "distribution_constraints",
            ],
            "additionalProperties": False,
            "properties": {
                "evaluate_constraints": _ENABLED,
                "emit_metrics": _ENABLED,
                "datatype_check_threshold": _NUMBER,
                "domain_content_threshold": _NUMBER,
                "distribution_constraints": {
                    "type": "object",
                    "required": [
                        "perform_comparison",
                        "comparison_threshold",
                        "comparison_method",
                        "categorical_comparison_threshold",
                        "categorical_drift_method",
                    ],
                    "additionalProperties": False,
                    "properties": {
                        "perform_comparison": _ENABLED,
                        "comparison_threshold": _NUMBER,
                        "comparison_method": {"enum": ["Simple", "Robust"]},
                        "categorical_comparison_threshold": _NUMBER,
                        "categorical_drift_method": {"enum": ["LInfinity", "ChiSquared"]},
                    },
                },
            },
        },
    },
}


def test_monitored_columns_come_from_the_spec_features_block(churn_columns):
    kinds = {c.name: (c.kind, c.inferred_type) for c in churn_columns}
    assert kinds == {
        "tenure_months": (NUMERIC, INTEGRAL),
        "monthly_charge": (NUMERIC, FRACTIONAL),
        "total_charges": (NUMERIC, FRACTIONAL),
        "minutes_used": (NUMERIC, FRACTIONAL),
        "sessions": (NUMERIC, INTEGRAL),
        "data_gb": (NUMERIC, FRACTIONAL),
        "support_tickets_30d": (NUMERIC, INTEGRAL),
        "payment_failures_90d": (NUMERIC, INTEGRAL),
        "plan": (CATEGORICAL, STRING),
        "contract": (CATEGORICAL, STRING),
        "region": (CATEGORICAL, STRING),
        "payment_method": (CATEGORICAL, STRING),
        "autopay": (CATEGORICAL, STRING),
        "score": (NUMERIC, FRACTIONAL),
    }
    # Keys, timestamps and PII are never monitored.
    assert not {"customer_id", "event_ts", "email", "phone", "national_id"} & set(kinds)


def test_monitored_columns_name_the_spec_and_columns_a_frame_lacks(churn_spec, churn_frames):
    frame = churn_frames["train"].drop(columns=["plan", "sessions"])
    with pytest.raises(ValueError, match=r"churn\.yaml") as error:
        monitored_columns(churn_spec, frame.columns)
    assert "features.numeric: 'sessions'" in str(error.value)
    assert "features.categorical: 'plan'" in str(error.value)
    # Without a score column in the frame, the score is simply not monitored.
    names = [
        c.name
        for c in monitored_columns(
            churn_spec, churn_frames["train"].drop(columns="score").columns, score_column="score"
        )
    ]
    assert "score" not in names


def test_statistics_and_constraints_follow_model_monitor_structure(churn_baseline):
    jsonschema.validate(churn_baseline.statistics, STATISTICS_SCHEMA)
    jsonschema.validate(churn_baseline.constraints, CONSTRAINTS_SCHEMA)
    # JSON-serializable as written (no NaN, no numpy scalars).
    json.dumps(churn_baseline.statistics, allow_nan=False)
    json.dumps(churn_baseline.constraints, allow_nan=False)


def test_numeric_statistics_match_the_data(churn_baseline, churn_frames):
    train = churn_frames["train"]
    features = {f["name"]: f for f in churn_baseline.statistics["features"]}
    assert churn_baseline.statistics["dataset"]["item_count"] == len(train) == 20_000
    for name in ("monthly_charge", "total_charges", "data_gb", "sessions", "score"):
        column = train[name]
        stats = features[name]["numerical_statistics"]
        assert stats["common"] == {
            "num_present": int(column.notna().sum()),
            "num_missing": int(column.isna().sum()),
        }
        assert stats["mean"] == pytest.approx(column.mean(), rel=1e-12)
        assert stats["sum"] == pytest.approx(column.sum(), rel=1e-12)
        assert stats["std_dev"] == pytest.approx(column.std(ddof=0), rel=1e-9)
        assert (stats["min"], stats["max"]) == (column.min(), column.max())
        buckets = stats["distribution"]["kll"]["buckets"]
        counts, edges = np.histogram(column.dropna(), bins=10)
        assert [b["count"] for b in buckets] == counts.tolist()
        assert [b["lower_bound"] for b in buckets] == pytest.approx(edges[:-1].tolist())
    # total_charges is null for brand-new customers, data_gb for ~2 % of rows: both really missing.
    assert features["total_charges"]["numerical_statistics"]["common"]["num_missing"] > 0
    assert features["data_gb"]["numerical_statistics"]["common"]["num_missing"] > 0


def test_string_statistics_and_constraints_match_the_data(churn_baseline, churn_frames):
    train = churn_frames["train"]
    stats = {f["name"]: f for f in churn_baseline.statistics["features"]}
    plan = stats["plan"]["string_statistics"]
    expected = train["plan"].value_counts().sort_index()
    assert plan["distinct_count"] == 4
    assert [
        (b["value"], b["count"]) for b in plan["distribution"]["categorical"]["buckets"]
    ] == list(expected.items())
    constraints = {f["name"]: f for f in churn_baseline.constraints["features"]}
    assert constraints["plan"]["string_constraints"]["domains"] == [
        "basic",
        "family",
        "premium",
        "standard",
    ]
    assert constraints["autopay"]["string_constraints"]["domains"] == ["false", "true"]
    assert constraints["region"]["completeness"] == 1.0
    assert constraints["data_gb"]["completeness"] == pytest.approx(train["data_gb"].notna().mean())
    assert constraints["monthly_charge"]["num_constraints"] == {"is_non_negative": True}
    assert constraints["score"]["inferred_type"] == "Fractional"
    distribution = churn_baseline.constraints["monitoring_config"]["distribution_constraints"]
    # The config's default KS and L-infinity thresholds, so AWS tooling judges the same way.
    assert distribution["comparison_threshold"] == 0.1
    assert distribution["categorical_comparison_threshold"] == 0.1
    assert distribution["categorical_drift_method"] == "LInfinity"


def test_domain_is_left_out_for_high_cardinality_and_negatives_are_noticed():
    column = MonitoredColumn("device", CATEGORICAL, STRING)
    delta = MonitoredColumn("delta", NUMERIC, FRACTIONAL)
    frame = pd.DataFrame({"device": [f"d{i}" for i in range(60)], "delta": np.linspace(-1, 1, 60)})
    baseline, _ = build_baseline(frame, [column, delta], MonitoringConfig(domain_max_values=50))
    constraints = {f["name"]: f for f in baseline.constraints["features"]}
    assert "string_constraints" not in constraints["device"]
    assert constraints["delta"]["num_constraints"] == {"is_non_negative": False}


def test_bad_numeric_value_names_column_and_row():
    column = MonitoredColumn("monthly_charge", NUMERIC, FRACTIONAL)
    frame = pd.DataFrame({"monthly_charge": ["19.99", "39.99", "abc", "69.99"]})
    with pytest.raises(
        ValueError, match=r"'monthly_charge'.*the first at row 2 \(counting from 0\): 'abc'"
    ):
        build_baseline(frame, [column])


def test_reference_sample_is_deterministic_and_capped(churn_frames, churn_columns):
    config = MonitoringConfig(reference_sample_rows=5_000, reference_sample_seed=11)
    first, sample = build_baseline(churn_frames["train"], churn_columns, config)
    _, again = build_baseline(churn_frames["train"], churn_columns, config)
    assert len(sample) == 5_000
    pd.testing.assert_frame_equal(sample, again)
    assert list(sample.columns) == [c.name for c in churn_columns if c.kind == NUMERIC]
    # PSI bins come from the whole partition, KS from the sample.
    reference = first.references["monthly_charge"]
    assert reference.sample_sorted.size == 5_000
    assert reference.psi_shares.sum() == pytest.approx(1.0)
    expected_edges = np.unique(
        np.quantile(churn_frames["train"]["monthly_charge"], np.arange(1, 10) / 10)
    )
    np.testing.assert_array_equal(reference.psi_edges, expected_edges)


def test_write_and_load_round_trip_on_local_files(
    tmp_path, churn_frames, churn_columns, monitoring_config
):
    root = (tmp_path / "monitoring" / "churn" / "model_version=3" / "baseline").as_uri()
    uris = write_baseline(
        churn_frames["train"],
        churn_columns,
        root,
        monitoring_config,
        metadata={"model_version": "3"},
    )
    assert sorted(uris) == ["constraints", "reference_profile", "reference_sample", "statistics"]
    first_bytes = {k: storage_for(u).read_bytes(u) for k, u in uris.items()}
    # Idempotent: the same partition writes the same bytes.
    write_baseline(
        churn_frames["train"],
        churn_columns,
        root,
        monitoring_config,
        metadata={"model_version": "3"},
    )
    assert {k: storage_for(u).read_bytes(u) for k, u in uris.items()} == first_bytes

    loaded = load_baseline(root)
    built, _ = build_baseline(
        churn_frames["train"], churn_columns, monitoring_config, metadata={"model_version": "3"}
    )
    assert loaded.statistics == built.statistics
    assert loaded.constraints == built.constraints
    assert loaded.profile["metadata"] == {"model_version": "3"}
    for name, reference in built.references.items():
        again = loaded.references[name]
        assert again.column == reference.column
        if reference.column.kind == NUMERIC:
            np.testing.assert_array_equal(again.sample_sorted, reference.sample_sorted)
            np.testing.assert_array_equal(again.psi_edges, reference.psi_edges)
            np.testing.assert_array_equal(again.ks_cdf, reference.ks_cdf)
        else:
            assert again.categories == reference.categories
            np.testing.assert_array_equal(again.shares, reference.shares)


def test_load_baseline_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"reference_profile\.json is missing"):
        load_baseline((tmp_path / "nothing").as_uri())


def test_write_and_load_round_trip_on_s3(moto_s3, churn_frames, churn_columns, monitoring_config):
    root = f"s3://{moto_s3}/lake/monitoring/churn/model_version=3/baseline"
    uris = write_baseline(churn_frames["train"].head(2_000), churn_columns, root, monitoring_config)
    assert uris["statistics"] == f"{root}/statistics.json"
    loaded = load_baseline(root)
    assert loaded.item_count == 2_000
    sample = pd.read_parquet(
        io.BytesIO(storage_for(uris["reference_sample"]).read_bytes(uris["reference_sample"]))
    )
    assert len(sample) == 2_000
    jsonschema.validate(loaded.constraints, CONSTRAINTS_SCHEMA)


@pytest.mark.parametrize(
    ("document", "path", "value"),
    [
        ("constraints", ("features", 0, "inferred_type"), "Integer"),
        (
            "constraints",
            ("monitoring_config", "distribution_constraints", "categorical_drift_method"),
            "L1",
        ),
        ("statistics", ("features", 0, "numerical_statistics", "common", "num_present"), -1),
        ("statistics", ("dataset",), {}),
    ],
)
def test_schemas_reject_what_the_documentation_does_not_allow(
    churn_baseline, document, path, value
):
    """The written-down schemas are strict enough to catch a wrong name or type."""
    payload = json.loads(json.dumps(getattr(churn_baseline, document)))
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    schema = CONSTRAINTS_SCHEMA if document == "constraints" else STATISTICS_SCHEMA
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, schema)
