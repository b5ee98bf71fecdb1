"""Fixtures of the monitoring tests: small churn days from the landing-data generator, read the way
curated data looks to pandas, with a fixed scorer's prediction as the ``score`` column
(``monitoring_helpers``). The S3 tests use the shared ``moto_s3`` of ``tests/include/conftest.py``.

Generated once per test session (20,000 rows a day, well under a second): day 1 of seed 7 is the
training partition, day 2 of seed 7 carries planted drift on ``sessions`` and ``region``, and
day 1 of seed 8 is new customers from the same distributions (no drift).
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitoring_helpers import churn_days, churn_score

REPO_ROOT = Path(__file__).resolve().parents[3]
SPEC_PATH = REPO_ROOT / "include" / "datasets" / "churn.yaml"
MONITORING_PATH = REPO_ROOT / "include" / "datasets" / "churn.monitoring.yaml"
ROWS_PER_DAY = 20_000
DRIFT_DAY = date(2026, 1, 2)
PLANTED_FEATURES = ("sessions", "region")


def _scored(frame: pd.DataFrame) -> pd.DataFrame:
    frame["score"] = churn_score(frame)
    return frame


@pytest.fixture(scope="session")
def churn_frames(tmp_path_factory) -> dict[str, pd.DataFrame]:
    from include.datagen.churn import DriftPlan

    root = tmp_path_factory.mktemp("monitoring-landing")
    drift = DriftPlan(days=(DRIFT_DAY,), features=PLANTED_FEATURES, strength=1.0)
    seed7 = churn_days(root / "seed7", seed=7, days=2, rows=ROWS_PER_DAY, drift=drift)
    seed8 = churn_days(root / "seed8", seed=8, days=1, rows=ROWS_PER_DAY)
    return {
        "train": _scored(seed7["2026-01-01"]),
        "drifted": _scored(seed7[DRIFT_DAY.isoformat()]),
        "no_drift": _scored(seed8["2026-01-01"]),
    }


@pytest.fixture(scope="session")
def planted_features() -> tuple[str, ...]:
    return PLANTED_FEATURES


@pytest.fixture(scope="session")
def churn_spec():
    from spark_jobs.dataset_spec import load_spec

    return load_spec(SPEC_PATH)


@pytest.fixture(scope="session")
def monitoring_config():
    from include.monitoring.thresholds import load_monitoring_config

    return load_monitoring_config(MONITORING_PATH)


@pytest.fixture(scope="session")
def churn_columns(churn_spec, churn_frames, monitoring_config):
    from include.monitoring.columns import monitored_columns

    return monitored_columns(
        churn_spec, churn_frames["train"].columns, score_column=monitoring_config.score_column
    )


@pytest.fixture(scope="session")
def churn_baseline(churn_frames, churn_columns, monitoring_config):
    from include.monitoring.baseline import build_baseline

    baseline, _ = build_baseline(
        churn_frames["train"], churn_columns, monitoring_config, metadata={"model_version": "3"}
    )
    return baseline
