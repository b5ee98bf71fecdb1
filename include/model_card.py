"""Model cards: what a model version is for, what it was trained on, how good and how fair it is.

One card per registered version, written next to it in the lake as ``model_card.json`` (for
tools) and ``model_card.md`` (for people), from facts the pipeline already has: the registry's
version (metrics, lineage, approval), the training window document (the days asked, used and
missing; rows and class balance per split summed over the days) and the test-split evaluation
that ``training/train.py`` wrote (calibration, per-group metrics for the sensitive attributes,
permutation importance — the explainability that SageMaker Clarify would otherwise provide). Limitations are partly derived from those numbers, so a card
warns about a small test set or a large gap between groups without anyone writing it by hand.

The fairness audit (in the spirit of SageMaker Clarify) groups the test rows by the spec's
sensitive groups (categorical model inputs) and audit attributes (columns kept out of the model,
such as sex): pre-training gaps (class imbalance CI, difference in label proportions DPL) and
post-training gaps at the decision threshold (difference in positive prediction rates DPPL,
equal-opportunity difference EOD, disparate impact DI, per-group ROC AUC). Each gap names the
two groups it compares; groups too small to judge are listed with their counts instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

CARD_VERSION = 1
TOP_FEATURES = 10
# Thresholds above which the card lists a limitation: rules of thumb, stated on the card.
SMALL_TEST_ROWS = 1000
RARE_LABEL_RATE = 0.10
HIGH_ECE = 0.05
LARGE_GROUP_GAP = 0.10
# Four-fifths rule: a group predicted positive at under 80% of another group's rate.
LOW_DISPARATE_IMPACT = 0.80
# The audit's gaps as the card lists them: evaluation key, short name, what is compared.
_AUDIT_GAPS = (
    ("class_imbalance", "Class imbalance (CI)", "rows"),
    ("label_rate_difference", "Difference in label proportions (DPL)", "label rate"),
    ("positive_rate_difference", "Difference in positive prediction rates (DPPL)", "positive rate"),
    ("recall_difference", "Equal-opportunity difference (EOD, TPR gap)", "recall"),
    ("disparate_impact", "Disparate impact (DI)", "positive rate"),
    ("roc_auc_difference", "ROC AUC difference", "ROC AUC"),
)
# Gaps that are differences of rates, judged against the largest allowed difference.
_DIFFERENCE_GAPS = (
    ("label_rate_difference", "label rate", "the labels themselves (before any model)"),
    ("positive_rate_difference", "positive prediction rate", None),
    ("recall_difference", "recall (true positive rate)", None),
    ("roc_auc_difference", "ROC AUC", None),
)
_GAP_KEYS = tuple(key for key, _, _ in _AUDIT_GAPS)

DEFAULT_INTENDED_USE = (
    "Rank {dataset} entities by the predicted probability that {label} = 1, in daily batch "
    "scoring, so that people can prioritise follow-up. Scores support a human decision; they "
    "are not meant to trigger automated adverse actions on an individual."
)
DEFAULT_OUT_OF_SCOPE = (
    "Decisions about individuals without human review.",
    "Populations, regions or time periods not represented in the training partition.",
    "Use as a calibrated probability without checking the calibration table below.",
)
_SUMMARY_METRICS = ("roc_auc", "f1", "log_loss", "brier", "accuracy", "precision", "recall")


def _training_window(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The days the model trained on: the window document's, or the one day of a features
    manifest."""
    window = manifest.get("window")
    if manifest.get("kind") == "training_window" and isinstance(window, Mapping):
        keys = ("window_days", "split", "days_asked", "days_used", "days_missing", "channels")
        return {key: window.get(key) for key in keys}
    ds = manifest.get("ds")
    return {
        "window_days": 1,
        "split": "random",
        "days_asked": [ds] if ds else [],
        "days_used": [ds] if ds else [],
        "days_missing": [],
        "channels": {name: [{"ds": ds, "split": name}] for name in manifest.get("splits") or {}},
    }


