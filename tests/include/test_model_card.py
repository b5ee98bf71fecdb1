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
        "groups": group_metrics(labels, scores, {"region": region}),
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
    assert region["positive_rate_difference"]["value"] == pytest.approx(2 / 3)
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
    assert "region: positive rate differs by 0.667 between us and ap" in text
    assert "region: recall differs by 0.500 between us and eu" in text
    assert "no positives on test for ap" in text
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
        "## Metrics (test split, threshold 0.50)",
        "## Calibration",
        "### region",
        "## Feature importance",
        "## Limitations",
        "## Hyperparameters",
    ):
        assert heading in markdown
    assert "| train | 800 | 200 | 0.2500 |" in markdown
    assert "| roc_auc | 0.8750 |" in markdown
    assert "| validation_roc_auc | 0.9000 |" in markdown
    assert "| ap | 1 | 0.0000 | 0.0000 | n/a | n/a |" in markdown
    assert "- Positive-rate difference: 0.6667 (us vs ap)" in markdown
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
        "| region | positive-rate gap | 0.6667 (us vs ap) **over 0.1** | 0.0500 (eu vs us) |"
        in (summary)
    )
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
