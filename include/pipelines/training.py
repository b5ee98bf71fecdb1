"""DAG factory of the training stage: tune, evaluate and register one dataset's model.

``training_dag("churn")`` builds the DAG ``churn_training`` (DAG ids are ``<dataset>_<stage>``;
``dags/training_dags.py`` builds one per dataset spec). What differs between datasets (the
label, the id columns, the fairness groups) comes from the spec through
:func:`include.training_jobs.dataset_hyperparameters`, not from code here.
"""

from __future__ import annotations

from airflow.sdk import DAG, dag, get_current_context, task

from headrace_operators.sagemaker_jobs import SageMakerTuningJobOperator
from include.assets import (
    drift_asset,
    features_asset,
    model_asset,
    model_pending_asset,
    per_partition,
)
from include.dag_defaults import (
    DEFAULT_ARGS,
    START_DATE,
    boolean_param,
    integer_param,
    number_param,
    partition_param,
)
from include.pipelines.datasets import PipelineDataset, pipeline_dataset
from include.pipelines.processing import processing_job

STAGE = "training"


def _doc(dataset: PipelineDataset) -> str:
    name = dataset.name
    return f"""
### {dataset.title} training

*{dataset.description}*

Trains the {name} model (label `{dataset.label}`) on a features partition
(`features/{name}/ds=YYYY-MM-DD/`, split into train / validation / test by the split key),
tunes its hyperparameters, evaluates the best model on the test split and registers it as a new
model version with its metrics, lineage (features manifest, code version, hyperparameters),
monitoring baseline and model card.

**Runs on** SageMaker (a Bayesian hyperparameter tuning job of GPU training jobs, managed spot,
in the VPC, KMS-encrypted, network-isolated) or, locally, the same request bodies through the
local SageMaker runtime (Optuna over local PyTorch training jobs). The monitoring baseline is a
processing job in the training image (`training/process.py baseline`; locally the local
processing runtime). A retried task re-attaches to its job instead of starting another. The label, id columns and fairness groups come from
`{dataset.spec_file}`.

**Registry**: the training job scores the current champion on the new model's own test rows;
the new version is approved automatically when the lower bound of the 95% paired-bootstrap
interval of its ROC AUC gain clears the margin; otherwise it waits for a person: `request_approval` then emits
`{name}_model_pending_approval`, which starts `{name}_model_approval` (skipped when the version
was approved). MLflow (SQLite) locally, SageMaker Model Registry on AWS.

**Triggered** per day: by a day's new validated features (`{name}_features`) or by drift over
threshold on a day (`{name}_drift`); a features and a drift event of the same day that arrive
before the run starts make one run, and a later run whose window, code and parameters a run
already trained stops at `training_cause` (skipped, naming that run; `retrain` overrides).
On aws, `training_cause` also prices the run's jobs first and refuses a run over the dataset's
budget (its spec's `cost:` block) or over the account's Service Quotas for its instance types.
By hand: the `ds` parameter (or the day as partition key).
The day names the training window: the features partition of that day, whose rolling features
span the spec's lookback of validated days. Training does not run once per day on its own
data: each run trains on the window that ends on its day.

*Built by `include/pipelines/training.py` from `{dataset.spec_file}`.*
"""


