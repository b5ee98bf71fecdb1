"""Champion / challenger: whether a newly trained model may replace the approved one by itself.

The rule is deliberately small, so a person reading the approval reason in the registry or on the
model card can check it by hand: with no champion the challenger is approved; otherwise it must
beat the champion on one test metric by at least a margin. Anything else waits for a person
(``PendingManualApproval``), with a reason that names both values — a challenger that is only
level with the champion is not worth a silent swap, but it may still be worth a look.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_METRIC = "roc_auc"
# Half a point of AUC: below that, test-split noise on a few thousand rows decides the winner.
DEFAULT_MARGIN = 0.005
# Test metrics where smaller is better; every other compared metric is higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "calibration_ece"})


@dataclass(frozen=True)
class Decision:
    """The outcome: ``approve`` is True when the challenger becomes the champion on its own."""

    approve: bool
    reason: str

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


def decide_champion_challenger(
    challenger_metrics: Mapping[str, object],
    champion_metrics: Mapping[str, object] | None,
    *,
    metric: str = DEFAULT_METRIC,
    margin: float = DEFAULT_MARGIN,
    higher_is_better: bool = True,
) -> Decision:
    """Approve the challenger when there is no champion or it beats the champion by ``margin``.

    :param challenger_metrics: the new model's test metrics, e.g. ``{"roc_auc": 0.81, …}``.
    :param champion_metrics: the approved model's test metrics, or ``None`` when there is none.
    :param metric: the metric compared, present in both.
    :param margin: how much better the challenger must be (in the metric's units, ``>= 0``).
    :param higher_is_better: False for losses (``log_loss``, ``brier``).
    """
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    challenger = _metric_value(challenger_metrics, metric, "challenger")
    if champion_metrics is None:
        return Decision(
            approve=True,
            reason=f"no approved champion yet; challenger {metric}={challenger:.6f} is approved",
        )
    champion = _metric_value(champion_metrics, metric, "champion")
    improvement = challenger - champion if higher_is_better else champion - challenger
    direction = "higher" if higher_is_better else "lower"
    comparison = (
        f"challenger {metric}={challenger:.6f} vs champion {metric}={champion:.6f}: "
        f"{improvement:+.6f} ({direction} is better, margin {margin:.6f})"
    )
    # A tiny tolerance keeps an improvement of exactly the margin from failing on float rounding.
    if improvement >= margin - 1e-12:
        return Decision(approve=True, reason=f"{comparison}; beats the champion, approved")
    return Decision(
        approve=False,
        reason=f"{comparison}; does not beat the champion by the margin, needs manual approval",
    )