def _training_data(version, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Rows and class balance per split (summed over the window's days for a window document,
    per training channel) and the window itself."""
    splits = manifest.get("splits") or {}
    return {
        "dataset": manifest.get("dataset", version.dataset),
        "partition": manifest.get("ds"),
        "window": _training_window(manifest),
        "label": manifest.get("label"),
        "features": len(manifest.get("features") or []),
        "rows_per_split": {name: split.get("rows") for name, split in splits.items()},
        # label_mean of a 0/1 label is the share of positives: the class balance per split.
        "class_balance": {
            name: {
                "positive_rate": split.get("label_mean"),
                "positives": round((split.get("rows") or 0) * (split.get("label_mean") or 0.0)),
            }
            for name, split in splits.items()
        },
        "lookback_days": manifest.get("lookback_days"),
        "missing_days": manifest.get("missing_days") or [],
        "spec_fingerprint": manifest.get("spec_fingerprint"),
        "data_version": version.data_version,
    }


def _fairness(groups: Mapping[str, Any]) -> dict[str, Any]:
    return {
        attribute: {
            "groups": result.get("groups", {}),
            **{key: result.get(key) or {} for key in _GAP_KEYS},
        }
        for attribute, result in groups.items()
    }


def _decision_threshold(evaluation: Mapping[str, Any], test: Mapping[str, Any]) -> dict[str, Any]:
    """The threshold of the thresholded metrics and the audit, and how it was chosen."""
    chosen = evaluation.get("decision_threshold")
    if isinstance(chosen, Mapping):
        return dict(chosen)
    # Evaluations written before the threshold was chosen used a fixed 0.5.
    return {
        "value": test.get("threshold"),
        "method": "fixed",
        "description": "the fixed default (the evaluation records no choice)",
    }


def _audit(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """Which attributes were audited and the limits the card judges gaps against."""
    config = evaluation.get("fairness") or {}
    return {
        "sensitive_groups": list(config.get("sensitive_groups") or []),
        "audit_attributes": list(config.get("audit_attributes") or []),
        "min_group_rows": config.get("min_group_rows"),
        "max_group_difference": config.get("max_group_difference", LARGE_GROUP_GAP),
        "min_disparate_impact": config.get("min_disparate_impact", LOW_DISPARATE_IMPACT),
        "formulas": {
            name: info.get("formula") for name, info in (config.get("metrics") or {}).items()
        },
    }


def _single_class_predictions(test: Mapping[str, Any]) -> str | None:
    """A limitation when the model predicts one class for every test row, else ``None``."""
    rate, threshold = test.get("positive_rate"), test.get("threshold")
    if rate not in (0.0, 1.0) or rate is None:
        return None
    which = "positive" if rate == 1.0 else "negative"
    return (
        f"The model predicts the {which} class for 100% of test rows (threshold "
        f"{_number(threshold)}): its thresholded metrics and every group gap in predictions "
        "say nothing about how it treats groups; do not use its decisions."
    )


def _fairness_limitations(fairness: Mapping[str, Any], audit: Mapping[str, Any]) -> list[str]:
    notes = []
    max_gap, min_di = audit["max_group_difference"], audit["min_disparate_impact"]
    for attribute, result in fairness.items():
        groups = result.get("groups", {})
        small = {g: m for g, m in groups.items() if m.get("judged") is False}
        judged = [g for g, m in groups.items() if m.get("judged", True)]
        if small:
            listed = "; ".join(f"{g} ({m.get('reason')})" for g, m in small.items())
            notes.append(f"{attribute}: too small to judge on test: {listed}.")
        if groups and len(judged) < 2:
            notes.append(
                f"{attribute}: fewer than two groups are large enough to judge, so no gap "
                "between groups is known."
            )
        for key, what, note in _DIFFERENCE_GAPS:
            gap = result.get(key) or {}
            if gap.get("value") is not None and gap["value"] > max_gap:
                notes.append(
                    f"{attribute}: {what} differs by {gap['value']:.3f} between "
                    f"{gap['highest']} and {gap['lowest']} (> {max_gap})"
                    + (f", a property of {note}" if note else "")
                    + "; review before using scores to treat these groups differently."
                )
        di = result.get("disparate_impact") or {}
        if di.get("value") is not None and di["value"] < min_di:
            notes.append(
                f"{attribute}: disparate impact {di['value']:.3f} (< {min_di}): {di['lowest']} "
                f"is predicted positive at {di['value']:.0%} of the rate of {di['highest']}."
            )
        # Evaluations written before groups were judged: recall None meant "no positives".
        undefined = [g for g, m in groups.items() if "judged" not in m and m.get("recall") is None]
        if undefined:
            notes.append(
                f"{attribute}: no positives on test for {', '.join(undefined)}, so their recall "
                "is unknown."
            )
    return notes


def _limitations(
    test: Mapping[str, Any],
    training_data: Mapping[str, Any],
    fairness,
    importance,
    audit: Mapping[str, Any],
) -> list[str]:
    window = training_data["window"]
    used = window.get("days_used") or []
    trained_on = (
        f"one snapshot ({training_data.get('partition')})"
        if len(used) <= 1
        else f"{len(used)} days ({used[0]}..{used[-1]}, {window.get('split')} split)"
    )
    notes = [
        f"Trained on {trained_on}; behaviour drifts as customers and products change. The "
        "monitoring baseline registered with this version is what drift checks compare new "
        "batches against.",
    ]
    if missing := window.get("days_missing"):
        asked = window.get("days_asked") or []
        notes.append(
            f"The training window asked for {len(asked)} days ({asked[0]}..{asked[-1]}); "
            f"{len(missing)} had no validated features partition and were left out: "
            f"{', '.join(missing)}."
        )
    if window.get("split") == "time":
        notes.append(
            f"Time split: validated and tested on the latest day ({used[-1]}) only, trained on "
            "the days before it; an entity's earlier rows can be in train while its latest are "
            "in test, so the test metrics measure a later day, not unseen entities."
        )
    rows = test.get("rows") or 0
    if rows < SMALL_TEST_ROWS:
        notes.append(
            f"The test split has only {rows} rows (< {SMALL_TEST_ROWS}): its metrics carry "
            "wide uncertainty."
        )
    label_rate = test.get("label_rate")
    if label_rate is not None and min(label_rate, 1 - label_rate) < RARE_LABEL_RATE:
        notes.append(
            f"The label is imbalanced (positive rate {label_rate:.3f} on test): accuracy is not "
            "informative; read ROC AUC, precision and recall."
        )
    if single := _single_class_predictions(test):
        notes.append(single)
    ece = (test.get("calibration") or {}).get("ece")
    if ece is not None and ece > HIGH_ECE:
        notes.append(
            f"Scores are not well calibrated (ECE {ece:.3f} > {HIGH_ECE}): do not read them as "
            "probabilities without recalibration."
        )
    notes.extend(_fairness_limitations(fairness, audit))
    unused = [item["feature"] for item in importance if item.get("importance_mean", 0.0) <= 0.0]
    if importance and unused:
        notes.append(
            f"{len(unused)} of {len(importance)} features do not help on the test split "
            "(permutation importance <= 0); they may be noise or redundant."
        )
    return notes


def build_model_card(
    *,
    version,
    manifest: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    champion_version: str | None = None,
    intended_use: str | None = None,
    out_of_scope: Sequence[str] = DEFAULT_OUT_OF_SCOPE,
    top_features: int = TOP_FEATURES,
    decision: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of a registered version, as JSON-able data (see :func:`render_markdown`).

    :param version: the registry's :class:`include.registry.ModelVersion`.
    :param manifest: the training window document
        (:meth:`include.training_jobs.TrainingWindow.document`: rows per split summed over the
        window, the days asked, used and missing) or a features manifest (``_manifest.json``,
        read as a window of its one day).
    :param evaluation: ``evaluation.json`` as ``training/train.py`` writes it: ``metrics``
        (test split, :func:`training.evaluation.evaluate_binary_classifier`), ``groups``,
        ``permutation_importance`` (a list, or ``None`` when it could not be computed) and
        optionally ``validation`` (``{"roc_auc", "best_epoch"}``).
    :param champion_version: the champion the version was compared with, if any.
    :param intended_use: what the model is for; a default built from the dataset and label.
    :param decision: the champion / challenger decision's numbers
        (:func:`include.model_selection.comparison_record`); default the version's own.
    """
    test = evaluation.get("metrics")
    if not isinstance(test, Mapping):
        raise ValueError(
            f"evaluation has no test 'metrics' (keys: {', '.join(sorted(evaluation)) or 'none'})"
        )
    validation = evaluation.get("validation") or {}
    importance = list(evaluation.get("permutation_importance") or [])
    training_data = _training_data(version, manifest)
    fairness = _fairness(evaluation.get("groups") or {})
    audit = _audit(evaluation)
    label = training_data["label"] or "the label"
    return {
        "card_version": CARD_VERSION,
        "model": {
            "dataset": version.dataset,
            "version": version.version,
            "model_uri": version.model_uri,
            "registry_ref": version.registry_ref,
            "created_at": version.created_at,
            "code_version": version.code_version,
            "evaluation_uri": version.evaluation_uri,
            "monitoring_baseline_uri": version.baseline_uri,
        },
        "intended_use": {
            "description": intended_use
            or DEFAULT_INTENDED_USE.format(dataset=version.dataset, label=label),
            "out_of_scope": list(out_of_scope),
        },
        "training_data": training_data,
        "metrics": {
            "split": "test",
            "threshold": test.get("threshold"),
            "rows": test.get("rows"),
            "label_rate": test.get("label_rate"),
            "positive_rate": test.get("positive_rate"),
            **{name: test.get(name) for name in _SUMMARY_METRICS},
            # The best epoch's validation AUC: far above the test AUC hints at overfitting
            # to the validation split through early stopping or tuning.
            "validation_roc_auc": validation.get("roc_auc"),
        },
        "decision_threshold": _decision_threshold(evaluation, test),
        "calibration": test.get("calibration") or {},
        "fairness": fairness,
        "fairness_audit": audit,
        "feature_importance": {
            "method": "Permutation importance on the test split: the drop in ROC AUC when one "
            "feature column is shuffled (mean and std over repeats)",
            "features": len(importance),
            "rows": evaluation.get("permutation_importance_rows"),
            "top": importance[:top_features],
        },
        "limitations": _limitations(test, training_data, fairness, importance, audit),
        "hyperparameters": dict(version.hyperparameters),
        "approval": {
            "status": version.approval,
            "reason": version.approval_reason,
            "approver": version.approver,
            "compared_with_champion_version": champion_version,
        },
        "champion_challenger": dict(decision if decision is not None else version.decision),
    }


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(_number(cell) for cell in row) + " |" for row in rows)
    return lines


