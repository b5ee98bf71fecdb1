"""The budget check every job operator makes just before it starts an AWS job: one place that
turns :mod:`include.cost`'s refusal into a task failure that is not retried."""

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

    from include.cost import CostError, dataset_budget, enforce_job_budget

    try:
        enforce_job_budget(
            service,
            operation,
            request,
            budget=dataset_budget(dataset, datasets_dir),
            region=region,
            log=log,
            **bounds,
        )
    except CostError as error:  # a retry would be refused the same way
        raise AirflowFailException(str(error)) from None
