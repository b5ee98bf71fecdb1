"""DAG factory of the model-approval stage: a person's decision on a pending model version.

``model_approval_dag("churn")`` builds the DAG ``churn_model_approval`` (DAG ids are
``<dataset>_<stage>``; ``dags/model_approval_dags.py`` builds one per dataset spec).
"""

from __future__ import annotations

from airflow.sdk import DAG, dag, get_current_context, task

from include.assets import model_asset
from include.dag_defaults import (
    DEFAULT_ARGS,
    START_DATE,
    choice_param,
    integer_param,
    text_param,
)
from include.pipelines.datasets import PipelineDataset, pipeline_dataset

STAGE = "model_approval"
DECISIONS = ["Approved", "Rejected"]


def _doc(dataset: PipelineDataset) -> str:
    name = dataset.name
    return f"""
### {dataset.title} model approval

*{dataset.description}*

A person's decision on a {name} model version that did not beat the champion by the margin and
so waits in the registry as `PendingManualApproval`. Approving it makes it the champion that
batch scoring uses; rejecting it keeps the current champion. The decision, the approver and the
reason are recorded on the version and in its model card.

**For** the model owner, from the Airflow UI: *Trigger DAG* with the version number (shown in the
`{name}_training` run's `register_model` result and in the model card), the decision and a
reason. Only a pending version can be decided here, so a mistyped number cannot demote the
champion.

**Triggered** by hand only.

*Built by `include/pipelines/model_approval.py` from `{dataset.spec_file}`.*
"""


def model_approval_dag(dataset: str) -> DAG:
    """The ``<dataset>_model_approval`` DAG: approve or reject one pending version."""
    info = pipeline_dataset(dataset)

    @dag(
        dag_id=f"{dataset}_{STAGE}",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        default_args=DEFAULT_ARGS,
        tags=["headrace", "training"],
        doc_md=_doc(info),
        params={
            "version": integer_param(
                None,
                title="Model version",
                description="The pending version to decide (a registry version number).",
                minimum=1,
                maximum=1_000_000,
            ),
            "decision": choice_param(
                "Approved",
                title="Decision",
                description="Approved makes the version the champion; Rejected keeps the current one.",
                choices=DECISIONS,
            ),
            "approver": text_param(
                title="Approver",
                description="Who decides (name or e-mail).",
                min_length=1,
                max_length=128,
                # Something readable, not blanks: it is the audit trail of the decision.
                pattern=r"\S",
            ),
            "reason": text_param(
                title="Reason",
                description="Why; recorded on the version and in its model card.",
                min_length=5,
                max_length=1000,
                pattern=r"\S",
            ),
        },
    )
    def model_approval():
        # multiple_outputs=False: the version facts hold None values, which Airflow 3.0 cannot
        # push as XComs of their own (apache/airflow#55062).
        @task(outlets=[model_asset(dataset)], multiple_outputs=False)
        def decide() -> dict:
            from include.registry import approve_pending_version

            params = get_current_context()["params"]
            return approve_pending_version(
                dataset,
                str(params["version"]),
                params["approver"],
                params["reason"],
                decision=params["decision"],
            )

        decide()

    return model_approval()
