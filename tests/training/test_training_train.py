"""train.py end to end on a small planted-signal dataset: metric lines in the contract's format,
an AUC well above chance, the model directory's contents, hyperparameters from flags and SM_HPS,
and errors that name the flag, channel, file and column."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from training_helpers import METRIC_VALUE, REPO_ROOT, run_train_in_process, sagemaker_env

from training import train
from training.model import load_trained_model
from training.preprocessing import Standardizer

EPOCH_METRICS = ("train:loss", "validation:loss", "validation:auc", "validation:logloss")
FINAL_METRICS = ("validation:auc", "test:auc", "test:logloss", "test:f1")


def metric(name: str, text: str) -> list[float]:
    """Every value the job's MetricDefinitions regex for ``name`` finds in ``text``."""
    return [float(v) for v in re.findall(re.escape(name) + "=" + METRIC_VALUE, text)]


def test_run_succeeds_and_prints_one_metric_line_per_epoch(trained_run):
    assert trained_run["code"] == 0
    lines = trained_run["stdout"].splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch=")]
    history = json.loads((trained_run["dir"] / "output" / "data" / "history.json").read_text())
    assert len(epoch_lines) == len(history) >= 3
    for number, line in enumerate(epoch_lines):
        assert re.fullmatch(
            rf"epoch={number}"
            + "".join(rf" {re.escape(name)}=\d+\.\d{{6}}" for name in EPOCH_METRICS),
            line,
        ), line
        assert metric("validation:auc", line) == [
            pytest.approx(history[number]["validation:auc"], abs=1e-6)
        ]
    final = [line for line in lines if line.startswith("final ")]
    assert len(final) == 1
    for name in FINAL_METRICS:
        assert len(metric(name, final[0])) == 1, name


def test_model_learns_the_planted_signal(trained_run):
    final = next(line for line in trained_run["stdout"].splitlines() if line.startswith("final "))
    # The true logit itself scores about 0.88 on these rows; chance is 0.5.
    assert metric("test:auc", final)[0] > 0.8
    assert metric("validation:auc", final)[0] > 0.8
    # The best epoch's AUC is what the final line reports for validation.
    history = json.loads((trained_run["dir"] / "output" / "data" / "history.json").read_text())
    best = max(history, key=lambda entry: entry["validation:auc"])
    assert metric("validation:auc", final)[0] == pytest.approx(best["validation:auc"], abs=1e-6)


def test_model_dir_holds_weights_config_preprocessing_evaluation_and_code(
    trained_run, feature_channels
):
    model_dir = trained_run["model_dir"]
    assert {p.name for p in model_dir.iterdir()} == {
        "model.pt",
        "model_config.json",
        "preprocessing.json",
        "evaluation.json",
        "code",
    }
    assert {p.name for p in (model_dir / "code").iterdir()} == set(train.SERVING_FILES)

    config = json.loads((model_dir / "model_config.json").read_text())
    frame = pd.read_parquet(feature_channels["train"])
    expected_features = [
        c for c in frame.columns if c not in ("customer_id", "snapshot_date", "churned")
    ]
    assert config["features"] == expected_features
    assert config["n_features"] == len(expected_features)
    assert (config["hidden_width"], config["num_layers"], config["label"]) == (64, 2, "churned")
    assert config["hyperparameters"]["learning_rate"] == 0.003
    assert config["id_columns"] == ["customer_id", "snapshot_date"]

    # Preprocessing was fitted on the train split only.
    standardizer = Standardizer.load(model_dir)
    assert standardizer.features == tuple(expected_features)
    np.testing.assert_allclose(standardizer.mean, frame[expected_features].mean().to_numpy())
    tenure = expected_features.index("tenure_months")
    assert standardizer.scale[tenure] == pytest.approx(frame["tenure_months"].std(ddof=0))

    model, _ = load_trained_model(model_dir)
    state = torch.load(model_dir / "model.pt", weights_only=True)
    assert state["net.0.weight"].shape == (64, len(expected_features))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_evaluation_json_scores_the_test_split(trained_run, feature_channels):
    evaluation = json.loads((trained_run["model_dir"] / "evaluation.json").read_text())
    test_rows = len(pd.read_parquet(feature_channels["test"]))
    assert evaluation["split"] == "test"
    assert evaluation["metrics"]["rows"] == test_rows
    final = next(line for line in trained_run["stdout"].splitlines() if line.startswith("final "))
    assert evaluation["metrics"]["roc_auc"] == pytest.approx(metric("test:auc", final)[0], abs=1e-6)
    regions = evaluation["groups"]["region"]["groups"]
    assert set(regions) == {"na_east", "na_west", "eu_west", "eu_central", "apac", "latam"}
    assert sum(group["rows"] for group in regions.values()) == test_rows
    # The planted signal: failed payments and the month-to-month contract matter; region does not.
    ranking = [item["feature"] for item in evaluation["permutation_importance"]]
    # (The contract's effect may sit on any of its three collinear one-hot columns.)
    assert "payment_failures_90d" in ranking[:3]
    assert any(name.startswith("contract__") for name in ranking[:3])
    region_ranks = [i for i, name in enumerate(ranking) if name.startswith("region__")]
    assert min(region_ranks) > ranking.index("payment_failures_90d")


