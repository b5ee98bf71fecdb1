"""
### Churn monitoring

Checks a day of scored customers for drift against the baseline of the model version that scored
them: the curated columns the model reads (`curated/churn/ds=YYYY-MM-DD/`) with their scores
(`predictions/churn/ds=YYYY-MM-DD/`), metric by metric (PSI, Kolmogorov-Smirnov, Jensen-Shannon,
L-infinity, missing and unseen rates) at the thresholds of `include/datasets/churn.monitoring.yaml`.
For the ML engineers who own the churn model.

**Writes** `constraint_violations.json` (SageMaker Model Monitor's format) and the batch's
`statistics.json` under `monitoring/churn/model_version=<v>/ds=<D>/`, an HTML report with a plot
per drifted feature under `reports/churn/drift/ds=<D>/`, and the one-line verdict in the task log.

**Closes the loop**: drift over threshold emits a `churn_drift` asset event (extra: the day, the
model version and the drifted features), which schedules `churn_training`, and raises an alert
(an SNS message on AWS when `HEADRACE_ALERTS_TOPIC_ARN` is set; a log line locally; a JSON file under
`monitoring/churn/alerts/` on both). Without drift, neither happens: the tasks after the check are
skipped, and a skipped task emits no asset event.

**Triggered** by new predictions (`churn_predictions`), or by hand with a `ds`.
"""

from __future__ import annotations

from airflow.sdk import chain, dag, get_current_context, task

from include.assets import drift_asset, predictions_asset
from include.dag_defaults import DEFAULT_ARGS, START_DATE, partition_param

DATASET = "churn"


@dag(
    schedule=predictions_asset(DATASET),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["headrace", "monitoring"],
    doc_md=__doc__,
    params={
        "ds": partition_param(
            "Day to check",
            "Predictions partition to check; empty: from the triggering event, else the newest",
        ),
    },
)
def churn_monitoring():
    @task(multiple_outputs=False)
    def drift_check() -> dict:
        """Drift metrics of the day against the scoring model's baseline; logs the verdict."""
        from include.config import get_settings
        from include.partitions import resolve_partition
        from include.scoring_pipeline import check_batch_drift, predictions_root

        settings = get_settings()
        context = get_current_context()
        ds = resolve_partition(
            context["params"]["ds"],
            context.get("triggering_asset_events"),
            predictions_root(settings, DATASET),
        )
        return check_batch_drift(settings, DATASET, ds)

    @task.short_circuit
    def drift_found(result: dict) -> bool:
        return bool(result["drifted_features"])

    @task(outlets=[drift_asset(DATASET)], multiple_outputs=False)
    def emit_drift_event(result: dict) -> dict:
        """The retraining trigger: runs (and so emits) only after drift was found."""
        from include.scoring_pipeline import drift_event_extra

        extra = drift_event_extra(result)
        get_current_context()["outlet_events"][drift_asset(DATASET)].extra = extra
        return extra

    @task(multiple_outputs=False)
    def alert(result: dict) -> dict:
        from include.config import get_settings
        from include.scoring_pipeline import raise_drift_alert

        settings = get_settings()
        # Configured, not a run parameter: whoever triggers a run must not redirect alerts.
        topic = settings.aws.alerts_topic_arn if settings.aws else None
        return raise_drift_alert(settings, result, topic_arn=topic or None)

    result = drift_check()
    chain(result, drift_found(result), [emit_drift_event(result), alert(result)])


churn_monitoring()
