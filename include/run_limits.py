"""The check a stage run makes before its first AWS job: its worst-case cost against the
dataset's budgets (:func:`include.cost.check_stage_run`) and the instances it asks for against the
account's Service Quotas (:func:`include.quotas.check_stage_quotas`). One place turns either
refusal into a task failure that is not retried, and puts the run's estimate, or the refusal, on
its DAG run's note (:mod:`include.run_note`). Each job operator checks its own job's budget as
well, just before it starts it (plugins/headrace_operators/job_budget.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from include.config import DATASETS_DIR, Settings

# The stages that run Spark jobs: on EMR Serverless, the application's maximum capacity bounds
# what each job may cost and the vCPUs it may take, so it is read from EMR (GetApplication).
SPARK_STAGES = ("ingestion", "validation")


def refuse_stage_run_over_limits(
    settings: Settings,
    dataset: str,
    stage: str,
    *,
    datasets_dir: Path = DATASETS_DIR,
    client: Any = None,
    **run: Any,
) -> None:
    """On aws, fail the running task (not retried: a retry would be refused the same way),
    starting no job, when one run of ``<dataset>_<stage>`` could cost more than the dataset's
    budgets allow or needs more than the account's Service Quotas allow. Nothing to check on the
    local target.

    :param client: a ``service-quotas`` client (default: one of the run's region).
    :param run: the run's configuration, :func:`include.cost.stage_run_jobs`' keywords (the
        training DAG's trials, the days an ingestion run ingests).
    """
    if settings.is_local:
        return
    from airflow.sdk.exceptions import AirflowFailException

    from include.cost import CostError, check_stage_run, run_estimate_line
    from include.quotas import QuotaError, check_stage_quotas
    from include.run_note import note_this_run

    log = logging.getLogger(f"headrace.{stage}")
    if stage in SPARK_STAGES and settings.aws.spark_engine == "emr_serverless":
        run.setdefault("emr_serverless_maximum_capacity", application_maximum_capacity(settings))
    try:
        estimates = check_stage_run(
            settings, dataset, stage, datasets_dir=datasets_dir, log=log, **run
        )
        note_this_run("run", run_estimate_line(dataset, estimates, datasets_dir), log)
        check_stage_quotas(
            settings, dataset, stage, datasets_dir=datasets_dir, log=log, client=client, **run
        )
    except (CostError, QuotaError) as error:
        note_this_run("refused", str(error), log)
        raise AirflowFailException(str(error)) from None


def application_maximum_capacity(settings: Settings) -> dict | None:
    """The EMR Serverless application's ``maximumCapacity`` (None when it sets none, which
    :mod:`include.cost` refuses: an unbounded job has no worst case)."""
    import boto3

    client = boto3.client("emr-serverless", region_name=settings.aws.region)
    application = client.get_application(applicationId=settings.aws.emr_serverless_application_id)
    return application["application"].get("maximumCapacity")
