"""Fixtures of the data-quality tests: the churn rules and the curated-partition helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# dq_partitions.py next to this file, importable from every test in this folder.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def churn_rules():
    from include.dq.gate import load_dataset_rules

    return load_dataset_rules("churn")


@pytest.fixture(scope="session")
def curated_types(churn_rules) -> dict[str, str]:
    return churn_rules.curated_types()
