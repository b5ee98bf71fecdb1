"""Helpers of the monitoring tests: the fixed scorer standing in for the model, and churn days of
the landing-data generator read the way curated data looks to pandas (via the scoring tests'
helpers, so both read a day one way)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scoring_helpers import generate_days, read_landing


def churn_logit(frame: pd.DataFrame) -> np.ndarray:
    """The fixed logistic scorer's logit: it reads ``sessions``, so drift planted there moves
    the score too."""
    return (
        -1.5
        + 0.02 * (frame["monthly_charge"] - 45.0)
        + 0.4 * frame["support_tickets_30d"]
        - 0.03 * np.minimum(frame["tenure_months"], 48)
        + 0.05 * (frame["sessions"] - 10.0)
    ).to_numpy()


def churn_score(frame: pd.DataFrame) -> np.ndarray:
    """The fixed scorer's probability."""
    return 1.0 / (1.0 + np.exp(-churn_logit(frame)))


def churn_days(
    root: Path, *, seed: int, days: int, rows: int, drift=None
) -> dict[str, pd.DataFrame]:
    """``{ds: the day's rows}`` of the churn generator, as curated data looks to pandas."""
    paths = generate_days(root, seed=seed, days=days, rows=rows, drift=drift)
    return {ds: read_landing(path) for ds, path in paths.items()}
