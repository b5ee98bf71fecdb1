"""Champion / challenger: whether a newly trained model may replace the approved one by itself.

The rule is deliberately small, so a person reading the approval reason in the registry or on the
model card can check it by hand. With no champion the challenger is approved. Otherwise the two
must have been scored on the same rows: the training job scores the champion's model.tar.gz on
its own test split (``champion_comparison`` in ``evaluation.json``, from
``training/evaluation.py:paired_auc_comparison``), which gives both ROC AUCs, their difference
(challenger - champion) and a 95% paired-bootstrap interval of the difference. The challenger is
approved only when the **lower bound** of that interval is above the margin: the improvement
clears the margin with 95% confidence (one-sided 97.5%), so two models that are level on these
rows — an interval around 0 — never swap on noise.

Anything else waits for a person (``PendingManualApproval``) with a reason that names the
numbers. That includes a comparison that is not paired — no champion scores in the job, a
champion that reads other features, or a champion that changed after the job ran: the two test
AUCs then come from different rows, and the reason says so in so many words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_METRIC = "roc_auc"
# Half a point of AUC: below that, test-split noise on a few thousand rows decides the winner.
DEFAULT_MARGIN = 0.005
# Test metrics where smaller is better; every other compared metric is higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "calibration_ece"})


# The comparison's rule, as the card and the registry state it.
PAIRED_RULE = "approve when the lower bound of the interval of (challenger - champion) > margin"
UNPAIRED_RULE = "not paired: the AUCs come from different rows, so a person decides"


@dataclass(frozen=True)
class Decision:
    """The outcome: ``approve`` is True when the challenger becomes the champion on its own.

    ``comparison``: the numbers behind it (:func:`comparison_record`), or None without a champion.
    """

    approve: bool
    reason: str
    comparison: dict | None = None

    @property
    def approval_status(self) -> str:
        """The registry status this decision registers the challenger with (SageMaker's names)."""
        return "Approved" if self.approve else "PendingManualApproval"


def _metric_value(metrics: Mapping[str, object], metric: str, whose: str) -> float:
    value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(
            f"{whose} metrics have no finite {metric!r} (got {value!r}); "
            f"available: {', '.join(sorted(metrics)) or 'none'}"
        )
    return float(value)


def _interval_text(comparison: Mapping[str, Any]) -> str:
    lower, upper = comparison["interval"]
    return (
        f"{comparison['confidence'] * 100:.0f}% interval [{lower:+.6f}, {upper:+.6f}] "
        f"({comparison['method']}, {comparison['resamples']} resamples, seed {comparison['seed']})"
    )


def comparison_record(
    comparison: Mapping[str, Any] | None,
    *,
    challenger: float,
    champion: float,
    champion_version: str | None,
    metric: str,
    margin: float,
    approve: bool,
    note: str = "",
) -> dict[str, Any]:
    """The decision's numbers, flat and JSON-able, for the registry and the model card."""
    paired = comparison is not None and bool(comparison.get("paired"))
    record: dict[str, Any] = {
        "paired": paired,
        "metric": metric,
        "champion_version": champion_version,
        "challenger": challenger,
        "champion": champion,
        "difference": challenger - champion,
        "margin": margin,
        "rule": PAIRED_RULE if paired else UNPAIRED_RULE,
        "outcome": "approved" if approve else "needs manual approval",
    }
    if paired:
        record.update(
            method=comparison["method"],
            rows=comparison["rows"],
            positives=comparison["positives"],
            interval=list(comparison["interval"]),
            confidence=comparison["confidence"],
            resamples=comparison["resamples"],
            seed=comparison["seed"],
        )
    else:
        record.update(method="not paired", rows=None, interval=None, note=note)
    return record


def decide_champion_challenger(
    challenger_metrics: Mapping[str, object],
    champion_metrics: Mapping[str, object] | None,
    *,
    metric: str = DEFAULT_METRIC,
    margin: float = DEFAULT_MARGIN,
    higher_is_better: bool = True,
    comparison: Mapping[str, Any] | None = None,
    champion_version: str | None = None,
    not_paired_because: str = "",
) -> Decision:
    """Approve the challenger when there is no champion, or when the paired comparison's
    interval clears ``margin``; everything else needs a person.

    :param challenger_metrics: the new model's test metrics, e.g. ``{"roc_auc": 0.81, …}``.
    :param champion_metrics: the approved model's test metrics (on its own test split), or
        ``None`` when there is none; used only when there is no paired comparison.
    :param metric: the metric compared; a paired comparison exists for ``roc_auc`` only.
    :param margin: how much better the challenger must be (in the metric's units, ``>= 0``).
    :param higher_is_better: False for losses (``log_loss``, ``brier``).
    :param comparison: the job's ``champion_comparison`` when it scored this champion on the
        challenger's test rows (``paired`` True, both AUCs, ``difference``, ``interval`` …).
    :param champion_version: the champion's version, for the record.
    :param not_paired_because: why there is no paired comparison, for the reason.
    """
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    challenger = _metric_value(challenger_metrics, metric, "challenger")
    if champion_metrics is None:
        return Decision(
            approve=True,
            reason=f"no approved champion yet; challenger {metric}={challenger:.6f} is approved",
        )
    paired = comparison is not None and bool(comparison.get("paired")) and metric == "roc_auc"
    if paired:
        new, old = float(comparison["challenger_auc"]), float(comparison["champion_auc"])
        lower = float(comparison["interval"][0])
        approve = lower > margin
        text = (
            f"on the same {comparison['rows']} test rows: challenger {metric}={new:.6f} vs "
            f"champion {metric}={old:.6f}, difference {new - old:+.6f}, "
            f"{_interval_text(comparison)}; "
        )
        text += (
            f"the lower bound {lower:+.6f} clears the margin {margin:.6f}, approved"
            if approve
            else f"the lower bound {lower:+.6f} does not clear the margin {margin:.6f}, "
            "needs manual approval"
        )
        return Decision(
            approve=approve,
            reason=text,
            comparison=comparison_record(
                comparison,
                challenger=new,
                champion=old,
                champion_version=champion_version,
                metric=metric,
                margin=margin,
                approve=approve,
            ),
        )
    champion = _metric_value(champion_metrics, metric, "champion")
    improvement = challenger - champion if higher_is_better else champion - challenger
    direction = "higher" if higher_is_better else "lower"
    why = not_paired_because or "the job did not score the champion on the challenger's rows"
    reason = (
        f"NOT PAIRED ({why}): challenger {metric}={challenger:.6f} on its test split vs "
        f"champion {metric}={champion:.6f} on another split: {improvement:+.6f} "
        f"({direction} is better, margin {margin:.6f}); numbers from different rows cannot "
        "decide alone, needs manual approval"
    )
    return Decision(
        approve=False,
        reason=reason,
        comparison=comparison_record(
            None,
            challenger=challenger,
            champion=champion,
            champion_version=champion_version,
            metric=metric,
            margin=margin,
            approve=False,
            note=why,
        ),
    )
