"""include/model_card.py: the card's facts, its derived limitations, Markdown and rewriting."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from include.model_card import (
    approval_summary,
    build_model_card,
    render_markdown,
    update_card_approval,
    write_model_card,
)
from include.registry import APPROVED, PENDING, ModelVersion
from training.evaluation import evaluate_binary_classifier, group_metrics

MANIFEST = {
    "dataset": "churn",
    "ds": "2026-01-07",
    "label": "churned",
    "features": ["tenure", "region__eu_west", "region__us_east"],
    "lookback_days": 7,
    "missing_days": [],
    "spec_fingerprint": "f00d",
    "splits": {
        "train": {"rows": 800, "label_mean": 0.25},
        "validation": {"rows": 100, "label_mean": 0.2},
        "test": {"rows": 8, "label_mean": 0.5},
    },
}
VERSION = ModelVersion(
    dataset="churn",
    version="3",
    model_uri="file:///lake/models/churn/job-3/model.tar.gz",
    approval=PENDING,
    metrics={"roc_auc": 0.75},
    data_version="file:///lake/features/churn/ds=2026-01-07/_manifest.json@sha256:ab",
    code_version="tree:abc",
    hyperparameters={"epochs": "5", "learning-rate": "0.001"},
    baseline_uri="file:///lake/monitoring/churn/baseline",
    evaluation_uri="file:///lake/models/churn/job-3/evaluation.json",
    approval_reason="challenger roc_auc=0.750000 vs champion roc_auc=0.760000",
    created_at="2026-01-08T00:00:00+00:00",
    registry_ref="models:/headrace-churn/3",
)


def _evaluation() -> dict:
    labels = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    scores = np.array([0.9, 0.6, 0.2, 0.1, 0.7, 0.8, 0.3, 0.1])
    region = np.array(["eu", "eu", "eu", "eu", "us", "us", "us", "ap"])
    return {
        "metrics": evaluate_binary_classifier(labels, scores),
        # Tiny groups judged from one row on: these eight rows are small enough to check by hand.
        "groups": group_metrics(labels, scores, {"region": region}, min_group_rows=1),
        "permutation_importance": [
            {"feature": "tenure", "importance_mean": 0.2, "importance_std": 0.01},
            {"feature": "region__eu_west", "importance_mean": 0.0, "importance_std": 0.0},
            {"feature": "region__us_east", "importance_mean": -0.01, "importance_std": 0.02},
        ],
        "permutation_importance_rows": 8,
        "validation": {"roc_auc": 0.9, "best_epoch": 4},
    }


def test_card_carries_the_versions_facts_and_the_data_balance():
    card = build_model_card(
        version=VERSION, manifest=MANIFEST, evaluation=_evaluation(), champion_version="2"
    )

    assert card["model"]["version"] == "3"
    assert card["model"]["monitoring_baseline_uri"] == "file:///lake/monitoring/churn/baseline"
    assert card["training_data"]["partition"] == "2026-01-07"
    assert card["training_data"]["rows_per_split"] == {"train": 800, "validation": 100, "test": 8}
    assert card["training_data"]["class_balance"]["train"] == {
        "positive_rate": 0.25,
        "positives": 200,
    }
    assert card["training_data"]["data_version"].endswith("@sha256:ab")
    # 16 (positive, negative) pairs; only 0.2 is ranked below two negatives (0.6 and 0.3).
    assert card["metrics"]["roc_auc"] == pytest.approx(14 / 16)
    assert card["metrics"]["rows"] == 8
    assert card["metrics"]["validation_roc_auc"] == 0.9
    assert card["feature_importance"]["rows"] == 8
    assert len(card["calibration"]["bins"]) == 10
    assert card["calibration"]["ece"] == pytest.approx(0.3125)
    region = card["fairness"]["region"]
    # ap (one row, one class) is too small to judge: the gap is us (2/3) vs eu (1/2).
    assert region["positive_rate_difference"] == {
        "value": pytest.approx(1 / 6),
        "highest": "us",
        "lowest": "eu",
    }
    assert region["disparate_impact"]["value"] == pytest.approx(0.75)
    assert region["groups"]["ap"]["judged"] is False
    assert region["recall_difference"] == {"value": 0.5, "highest": "us", "lowest": "eu"}
    assert [f["feature"] for f in card["feature_importance"]["top"]] == [
        "tenure",
        "region__eu_west",
        "region__us_east",
    ]
    assert card["approval"] == {
        "status": PENDING,
        "reason": VERSION.approval_reason,
        "approver": "",
        "compared_with_champion_version": "2",
    }
    assert "churned = 1" in card["intended_use"]["description"]
    json.dumps(card)


def test_limitations_are_derived_from_the_numbers():
    limitations = build_model_card(version=VERSION, manifest=MANIFEST, evaluation=_evaluation())[
        "limitations"
    ]
    text = "\n".join(limitations)

    assert "only 8 rows" in text
    # ECE = (2 * 0.1 + 0.8 + 0.3 + 0.6 + 0.3 + 0.2 + 0.1) / 8 = 0.3125, one row or two per bin.
    assert "not well calibrated (ECE 0.31" in text
    assert "region: positive prediction rate differs by 0.167 between us and eu (> 0.1)" in text
    assert "region: recall (true positive rate) differs by 0.500 between us and eu" in text
    assert "region: label rate differs by 0.167 between us and eu (> 0.1), a property of" in text
    assert "region: disparate impact 0.750 (< 0.8): eu is predicted positive at 75%" in text
    assert (
        "region: too small to judge on test: ap (labels of one class only (0 positive of 1))"
        in text
    )
    assert "2 of 3 features do not help" in text
    # Balanced labels: no imbalance warning.
    assert "imbalanced" not in text


def test_a_well_behaved_model_gets_only_the_standing_limitation():
    rng = np.random.default_rng(0)
    # Labels drawn with exactly the predicted probability: calibrated, balanced, 4000 rows.
    scores = rng.choice([0.3, 0.7], size=4000)
    labels = (rng.uniform(size=4000) < scores).astype(int)
    evaluation = {"metrics": evaluate_binary_classifier(labels, scores)}

    card = build_model_card(version=VERSION, manifest=MANIFEST, evaluation=evaluation)

    assert len(card["limitations"]) == 1 and "Trained on one snapshot" in card["limitations"][0]


def test_markdown_shows_every_section_with_values():
    card = build_model_card(
        version=VERSION, manifest=MANIFEST, evaluation=_evaluation(), champion_version="2"
    )

    markdown = render_markdown(card)

    assert markdown.startswith("# Model card: churn version 3\n")
    for heading in (
        "## Intended use",
        "## Training data",
        "## Metrics (test split, threshold 0.5000)",
        "## Calibration",
        "## Fairness audit (test split)",
        "### region (model input)",
        "## Feature importance",
        "## Limitations",
        "## Hyperparameters",
    ):
        assert heading in markdown
    assert "| train | 800 | 200 | 0.2500 |" in markdown
    assert "| roc_auc | 0.8750 |" in markdown
    assert "| validation_roc_auc | 0.9000 |" in markdown
    assert (
        "| ap | 1 | 0 | n/a | n/a | n/a | n/a | too small to judge: labels of one class only "
        "(0 positive of 1) |" in markdown
    )
    assert "| eu | 4 | 2 | 0.5000 | 0.5000 | 0.5000 | 0.7500 |  |" in markdown
    assert "- Difference in positive prediction rates (DPPL): 0.1667 (us vs eu)" in markdown
    assert "- Class imbalance (CI): 0.1429 (eu vs us)" in markdown
    assert "- Disparate impact (DI): 0.7500 (us vs eu)" in markdown
    assert "Decision threshold 0.5000 (fixed): the fixed default" in markdown
    assert "| tenure | 0.2000 | 0.0100 |" in markdown
    assert "| learning-rate | 0.001 |" in markdown
    assert "- Compared with champion version: 2" in markdown


def test_card_without_test_metrics_is_refused():
    with pytest.raises(ValueError, match="evaluation has no test 'metrics' \\(keys: groups\\)"):
        build_model_card(version=VERSION, manifest=MANIFEST, evaluation={"groups": {}})


def test_written_card_is_rewritten_with_a_persons_decision(tmp_path):
    card = build_model_card(version=VERSION, manifest=MANIFEST, evaluation=_evaluation())
    json_uri, markdown_uri = write_model_card(card, f"file://{tmp_path}/churn/3/model_card")

    assert json_uri.endswith("/churn/3/model_card.json") and markdown_uri.endswith(".md")
    assert json.loads((tmp_path / "churn/3/model_card.json").read_text()) == card

    decided = replace(VERSION, approval=APPROVED, approver="ada", approval_reason="fine")
    update_card_approval(json_uri, decided)

    rewritten = json.loads((tmp_path / "churn/3/model_card.json").read_text())
    assert rewritten["approval"]["status"] == APPROVED
    assert rewritten["approval"]["approver"] == "ada"
    assert rewritten["metrics"] == card["metrics"]
    assert "- Approval: **Approved** by ada" in (tmp_path / "churn/3/model_card.md").read_text()


CHAMPION = replace(
    VERSION,
    version="2",
    approval=APPROVED,
    metrics={"roc_auc": 0.9, "log_loss": 0.5, "rows": 300.0, "positive_rate": 0.4},
    approval_reason="no champion",
    registry_ref="models:/headrace-churn/2",
)


def _pending(**metrics) -> ModelVersion:
    return replace(
        VERSION,
        metrics=metrics,
        card_uri="file:///lake/models/churn/3/model_card.json",
    )


def test_approval_summary_compares_the_challenger_with_the_champion():
    challenger = _pending(roc_auc=0.875, log_loss=0.45, rows=8.0, positive_rate=0.5)
    card = build_model_card(version=challenger, manifest=MANIFEST, evaluation=_evaluation())
    champion_card = build_model_card(version=CHAMPION, manifest=MANIFEST, evaluation={
        "metrics": _evaluation()["metrics"],
        "groups": {"region": {"positive_rate_difference": {"value": 0.05, "highest": "eu",
                                                           "lowest": "us"},
                              "recall_difference": {"value": None}}},
    })  # fmt: skip

    summary = approval_summary(
        challenger, CHAMPION, challenger_card=card, champion_card=champion_card
    )

    assert summary.startswith("**churn model version 3** waits for a decision.")
    assert "(version 2 stays the champion)" in summary
    assert f"not approved automatically: {VERSION.approval_reason}" in summary
    assert "| metric | version 3 | champion (version 2) | change |" in summary
    # Higher ROC AUC is better, lower log loss is better; the rest are facts, not verdicts.
    assert "| roc_auc | 0.8750 | 0.9000 | -0.0250 (worse) |" in summary
    assert "| log_loss | 0.4500 | 0.5000 | -0.0500 (better) |" in summary
    assert "| rows | 8 | 300 | -292 |" in summary
    assert "| positive_rate | 0.5000 | 0.4000 | +0.1000 |" in summary
    # A metric neither version has is left out.
    assert "| brier |" not in summary
    assert "| attribute | gap | version 3 | champion (version 2) |" in summary
    assert (
        "| region | positive-rate gap | 0.1667 (us vs eu) **over 0.1** | 0.0500 (eu vs us) |"
        in (summary)
    )
    assert "| region | disparate impact | 0.7500 (us vs eu) **under 0.8** | n/a |" in summary
    assert "| region | recall gap | 0.5000 (us vs eu) **over 0.1** | n/a |" in summary
    assert "- The test split has only 8 rows" in summary
    assert "Model card: `file:///lake/models/churn/3/model_card.json`" in summary


def test_approval_summary_without_a_champion_or_a_card_says_so():
    summary = approval_summary(_pending(roc_auc=0.7), None, challenger_card=None)

    assert "(no model serves)" in summary
    assert "| metric | version 3 |" in summary and "| roc_auc | 0.7000 |" in summary
    assert "champion" not in summary.split("#### Test metrics")[1]
    assert "Version 3 has no model card yet, so its group gaps are unknown." in summary
    assert "#### Limitations" not in summary


def _constant_model_evaluation() -> dict:
    """A model that scores every row 0.9: everything predicted positive, groups all tied."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    scores = np.full(2000, 0.9)
    sex = np.where(np.arange(2000) < 1000, "female", "male")
    return {
        "metrics": evaluate_binary_classifier(labels, scores, threshold=0.42),
        "decision_threshold": {
            "value": 0.42,
            "method": "f1",
            "description": "the validation score that maximises F1 on the 300 validation rows",
        },
        "groups": group_metrics(labels, scores, {"sex": sex}, threshold=0.42),
        "fairness": {
            "sensitive_groups": [],
            "audit_attributes": ["sex"],
            "min_group_rows": 30,
            "max_group_difference": 0.1,
            "min_disparate_impact": 0.8,
        },
    }


