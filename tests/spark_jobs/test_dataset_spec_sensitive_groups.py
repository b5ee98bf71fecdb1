"""The spec's ``features.sensitive_groups``: optional (older specs parse as before), and every
group must be a categorical feature, since the trainer finds a group by its one-hot columns."""

from __future__ import annotations

import copy

import pytest
import yaml
from lake_helpers import REPO_ROOT, SPEC_PATH

from spark_jobs.dataset_spec import SpecError, load_spec, spec_from_mapping


@pytest.fixture(scope="module")
def churn_yaml() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def with_groups(churn_yaml: dict, groups) -> dict:
    raw = copy.deepcopy(churn_yaml)
    raw["features"]["sensitive_groups"] = groups
    return raw


def test_a_spec_without_the_field_parses_as_before(churn_yaml):
    raw = copy.deepcopy(churn_yaml)
    raw["features"].pop("sensitive_groups", None)
    assert spec_from_mapping(raw, source="churn.yaml").features.sensitive_groups is None


def test_declared_groups_are_kept_in_order(churn_yaml):
    spec = spec_from_mapping(with_groups(churn_yaml, ["region", "plan"]), source="churn.yaml")
    assert spec.features.sensitive_groups == ("region", "plan")


def test_an_empty_list_means_no_group_metrics(churn_yaml):
    assert spec_from_mapping(with_groups(churn_yaml, []), "x.yaml").features.sensitive_groups == ()


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (["tenure_months"], "features.sensitive_groups[0]: 'tenure_months' must be one of "
                            "features.categorical ['plan', 'contract', 'region', 'payment_method']"),
        (["region", "nope"], "features.sensitive_groups[1]: 'nope' must be one of"),
        ("region", "features.sensitive_groups: must be a list of column names, got str"),
        (["Region"], "features.sensitive_groups[0]: must be a lower_snake_case name, got 'Region'"),
        (["region", "region"], "features.sensitive_groups: lists a column more than once"),
    ],
)  # fmt: skip
def test_bad_groups_are_refused_naming_the_file_and_field(churn_yaml, groups, message):
    with pytest.raises(SpecError) as raised:
        spec_from_mapping(with_groups(churn_yaml, groups), source="bad.yaml")
    assert f"bad.yaml: {message}" in str(raised.value)


def test_the_benefit_claims_spec_declares_its_groups():
    spec = load_spec(REPO_ROOT / "include" / "datasets" / "benefit_claims.yaml")
    assert spec.features.sensitive_groups == ("region", "employment_status")
    assert spec.label == "flagged_for_review"
    assert {c.name: c.pii.treatment for c in spec.pii_columns} == {
        "claimant_national_id": "hash",
        "claimant_email": "drop",
        "claimant_phone": "mask",
    }
