"""
### Churn training

Trains the churn model on a features partition (`features/churn/ds=YYYY-MM-DD/`, split into
train / validation / test by customer), tunes its hyperparameters, evaluates the best model on
the test split and registers it as a new model version with its metrics, lineage (features
manifest, code version, hyperparameters), monitoring baseline and model card.

**Runs on** SageMaker (a Bayesian hyperparameter tuning job of GPU training jobs, managed spot,
in the VPC, KMS-encrypted, network-isolated) or, locally, the same request bodies through the
local SageMaker runtime (Optuna over local PyTorch training jobs). A retried task re-attaches to
its job instead of starting another.

**Registry**: the new version is approved automatically when it beats the current champion's
test ROC AUC by the margin; otherwise it waits for a person (`churn_model_approval`). MLflow
(SQLite) locally, SageMaker Model Registry on AWS.

**Triggered** by new validated features (`churn_features`) or by drift over threshold
(`churn_drift`), or by hand. The partition is the `ds` parameter, else the triggering event's,
else the newest features partition.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from headrace_operators.sagemaker_jobs import SageMakerTuningJobOperator
from include.assets import drift_asset, features_asset, model_asset
from include.dag_defaults import DEFAULT_ARGS, START_DATE, partition_param

DATASET = "churn"


@dag(
    schedule=(features_asset(DATASET) | drift_asset(DATASET)),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["headrace", "training"],
    doc_md=__doc__,
    params={
        "ds": partition_param(
            "Features partition",
            "Features partition to train on; empty: from the triggering event, else the newest",
        ),
        "max_trials": Param(
            4, type="integer", minimum=1, maximum=50, description="Training jobs the tuning runs."
        ),
        "parallel_trials": Param(
            2, type="integer", minimum=1, maximum=10, description="Training jobs at once."
        ),
        "epochs": Param(
            20,
            type="integer",
            minimum=1,
            maximum=200,
            description="Epochs at most (early stopping may end sooner).",
        ),
        "approval_margin": Param(
            0.005,
            type="number",
            minimum=0,
            maximum=0.2,
            description="Test ROC AUC a new model must gain over the champion to be approved without a person.",
        ),
    },
)
def churn_training():
    @task
    def training_partition() -> str:
        from include.config import get_settings
        from include.partitions import resolve_partition

        context = get_current_context()
        return resolve_partition(
            context["params"]["ds"],
            context.get("triggering_asset_events"),
            f"{get_settings().zone_uri('features')}/{DATASET}",
        )

    # multiple_outputs=False: a dict return would be split into one XCom per key, and Airflow
    # 3.0 cannot push a None value (apache/airflow#55062).
    @task(multiple_outputs=False)
    def monitoring_baseline(ds: str) -> dict[str, str]:
        from include.config import get_settings
        from include.training_pipeline import write_training_baseline

        return write_training_baseline(get_settings(), DATASET, ds)

    @task(outlets=[model_asset(DATASET)], multiple_outputs=False)
    def register_model(job: dict, baseline: dict) -> dict:
        from include.config import get_settings
        from include.training_pipeline import register_job_model

        params = get_current_context()["params"]
        return register_job_model(get_settings(), DATASET, job, margin=params["approval_margin"])

    ds = training_partition()
    tune = SageMakerTuningJobOperator(
        task_id="tune",
        dataset=DATASET,
        ds=ds,
        hyperparameters={"epochs": "{{ params.epochs }}"},
        max_jobs="{{ params.max_trials }}",
        max_parallel_jobs="{{ params.parallel_trials }}",
    )
    register_model(tune.output, monitoring_baseline(ds))


churn_training()
