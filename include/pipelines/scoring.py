"""DAG factory of the scoring stage: batch-score one dataset's day with its champion model.

``scoring_dag("churn")`` builds the DAG ``churn_scoring`` (DAG ids are ``<dataset>_<stage>``;
``dags/scoring_dags.py`` builds one per dataset spec).
"""

from __future__ import annotations

from airflow.sdk import DAG, chain, dag, get_current_context, task

from headrace_operators.sagemaker_transform import SageMakerTransformOperator
from include.assets import features_asset, per_partition, predictions_asset
from include.dag_defaults import DEFAULT_ARGS, START_DATE, partition_param
from include.pipelines.datasets import PipelineDataset, pipeline_dataset

STAGE = "scoring"


def _doc(dataset: PipelineDataset) -> str:
    name = dataset.name
    return f"""
### {dataset.title} scoring

*{dataset.description}*

Scores every row of a day with the {name} model the registry has approved (the champion): the
day's features rows (`features/{name}/ds=YYYY-MM-DD/`, every split) become headerless CSV lines,
a batch transform job scores them in mini-batches and joins each score back to its row's ids,
and the scores are committed as `predictions/{name}/ds=YYYY-MM-DD/` (ids, score, model version),
replaced as a whole on a re-run. For the people who act on the scores and for drift monitoring
(`{name}_monitoring`).

**Runs on** SageMaker batch transform (the PyTorch inference container serving the model's own
`inference.py`, in the VPC, KMS-encrypted, network-isolated; one SageMaker model per registry
version) or, locally, the same request body through the local transform runtime, which streams
the input through the same handlers with bounded memory. A retried task re-attaches to its job.

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
        @task(multiple_outputs=True)
        def scoring_input() -> dict:
            """The day, the champion model, and the transform's input lines."""
            from include.config import get_settings
            from include.partitions import run_partition
            from include.scoring_pipeline import champion_model, prepare_scoring_input

            settings = get_settings()
            context = get_current_context()
            ds = run_partition(context["params"]["ds"], context["dag_run"])
            model = champion_model(settings, dataset)
            prepared = prepare_scoring_input(settings, dataset, ds, model)
            return {"ds": ds, "model": model, **prepared}

        @task(outlets=[predictions_asset(dataset)], multiple_outputs=False)
        def commit_predictions(job: dict, day: str, model: dict, rows: int) -> dict:
            """The transform's output as the day's predictions partition; the event carries
            the day."""
            from include.config import get_settings
            from include.scoring_pipeline import commit_predictions

            committed = commit_predictions(
                get_settings(), dataset, day, output_uri=job["output_uri"], model=model,
                expected_rows=rows,
            )  # fmt: skip
            event = get_current_context()["outlet_events"][predictions_asset(dataset)]
            event.extra = {"ds": day, "model_version": committed["model_version"]}
            event.add_partitions(day)
            return committed

        inputs = scoring_input()
        transform = SageMakerTransformOperator(
            task_id="transform",
            dataset=dataset,
            ds=inputs["ds"],
            model=inputs["model"],
            input_uri=inputs["input_uri"],
        )
        committed = commit_predictions(
            transform.output, inputs["ds"], inputs["model"], inputs["rows"]
        )
        chain(inputs, transform, committed)

    return scoring()
