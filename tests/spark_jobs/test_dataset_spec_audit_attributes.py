"""The spec's ``features.audit_attributes`` (curated columns kept out of the model, carried for
the fairness audit) and ``features.fairness`` (the audit's decision threshold and limits):
optional, checked against the columns and the features, errors naming the file and field."""

from __future__ import annotations

import copy

import pytest
import yaml
from lake_helpers import SPEC_PATH

from spark_jobs.dataset_spec import FairnessSpec, SpecError, spec_from_mapping


@pytest.fixture(scope="module")
def churn_yaml() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def with_features(churn_yaml: dict, **fields) -> dict:
    raw = copy.deepcopy(churn_yaml)
    raw["features"].update(fields)
    return raw


def test_a_spec_without_the_fields_parses_as_before(churn_yaml):
    features = spec_from_mapping(churn_yaml, source="churn.yaml").features
    assert features.audit_attributes == ()
    assert features.fairness == FairnessSpec()
    assert features.fairness.hyperparameters() == {}


def test_an_audit_attribute_that_is_no_feature_is_kept(churn_yaml):
    raw = with_features(churn_yaml, audit_attributes=["device_model"])
    features = spec_from_mapping(raw, source="churn.yaml").features
    assert features.audit_attributes == ("device_model",)
    assert features.sensitive_groups == ("region",)  # sensitive_groups is unchanged


def test_fairness_settings_become_train_py_flags(churn_yaml):
    raw = with_features(
        churn_yaml,
        fairness={
            "decision_threshold": "youden",
            "min_group_rows": 50,
            "max_group_difference": 0.05,
            "min_disparate_impact": 0.9,
        },
    )
    fairness = spec_from_mapping(raw, source="churn.yaml").features.fairness
    assert fairness.hyperparameters() == {
        "decision-threshold": "youden",
        "min-group-rows": "50",
        "max-group-difference": "0.05",
        "min-disparate-impact": "0.9",
    }
    fixed = with_features(churn_yaml, fairness={"decision_threshold": 0.3})
    assert spec_from_mapping(fixed, "x.yaml").features.fairness.hyperparameters() == {
        "decision-threshold": "0.3"
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"audit_attributes": ["region"]},
            "features.audit_attributes[0]: 'region' is a model input (features.categorical); "
            "audit a categorical input with features.sensitive_groups",
        ),
        (
            {"audit_attributes": ["tenure_months"]},
            "features.audit_attributes[0]: 'tenure_months' is a model input (features.numeric)",
        ),
        ({"audit_attributes": ["nope"]}, "features.audit_attributes[0]: 'nope' is not a declared"),
        (
            {"audit_attributes": ["email"]},
            "features.audit_attributes[0]: 'email' is PII (treatment",
        ),
        ({"audit_attributes": ["churned"]}, "features.audit_attributes[0]: 'churned' is the label"),
        (
            {"audit_attributes": ["customer_id"]},
            "features.audit_attributes[0]: 'customer_id' is the split key or partition column",
        ),
        (
            {"audit_attributes": ["event_ts"]},
            "features.audit_attributes[0]: 'event_ts' has type timestamp; audit groups need",
        ),
        (
            {"audit_attributes": ["device_model", "device_model"]},
            "features.audit_attributes: lists a column more than once",
        ),
        ({"audit_attributes": "device_model"}, "features.audit_attributes: must be a list"),
        (
            {"fairness": {"decision_threshold": 1.2}},
            "features.fairness.decision_threshold: must be f1 or youden (chosen on the "
            "validation split) or a number in (0, 1), got 1.2",
        ),
        (
            {"fairness": {"decision_threshold": "best"}},
            "features.fairness.decision_threshold: must be f1 or youden",
        ),
        (
            {"fairness": {"min_group_rows": 0}},
            "features.fairness.min_group_rows: must be an integer >= 1, got 0",
        ),
        (
            {"fairness": {"min_disparate_impact": 80}},
            "features.fairness.min_disparate_impact: must be a number in [0, 1], got 80",
        ),
        (
            {"fairness": {"threshold": 0.5}},
            "features.fairness.threshold: unknown key (did you mean 'decision_threshold'?)",
        ),
        (
            {"sensitive_groups": ["device_model"]},
            "features.sensitive_groups[0]: 'device_model' must be one of features.categorical "
            "['plan', 'contract', 'region', 'payment_method']; to audit a column that is not a "
            "model input, list it in features.audit_attributes",
        ),
    ],
)
def test_bad_fields_are_refused_naming_the_file_and_field(churn_yaml, fields, message):
    with pytest.raises(SpecError) as raised:
        spec_from_mapping(with_features(churn_yaml, **fields), source="bad.yaml")
    assert f"bad.yaml: {message}" in str(raised.value)