def _gap_text(gap: Mapping[str, Any] | None, digits: int = 4) -> str:
    gap = gap or {}
    if gap.get("value") is None:
        return "n/a (fewer than two groups to judge)"
    return f"{gap['value']:.{digits}f} ({gap.get('highest')} vs {gap.get('lowest')})"


def _render_fairness(card: Mapping[str, Any]) -> list[str]:
    """The audit's section: what was audited, per attribute the group table and the gaps."""
    audit = card.get("fairness_audit") or {}
    if not card["fairness"]:
        return ["No sensitive attributes or audit attributes were configured.", ""]
    out = []
    kept_out = audit.get("audit_attributes") or []
    if kept_out:
        out += [
            f"Audit attributes kept out of the model's inputs: {', '.join(kept_out)}.",
            "",
        ]
    if audit.get("min_group_rows") is not None:
        out += [
            f"A group with fewer than {audit['min_group_rows']} test rows, or with labels of one "
            "class only, is too small to judge: it is listed with its counts and takes part in "
            f"no gap. Gaps above {_number(audit.get('max_group_difference'), 2)} and disparate "
            f"impact below {_number(audit.get('min_disparate_impact'), 2)} are named under "
            "Limitations.",
            "",
        ]
    formulas = audit.get("formulas") or {}
    for attribute, result in card["fairness"].items():
        rows = []
        for group, m in result["groups"].items():
            judged = m.get("judged", True)
            rows.append(
                [
                    group,
                    m.get("rows"),
                    m.get("positives"),
                    m.get("label_rate"),
                    m.get("positive_rate"),
                    m.get("recall"),
                    m.get("roc_auc"),
                    "" if judged else f"too small to judge: {m.get('reason')}",
                ]
            )
        source = "audit only, not a model input" if attribute in kept_out else "model input"
        out += [
            f"### {attribute} ({source})",
            "",
            *_table(
                [
                    "group",
                    "rows",
                    "positives",
                    "label rate",
                    "positive rate",
                    "recall (TPR)",
                    "ROC AUC",
                    "note",
                ],
                rows,
            ),
            "",
        ]
        for key, name, _ in _AUDIT_GAPS:
            if key not in result:
                continue
            formula = f" — {formulas[key]}" if formulas.get(key) else ""
            out.append(f"- {name}: {_gap_text(result.get(key))}{formula}")
        out.append("")
    return out


