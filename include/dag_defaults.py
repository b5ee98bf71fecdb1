"""Defaults every headrace DAG shares: owner, retries, start date and the approved tags.

The DAG integrity tests read ``APPROVED_TAGS`` from here, so adding a tag is a reviewed change.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

# A fixed start date: a moving one (``now()``) changes the DAG at every parse.
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")

DEFAULT_ARGS = {
    "owner": "headrace-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}

APPROVED_TAGS = frozenset(
    {
        "headrace",
        "platform",
        "ingestion",
        "data-quality",
        "training",
        "scoring",
        "monitoring",
        "events",
    }
)


def partition_param(title: str, description: str):
    """The optional ``ds`` Param every stage DAG takes: a YYYY-MM-DD date, validated by the UI
    form and the REST API before a run is created; empty means "work it out" (see the DAG)."""
    from airflow.sdk import Param

    return Param(
        None,
        type=["null", "string"],
        format="date",
        title=title,
        description=f"{description} (YYYY-MM-DD).",
    )
