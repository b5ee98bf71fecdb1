"""DAG factory of the scoring stage: batch-score one dataset's day with its champion model.

``scoring_dag("churn")`` builds the DAG ``churn_scoring`` (DAG ids are ``<dataset>_<stage>``;
``dags/scoring_dags.py`` builds one per dataset spec).
"""

from __future__ import annotations

import logging

from airflow.sdk import DAG, PokeReturnValue, chain, dag, get_current_context, task

from headrace_operators.sagemaker_transform import SageMakerTransformOperator
from include.assets import features_asset, per_partition, predictions_asset
from include.dag_defaults import DEFAULT_ARGS, START_DATE, partition_param
from include.pipelines.datasets import PipelineDataset, pipeline_dataset
from include.pipelines.processing import processing_job

STAGE = "scoring"
# How long a run waits for the dataset's first approved model before it fails.
CHAMPION_WAIT_S = 6 * 3600


def _doc(dataset: PipelineDataset) -> str:
    name = dataset.name
    return f"""
### {dataset.title} scoring

*{dataset.description}*

Scores every row of a day with the {name} model the registry has approved (the champion): a
processing job writes the day's features rows (`features/{name}/ds=YYYY-MM-DD/`, every split)
as headerless CSV lines, a batch transform job scores them in mini-batches and joins each score
back to its row's ids, a second processing job turns the scores into Parquet, and the worker
commits them as `predictions/{name}/ds=YYYY-MM-DD/` (ids, score, model version) by writing its
manifest, replaced as a whole on a re-run. For the people who act on the scores and for drift
monitoring (`{name}_monitoring`).

**Runs on** SageMaker: batch transform (the PyTorch inference container serving the model's own
`inference.py`, one SageMaker model per registry version) and two Processing jobs
(`training/process.py` in the training image), all in the VPC, KMS-encrypted and
network-isolated; locally the same request bodies through the local transform and processing
runtimes, which stream with bounded memory. The worker reads only manifests and the jobs' small
facts. A retried task re-attaches to its job.

**Waits** for the dataset's first approved model (up to 6 hours, rescheduled: no worker slot
is held): the first day's features start its training and its scoring at once.

**Triggered** once per day of new features (`{name}_features`, partitioned by day: features are
built for every validated day), or by hand with a `ds` (or the day as the run's partition key).

*Built by `include/pipelines/scoring.py` from `{dataset.spec_file}`.*
"""


def scoring_dag(dataset: str) -> DAG:
    """The ``<dataset>_scoring`` DAG: transform input, batch transform, predictions commit."""
    info = pipeline_dataset(dataset)

    @dag(
        dag_id=f"{dataset}_{STAGE}",
        schedule=per_partition(features_asset(dataset)),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["headrace", "scoring"],
        doc_md=_doc(info),
        params={
            "ds": partition_param(
                "Day to score",
                "Features partition to score; empty: the run's partition key",
            ),
        },
    )
    def scoring():
        # A day's features schedule its scoring and its training at once: on the first day there
        # is no model yet. The run waits for one (rescheduled, holding no worker slot) instead of
        # failing its retries, and fails only after the wait.
        @task.sensor(poke_interval=60, timeout=CHAMPION_WAIT_S, mode="reschedule")
        def champion() -> PokeReturnValue:
            """The registry's approved version of the dataset, once there is one."""
            from include.config import get_settings
            from include.scoring_pipeline import NoChampionError, champion_model

            try:
                return PokeReturnValue(True, champion_model(get_settings(), dataset))
            except NoChampionError as waiting:
                logging.getLogger("headrace.scoring").info("waiting for a model: %s", waiting)
                return PokeReturnValue(False)

        @task(multiple_outputs=True)
        def scoring_plan(model: dict) -> dict:
            """The day and the plan of the transform's input lines; on aws it first fails,
            starting no job, when the run's worst-case cost is over the dataset's budgets or its
            instances over the account's Service Quotas."""
            from include.config import get_settings
            from include.partitions import run_partition
            from include.run_limits import refuse_stage_run_over_limits
            from include.scoring_pipeline import scoring_input_plan

            settings = get_settings()
            refuse_stage_run_over_limits(settings, dataset, STAGE)
            context = get_current_context()
            ds = run_partition(context["params"]["ds"], context["dag_run"])
            return {"ds": ds, "model": model, **scoring_input_plan(settings, dataset, ds, model)}

        @task(multiple_outputs=True)
        def predictions_plan(job: dict, day: str, model: dict, scoring_input: dict) -> dict:
            """The plan of the transform's output as Parquet files of the day's partition."""
            from include.config import get_settings
            from include.scoring_pipeline import predictions_job_plan

            return predictions_job_plan(
                get_settings(), dataset, day, output_uri=job["output_uri"], model=model,
                scoring_input=scoring_input,
            )  # fmt: skip

        @task(outlets=[predictions_asset(dataset)], multiple_outputs=False)
        def commit_predictions(job: dict, day: str, model: dict, plan: dict) -> dict:
            """The job's files committed as the day's predictions partition; the event carries
            the day."""
            from include.config import get_settings
            from include.scoring_pipeline import commit_predictions

            committed = commit_predictions(get_settings(), dataset, day, model=model, plan=plan)
            event = get_current_context()["outlet_events"][predictions_asset(dataset)]
            event.extra = {"ds": day, "model_version": committed["model_version"]}
            event.add_partitions(day)
            return committed

        plan = scoring_plan(champion())
        scoring_input = processing_job("scoring_input", dataset, plan["ds"], "scoring-input", plan)
        transform = SageMakerTransformOperator(
            task_id="transform",
            dataset=dataset,
            ds=plan["ds"],
            model=plan["model"],
            input_uri=plan["input_uri"],
        )
        written = predictions_plan(transform.output, plan["ds"], plan["model"], plan)
        predictions = processing_job("predictions", dataset, plan["ds"], "predictions", written)
        commit_predictions(predictions.output, plan["ds"], plan["model"], written)
        chain(scoring_input, transform)

    return scoring()