def decision_lines(decision: Mapping[str, Any]) -> list[str]:
    """The champion / challenger decision in a few lines of Markdown (card and demo)."""
    if not decision:
        return ["No champion to compare with: the first approved version."]
    metric = decision.get("metric", "roc_auc")
    new, old = decision.get("challenger"), decision.get("champion")
    margin = _number(decision.get("margin"), 6)
    champion = f"champion version {decision.get('champion_version') or '?'}"
    if not decision.get("paired"):
        return [
            f"**Not paired**: {decision.get('note') or 'no shared evaluation rows'}.",
            f"- {metric}: challenger {_number(new, 6)} on its own test split, {champion} "
            f"{_number(old, 6)} on another split (difference {_number(decision.get('difference'), 6)}"
            f", margin {margin}): numbers from different rows, so a person decides",
            f"- Outcome: **{decision.get('outcome')}**",
        ]
    lower, upper = decision["interval"]
    return [
        f"Challenger and {champion} scored on the same {decision.get('rows')} test rows "
        f"({decision.get('positives')} positive).",
        f"- {metric}: challenger {_number(new, 6)}, champion {_number(old, 6)}, "
        f"difference (challenger - champion) {decision['difference']:+.6f}",
        f"- {decision['confidence'] * 100:.0f}% interval of the difference: "
        f"[{lower:+.6f}, {upper:+.6f}] ({decision.get('method')}, "
        f"{decision.get('resamples')} resamples, seed {decision.get('seed')})",
        f"- Rule: {decision.get('rule')} (margin {margin})",
        f"- Outcome: **{decision.get('outcome')}**",
    ]


