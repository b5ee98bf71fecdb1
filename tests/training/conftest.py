"""Fixtures of the training tests: small feature channels in the features job's layout, with a
planted signal, and the environment a SageMaker training container would give ``train.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The helpers module next to this file, importable from every test in this folder.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from training_helpers import sagemaker_env, write_feature_channels  # noqa: E402


@pytest.fixture(scope="session")
def feature_channels(tmp_path_factory) -> dict[str, Path]:
    """train/validation/test channels of about 2900/650/650 rows (shared: do not modify)."""
    return write_feature_channels(tmp_path_factory.mktemp("features"), rows=4200, seed=11)


@pytest.fixture
def job_env(tmp_path, feature_channels, monkeypatch) -> dict[str, str]:
    """SM_* variables and a checkpoint directory for one run, set in this process too."""
    env = sagemaker_env(tmp_path, feature_channels)
    monkeypatch.delenv("SM_HPS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


# The run the train and inference tests share: small and quick, float32 (deterministic).
TRAINED_RUN_FLAGS = [
    "--epochs", "6", "--batch-size", "128", "--learning-rate", "0.003", "--hidden-width", "64",
    "--patience", "2", "--checkpoint-every-steps", "10", "--amp", "off",
]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, feature_channels) -> dict:
    """One in-process training run: its directory, environment, exit code and stdout."""
    from training_helpers import run_train_in_process

    run_dir = tmp_path_factory.mktemp("trained")
    env = sagemaker_env(run_dir, feature_channels)
    code, stdout = run_train_in_process(env, TRAINED_RUN_FLAGS)
    return {"dir": run_dir, "env": env, "code": code, "stdout": stdout,
            "model_dir": Path(env["SM_MODEL_DIR"])}  # fmt: skip
