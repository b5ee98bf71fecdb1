"""DAG factory of the monitoring stage: drift of one dataset's scored day, and the retraining
trigger.

``monitoring_dag("churn")`` builds the DAG ``churn_monitoring`` (DAG ids are
``<dataset>_<stage>``; ``dags/monitoring_dags.py`` builds one per dataset spec).
"""

from __future__ import annotations

from airflow.sdk import DAG, chain, dag, get_current_context, task

from include.assets import drift_asset, per_partition, predictions_asset
from include.dag_defaults import DEFAULT_ARGS, START_DATE, partition_param
from include.pipelines.datasets import PipelineDataset, pipeline_dataset
from include.pipelines.processing import processing_job

STAGE = "monitoring"


def _doc(dataset: PipelineDataset) -> str:
    name = dataset.name
    return f"""
### {dataset.title} monitoring

*{dataset.description}*

Checks a day of scored {name} rows for drift against the baseline of the model version that
scored them: the curated columns the model reads (`curated/{name}/ds=YYYY-MM-DD/`) with their
scores (`predictions/{name}/ds=YYYY-MM-DD/`), metric by metric (PSI, Kolmogorov-Smirnov,
Jensen-Shannon, L-infinity, missing and unseen rates) at the thresholds of
`{dataset.monitoring_file}`. For the ML engineers who own the {name} model.

**Writes** `constraint_violations.json` (SageMaker Model Monitor's format) and the batch's
`statistics.json` under `monitoring/{name}/model_version=<v>/ds=<D>/`, an HTML report with a
plot per drifted feature under `reports/{name}/drift/ds=<D>/`, and the one-line verdict in the
task log.

**Runs on** a SageMaker Processing job (`training/process.py drift` in the training image, in
the VPC, KMS-encrypted, network-isolated) or, locally, the same request through the local
processing runtime. The worker reads only manifests, the registry and the job's small report; a
retried task re-attaches to its job.

**Closes the loop**: drift over threshold emits a `{name}_drift` asset event (extra: the day,
the model version and the drifted features), which schedules `{name}_training`, and raises an
alert (an SNS message on AWS when `HEADRACE_ALERTS_TOPIC_ARN` is set; a log line locally; a JSON
file under `monitoring/{name}/alerts/` on both). Without drift, neither happens: the tasks after
the check are skipped, and a skipped task emits no asset event.

**Triggered** once per day of new predictions (`{name}_predictions`, partitioned by day), or by
hand with a `ds` (or the day as the run's partition key).

*Built by `include/pipelines/monitoring.py` from `{dataset.spec_file}`.*
"""


def monitoring_dag(dataset: str) -> DAG:
    """The ``<dataset>_monitoring`` DAG: drift check, then the drift event and an alert."""
    info = pipeline_dataset(dataset)

    @dag(
        dag_id=f"{dataset}_{STAGE}",
        schedule=per_partition(predictions_asset(dataset)),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["headrace", "monitoring"],
        doc_md=_doc(info),
        params={
            "ds": partition_param(
                "Day to check",
                "Predictions partition to check; empty: the run's partition key",
            ),
        },
    )
    def monitoring():
        @task(multiple_outputs=True)
        def drift_plan() -> dict:
            """The day, the scoring model's version, and the drift job's plan and inputs; on aws
            it first fails, starting no job, when the run's worst-case cost is over the dataset's
            budgets or its instances over the account's Service Quotas."""
            from include.config import get_settings
            from include.partitions import run_partition
            from include.run_limits import refuse_stage_run_over_limits
            from include.scoring_pipeline import drift_job_plan

            settings = get_settings()
            refuse_stage_run_over_limits(settings, dataset, STAGE)
            context = get_current_context()
            ds = run_partition(context["params"]["ds"], context["dag_run"])
            return drift_job_plan(settings, dataset, ds)

        @task(multiple_outputs=False)
        def drift_check(job: dict, plan: dict) -> dict:
            """The job's verdict, logged, and its HTML report."""
            from include.config import get_settings
            from include.lineage import drift_verdict_lineage, emit_task_outputs
            from include.scoring_pipeline import drift_check_result

            result = drift_check_result(get_settings(), dataset, plan)
            emit_task_outputs(lambda: drift_verdict_lineage(result))
            return result

        @task.short_circuit
        def drift_found(result: dict) -> bool:
            return bool(result["drifted_features"])

        @task(outlets=[drift_asset(dataset)], multiple_outputs=False)
        def emit_drift_event(result: dict) -> dict:
            """The retraining trigger: runs (and so emits) only after drift was found."""
            from include.scoring_pipeline import drift_event_extra

            extra = drift_event_extra(result)
            event = get_current_context()["outlet_events"][drift_asset(dataset)]
            event.extra = extra
            event.add_partitions(result["ds"])
            return extra

        @task(multiple_outputs=False)
        def alert(result: dict) -> dict:
            from include.config import get_settings
            from include.scoring_pipeline import raise_drift_alert

            settings = get_settings()
            # Configured, not a run parameter: whoever triggers a run must not redirect alerts.
            topic = settings.aws.alerts_topic_arn if settings.aws else None
            return raise_drift_alert(settings, result, topic_arn=topic or None)

        plan = drift_plan()
        job = processing_job("drift_job", dataset, plan["ds"], "drift", plan)
        result = drift_check(job.output, plan)
        chain(result, drift_found(result), [emit_drift_event(result), alert(result)])

    return monitoring()
