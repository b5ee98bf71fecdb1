"""DAG factory of the ingestion stage: one dataset's landing files into curated Parquet.

``ingestion_dag("churn")`` builds the DAG ``churn_ingestion``; ``dags/ingestion_dags.py`` builds
one per dataset spec. The DAG runs daily *or* when files land: its schedule is Airflow 3's
``AssetOrTimeSchedule`` over the dataset's landing Asset, which carries the target's watcher —
the local inbox trigger (:mod:`headrace_operators.landing_triggers`), or on AWS the Amazon
provider's ``SqsSensorTrigger`` on the queue S3 notifies for the landing prefix.
"""

from __future__ import annotations

from airflow.sdk import (
    DAG,
    AssetOrTimeSchedule,
    AssetWatcher,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
)

from headrace_operators.spark_job import SparkJobOperator
from include.assets import curated_asset, landing_asset, quarantine_asset
from include.config import Settings, get_settings
from include.dag_defaults import DEFAULT_ARGS, START_DATE, partition_param
from include.ingestion import LANDING_PATH_PATTERN
from include.pipelines.datasets import PipelineDataset, pipeline_dataset

STAGE = "ingestion"
# Daily at 00:00 UTC, for the day that has just ended.
DAILY = "0 0 * * *"
# SQS long polling: one receive call waits up to this long for a message, so an idle queue
# costs about three requests a minute and a landed file starts ingestion within seconds.
SQS_WAIT_TIME_S = 20


def sqs_landing_key_filter(settings: Settings, dataset: str) -> str:
    """The JSONPath (``jsonpath-ext``) that keeps the S3 notifications of ``dataset``'s landing
    prefix: the queue may carry the whole lake's, and a watcher deletes only what it keeps.

    Keys in notifications are URL-encoded: ``=`` arrives as ``%3D`` (and moto, unlike S3, also
    encodes ``/`` as ``%2F``), so the pattern accepts both spellings.
    """
    prefix = settings.zone_uri("landing").split("://", 1)[1].partition("/")[2]
    key_prefix = f"{prefix}/{dataset}/ds=" if prefix else f"{dataset}/ds="
    spelled = {"/": "(/|%2F)", "=": "(=|%3D)"}
    pattern = "".join(
        char if char.isalnum() or char == "_" else spelled.get(char, f"[{char}]")
        for char in key_prefix
    )
    return f'Records[?(s3.object.key =~ "^{pattern}")]'


def landing_watchers(settings: Settings, dataset: str) -> list[AssetWatcher]:
    """The watcher of ``dataset``'s landing Asset on the current target (none on AWS without a
    queue: then ingestion runs daily and by hand only)."""
    if settings.is_local:
        from headrace_operators.landing_triggers import LandingInboxTrigger

        lake_landing = settings.zone_uri("landing").removeprefix("file://")
        trigger = LandingInboxTrigger(
            dataset=dataset,
            inbox_dir=f"{settings.landing_inbox_uri.removeprefix('file://')}/{dataset}",
            landing_dir=f"{lake_landing}/{dataset}",
            poll_interval=settings.landing_poll_s,
        )
        return [AssetWatcher(name=f"{dataset}_landing_inbox", trigger=trigger)]
    if not settings.aws.landing_queue_url:
        return []
    # Imported only on aws: the provider module pulls in boto3 (no client is created here).
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    trigger = SqsSensorTrigger(
        sqs_queue=settings.aws.landing_queue_url,
        aws_conn_id="aws_default",
        region_name=settings.aws.region,
        max_messages=10,
        wait_time_seconds=SQS_WAIT_TIME_S,
        # The receive call itself waits; no extra sleep between two empty polls.
        waiter_delay=1,
        message_filtering="jsonpath-ext",
        message_filtering_config=sqs_landing_key_filter(settings, dataset),
    )
    return [AssetWatcher(name=f"{dataset}_landing_queue", trigger=trigger)]


