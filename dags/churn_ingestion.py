"""
### Churn ingestion

Turns one day of raw churn landing files (customer snapshots as CSV or JSON lines, maybe
gzipped) into curated Parquet under `curated/churn/ds=YYYY-MM-DD/`, with every rejected row in
`quarantine/churn/ds=YYYY-MM-DD/` carrying its reason code, and a run manifest (input files and
checksums, rows read = accepted + quarantined). PII columns are hashed, masked or dropped as
`include/datasets/churn.yaml` says.

**Runs on** local Spark, AWS Glue, EMR Serverless or EMR on EC2, chosen by configuration; a
retried task re-attaches to its earlier run instead of starting another.

**For** data engineers and the stages downstream: it updates the `churn_curated` and
`churn_quarantine` Assets.

**Triggered** daily at 00:00 UTC for the day that has just ended, or by hand with the `ds`
parameter. Re-running a date replaces that partition with identical content.
"""

from __future__ import annotations

from airflow.sdk import dag

from headrace_operators.spark_job import SparkJobOperator
from include.assets import curated_asset, quarantine_asset
from include.config import get_settings
from include.dag_defaults import DEFAULT_ARGS, START_DATE, partition_param
from include.ingestion import PARTITION_DATE, ingest_job_args

DATASET = "churn"


@dag(
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["headrace", "ingestion"],
    doc_md=__doc__,
    params={
        "ds": partition_param(
            "Partition date", "Day of landing files to ingest; empty: the day before the run's date"
        ),
    },
)
def churn_ingestion():
    SparkJobOperator(
        task_id="ingest",
        job="ingest",
        job_args=ingest_job_args(get_settings(), DATASET),
        outlets=[curated_asset(DATASET), quarantine_asset(DATASET)],
        # The stages scheduled on these Assets read the partition from the event.
        asset_extra={"ds": PARTITION_DATE},
    )


churn_ingestion()
