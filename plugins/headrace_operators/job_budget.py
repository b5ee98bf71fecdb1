"""The budget check every job operator makes just before it starts an AWS job: one place that
turns :mod:`include.cost`'s refusal into a task failure that is not retried, and shows the
job's estimate (or the refusal) on the DAG run's note (:mod:`include.run_note`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


def enforce_budget_or_fail(
    service: str,
    operation: str,
    request: dict,
    *,
    dataset: str | None,
    datasets_dir: Path,
    region: str,
    log: logging.Logger,
    **bounds: Any,
) -> None:
    """Log the request's worst-case cost; fail the task, starting nothing, when it is over the
    dataset's budget (its spec's ``cost:`` block; no dataset: the default) or cannot be priced."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.cost import CostError, dataset_budget, enforce_job_budget, format_usd
    from include.run_note import note_this_run

    try:
        budget = dataset_budget(dataset, datasets_dir)
        estimate = enforce_job_budget(
            service, operation, request, budget=budget, region=region, log=log, **bounds
        )
    except CostError as error:  # a retry would be refused the same way
        note_this_run(f"refused {operation}", str(error), log)
        raise AirflowFailException(str(error)) from None
    note_this_run(
        f"{estimate.kind} {estimate.job_name}",
        f"{format_usd(estimate.usd)} of the {format_usd(budget.per_job_usd)} job budget",
        log,
    )