def _doc(dataset: PipelineDataset, settings: Settings) -> str:
    name = dataset.name
    return f"""
### {dataset.title} ingestion

*{dataset.description}*

Turns a day of raw {name} landing files (CSV or JSON lines, maybe gzipped) into curated Parquet
under `curated/{name}/ds=YYYY-MM-DD/`, with every rejected row in
`quarantine/{name}/ds=YYYY-MM-DD/` carrying its reason code, and a run manifest (input files and
checksums, rows read = accepted + quarantined). PII columns are hashed, masked or dropped as
`{dataset.spec_file}` says.

**Runs on** local Spark, AWS Glue, EMR Serverless or EMR on EC2, chosen by configuration; a
retried task re-attaches to its earlier run instead of starting another.

**For** data engineers and the stages downstream: it updates the `{name}_curated` and
`{name}_quarantine` Assets, one event per day ingested, with the day in the event's extra.

**Triggered** three ways, and a run may ingest several days (one `ingest` task per day):

- *a file lands*: the `{name}_landing` Asset's watcher. Locally, drop files into the inbox
  `<inbox>/{name}/ds=YYYY-MM-DD/<file>` or `<inbox>/{name}/<name with YYYY-MM-DD>.csv`
  (`HEADRACE_LANDING_INBOX`, default `<lake>/landing/_inbox`); the watcher moves each complete
  file into `landing/{name}/ds=YYYY-MM-DD/` and the run ingests that day. On AWS, S3 notifies
  an SQS queue (`HEADRACE_LANDING_QUEUE_URL`) for `landing/{name}/ds=YYYY-MM-DD/` objects, and
  the run ingests every day the messages name;
- *daily* at 00:00 UTC, for the day that has just ended;
- *by hand* with the `ds` parameter.

Re-running a date replaces that partition with identical content.

*Built by `include/pipelines/ingestion.py` from the dataset spec; target: {settings.target}.*
"""


def ingestion_dag(dataset: str) -> DAG:
    """The ``<dataset>_ingestion`` DAG: resolve the days to ingest, then one ``ingest`` per day."""
    info = pipeline_dataset(dataset)
    settings = get_settings()
    landing = landing_asset(dataset, watchers=landing_watchers(settings, dataset))

    @dag(
        dag_id=f"{dataset}_{STAGE}",
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(DAILY, timezone="UTC"), assets=landing
        ),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["headrace", "ingestion", "events"],
        doc_md=_doc(info, settings),
        params={
            "ds": partition_param(
                "Partition date",
                "Day of landing files to ingest; empty: the days the landing events name, "
                "else the day before the run's date",
            ),
            "path": Param(
                None,
                type=["null", "string"],
                pattern=LANDING_PATH_PATTERN,
                maxLength=512,
                title="Landing folder",
                description=(
                    "Optional, with a ds: read the day's files from this folder of the lake's "
                    "landing zone instead of landing/<dataset>/ds=<ds>/ — given relative to the "
                    "lake root, e.g. landing/redelivered/churn/ds=2026-01-05 (the day's folder) "
                    "or landing/redelivered (a root holding <dataset>/ds=<ds>/). Paths outside "
                    "the landing zone are refused."
                ),
            ),
        },
    )
    def ingestion():
        @task
        def landing_days() -> list[dict]:
            """The days this run ingests, each as the ``ingest`` task's arguments; on aws it
            first fails, starting no job, when the run's worst-case cost (one job a day) is over
            the dataset's budgets or its vCPUs over the account's Service Quotas."""
            from include.ingestion import ingest_runs, landing_path_uri, plan_run
            from include.run_limits import refuse_stage_run_over_limits

            context = get_current_context()
            run_settings = get_settings()
            plan = plan_run(run_settings, dataset, context)
            if plan.days:
                refuse_stage_run_over_limits(run_settings, dataset, STAGE, days=len(plan.days))
            path = context["params"].get("path")
            landing_uri = landing_path_uri(run_settings, path) if path else None
            return ingest_runs(run_settings, dataset, plan.days, landing_uri=landing_uri)

        SparkJobOperator.partial(
            task_id="ingest",
            job="ingest",
            dataset=dataset,
            outlets=[curated_asset(dataset), quarantine_asset(dataset)],
            # Each day's events carry the day as partition key: one validation run per day.
            # One Spark job at a time: each takes the whole machine locally.
            max_active_tis_per_dagrun=1,
        ).expand_kwargs(landing_days())

    return ingestion()
