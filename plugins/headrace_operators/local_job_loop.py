"""The loop a job operator runs on the local target, for jobs that the task waits on itself.

Start the job named by the task's run key, or re-attach to the one an earlier try started; wait
for it up to the task's timeout; stop it when that passes (the job also stops itself then, as
Glue and Glue Data Quality runs do, even when no task waits on it any more). The Spark operator,
the quality gate and the SageMaker training, tuning and processing operators share it, so their
local jobs behave alike on retry, timeout and failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from airflow.exceptions import AirflowException

Result = TypeVar("Result")


def run_local_job(
    log: logging.Logger,
    what: str,
    *,
    start: Callable[[], tuple[str, bool, str]],
    wait: Callable[[float], Result],
    stop: Callable[[], object],
    timeout: timedelta,
    job_error: type[Exception],
) -> Result:
    """Run one local job to its end; the task fails with the job's own message.

    :param what: the job in words, for the log ("local Spark job spark_jobs.ingest (run key k)").
    :param start: starts or re-attaches; returns the job's state, whether this call started it
        and the path of its log.
    :param wait: waits at most the seconds given; returns the finished job's result, raises
        ``TimeoutError`` while it still runs and ``job_error`` when it failed or was stopped.
    :param stop: stops the job.
    """
    state, started, log_path = start()
    if started:
        log.info("Started %s; its log: %s", what, log_path)
    else:
        log.info(
            "Re-attached to %s (%s), started by an earlier try; its log: %s", what, state, log_path
        )
    try:
        return wait(timeout.total_seconds())
    except TimeoutError as error:
        stop()
        raise AirflowException(f"{error} (timeout {timeout}); stopped it") from None
    except job_error as error:
        raise AirflowException(str(error)) from None
