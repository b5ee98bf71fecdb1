"""DAG factory of the validation stage: the data-quality gate of one dataset, then its features.

``validation_dag("churn")`` builds the DAG ``churn_validation`` (the DAG ids of every factory
are ``<dataset>_<stage>``; ``dags/validation_dags.py`` builds one per dataset spec, so a file
in ``dags/`` defines several DAGs, and a dataset needs no Python of its own).
"""

from __future__ import annotations

from airflow.sdk import DAG, dag

from headrace_operators.quality_gate import DataQualityGateOperator
from headrace_operators.spark_job import SparkJobOperator
from include.assets import curated_asset, features_asset, per_partition, validated_asset
from include.config import get_settings
from include.dag_defaults import DEFAULT_ARGS, START_DATE, partition_param
from include.ingestion import features_job_args
from include.pipelines.datasets import PipelineDataset, pipeline_dataset

STAGE = "validation"


def _doc(dataset: PipelineDataset) -> str:
    name = dataset.name
    return f"""
### {dataset.title} validation

*{dataset.description}*

The data-quality gate between ingestion and everything that learns from {name} data. It checks
one curated partition (`curated/{name}/ds=YYYY-MM-DD/`, exactly the files its `_manifest.json`
lists) against `{dataset.quality_file}`: schema, key uniqueness, completeness, allowed values,
patterns, ranges, row counts (absolute and against the previous day), freshness and
distribution sanity. `error` rules block; `warn` rules are reported and let it through.

**Runs on** Great Expectations locally, AWS Glue Data Quality (DQDL) or Deequ on EMR, chosen by
configuration. Either way it writes `result.json` and `report.html` under
`reports/{name}/quality/ds=YYYY-MM-DD/`.

**For** data engineers, and for training and scoring: a passing partition updates the
`{name}_validated` Asset (its event's extra names the partition); a failing one fails the task
with a message naming each failing rule, column and observed value, and updates nothing.

**Then** builds the model features of the validated day with `spark_jobs/features.py` (the
`features:` block of `{dataset.spec_file}`: a lookback window of curated days, a
train/validation/test split by a hash of the split key) under `features/{name}/ds=YYYY-MM-DD/`,
and updates the `{name}_features` Asset, which schedules training and batch scoring.

**Triggered** once per curated day: ingestion emits each day's `{name}_curated` event with the
day as partition key, and the scheduler makes one run per day (days that arrive together queue
as separate runs). By hand: the `ds` parameter, or a run triggered with the day as partition key.

*Built by `include/pipelines/validation.py` from `{dataset.spec_file}`.*
"""


def validation_dag(dataset: str) -> DAG:
    """The ``<dataset>_validation`` DAG: quality gate, then features of the validated day."""
    info = pipeline_dataset(dataset)

    @dag(
        dag_id=f"{dataset}_{STAGE}",
        schedule=per_partition(curated_asset(dataset)),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["headrace", "data-quality"],
        doc_md=_doc(info),
        params={
            "ds": partition_param(
                "Partition date",
                "Curated partition to check; empty: the run's partition key",
            ),
        },
    )
    def validation():
        gate = DataQualityGateOperator(
            task_id="quality_gate",
            dataset=dataset,
            ds="{{ params.ds or '' }}",
            outlets=[validated_asset(dataset)],
        )
        validated_ds = "{{ ti.xcom_pull(task_ids='quality_gate')['ds'] }}"
        features = SparkJobOperator(
            task_id="features",
            job="features",
            dataset=dataset,
            job_args=features_job_args(get_settings(), dataset, validated_ds),
            outlets=[features_asset(dataset)],
            asset_extra={"ds": validated_ds},
            partition_key=validated_ds,
        )
        gate >> features

    return validation()
