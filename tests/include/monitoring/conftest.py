"""Fixtures of the monitoring tests: small churn days from the landing-data generator, read the way
curated data looks to pandas, with a fixed scorer's prediction as the ``score`` column.

Generated once per test session (20,000 rows a day, well under a second): day 1 of seed 7 is the
training partition, day 2 of seed 7 carries planted drift on ``sessions`` and ``region``, and
day 1 of seed 8 is new customers from the same distributions (no drift).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SPEC_PATH = REPO_ROOT / "include" / "datasets" / "churn.yaml"
MONITORING_PATH = REPO_ROOT / "include" / "datasets" / "churn.monitoring.yaml"
ROWS_PER_DAY = 20_000
DRIFT_DAY = date(2026, 1, 2)
PLANTED_FEATURES = ("sessions", "region")


def churn_score(frame: pd.DataFrame) -> np.ndarray:
    """A fixed logistic scorer standing in for the model: it reads ``sessions``, so drift planted
    there moves the score too."""
    logit = (
        -1.5
        + 0.02 * (frame["monthly_charge"] - 45.0)
        + 0.4 * frame["support_tickets_30d"]
        - 0.03 * np.minimum(frame["tenure_months"], 48)
        + 0.05 * (frame["sessions"] - 10.0)
    )
    return (1.0 / (1.0 + np.exp(-logit))).to_numpy()


def _read_day(out: Path, ds: date) -> pd.DataFrame:
    (part,) = (out / "churn" / f"ds={ds.isoformat()}").glob("part-*.csv")
    # Only the empty field is null, as in curated data (the generator writes no null tokens).
    frame = pd.read_csv(part, keep_default_na=False, na_values=[""])
    frame["score"] = churn_score(frame)
    return frame


@pytest.fixture(scope="session")
def churn_frames(tmp_path_factory) -> dict[str, pd.DataFrame]:
    from include.datagen.churn import DriftPlan, GeneratorConfig, generate

    root = tmp_path_factory.mktemp("monitoring-landing")
    common = {
        "start": date(2026, 1, 1),
        "rows_per_day": ROWS_PER_DAY,
        "rows_per_file": ROWS_PER_DAY,
        "chunk_rows": ROWS_PER_DAY,
    }
    generate(
        GeneratorConfig(
            out=root / "seed7",
            days=2,
            seed=7,
            drift=DriftPlan(days=(DRIFT_DAY,), features=PLANTED_FEATURES, strength=1.0),
            **common,
        )
    )
    generate(GeneratorConfig(out=root / "seed8", days=1, seed=8, **common))
    return {
        "train": _read_day(root / "seed7", date(2026, 1, 1)),
        "drifted": _read_day(root / "seed7", DRIFT_DAY),
        "no_drift": _read_day(root / "seed8", date(2026, 1, 1)),
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


@pytest.fixture
def moto_s3(monkeypatch):
    """A real moto server on loopback, and a bucket in it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="headrace-monitoring-test",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    yield "headrace-monitoring-test"
    server.stop()
