"""
### Churn validation

The data-quality gate between ingestion and everything that learns from churn data. It checks
one curated partition (`curated/churn/ds=YYYY-MM-DD/`, exactly the files its `_manifest.json`
lists) against `include/datasets/churn.quality.yaml`: schema, key uniqueness, completeness,
allowed values, patterns, ranges, row counts (absolute and against the previous day), freshness
and distribution sanity. `error` rules block; `warn` rules are reported and let it through.

**Runs on** Great Expectations locally, AWS Glue Data Quality (DQDL) or Deequ on EMR, chosen by
configuration. Either way it writes `result.json` and `report.html` under
`reports/churn/quality/ds=YYYY-MM-DD/`.

**For** data engineers, and for training and scoring: a passing partition updates the
`churn_validated` Asset (its event's extra names the partition); a failing one fails the task
with a message naming each failing rule, column and observed value, and updates nothing.

**Then** builds the model features of the validated day with `spark_jobs/features.py` (the
spec's `features:` block, a lookback window of curated days, a train/validation/test split by
customer hash) under `features/churn/ds=YYYY-MM-DD/`, and updates the `churn_features` Asset,
which schedules training and batch scoring.

**Triggered** by every update of the `churn_curated` Asset, or by hand with the `ds` parameter.
Without `ds` the partition is the triggering event's `ds` extra (ingestion puts it there), else
the newest committed curated partition.
"""

from __future__ import annotations

from airflow.sdk import dag

from headrace_operators.quality_gate import DataQualityGateOperator
from headrace_operators.spark_job import SparkJobOperator
from include.assets import curated_asset, features_asset, validated_asset
from include.config import get_settings
from include.dag_defaults import DEFAULT_ARGS, START_DATE, partition_param
from include.ingestion import features_job_args

DATASET = "churn"


@dag(
    schedule=[curated_asset(DATASET)],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["headrace", "data-quality"],
    doc_md=__doc__,
    params={
        "ds": partition_param(
            "Partition date",
            "Curated partition to check; empty: the triggering event's, else the newest",
        ),
    },
)
def churn_validation():
    gate = DataQualityGateOperator(
        task_id="quality_gate",
        dataset=DATASET,
        ds="{{ params.ds or '' }}",
        outlets=[validated_asset(DATASET)],
    )
    validated_ds = "{{ ti.xcom_pull(task_ids='quality_gate')['ds'] }}"
    features = SparkJobOperator(
        task_id="features",
        job="features",
        job_args=features_job_args(get_settings(), DATASET, validated_ds),
        outlets=[features_asset(DATASET)],
        asset_extra={"ds": validated_ds},
    )
    gate >> features


churn_validation()
