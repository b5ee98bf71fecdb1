"""DAG factory of the model-approval stage: a person's decision on a pending model version.

``model_approval_dag("churn")`` builds the DAG ``churn_model_approval`` (DAG ids are
``<dataset>_<stage>``; ``dags/model_approval_dags.py`` builds one per dataset spec). The person
answers Airflow's human-in-the-loop request (the UI's *Required actions*, or the REST API's
``hitlDetails``); the answer is recorded in the registry with who gave it and why.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param, dag, get_current_context, task

from headrace_operators.model_approval import TIMEOUT_PARAM, ModelApprovalOperator, reason_param
from include.assets import model_asset, model_pending_asset, per_partition
from include.dag_defaults import DEFAULT_ARGS, START_DATE, number_param
from include.pipelines.datasets import PipelineDataset, pipeline_dataset
from include.registry import REASON_FIELD

STAGE = "model_approval"
DECIDE_TASK = "decide"
REQUEST_TASK = "approval_request"
# A week to answer by default; the request then fails and the version stays pending.
DEFAULT_TIMEOUT_MINUTES = 7 * 24 * 60
# Fifteen seconds at least: the triggerer checks the request every 5 s (HITLTrigger's poke
# interval), so a shorter deadline would not be kept to.
MIN_TIMEOUT_MINUTES = 0.25


class ApprovalRequestError(ValueError):
    """The run cannot tell which version to ask about."""


def requested_version(param_version: Any, partition_key: str | None) -> tuple[str, bool]:
    """``(version, from_param)``: the ``version`` param if set, else the run's partition key.

    The training run emits each pending version's event with the version as partition key, so
    the scheduler makes one approval run per version: two versions pending at once are two
    requests, and neither is dropped.
    """
    if param_version is not None:
        return str(int(param_version)), True
    if partition_key is None:
        raise ApprovalRequestError(
            "no version to decide: the 'version' param is empty and the run has no partition "
            "key (the pending-approval event carries the version as its partition key)"
        )
    if not partition_key.isdigit() or int(partition_key) < 1:
        raise ApprovalRequestError(
            f"the run's partition key {partition_key!r} is not a registry version number"
        )
    return str(int(partition_key)), False


def _doc(dataset: PipelineDataset) -> str:
    name = dataset.name
    return f"""
### {dataset.title} model approval

*{dataset.description}*

A person's decision on a {name} model version that did not beat the champion by the margin and
so waits in the registry as `PendingManualApproval`. Approving it makes it the champion that
batch scoring uses; rejecting it keeps the current champion. The decision, the person who made
it and their reason are recorded on the version in the registry and in its model card.

**For** the model owner: the request appears in the Airflow UI under *Required actions*, with
the model card's summary (test metrics against the champion's, group gaps, limitations).
Choose *Approve* or *Reject* and write the reason. Only a pending version can be decided, so a
mistyped number cannot demote the champion.

**Timeout**: without an answer within `{TIMEOUT_PARAM}` (a week by default) the `decide` task
fails and the version stays pending; nothing is approved by default. Clear `decide` to ask
again.

**Triggered** once per pending version: `{name}_training` emits the
`{name}_model_pending_approval` event with the version as partition key when it registers a
version that waits for approval. By hand: the `version` param.

*Built by `include/pipelines/model_approval.py` from `{dataset.spec_file}`.*
"""


def model_approval_dag(dataset: str) -> DAG:
    """The ``<dataset>_model_approval`` DAG: ask a person about one pending version, record it."""
    info = pipeline_dataset(dataset)
    request_value = f"ti.xcom_pull(task_ids='{REQUEST_TASK}')"

    @dag(
        dag_id=f"{dataset}_{STAGE}",
        schedule=per_partition(model_pending_asset(dataset)),
        start_date=START_DATE,
        catchup=False,
        default_args=DEFAULT_ARGS,
        tags=["headrace", "training"],
        doc_md=_doc(info),
        params={
            "version": Param(
                None,
                type=["null", "integer"],
                minimum=1,
                maximum=1_000_000,
                title="Model version",
                description="The pending version to decide (a registry version number); "
                "empty: the run's partition key (the version the pending event names).",
            ),
            TIMEOUT_PARAM: number_param(
                DEFAULT_TIMEOUT_MINUTES,
                title="Decision deadline (minutes)",
                description="How long the request waits for a person (fractions allowed: 0.5 is "
                "thirty seconds). Then the run fails and the version stays pending: it is never "
                "approved by default.",
                minimum=MIN_TIMEOUT_MINUTES,
                maximum=30 * 24 * 60,
            ),
        },
    )
    def model_approval():
        @task(task_id=REQUEST_TASK, multiple_outputs=False)
        def approval_request() -> dict:
            from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

            from include.registry import NotPendingError, approval_request

            context = get_current_context()
            try:
                version, from_param = requested_version(
                    context["params"]["version"], context["dag_run"].partition_key
                )
            except ApprovalRequestError as error:
                raise AirflowFailException(str(error)) from error
            try:
                return approval_request(dataset, version)
            except NotPendingError as error:
                if from_param:  # a person asked about the wrong version: tell them
                    raise AirflowFailException(str(error)) from error
                # The event's version was decided before this run started: nothing to ask.
                raise AirflowSkipException(str(error)) from error

        decide = ModelApprovalOperator(
            task_id=DECIDE_TASK,
            subject=f"{{{{ {request_value}['subject'] }}}}",
            body=f"{{{{ {request_value}['body'] }}}}",
            params={REASON_FIELD: reason_param()},
        )

        @task(outlets=[model_asset(dataset)], multiple_outputs=False)
        def record_decision(request: dict, response: dict) -> dict:
            from include.registry import record_approval_response

            return record_approval_response(dataset, request["version"], response)

        request = approval_request()
        request >> decide
        record_decision(request, decide.output)

    return model_approval()