def _window_lines(window: Mapping[str, Any]) -> list[str]:
    """The training window as the card's bullet points."""
    asked, used = window.get("days_asked") or [], window.get("days_used") or []
    if not asked:
        return []
    return [
        f"- Training window: {window.get('window_days')} day(s) asked ({asked[0]}..{asked[-1]}), "
        f"{window.get('split')} split; days used: {', '.join(used) or 'none'}; "
        f"missing: {', '.join(window.get('days_missing') or []) or 'none'}",
        *(
            f"- `{channel}` channel: "
            + ", ".join(f"{part['ds']} {part['split']}" for part in parts)
            for channel, parts in (window.get("channels") or {}).items()
        ),
    ]


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card for people: the same facts as the JSON, as headed sections and tables."""
    model, data, metrics = card["model"], card["training_data"], card["metrics"]
    approval = card["approval"]
    threshold = card.get("decision_threshold") or {"value": metrics.get("threshold")}
    out = [
        f"# Model card: {model['dataset']} version {model['version']}",
        "",
        f"- Approval: **{approval['status']}**"
        + (f" by {approval['approver']}" if approval.get("approver") else ""),
        f"- Reason: {approval.get('reason') or 'n/a'}",
        f"- Compared with champion version: {approval.get('compared_with_champion_version') or 'none'}",
        f"- Model: `{model['model_uri']}` (registry: `{model['registry_ref']}`)",
        f"- Code version: `{model['code_version']}`",
        f"- Created: {model['created_at']}",
        "",
        "## Champion / challenger",
        "",
        *decision_lines(card.get("champion_challenger") or {}),
        "",
        "## Intended use",
        "",
        card["intended_use"]["description"],
        "",
        "Out of scope:",
        "",
        *(f"- {item}" for item in card["intended_use"]["out_of_scope"]),
        "",
        "## Training data",
        "",
        f"- Dataset `{data['dataset']}`, partition ds={data['partition']}, label `{data['label']}`, "
        f"{data['features']} features",
        *_window_lines(data.get("window") or {}),
        f"- Data version: `{data['data_version']}`",
        "",
        *_table(
            ["split", "rows", "positives", "positive rate"],
            [
                [
                    name,
                    data["rows_per_split"].get(name),
                    balance["positives"],
                    balance["positive_rate"],
                ]
                for name, balance in data["class_balance"].items()
            ],
        ),
        "",
        f"## Metrics (test split, threshold {_number(metrics['threshold'], 4)})",
        "",
        f"Decision threshold {_number(threshold.get('value'), 4)} "
        f"({threshold.get('method', 'fixed')}): {threshold.get('description', 'n/a')}. "
        "Thresholded metrics and the fairness audit count a row as predicted positive when its "
        "score is at or above it.",
        "",
        *_table(
            ["metric", "value"],
            [
                [name, metrics.get(name)]
                for name in (
                    "rows",
                    "label_rate",
                    "positive_rate",
                    *_SUMMARY_METRICS,
                    "validation_roc_auc",
                )
            ],
        ),
        "",
        "## Calibration",
        "",
        f"Expected calibration error: {_number(card['calibration'].get('ece'))}",
        "",
        *_table(
            ["score bin", "rows", "mean score", "positive rate"],
            [
                [
                    f"{b['lower']:.1f}-{b['upper']:.1f}",
                    b["count"],
                    b["mean_score"],
                    b["positive_rate"],
                ]
                for b in card["calibration"].get("bins", [])
            ],
        ),
        "",
        "## Fairness audit (test split)",
        "",
    ]
    out += _render_fairness(card)
    importance = card["feature_importance"]
    out += [
        "## Feature importance",
        "",
        f"{importance['method']}; top {len(importance['top'])} of {importance['features']}.",
        "",
        *_table(
            ["feature", "importance (mean)", "std"],
            [[i["feature"], i["importance_mean"], i["importance_std"]] for i in importance["top"]],
        ),
        "",
        "## Limitations",
        "",
        *(f"- {note}" for note in card["limitations"]),
        "",
        "## Hyperparameters",
        "",
        *_table(["name", "value"], sorted(card["hyperparameters"].items())),
        "",
    ]
    return "\n".join(out)


def write_model_card(card: Mapping[str, Any], base_uri: str) -> tuple[str, str]:
    """Write ``<base_uri>.json`` and ``<base_uri>.md`` (atomically, via the lake storage)."""
    from include.storage import storage_for

    json_uri, markdown_uri = f"{base_uri}.json", f"{base_uri}.md"
    storage = storage_for(json_uri)
    storage.write_bytes(json_uri, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    storage.write_bytes(markdown_uri, render_markdown(card).encode())
    return json_uri, markdown_uri


def read_model_card(card_uri: str) -> dict[str, Any]:
    """A version's model card (its JSON) from the lake."""
    from include.storage import storage_for

    return json.loads(storage_for(card_uri).read_bytes(card_uri))


