"""The model-approval request: Airflow's human-in-the-loop operator, with no default answer.

Used by the ``<dataset>_model_approval`` DAGs (``include/pipelines/model_approval.py``); the answer
is recorded in the registry by the DAG's next task.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param

# The DAG param that sets how long the request waits for a person.
TIMEOUT_PARAM = "response_timeout_minutes"


def reason_param() -> Param:
    """The request's one form field: the reason, recorded with the decision.

    Nullable: the worker validates a task's Params when the task starts, before anyone
    answered, and a Param without a value fails that; the answer's reason is checked when it
    arrives (:meth:`ModelApprovalOperator.execute_complete`).
    """
    return Param(
        None,
        type=["null", "string"],
        minLength=5,
        maxLength=1000,
        pattern=r"\S",
        title="Reason",
        description="Required: why you approve or reject this version. Recorded in the model "
        "registry and the model card with your name.",
    )


class ModelApprovalOperator(HITLOperator):
    """Approve or Reject a pending version, with a reason: Airflow's human-in-the-loop request.

    The deadline is the run's ``response_timeout_minutes`` param. Past it, the task fails
    without retrying and records nothing: the version stays ``PendingManualApproval``. No
    option is a default, so a timeout never decides for a person.

    Takes :class:`HITLOperator`'s arguments but the options: ``subject`` and ``body``
    (templated), and ``params={"reason": reason_param()}``, the form a person fills in.
    """

    def __init__(self, **kwargs) -> None:
        from include.registry import APPROVE_OPTION, REJECT_OPTION

        super().__init__(
            options=[APPROVE_OPTION, REJECT_OPTION], multiple=False, defaults=None, **kwargs
        )

    def execute(self, context):
        self.response_timeout = timedelta(minutes=float(context["params"][TIMEOUT_PARAM]))
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from include.registry import PENDING, decision_of_response

        if event.get("error_type") == "timeout":
            # Not retried: a retry would ask again at once, and the run would never end.
            raise AirflowFailException(
                f"no decision within {context['params'][TIMEOUT_PARAM]} minutes: the version "
                f"stays {PENDING}, nothing is approved by default. Clear this task to ask again."
            )
        response = super().execute_complete(context, event)
        # An answer without a reason fails here, so the retry asks again while the request is
        # fresh, instead of the registry task failing on every retry.
        decision_of_response(response)
        return response