def test_sm_hps_supplies_defaults_and_flags_win(monkeypatch):
    monkeypatch.setenv("SM_HPS", json.dumps({"epochs": 7, "batch-size": "512", "other": 1}))
    args = train.parse_args(["--epochs", "3", "--_tuning_objective_metric", "validation:auc"])
    assert (args.epochs, args.batch_size) == (3, 512)
    assert args.id_columns == ["customer_id", "snapshot_date"]
    assert args.sensitive_groups == ["region"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "argument --epochs: must be at least 1"),
        (["--dropout", "1.5"], "argument --dropout: must be in [0, 1)"),
        (["--learning-rate", "-1"], "argument --learning-rate: must be a positive number"),
        (["--amp", "fp8"], "argument --amp: invalid choice: 'fp8'"),
    ],
)
def test_bad_hyperparameters_name_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(flags)
    assert message in capsys.readouterr().err


def test_paths_default_to_local_folders_outside_a_container(monkeypatch):
    for name in ("SM_CHANNEL_TRAIN", "SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", "/data/validation")
    monkeypatch.delenv("HEADRACE_CHECKPOINT_DIR", raising=False)
    paths = train.JobPaths.from_env()
    assert str(paths.channels["train"]) == ".local/sagemaker/input/data/train"
    assert str(paths.channels["validation"]) == "/data/validation"
    assert str(paths.model_dir) == ".local/sagemaker/model"
    assert str(paths.checkpoint_dir) == "/opt/ml/checkpoints"


def test_unknown_sensitive_group_is_an_error_naming_the_flag(tmp_path, feature_channels, caplog):
    env = sagemaker_env(tmp_path, feature_channels)
    code, _ = run_train_in_process(
        env, ["--epochs", "1", "--sensitive-groups", "region,plan", "--amp", "off"]
    )
    assert code == 2
    assert "--sensitive-groups 'plan': no one-hot feature plan__<value>" in caplog.text
    assert not (tmp_path / "model").exists()


def test_a_validation_file_missing_a_feature_names_file_and_column(
    tmp_path, feature_channels, caplog
):
    validation = tmp_path / "validation"
    validation.mkdir()
    frame = pd.read_parquet(feature_channels["validation"] / "part-00001.parquet")
    frame.drop(columns="sessions").to_parquet(validation / "part-00001.parquet", index=False)
    env = sagemaker_env(tmp_path, {**feature_channels, "validation": validation})
    code, _ = run_train_in_process(env, ["--epochs", "1", "--amp", "off"])
    assert code == 2
    assert (
        "channel validation: part-00001.parquet lacks feature columns ['sessions']" in caplog.text
    )


def test_train_py_runs_from_a_folder_named_code_as_sagemaker_lays_it_out(tmp_path):
    """SageMaker unpacks the source tarball into /opt/ml/code and runs `python train.py`."""
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    for path in (REPO_ROOT / "training").glob("*.py"):
        shutil.copyfile(path, code_dir / path.name)
    done = subprocess.run(
        [sys.executable, "train.py", "--help"],
        cwd=code_dir,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--checkpoint-every-steps" in done.stdout