def update_card_approval(card_uri: str, version) -> tuple[str, str]:
    """Rewrite a version's card (JSON and Markdown) after a person's approval decision."""
    card = read_model_card(card_uri)
    card["approval"].update(
        status=version.approval, reason=version.approval_reason, approver=version.approver
    )
    return write_model_card(card, card_uri.removesuffix(".json"))


# The metrics the approval request compares, in the order a reviewer reads them.
_APPROVAL_METRICS = (
    "roc_auc",
    "f1",
    "precision",
    "recall",
    "accuracy",
    "log_loss",
    "brier",
    "calibration_ece",
    "positive_rate",
    "label_rate",
    "rows",
)
# Neither better nor worse when they change: facts about the test split or the threshold.
_NEUTRAL_METRICS = frozenset({"positive_rate", "label_rate", "rows"})
_GAPS = (
    ("positive_rate_difference", "positive-rate gap"),
    ("recall_difference", "recall gap"),
    ("disparate_impact", "disparate impact"),
)


def _change(name: str, new: Any, old: Any) -> str:
    from include.model_selection import LOWER_IS_BETTER

    if new is None or old is None:
        return "n/a"
    delta = float(new) - float(old)
    if name == "rows":
        return f"{int(delta):+d}"
    if name in _NEUTRAL_METRICS or delta == 0:
        return f"{delta:+.4f}"
    better = delta < 0 if name in LOWER_IS_BETTER else delta > 0
    return f"{delta:+.4f} ({'better' if better else 'worse'})"