def test_a_constant_prediction_model_is_named_in_the_limitations():
    card = build_model_card(
        version=VERSION, manifest=MANIFEST, evaluation=_constant_model_evaluation()
    )
    text = "\n".join(card["limitations"])

    assert "The model predicts the positive class for 100% of test rows (threshold 0.4200)" in text
    # Tied groups: a 0.0 gap that names two different groups, never one group twice.
    gap = card["fairness"]["sex"]["positive_rate_difference"]
    assert gap == {"value": 0.0, "highest": "male", "lowest": "female"}
    markdown = render_markdown(card)
    assert "- Difference in positive prediction rates (DPPL): 0.0000 (male vs female)" in markdown
    assert "female vs female" not in markdown and "male vs male" not in markdown
    assert "The model predicts the positive class for 100% of test rows" in markdown


def test_a_model_that_never_predicts_positive_is_named_too():
    labels = np.array([0, 1] * 600)
    evaluation = {"metrics": evaluate_binary_classifier(labels, np.full(1200, 0.2))}
    card = build_model_card(version=VERSION, manifest=MANIFEST, evaluation=evaluation)
    assert any(
        "predicts the negative class for 100% of test rows" in note for note in card["limitations"]
    )


def test_the_card_shows_the_threshold_its_choice_and_the_audit_attributes():
    card = build_model_card(
        version=VERSION, manifest=MANIFEST, evaluation=_constant_model_evaluation()
    )
    assert card["decision_threshold"]["value"] == 0.42
    assert card["metrics"]["threshold"] == 0.42
    assert card["fairness_audit"]["audit_attributes"] == ["sex"]

    markdown = render_markdown(card)

    assert "## Metrics (test split, threshold 0.4200)" in markdown
    assert (
        "Decision threshold 0.4200 (f1): the validation score that maximises F1 on the 300 "
        "validation rows." in markdown
    )
    assert "Audit attributes kept out of the model's inputs: sex." in markdown
    assert "### sex (audit only, not a model input)" in markdown
    assert "fewer than 30 test rows" in markdown


