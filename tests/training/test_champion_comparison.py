"""Champion / challenger on the same rows: the paired bootstrap of the AUC difference
(training/evaluation.py) and the job's ``champion`` channel (training/train.py)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.evaluation import paired_auc_comparison


def _planted(rows: int = 200, seed: int = 5):
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * (rows // 2))
    return y, rng.uniform(size=rows)


def test_a_perfect_challenger_against_a_random_champion_has_a_positive_interval():
    y, random_scores = _planted()
    perfect = 0.25 + 0.5 * y  # every positive above every negative: AUC exactly 1

    result = paired_auc_comparison(y, perfect, random_scores)

    assert result["challenger_auc"] == 1.0
    assert result["champion_auc"] == pytest.approx(roc_auc_score(y, random_scores))
    assert result["difference"] == pytest.approx(1.0 - roc_auc_score(y, random_scores))
    lower, upper = result["interval"]
    # A random ranking has AUC 0.5 ± about 0.04 on 200 rows: the gap is far from 0.
    assert 0.3 < lower < result["difference"] < upper < 0.7
    assert (result["rows"], result["positives"], result["resamples"]) == (200, 100, 1000)
    assert result["resamples_used"] == 1000 and result["confidence"] == 0.95


def test_identical_models_give_a_zero_difference_and_a_zero_interval():
    y, scores = _planted()

    result = paired_auc_comparison(y, scores, scores.copy())

    # Paired: each resample scores both models on the same rows, so nothing but the models
    # differs and the difference is 0 in every resample.
    assert result["difference"] == 0.0 and result["interval"] == [0.0, 0.0]


def test_the_interval_straddles_zero_for_two_equally_noisy_models():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 400)
    signal = y + rng.normal(scale=1.5, size=400)
    first = 1 / (1 + np.exp(-(signal + rng.normal(scale=0.5, size=400))))
    second = 1 / (1 + np.exp(-(signal + rng.normal(scale=0.5, size=400))))

    lower, upper = paired_auc_comparison(y, first, second)["interval"]

    assert lower < 0 < upper


def test_the_bootstrap_is_deterministic_for_a_seed():
    y, scores = _planted()
    other = np.clip(scores + 0.3 * y, 0, 1)

    first = paired_auc_comparison(y, other, scores, seed=3)
    again = paired_auc_comparison(y, other, scores, seed=3)
    reseeded = paired_auc_comparison(y, other, scores, seed=4)

    assert first == again
    assert reseeded["interval"] != first["interval"]
    assert reseeded["difference"] == first["difference"]  # the point estimate needs no seed


def test_tied_scores_count_half_as_roc_auc_score_does():
    y = np.array([0, 0, 1, 1, 0, 1])
    challenger = np.array([0.5, 0.5, 0.5, 0.9, 0.1, 0.5])
    champion = np.full(6, 0.5)

    result = paired_auc_comparison(y, challenger, champion, resamples=10)

    assert result["challenger_auc"] == pytest.approx(roc_auc_score(y, challenger))
    assert result["champion_auc"] == 0.5


@pytest.mark.parametrize(
    ("y", "a", "b", "message"),
    [
        ([0, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2], "has 3 rows but y_score has 2"),
        ([1, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], "needs both label classes"),
        ([0, 1], [0.1, 1.2], [0.1, 0.2], r"row 1 is 1\.2"),
    ],
)
def test_bad_inputs_are_named(y, a, b, message):
    with pytest.raises(ValueError, match=message):
        paired_auc_comparison(np.array(y), np.array(a), np.array(b))


def _champion_channel(root: Path, model_dir: Path, edit=None) -> Path:
    """A ``champion`` channel holding ``model_dir`` as model.tar.gz; ``edit`` may rewrite the
    text of its JSON files."""
    channel = root / "champion"
    channel.mkdir(parents=True)
    with tarfile.open(channel / "model.tar.gz", "w:gz") as archive:
        for path in sorted(model_dir.rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            if edit and path.suffix == ".json":
                data = edit(path.name, data.decode()).encode()
            info = tarfile.TarInfo(path.relative_to(model_dir).as_posix())
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return channel


def _train_with_champion(tmp_path, feature_channels, champion: Path) -> dict:
    from conftest import TRAINED_RUN_FLAGS
    from training_helpers import run_train_in_process, sagemaker_env

    env = {
        **sagemaker_env(tmp_path / "run", feature_channels),
        "SM_CHANNEL_CHAMPION": str(champion),
    }
    code, _ = run_train_in_process(env, TRAINED_RUN_FLAGS)
    assert code == 0
    return json.loads((Path(env["SM_MODEL_DIR"]) / "evaluation.json").read_text())


def test_the_job_scores_the_champion_on_its_own_test_rows(tmp_path, trained_run, feature_channels):
    import hashlib

    champion = _champion_channel(tmp_path, trained_run["model_dir"])
    champion_evaluation = json.loads((trained_run["model_dir"] / "evaluation.json").read_text())

    evaluation = _train_with_champion(tmp_path, feature_channels, champion)

    comparison = evaluation["champion_comparison"]
    assert comparison["paired"] is True
    assert comparison["rows"] == evaluation["metrics"]["rows"]
    sha = hashlib.sha256((champion / "model.tar.gz").read_bytes()).hexdigest()
    assert comparison["champion_sha256"] == sha
    # The same hyperparameters and data retrain the same model (float32, seeded): the champion
    # scores these test rows exactly as it did in its own job, and the two are level.
    assert comparison["champion_auc"] == pytest.approx(champion_evaluation["metrics"]["roc_auc"])
    assert comparison["challenger_auc"] == pytest.approx(evaluation["metrics"]["roc_auc"])
    lower, upper = comparison["interval"]
    assert lower <= comparison["difference"] <= upper and lower <= 0 <= upper


def test_a_champion_on_other_features_is_reported_as_not_paired(
    tmp_path, trained_run, feature_channels
):
    config = json.loads((trained_run["model_dir"] / "model_config.json").read_text())
    renamed = config["features"][0]
    champion = _champion_channel(
        tmp_path,
        trained_run["model_dir"],
        edit=lambda name, text: text.replace(f'"{renamed}"', '"a_retired_feature"'),
    )

    comparison = _train_with_champion(tmp_path, feature_channels, champion)["champion_comparison"]

    assert comparison["paired"] is False
    assert "trained on other features" in comparison["reason"]
    assert "a_retired_feature" in comparison["reason"] and renamed in comparison["reason"]


def test_the_interval_is_the_percentile_of_roc_auc_score_over_the_same_resamples():
    rng = np.random.default_rng(11)
    y = np.zeros(30, dtype=int)
    y[[4, 17]] = 1  # two positives in 30 rows: about one resample in eight holds none
    challenger = np.round(rng.uniform(size=30), 1)  # ten distinct scores: many ties
    champion = np.round(0.3 * y + 0.7 * rng.uniform(size=30), 2)

    result = paired_auc_comparison(y, challenger, champion, seed=2)

    # The same draws as the bootstrap makes, each resample scored by scikit-learn.
    draws = np.random.default_rng(2)
    differences = []
    for _ in range(1000):
        rows = draws.integers(0, y.size, y.size)
        if y[rows].min() == y[rows].max():
            continue
        differences.append(
            roc_auc_score(y[rows], challenger[rows]) - roc_auc_score(y[rows], champion[rows])
        )
    assert 0 < 1000 - len(differences) == 1000 - result["resamples_used"]
    assert result["interval"] == pytest.approx(np.percentile(differences, [2.5, 97.5]), abs=1e-12)
    assert result["challenger_auc"] == pytest.approx(roc_auc_score(y, challenger), abs=1e-15)