def _gap(card: Mapping[str, Any] | None, attribute: str, key: str) -> str:
    if card is None:
        return "n/a (no card)"
    gap = ((card.get("fairness") or {}).get(attribute) or {}).get(key) or {}
    if gap.get("value") is None:
        return "n/a"
    audit = card.get("fairness_audit") or {}
    if key == "disparate_impact":
        limit = audit.get("min_disparate_impact", LOW_DISPARATE_IMPACT)
        flag = f" **under {limit}**" if gap["value"] < limit else ""
    else:
        limit = audit.get("max_group_difference", LARGE_GROUP_GAP)
        flag = f" **over {limit}**" if gap["value"] > limit else ""
    return f"{gap['value']:.4f} ({gap.get('highest')} vs {gap.get('lowest')}){flag}"


def approval_summary(
    challenger,
    champion,
    *,
    challenger_card: Mapping[str, Any] | None,
    champion_card: Mapping[str, Any] | None = None,
) -> str:
    """The model card summary a person reads before approving or rejecting a pending version
    (Markdown, the body of the approval request in the Airflow UI).

    :param challenger: the pending :class:`include.registry.ModelVersion`.
    :param champion: the current champion's version, or None when there is none.
    :param challenger_card: the challenger's card (:func:`build_model_card`), if written.
    :param champion_card: the champion's card, for its group gaps.
    """
    name, version = challenger.dataset, challenger.version
    keeps = f"version {champion.version} stays the champion" if champion else "no model serves"
    out = [
        f"**{name} model version {version}** waits for a decision. *Approve* makes it the "
        f"champion that batch scoring uses; *Reject* keeps things as they are ({keeps}). "
        "Say why in the reason: it is recorded in the registry with your name.",
        "",
        f"Why it was not approved automatically: {challenger.approval_reason or 'n/a'}",
        "",
        "#### Test metrics",
        "",
    ]
    champion_metrics = champion.metrics if champion else {}
    header = ["metric", f"version {version}"]
    if champion:
        header += [f"champion (version {champion.version})", "change"]
    rows = []
    for metric in _APPROVAL_METRICS:
        new, old = challenger.metrics.get(metric), champion_metrics.get(metric)
        if new is None and old is None:
            continue
        if metric == "rows":  # a count, stored as a float by the registry
            new, old = (None if v is None else int(v) for v in (new, old))
        rows.append([metric, new, old, _change(metric, new, old)] if champion else [metric, new])
    out += [*_table(header, rows), ""]

    attributes = sorted(
        {
            *((challenger_card or {}).get("fairness") or {}),
            *((champion_card or {}).get("fairness") or {}),
        }
    )
    out += ["#### Group gaps (test split)", ""]
    if challenger_card is None:
        out += [f"Version {version} has no model card yet, so its group gaps are unknown.", ""]
    elif not attributes:
        out += ["No sensitive attributes were configured.", ""]
    else:
        header = ["attribute", "gap", f"version {version}"]
        if champion:
            header.append(f"champion (version {champion.version})")
        gap_rows = []
        for attribute in attributes:
            for metric, label in _GAPS:
                row = [attribute, label, _gap(challenger_card, attribute, metric)]
                if champion:
                    row.append(_gap(champion_card, attribute, metric))
                gap_rows.append(row)
        out += [*_table(header, gap_rows), ""]

    limitations = (challenger_card or {}).get("limitations") or []
    if limitations:
        out += ["#### Limitations (from the model card)", "", *(f"- {n}" for n in limitations), ""]
    out += [
        f"Model card: `{challenger.card_uri or 'not written'}`; model: `{challenger.model_uri}`; "
        f"registry: `{challenger.registry_ref}`.",
    ]
    return "\n".join(out)
