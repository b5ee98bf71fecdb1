"""
### Churn model approval

A person's decision on a churn model version that did not beat the champion by the margin and
so waits in the registry as `PendingManualApproval`. Approving it makes it the champion that
batch scoring uses; rejecting it keeps the current champion. The decision, the approver and the
reason are recorded on the version and in its model card.

**For** the model owner, from the Airflow UI: *Trigger DAG* with the version number (shown in the
`churn_training` run's `register_model` result and in the model card), the decision and a reason.
Only a pending version can be decided here, so a mistyped number cannot demote the champion.

**Triggered** by hand only.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from include.assets import model_asset
from include.dag_defaults import DEFAULT_ARGS, START_DATE

DATASET = "churn"


@dag(
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["headrace", "training"],
    doc_md=__doc__,
    params={
        "version": Param(
            type="integer",
            minimum=1,
            title="Model version",
            description="The pending version to decide.",
        ),
        "decision": Param("Approved", enum=["Approved", "Rejected"], title="Decision"),
        "approver": Param(
            type="string",
            minLength=1,
            maxLength=128,
            title="Approver",
            description="Who decides (name or e-mail).",
        ),
        "reason": Param(
            type="string",
            minLength=5,
            maxLength=1000,
            title="Reason",
            description="Why; recorded in the model card.",
        ),
    },
)
def churn_model_approval():
    # multiple_outputs=False: the version facts hold None values, which Airflow 3.0 cannot
    # push as XComs of their own (apache/airflow#55062).
    @task(outlets=[model_asset(DATASET)], multiple_outputs=False)
    def decide() -> dict:
        from include.registry import approve_pending_version

        params = get_current_context()["params"]
        return approve_pending_version(
            DATASET,
            str(params["version"]),
            params["approver"],
            params["reason"],
            decision=params["decision"],
        )

    decide()


churn_model_approval()