def test_gap_limits_come_from_the_evaluation():
    evaluation = _evaluation()
    evaluation["fairness"] = {"max_group_difference": 0.6, "min_disparate_impact": 0.5}
    text = "\n".join(
        build_model_card(version=VERSION, manifest=MANIFEST, evaluation=evaluation)["limitations"]
    )
    # The 0.167 positive-rate gap and DI 0.75 are within these limits; nothing about them.
    assert "positive prediction rate differs" not in text
    assert "disparate impact" not in text
    assert "too small to judge on test: ap" in text


def test_a_small_group_is_reported_as_too_small_not_as_numbers():
    labels = np.array([0, 1] * 50 + [1, 0, 1])
    scores = np.linspace(0.05, 0.95, 103)
    sex = np.array(["female"] * 50 + ["male"] * 50 + ["other"] * 3)
    evaluation = {
        "metrics": evaluate_binary_classifier(labels, scores),
        "groups": group_metrics(labels, scores, {"sex": sex}, min_group_rows=30),
    }
    card = build_model_card(version=VERSION, manifest=MANIFEST, evaluation=evaluation)
    other = card["fairness"]["sex"]["groups"]["other"]
    assert (other["rows"], other["positives"], other["positive_rate"]) == (3, 2, None)
    assert "sex: too small to judge on test: other (3 rows, fewer than 30)." in card["limitations"]
    assert (
        "| other | 3 | 2 | n/a | n/a | n/a | n/a | too small to judge: 3 rows, fewer than 30 |"
        in (render_markdown(card))
    )


def test_an_unpaired_decision_is_labelled_as_such_on_the_card():
    from include.model_card import decision_lines

    lines = decision_lines(
        {
            "paired": False,
            "metric": "roc_auc",
            "champion_version": "4",
            "challenger": 0.83,
            "champion": 0.8,
            "difference": 0.03,
            "margin": 0.005,
            "outcome": "needs manual approval",
            "note": "the champion was trained on other features",
        }
    )

    assert lines[0] == "**Not paired**: the champion was trained on other features."
    assert (
        "challenger 0.830000 on its own test split, champion version 4 0.800000 on another"
        in (lines[1])
    )
    assert lines[-1] == "- Outcome: **needs manual approval**"
