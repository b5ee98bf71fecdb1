"""The fairness audit of training/evaluation.py: Clarify-style gaps against hand-computed values,
groups too small to judge, ties that still name two groups, and the decision threshold chosen
on validation rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_curve

from training.evaluation import GAP_METRICS, choose_threshold, group_metrics

# Group a: 6 rows, labels 1 1 1 0 0 0, predicted (>= 0.5) 1 1 0 1 0 0.
# Group b: 4 rows, labels 1 0 0 0, predicted 1 0 0 0.
# Group c: 2 rows (fewer than min_group_rows=3). Group d: 5 rows, all negative.
LABELS = np.concatenate([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0], [1, 0], [0] * 5])
SCORES = np.concatenate(
    [[0.9, 0.8, 0.4, 0.7, 0.2, 0.1], [0.6, 0.3, 0.2, 0.1], [0.9, 0.9], [0.6, 0.1, 0.1, 0.1, 0.1]]
)
SEX = np.repeat(["a", "b", "c", "d"], [6, 4, 2, 5])


@pytest.fixture(scope="module")
def audit() -> dict:
    return group_metrics(LABELS, SCORES, {"sex": SEX}, threshold=0.5, min_group_rows=3)["sex"]


def test_per_group_rates_match_hand_computed_values(audit):
    a, b = audit["groups"]["a"], audit["groups"]["b"]
    assert (a["rows"], a["positives"], a["label_rate"], a["positive_rate"]) == (6, 3, 0.5, 0.5)
    assert a["recall"] == pytest.approx(2 / 3)
    # 9 (positive, negative) pairs; only (0.4, 0.7) is misordered.
    assert a["roc_auc"] == pytest.approx(8 / 9)
    assert (b["rows"], b["positives"], b["label_rate"], b["positive_rate"]) == (4, 1, 0.25, 0.25)
    assert b["recall"] == 1.0 and b["roc_auc"] == 1.0


def test_clarify_gaps_match_hand_computed_values_and_name_both_groups(audit):
    # CI = (n_a - n_d) / (n_a + n_d) = (6 - 4) / 10.
    assert audit["class_imbalance"] == {"value": pytest.approx(0.2), "highest": "a", "lowest": "b"}
    # DPL = q_a - q_d = 0.5 - 0.25 (labels), DPPL = q'_a - q'_d = 0.5 - 0.25 (predictions).
    assert audit["label_rate_difference"] == {"value": 0.25, "highest": "a", "lowest": "b"}
    assert audit["positive_rate_difference"] == {"value": 0.25, "highest": "a", "lowest": "b"}
    # EOD = TPR_b - TPR_a = 1 - 2/3: b's one positive is found, two of a's three.
    assert audit["recall_difference"] == {
        "value": pytest.approx(1 / 3),
        "highest": "b",
        "lowest": "a",
    }
    # DI = q'_d / q'_a = 0.25 / 0.5.
    assert audit["disparate_impact"] == {"value": 0.5, "highest": "a", "lowest": "b"}
    assert audit["roc_auc_difference"] == {
        "value": pytest.approx(1 / 9),
        "highest": "b",
        "lowest": "a",
    }
    assert set(GAP_METRICS) <= set(audit)


def test_small_and_single_class_groups_are_too_small_to_judge_with_their_counts(audit):
    c, d = audit["groups"]["c"], audit["groups"]["d"]
    assert c == {
        "rows": 2,
        "positives": 1,
        "judged": False,
        "reason": "2 rows, fewer than 3",
        "label_rate": None,
        "positive_rate": None,
        "recall": None,
        "roc_auc": None,
    }
    assert d["judged"] is False and d["reason"] == "labels of one class only (0 positive of 5)"
    assert (d["rows"], d["positives"], d["positive_rate"]) == (5, 0, None)
    # c's positive rate (1.0) and d's (0.2) would dominate every gap if they were judged.
    for name in GAP_METRICS:
        assert {audit[name]["highest"], audit[name]["lowest"]} == {"a", "b"}, name


def test_tied_groups_name_two_different_groups():
    # A constant model: every row predicted positive, so every group's rate is 1.0.
    labels = np.array([1, 0] * 20)
    sex = np.array(["female"] * 20 + ["male"] * 20)
    audit = group_metrics(labels, np.full(40, 0.9), {"sex": sex}, min_group_rows=5)["sex"]
    for name in ("positive_rate_difference", "recall_difference", "class_imbalance"):
        gap = audit[name]
        assert gap["value"] == 0.0, name
        # Ties are broken by name: the alphabetically first is "lowest", never the same twice.
        assert (gap["lowest"], gap["highest"]) == ("female", "male"), name
    assert audit["disparate_impact"] == {"value": 1.0, "highest": "male", "lowest": "female"}


def test_fewer_than_two_judged_groups_give_no_gap():
    labels = np.array([1, 0] * 10 + [1])
    groups = np.array(["big"] * 20 + ["tiny"])
    audit = group_metrics(labels, np.linspace(0, 1, 21), {"g": groups}, min_group_rows=5)["g"]
    assert audit["positive_rate_difference"] == {"value": None, "highest": None, "lowest": None}
    assert audit["groups"]["tiny"]["judged"] is False


def test_disparate_impact_is_undefined_when_no_group_is_predicted_positive():
    labels = np.array([1, 0] * 20)
    sex = np.array(["female"] * 20 + ["male"] * 20)
    audit = group_metrics(labels, np.full(40, 0.1), {"sex": sex}, min_group_rows=5)["sex"]
    assert audit["disparate_impact"]["value"] is None
    assert audit["positive_rate_difference"]["value"] == 0.0


def test_threshold_maximises_f1_or_youden_on_the_rows():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9])
    # F1 per candidate: 0.1 -> 6/9, 0.35 -> 6/8, 0.4 -> 4/7, 0.7 -> 4/6, 0.8 -> 4/5, 0.9 -> 2/4.
    assert choose_threshold(labels, scores, method="f1") == 0.8
    # J per candidate: 0, 1/3, 0, 1/3, 2/3, 1/3.
    assert choose_threshold(labels, scores, method="youden") == 0.8


def test_threshold_ties_go_to_the_highest_score():
    # Youden's J is 0.5 at 0.5 (TPR 1, FPR 0.5) and at 0.9 (TPR 0.5, FPR 0).
    assert choose_threshold([1, 0, 1, 0], [0.9, 0.6, 0.5, 0.2], method="youden") == 0.9


def test_threshold_agrees_with_scikit_learn_on_random_rows():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(labels * 0.3 + rng.normal(0.4, 0.2, 300), 0, 1).round(2)
    candidates = np.unique(scores)
    f1 = [f1_score(labels, scores >= t) for t in candidates]
    best = max(f1)
    assert choose_threshold(labels, scores) == max(
        t for t, v in zip(candidates, f1, strict=True) if v == best
    )
    fpr, tpr, thresholds = roc_curve(labels, scores)
    youden = tpr - fpr
    assert choose_threshold(labels, scores, method="youden") == pytest.approx(
        max(thresholds[1:][youden[1:] == youden[1:].max()])
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "accuracy"}, "method must be one of f1, youden, got 'accuracy'"),
        ({"y_true": [1, 1]}, "needs both classes"),
    ],
)
def test_bad_threshold_requests_are_refused(kwargs, message):
    args = {"y_true": [0, 1], "y_score": [0.2, 0.7], **kwargs}
    with pytest.raises(ValueError, match=message):
        choose_threshold(**args)


# --- train.py: an audit attribute that is not a model input ---------------------------------


def _channels_with_sex(root, rows: int = 3000, seed: int = 5) -> dict:
    """Feature channels in the features job's layout plus ``sex``, an audit column (a string,
    null for some rows) that the label does not depend on and the model must never see."""
    import pandas as pd
    from training_helpers import feature_frame

    frame = feature_frame(rows, seed)
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], rows).astype(object)
    sex[rng.random(rows) < 0.03] = None
    frame.insert(2, "sex", pd.Series(sex, dtype="string"))
    channels = {}
    for name in ("train", "validation", "test"):
        directory = root / f"split={name}"
        directory.mkdir(parents=True)
        part = frame[frame["split"] == name].drop(columns="split")
        part.to_parquet(directory / "part-00000.parquet", index=False)
        channels[name] = directory
    return channels


@pytest.fixture(scope="module")
def audited_run(tmp_path_factory) -> dict:
    import json

    from training_helpers import run_train_in_process, sagemaker_env

    root = tmp_path_factory.mktemp("audited")
    channels = _channels_with_sex(root / "features")
    env = sagemaker_env(root / "run", channels)
    flags = ["--epochs", "3", "--batch-size", "256", "--hidden-width", "32", "--amp", "off"]
    flags += ["--audit-attributes", "sex", "--min-group-rows", "20"]
    code, stdout = run_train_in_process(env, flags)
    model_dir = root / "run" / "model"
    return {
        "code": code,
        "stdout": stdout,
        "channels": channels,
        "config": json.loads((model_dir / "model_config.json").read_text()),
        "evaluation": json.loads((model_dir / "evaluation.json").read_text()),
    }


def test_an_audit_attribute_is_no_model_input_but_gets_group_metrics(audited_run):
    import pandas as pd

    assert audited_run["code"] == 0, audited_run["stdout"]
    assert "sex" not in audited_run["config"]["features"]
    assert not any(name.startswith("sex") for name in audited_run["config"]["features"])
    evaluation = audited_run["evaluation"]
    test = pd.read_parquet(audited_run["channels"]["test"])
    sex = evaluation["groups"]["sex"]
    counts = test["sex"].fillna("(missing)").value_counts().to_dict()
    assert {g: m["rows"] for g, m in sex["groups"].items()} == counts
    for group in ("female", "male"):
        assert sex["groups"][group]["judged"] is True
        members = test["sex"] == group
        assert sex["groups"][group]["positives"] == int(test.loc[members, "churned"].sum())
        assert sex["groups"][group]["roc_auc"] is not None
    # Missing values are about 3% of ~450 test rows: below 20 rows, too small to judge.
    missing = sex["groups"]["(missing)"]
    assert missing["judged"] is False and missing["reason"].endswith("fewer than 20")
    gap = sex["positive_rate_difference"]
    assert {gap["highest"], gap["lowest"]} == {"female", "male"}
    assert evaluation["fairness"]["audit_attributes"] == ["sex"]
    # The categorical input region is audited as before, from its one-hot columns.
    assert set(evaluation["groups"]) == {"region", "sex"}


def test_the_threshold_is_chosen_on_validation_and_used_for_test_metrics(audited_run):
    evaluation = audited_run["evaluation"]
    chosen = evaluation["decision_threshold"]
    assert chosen["method"] == "f1" and "validation rows" in chosen["description"]
    assert 0.0 < chosen["value"] < 1.0 and chosen["value"] != 0.5
    assert evaluation["metrics"]["threshold"] == chosen["value"]


def test_a_fixed_threshold_from_the_flag_is_used_as_given(tmp_path):
    import json

    from training_helpers import run_train_in_process, sagemaker_env

    channels = _channels_with_sex(tmp_path / "features", rows=1200)
    env = sagemaker_env(tmp_path / "run", channels)
    flags = ["--epochs", "1", "--hidden-width", "16", "--amp", "off"]
    flags += ["--audit-attributes", "sex", "--decision-threshold", "0.35"]
    code, stdout = run_train_in_process(env, flags)
    assert code == 0, stdout
    evaluation = json.loads((tmp_path / "run" / "model" / "evaluation.json").read_text())
    assert evaluation["decision_threshold"]["value"] == 0.35
    assert evaluation["decision_threshold"]["method"] == "fixed"
    assert evaluation["metrics"]["threshold"] == 0.35


def test_an_audit_column_left_unnamed_is_refused_naming_the_flags(tmp_path, caplog):
    from training_helpers import run_train_in_process, sagemaker_env

    channels = _channels_with_sex(tmp_path / "features", rows=600)
    env = sagemaker_env(tmp_path / "run", channels)
    code, _ = run_train_in_process(env, ["--epochs", "1", "--amp", "off"])
    assert code == 2
    assert "column 'sex' is string, not numeric" in caplog.text
    assert "--audit-attributes" in caplog.text


def test_an_audit_attribute_missing_from_the_files_is_refused(tmp_path, feature_channels, caplog):
    from training_helpers import run_train_in_process, sagemaker_env

    env = sagemaker_env(tmp_path, feature_channels)
    code, _ = run_train_in_process(
        env, ["--epochs", "1", "--amp", "off", "--audit-attributes", "sex"]
    )
    assert code == 2
    assert "lacks audit columns ['sex'] (--audit-attributes)" in caplog.text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--decision-threshold", "1.5"], "must be f1 or youden or a number in (0, 1)"),
        (["--decision-threshold", "best"], "got 'best'"),
        (["--min-group-rows", "0"], "argument --min-group-rows: must be at least 1"),
        (["--min-disparate-impact", "2"], "argument --min-disparate-impact: must be in [0, 1]"),
    ],
)
def test_bad_audit_flags_name_the_flag(flags, message, capsys):
    from training import train

    with pytest.raises(SystemExit):
        train.parse_args(flags)
    assert message in capsys.readouterr().err


def test_an_attribute_both_audited_and_a_sensitive_group_is_refused(tmp_path, caplog):
    from training_helpers import run_train_in_process, sagemaker_env

    channels = _channels_with_sex(tmp_path / "features", rows=600)
    env = sagemaker_env(tmp_path / "run", channels)
    flags = ["--epochs", "1", "--amp", "off", "--audit-attributes", "sex,region"]
    code, _ = run_train_in_process(env, flags)
    assert code == 2
    assert "--audit-attributes and --sensitive-groups both name ['region']" in caplog.text
