"""Defaults every headrace DAG shares: owner, retries, start date, the approved tags, and Params.

The DAG integrity tests read ``APPROVED_TAGS`` from here, so adding a tag is a reviewed change.

The Param helpers give every run parameter what the trigger form and the REST API validate
against before a run is created: a JSON-schema ``type``, a ``title`` (the form's label), a
``description`` (its help text) and, where they make sense, ``enum``, ``minimum``/``maximum``,
``minLength``/``maxLength``, ``format`` and ``pattern``. A bad value is refused with the field
named, and nothing runs. The integrity tests check that every Param of every DAG has a type, a
title and a description.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

from include.param_patterns import end_anchored

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
        # jsonschema's date format (RFC 3339 full-date: 2026-02-30 and 20260107 are refused).
        format="date",
        title=title,
        description=f"{description} (YYYY-MM-DD).",
    )


def integer_param(default: int | None, *, title: str, description: str, minimum: int, maximum: int):
    """A whole number within [minimum, maximum]; ``default=None`` makes it required."""
    from airflow.sdk import Param

    value = () if default is None else (default,)
    return Param(
        *value,
        type="integer",
        minimum=minimum,
        maximum=maximum,
        title=title,
        description=description,
    )


def number_param(default: float, *, title: str, description: str, minimum: float, maximum: float):
    """A number within [minimum, maximum]."""
    from airflow.sdk import Param

    return Param(
        default,
        type="number",
        minimum=minimum,
        maximum=maximum,
        title=title,
        description=description,
    )


def choice_param(default: str, *, title: str, description: str, choices: list[str]):
    """One of ``choices`` (the form shows a drop-down)."""
    from airflow.sdk import Param

    if default not in choices:
        raise ValueError(f"choice_param {title!r}: default {default!r} is not in {choices}")
    return Param(default, type="string", enum=list(choices), title=title, description=description)


def boolean_param(default: bool, *, title: str, description: str):
    """A yes/no switch (the form shows a toggle)."""
    from airflow.sdk import Param

    return Param(default, type="boolean", title=title, description=description)


def text_param(
    *, title: str, description: str, min_length: int, max_length: int, pattern: str | None = None
):
    """A required string of bounded length (and, with ``pattern``, shape: see
    :func:`include.param_patterns.end_anchored` for how a ``$`` in it is written)."""
    from airflow.sdk import Param

    schema = {"pattern": end_anchored(pattern)} if pattern else {}
    return Param(
        type="string",
        minLength=min_length,
        maxLength=max_length,
        title=title,
        description=description,
        **schema,
    )