def training_dag(dataset: str) -> DAG:
    """The ``<dataset>_training`` DAG: tuning job, monitoring baseline, registration."""
    info = pipeline_dataset(dataset)

    @dag(
        dag_id=f"{dataset}_{STAGE}",
        schedule=per_partition(features_asset(dataset) | drift_asset(dataset)),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["headrace", "training"],
        doc_md=_doc(info),
        params={
            "ds": partition_param(
                "Features partition",
                "Features partition to train on; empty: the run's partition key",
            ),
            "max_trials": integer_param(
                4,
                title="Tuning trials",
                description="Training jobs the tuning runs in all.",
                minimum=1,
                maximum=50,
            ),
            "parallel_trials": integer_param(
                2,
                title="Trials at once",
                description="Training jobs the tuning runs at the same time (at most the trials).",
                minimum=1,
                maximum=10,
            ),
            "epochs": integer_param(
                20,
                title="Epochs",
                description="Epochs at most (early stopping may end sooner).",
                minimum=1,
                maximum=200,
            ),
            "approval_margin": number_param(
                0.005,
                title="Approval margin",
                description="ROC AUC gain over the champion, on the same test rows, that the "
                "lower bound of its 95% interval must exceed for approval without a person.",
                minimum=0,
                maximum=0.2,
            ),
            "retrain": boolean_param(
                False,
                title="Train again",
                description="Train even when a run already trained this window with the same "
                "code and parameters (by default such a run is skipped: one training per cause).",
            ),
        },
    )
    def training():
        @task
        def training_partition() -> str:
            from include.partitions import run_partition

            context = get_current_context()
            return run_partition(context["params"]["ds"], context["dag_run"])

        @task(multiple_outputs=False)
        def training_cause(partition: str) -> dict:
            """The window, code and parameters this run would train; the run stops here
            (skipped, with the earlier run named) when a run already trained them, and fails,
            starting no job, when on aws its worst-case cost is over the dataset's budget or its
            instances over the account's Service Quotas."""
            from airflow.sdk.exceptions import AirflowSkipException

            from include.config import get_settings
            from include.run_limits import refuse_stage_run_over_limits
            from include.training_pipeline import previous_training, training_cause

            settings = get_settings()
            params = get_current_context()["params"]
            refuse_stage_run_over_limits(
                settings,
                dataset,
                STAGE,
                tuning_max_jobs=params["max_trials"],
                tuning_max_parallel_jobs=params["parallel_trials"],
            )
            cause = training_cause(settings, dataset, partition, params)
            earlier = previous_training(settings, cause)
            if earlier is not None and not params["retrain"]:
                raise AirflowSkipException(
                    f"run {earlier['run_id']} already trained this window (ds={partition}, "
                    f"data version {cause['data_version']}) with the same code version and "
                    f"parameters {cause['params']}: version {earlier['version']} "
                    f"({earlier['approval']}). One training per cause; set retrain to train again."
                )
            return cause

        # multiple_outputs=False: a dict return would be split into one XCom per key, and
        # Airflow 3.0 cannot push a None value (apache/airflow#55062). The partition argument is
        # not called ds: Airflow fills a parameter of that name from the context.
        @task(multiple_outputs=True)
        def baseline_plan(partition: str, job: dict) -> dict:
            """The plan of the trained model's baseline: the partition's columns with the
            model's scores (the processing job ``monitoring_baseline`` computes it)."""
            from include.config import get_settings
            from include.training_pipeline import baseline_job_plan

            return baseline_job_plan(get_settings(), dataset, partition, job)

        @task(outlets=[model_asset(dataset)], multiple_outputs=False)
        def register_model(job: dict, baseline: dict, cause: dict) -> dict:
            from include.config import get_settings
            from include.lineage import emit_task_outputs, model_version_lineage
            from include.training_pipeline import record_training, register_job_model

            settings = get_settings()
            context = get_current_context()
            registered = register_job_model(
                settings, dataset, job, margin=context["params"]["approval_margin"]
            )
            record_training(settings, cause, registered, context["run_id"])
            # The version with its metrics, on the model artifact the tuning job reported.
            emit_task_outputs(lambda: model_version_lineage(job["model_uri"], registered))
            return registered

        @task(outlets=[model_pending_asset(dataset)])
        def request_approval(registered: dict) -> str:
            """An asset event naming the version when it waits for a person; it schedules
            ``<dataset>_model_approval``. Skipped (no event) when the version was approved."""
            from airflow.sdk.exceptions import AirflowSkipException

            from include.training_pipeline import pending_approval_extra

            extra = pending_approval_extra(registered)
            if extra is None:
                raise AirflowSkipException(
                    f"version {registered['version']} is {registered['approval']}: "
                    "no approval to ask for"
                )
            event = get_current_context()["outlet_events"][model_pending_asset(dataset)]
            event.extra = extra
            # Keyed by version: the approval DAG runs once per pending version.
            event.add_partitions(str(registered["version"]))
            return registered["version"]

        ds = training_partition()
        cause = training_cause(ds)
        tune = SageMakerTuningJobOperator(
            task_id="tune",
            dataset=dataset,
            ds=ds,
            hyperparameters={"epochs": "{{ params.epochs }}"},
            max_jobs="{{ params.max_trials }}",
            max_parallel_jobs="{{ params.parallel_trials }}",
        )
        plan = baseline_plan(ds, tune.output)
        baseline = processing_job("monitoring_baseline", dataset, ds, "baseline", plan)
        cause >> tune
        registered = register_model(tune.output, baseline.output, cause)
        request_approval(registered)

    return training()
