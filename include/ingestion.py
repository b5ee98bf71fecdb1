"""The days an ingestion run ingests, and the argv the DAGs hand to the Spark ingest and
features jobs, built from settings.

The DAG stays declarative: it names a dataset; this module knows where the dataset spec,
the landing zone and the lake are on the current target, and how the job gets its PII salt
(an environment variable locally, a Secrets Manager secret on AWS — never a job argument).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from include.config import REPO_ROOT, Settings
from include.landing import IngestPlan
from include.partitions import (
    LandingDays,
    PartitionError,
    check_partition_date,
    landing_partitions_from_asset_events,
)
from include.spark_job_requests import ARTIFACTS_PREFIX

DATASETS_DIR = REPO_ROOT / "include" / "datasets"
LOCAL_PII_SALT_ENV = "HEADRACE_PII_SALT"
# The ``path`` Param of an ingestion run: a folder of the lake's landing zone, relative to the
# lake root, with no ``.``/``..`` segment, so a run can never read files outside the lake.
# ``$(?!\n)``: Python's ``$`` also matches before a final newline (``\Z`` is not ECMA-262).
LANDING_PATH_PATTERN = r"^landing(/(?!\.\.?(/|$))[A-Za-z0-9_.=-]+)+/?$(?!\n)"


def ingestion_days(
    dataset: str,
    param_ds: Any,
    triggering_asset_events: Mapping[Any, Iterable[Any]] | None,
    run_date: datetime | date | None,
) -> LandingDays:
    """The days one ingestion run ingests, in order, and the triggering events it refused.

    - the ``ds`` param (a run triggered by hand or through the REST API): that day;
    - else the landing events that triggered the run: every day they name (several events, or
      one SQS batch, may name several days, and none is dropped); an event naming a malformed
      day is refused on its own, and the other events' days still go through;
    - else the run's date (its logical date, or when it was due to run): the day before it.
      Airflow 3's cron schedules stamp a daily run with the moment it fires (00:00 UTC), so the
      scheduled run of day D ingests day D-1, the day that has just ended.

    :raises PartitionError: a malformed ``ds`` param, or an event-triggered run whose events
        name no landing day of ``dataset`` and refuse none (nothing to ingest is an error, not a
        guess).
    """
    if param_ds:
        return LandingDays([check_partition_date(param_ds, "params.ds")])
    if triggering_asset_events:
        landing = landing_partitions_from_asset_events(triggering_asset_events, dataset)
        if not landing.days and not landing.rejected:
            raise PartitionError(
                f"the run was triggered by asset events, but none names a landing day of "
                f"{dataset} (landing/{dataset}/ds=YYYY-MM-DD/…): "
                f"{_describe_events(triggering_asset_events)}"
            )
        return landing
    if run_date is None:
        raise PartitionError("no ds param, no triggering landing event and no run date")
    day = run_date.date() if isinstance(run_date, datetime) else run_date
    return LandingDays([(day - timedelta(days=1)).isoformat()])


def plan_run(settings: Settings, dataset: str, context: Mapping[str, Any]) -> IngestPlan:
    """The days one ingestion run ingests (:func:`include.landing.plan_ingestion`), from its
    ``ds``/``path`` params, its landing events or its date (:func:`ingestion_days`).

    Refused events are kept in the quarantine zone and do not hold up the good days. Runs by
    events or the schedule also sweep up complete days no event named; a run by hand does not.
    A day the run names that is not complete yet waits (its completing file starts another run); a run
    by hand for such a day fails, saying what the day is waiting for. A run with nothing to
    ingest is skipped, with the reasons.

    :raises PartitionError: bad params, or every event refused.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from include.landing import plan_ingestion
    from spark_jobs.dataset_spec import load_spec

    log = logging.getLogger(__name__)
    dag_run, params = context["dag_run"], context["params"]
    if params.get("path"):
        if not params["ds"]:
            raise PartitionError("params.path needs params.ds: the day its files belong to")
        # A redelivery folder named by a person: ingested as it is, no completeness rule.
        return IngestPlan([check_partition_date(params["ds"], "params.ds")])
    named = ingestion_days(
        dataset,
        params["ds"],
        context.get("triggering_asset_events"),
        dag_run.logical_date or dag_run.run_after,
    )
    if named.rejected:
        where = quarantine_rejected_events(settings, dataset, dag_run.run_id, named.rejected)
        if not named.days:
            raise PartitionError(
                f"every triggering landing event was refused (kept in {where}): "
                + "; ".join(entry["reason"] for entry in named.rejected)
            )
    if params["ds"]:
        asked: dict[str, datetime | None] = dict.fromkeys(named.days)  # a person asked
    elif named.named_at:
        asked = dict(named.named_at)  # landing events, each with its time
    else:
        # The daily backstop names the day that just ended: ingested only if it changed.
        asked = dict.fromkeys(named.days, datetime.min.replace(tzinfo=UTC))
    spec = load_spec(DATASETS_DIR / f"{dataset}.yaml")
    plan = plan_ingestion(
        settings,
        dataset,
        asked,
        rule=spec.landing_complete_when,
        sweep_days=spec.landing_sweep_days,
        # A run by hand ingests the day a person asked for, nothing else; the automatic runs
        # (landing events, the daily backstop) also sweep up days no event named.
        sweep=not params["ds"],
    )
    for ds, reason in plan.waiting.items():
        log.warning("%s: not ingesting %s yet: %s", dataset, ds, reason)
    for ds, reason in plan.served.items():
        log.info("%s: not ingesting %s again: %s", dataset, ds, reason)
    if plan.swept:
        log.warning(
            "%s: ingesting %s too: complete, and never ingested or changed since (no landing "
            "event named them to this run)",
            dataset,
            ", ".join(plan.swept),
        )
    if params["ds"] and plan.waiting:
        raise PartitionError(
            f"{dataset} ds={params['ds']} is not complete: {plan.waiting[params['ds']]}"
        )
    if not plan.days:
        reasons = "; ".join(f"{ds}: {why}" for ds, why in {**plan.waiting, **plan.served}.items())
        raise AirflowSkipException(f"no {dataset} day to ingest ({reasons})")
    log.info("%s: ingesting %s", dataset, ", ".join(plan.days))
    return plan


