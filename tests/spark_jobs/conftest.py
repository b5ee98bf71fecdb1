"""Fixtures of the Spark job tests: one local SparkSession for the whole test run (starting a JVM
per test would dominate the suite's time), the churn spec and a test-only PII salt."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The helpers module next to this file, importable from every test in this folder.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from lake_helpers import SPEC_PATH, TEST_SALT  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    os.environ.setdefault("HEADRACE_SPARK_LOG_LEVEL", "ERROR")
    from spark_jobs.spark_session import get_spark

    # Two shuffle partitions: test inputs are tiny, and every extra task is scheduling overhead.
    session = get_spark("headrace-tests", {"spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def spec():
    from spark_jobs.dataset_spec import load_spec

    return load_spec(SPEC_PATH)


@pytest.fixture
def salt(monkeypatch) -> str:
    monkeypatch.setenv("HEADRACE_PII_SALT", TEST_SALT)
    return TEST_SALT
