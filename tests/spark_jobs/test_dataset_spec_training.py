"""The spec's ``training:`` block: optional (one day, split at random, as before), every value
checked with an error naming the file and the field."""

from __future__ import annotations

import copy

import pytest
import yaml
from lake_helpers import SPEC_PATH

from spark_jobs.dataset_spec import SpecError, TrainingSpec, spec_from_mapping

SOURCE = "include/datasets/churn.yaml"


@pytest.fixture(scope="module")
def churn_yaml() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def with_training(churn_yaml: dict, training) -> dict:
    raw = copy.deepcopy(churn_yaml)
    raw["training"] = training
    return raw


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(SpecError) as raised:
        spec_from_mapping(raw, source=SOURCE)
    assert all(
        line.startswith(f"  - {SOURCE}: training") for line in str(raised.value).splitlines()[1:]
    )
    return raised.value.problems


def test_without_a_training_block_a_run_trains_on_its_day_split_at_random(churn_yaml):
    raw = copy.deepcopy(churn_yaml)
    raw.pop("training", None)
    assert spec_from_mapping(raw, source=SOURCE).training == TrainingSpec(1, "random")


def test_a_window_and_a_time_split_are_read(churn_yaml):
    spec = spec_from_mapping(with_training(churn_yaml, {"window_days": 7, "split": "time"}))
    assert spec.training == TrainingSpec(window_days=7, split="time")
    # Only the split defaults.
    spec = spec_from_mapping(with_training(churn_yaml, {"window_days": 3}))
    assert spec.training == TrainingSpec(window_days=3, split="random")


def test_the_window_is_not_part_of_the_data_fingerprint(churn_yaml):
    one = spec_from_mapping(with_training(churn_yaml, {"window_days": 1}))
    seven = spec_from_mapping(with_training(churn_yaml, {"window_days": 7}))
    assert one.fingerprint == seven.fingerprint


@pytest.mark.parametrize(
    ("training", "problem"),
    [
        ({"window_days": 0}, "training.window_days: must be an integer >= 1, got 0"),
        ({"window_days": "7"}, "training.window_days: must be an integer >= 1, got '7'"),
        ({"window_days": 400}, "training.window_days: must be an integer 1..366, got 400"),
        ({"split": "shuffle"}, "training.split: must be one of random, time, got 'shuffle'"),
        ({"split": "time"}, "training.split: 'time' trains on earlier days and tests on the "
                            "latest: it needs window_days >= 2, got 1"),
        ({"window": 7}, "training.window: unknown key (did you mean 'window_days'?)"),
        ([7], "training: must be a mapping, got list"),
    ],
)  # fmt: skip
def test_a_bad_training_block_names_the_field(churn_yaml, training, problem):
    assert problems_of(with_training(churn_yaml, training)) == [problem]


def test_a_training_block_needs_features(churn_yaml):
    raw = with_training(churn_yaml, {"window_days": 3})
    raw.pop("features")
    assert problems_of(raw) == ["training: needs a features: block (training reads the features)"]