def quarantine_rejected_events(
    settings: Settings, dataset: str, run_id: str, rejected: list[dict[str, Any]]
) -> str:
    """Log each refused landing event and keep them, with the reasons, in the quarantine zone
    (``quarantine/<dataset>/_rejected_events/<run id>.json``); returns that file's URI."""
    from include.storage import storage_for

    log = logging.getLogger(__name__)
    for entry in rejected:
        log.error("%s: refused landing event %s: %s", dataset, entry["event"], entry["reason"])
    safe_run_id = re.sub(r"[^A-Za-z0-9_.+-]+", "_", run_id)
    uri = f"{settings.zone_uri('quarantine')}/{dataset}/_rejected_events/{safe_run_id}.json"
    body = {"dataset": dataset, "run_id": run_id, "rejected_events": rejected}
    storage_for(uri).write_bytes(uri, json.dumps(body, indent=2, sort_keys=True).encode())
    return uri


def _describe_events(triggering_asset_events: Mapping[Any, Iterable[Any]]) -> str:
    return "; ".join(
        f"{getattr(asset, 'name', asset)}: {[getattr(e, 'extra', None) for e in events]}"[:500]
        for asset, events in triggering_asset_events.items()
    )


def landing_path_uri(settings: Settings, path: str) -> str:
    """The URI of the ``path`` Param (a landing-zone folder relative to the lake root).

    The Param's schema already refuses anything else at trigger time; this checks again, so
    a run created some other way cannot point the job outside the lake either.
    """
    import re

    if not re.match(LANDING_PATH_PATTERN, path or ""):
        raise PartitionError(
            f"params.path={path!r} is not a folder of the lake's landing zone (landing/…, "
            f"relative to the lake root, no '..')"
        )
    return f"{settings.lake_root}/{path.rstrip('/')}"


def ingest_runs(
    settings: Settings, dataset: str, days: Iterable[str], landing_uri: str | None = None
) -> list[dict[str, Any]]:
    """One ``SparkJobOperator`` mapping per day: its argv, and its Asset events' extra and
    partition key (the stages scheduled per partition of the curated Asset run once per day)."""
    return [
        {
            "job_args": ingest_job_args(settings, dataset, ds, landing_uri=landing_uri),
            "asset_extra": {"ds": ds},
            "partition_key": ds,
        }
        for ds in days
    ]


def dataset_spec_uri(settings: Settings, dataset: str) -> str:
    """The spec YAML: the repo file locally; next to the job code in the lake bucket on AWS."""
    if not (DATASETS_DIR / f"{dataset}.yaml").exists():
        raise ValueError(f"no dataset spec include/datasets/{dataset}.yaml")
    if settings.is_local:
        return (DATASETS_DIR / f"{dataset}.yaml").as_uri()
    return (
        f"s3://{settings.aws.bucket}/{ARTIFACTS_PREFIX.rsplit('/', 1)[0]}/datasets/{dataset}.yaml"
    )


def ingest_job_args(
    settings: Settings, dataset: str, ds: str, *, landing_uri: str | None = None
) -> list[str]:
    """argv of ``spark_jobs.ingest`` for one day of one dataset.

    :param landing_uri: where the day's files are, when not in the landing zone's
        ``<dataset>/ds=<ds>/``: the day's folder, or a root holding ``<dataset>/ds=<ds>/``.
    """
    args = [
        "--spec", dataset_spec_uri(settings, dataset),
        "--landing-uri", landing_uri or settings.zone_uri("landing"),
        "--ds", check_partition_date(ds),
        "--lake-root", settings.lake_root,
    ]  # fmt: skip
    if settings.is_local:
        return [*args, "--pii-salt-env", LOCAL_PII_SALT_ENV]
    return [*args, "--pii-salt-secret-id", settings.aws.pii_salt_secret_arn]


def features_job_args(settings: Settings, dataset: str, ds: str) -> list[str]:
    """argv of ``spark_jobs.features`` for one dataset; ``ds`` may be a template.

    The job reads only the lookback days that passed the gate; a past day that is missing or
    not validated is left out and named in the features manifest's ``window`` (a new dataset
    has no history yet), while ``ds`` itself must have passed.
    """
    return [
        "--spec", dataset_spec_uri(settings, dataset),
        "--lake-root", settings.lake_root,
        "--ds", ds,
    ]  # fmt: skip
