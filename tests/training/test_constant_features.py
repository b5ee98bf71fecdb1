"""A feature constant on the train split does not move the served scores later.

On the first day of data ``days_present_7d`` is 1 for every customer, and a one-hot value the
train split never saw is 0 everywhere: train.py's model learns nothing from either (their
standardized input is 0 at every step, so the weights they feed keep their random initial
values). On later days they take other values; the served scores must not change with them,
while they still change with a feature the model did learn from.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from training_helpers import SPLIT_BOUNDS, feature_frame, run_train_in_process, sagemaker_env

from training.inference import model_fn, predict_fn

CONSTANT = {"days_present_7d": 1.0, "plan__legacy": 0.0}
FLAGS = [
    "--epochs", "3", "--batch-size", "128", "--learning-rate", "0.003", "--hidden-width", "32",
    "--patience", "2", "--checkpoint-every-steps", "0", "--amp", "off", "--seed", "3",
]  # fmt: skip


@pytest.fixture(scope="module")
def first_day_model(tmp_path_factory) -> dict:
    """train.py on channels where ``CONSTANT``'s features hold one value in every split."""
    root = tmp_path_factory.mktemp("constant-features")
    frame = feature_frame(3000, seed=21).assign(**CONSTANT)
    channels = {}
    for name, _, _ in SPLIT_BOUNDS:
        directory = root / "features" / f"split={name}"
        directory.mkdir(parents=True)
        part = frame[frame["split"] == name].drop(columns="split").reset_index(drop=True)
        part.to_parquet(directory / "part-00000.parquet", index=False)
        channels[name] = directory
    env = sagemaker_env(root / "run", channels)
    code, stdout = run_train_in_process(env, FLAGS)
    assert code == 0, stdout[-2000:]
    test = pd.read_parquet(channels["test"])
    return {"model_dir": env["SM_MODEL_DIR"], "test": test}


def test_preprocessing_names_the_features_constant_on_the_train_split(first_day_model):
    with open(f"{first_day_model['model_dir']}/preprocessing.json") as handle:
        saved = json.load(handle)
    assert saved["version"] == 2
    assert saved["constant_features"] == ["days_present_7d", "plan__legacy"]


def test_later_values_of_a_constant_feature_leave_the_scores_unchanged(first_day_model):
    served = model_fn(first_day_model["model_dir"])
    test = first_day_model["test"]
    first_day = predict_fn(test, served).scores
    rng = np.random.default_rng(4)
    # Later days: customers present on 2..7 days of the window, some on the unseen plan.
    later = test.assign(
        days_present_7d=rng.integers(2, 8, len(test)).astype(float),
        plan__legacy=(rng.random(len(test)) < 0.3).astype(float),
    )
    np.testing.assert_array_equal(predict_fn(later, served).scores, first_day)
    # The model did learn from failed payments: a change there moves the scores.
    learned = test.assign(payment_failures_90d=test["payment_failures_90d"] + 2)
    moved = np.abs(predict_fn(learned, served).scores - first_day)
    assert moved.mean() > 0.05
