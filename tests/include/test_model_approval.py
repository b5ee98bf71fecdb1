"""Model approval through Airflow's human-in-the-loop request: which version a run asks about,
the request's text, the answer recorded in the (real, MLflow) registry, the operator's timeout,
and the asset event the training DAG emits for a pending version.

The REST API round trip on the real stack is ``tests/e2e/test_model_approval_hitl.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from headrace_operators.model_approval import ModelApprovalOperator, reason_param
from include.pipelines.model_approval import ApprovalRequestError, requested_version
from include.registry import (
    APPROVED,
    PENDING,
    REJECTED,
    MLflowModelRegistry,
    NotPendingError,
    RegistryError,
    approval_request,
    decision_of_response,
    record_approval_response,
    register_trained_model,
)
from include.training_pipeline import pending_approval_extra
from training.evaluation import evaluate_binary_classifier, group_metrics

ADA = {"id": "ada", "name": "ada"}
WHEN = datetime(2026, 1, 9, tzinfo=UTC)


def _answer(option: str = "Approve", reason: str | None = "recall is better", **overrides):
    """What HITLOperator returns for a person's answer (HITLTriggerEventSuccessPayload)."""
    return {
        "chosen_options": [option],
        "params_input": {} if reason is None else {"reason": reason},
        "responded_at": WHEN,
        "responded_by_user": ADA,
        **overrides,
    }


# --- which version a run asks about -----------------------------------------------------------


def test_the_version_param_wins_over_the_partition_key():
    assert requested_version(3, "4") == ("3", True)
    assert requested_version(None, "4") == ("4", False)


@pytest.mark.parametrize(
    ("partition_key", "message"),
    [
        (None, "the 'version' param is empty and the run has no partition key"),
        ("latest", "partition key 'latest' is not a registry version number"),
        ("0", "partition key '0' is not a registry version number"),
    ],
)
def test_a_run_without_a_usable_version_is_refused(partition_key, message):
    with pytest.raises(ApprovalRequestError, match=message):
        requested_version(None, partition_key)


# --- the answer ---------------------------------------------------------------------------------


def test_an_answer_is_a_status_a_person_and_a_reason():
    assert decision_of_response(_answer()) == (APPROVED, "ada", "recall is better")
    assert decision_of_response(_answer("Reject", "  leaks the label  ")) == (
        REJECTED,
        "ada",
        "leaks the label",
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (_answer(responded_by_user=None), "no responding user"),
        (_answer(timedout=True), "no responding user"),
        (_answer(responded_by_user={"id": "1", "name": " "}), "no responding user"),
        (_answer("Maybe"), r"chosen_options \['Maybe'\] must be exactly one of Approve, Reject"),
        (_answer(chosen_options=["Approve", "Reject"]), "must be exactly one of"),
        (_answer(chosen_options=[]), "must be exactly one of"),
        (_answer(reason=None), "params_input.reason is empty: ada must say why .* approved"),
        (_answer("Reject", "   "), "params_input.reason is empty: .* rejected"),
        (_answer(params_input={"reason": 5}), "params_input.reason is empty"),
    ],
)
def test_an_answer_without_a_person_an_option_or_a_reason_decides_nothing(answer, message):
    with pytest.raises(RegistryError, match=message):
        decision_of_response(answer)


# --- the registry (real MLflow on SQLite) ----------------------------------------------------


def _evaluation(signal: float) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    region = np.where(x[:, 1] > 0, "eu_west", "us_east")
    y = (x[:, 0] + rng.normal(scale=1.0, size=300) > 0).astype(int)
    scores = 1 / (1 + np.exp(-signal * x[:, 0]))
    return {
        "metrics": evaluate_binary_classifier(y, scores),
        "groups": group_metrics(y, scores, {"region": region}),
        "permutation_importance": None,
    }


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="module")
def registry(lake) -> MLflowModelRegistry:
    return MLflowModelRegistry((lake / "models").as_uri())


def _register_champion_and_challenger(registry, lake: Path, dataset: str) -> tuple[dict, dict]:
    """Version 1 approved (no champion), version 2 pending (it cannot beat 1 by a margin)."""
    manifest = lake / "features" / dataset / "ds=2026-01-07" / "_manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"dataset": dataset, "ds": "2026-01-07", "splits": {}}))
    registered = []
    # Other hyperparameters each: the same ones on the same data and code would reproduce v1.
    for job, signal, epochs in (("job-1", 3.0, 5), ("job-2", 1.0, 8)):
        registered.append(
            register_trained_model(
                dataset,
                registry=registry,
                models_zone_uri=(lake / "models").as_uri(),
                model_uri=f"file:///lake/models/{dataset}/{job}/model.tar.gz",
                evaluation=_evaluation(signal),
                hyperparameters={"epochs": epochs},
                manifest_uri=f"file://{manifest}",
                baseline_uri=f"file:///lake/monitoring/{dataset}/{job}",
                evaluation_uri=f"file:///lake/models/{dataset}/{job}/evaluation.json",
                code_version_id="tree:abc",
            )
        )
    return registered[0], registered[1]


def test_the_request_summarises_the_card_against_the_champion(registry, lake):
    champion, pending = _register_champion_and_challenger(registry, lake, "appr_request")
    assert (champion["approval"], pending["approval"]) == (APPROVED, PENDING)

    request = approval_request("appr_request", pending["version"], registry=registry)

    assert request["version"] == "2" and request["champion_version"] == "1"
    assert request["subject"] == "Approve appr_request model version 2?"
    body = request["body"]
    auc = registry.get_version("appr_request", "1").metrics["roc_auc"]
    assert "| metric | version 2 | champion (version 1) | change |" in body
    # Same ranking, so the same AUC: no change, and the registration's reason says why.
    assert f"| roc_auc | {auc:.4f} | {auc:.4f} | +0.0000 |" in body
    assert pending["reason"] in body
    assert "| region | positive-rate gap |" in body and "| region | recall gap |" in body
    assert f"Model card: `{pending['card_uri']}`" in body

    with pytest.raises(NotPendingError, match="version 1 is Approved, not PendingManualApproval"):
        approval_request("appr_request", "1", registry=registry)


def test_the_answer_is_recorded_with_the_person_and_the_reason(registry, lake):
    _, pending = _register_champion_and_challenger(registry, lake, "appr_record")

    recorded = record_approval_response(
        "appr_record", "2", _answer("Reject", "worse recall for eu_west"), registry=registry
    )

    stored = registry.get_version("appr_record", "2")
    assert (stored.approval, stored.approver, stored.approval_reason) == (
        REJECTED,
        "ada",
        "worse recall for eu_west",
    )
    assert recorded["approval"] == REJECTED
    assert registry.approved_version("appr_record").version == "1"
    card = json.loads(Path(pending["card_uri"].removeprefix("file://")).read_text())
    assert card["approval"]["status"] == REJECTED and card["approval"]["approver"] == "ada"
    # The record task retried after it got through: the same answer again changes nothing.
    again = record_approval_response(
        "appr_record", "2", _answer("Reject", "worse recall for eu_west"), registry=registry
    )
    assert again == recorded
    # A different answer cannot overturn a decision through this path.
    with pytest.raises(NotPendingError, match="version 2 is Rejected"):
        record_approval_response("appr_record", "2", _answer(), registry=registry)


def test_an_answer_without_a_reason_leaves_the_version_pending(registry, lake):
    _register_champion_and_challenger(registry, lake, "appr_noreason")

    with pytest.raises(RegistryError, match=r"params_input\.reason is empty"):
        record_approval_response("appr_noreason", "2", _answer(reason=None), registry=registry)

    assert registry.get_version("appr_noreason", "2").approval == PENDING


# --- the operator -------------------------------------------------------------------------------


@pytest.fixture
def operator():
    from airflow.sdk import DAG

    with DAG("appr_op", schedule=None, params={"response_timeout_minutes": 5}):
        return ModelApprovalOperator(
            task_id="decide", subject="s", body="b", params={"reason": reason_param()}
        )


def test_the_request_offers_approve_or_reject_and_asks_for_a_reason(operator):
    assert operator.options == ["Approve", "Reject"]
    assert operator.defaults is None and operator.multiple is False
    # Only the reason is a form field: the DAG's own params are not asked again.
    assert list(operator.serialized_params) == ["reason"]
    schema = operator.serialized_params["reason"]["schema"]
    assert schema["title"] == "Reason" and schema["minLength"] == 5


def test_a_timeout_fails_without_retry_and_decides_nothing(operator):
    from airflow.sdk.exceptions import AirflowFailException

    context = {"params": {"response_timeout_minutes": 5}}
    event = {"error": "no response", "error_type": "timeout"}

    with pytest.raises(AirflowFailException, match="no decision within 5 minutes: the version "):
        operator.execute_complete(context, event)


def test_an_answer_is_checked_when_it_arrives(operator):
    context = {"params": {"response_timeout_minutes": 5}}

    result = operator.execute_complete(context, _answer("Reject", "worse recall"))

    assert result["chosen_options"] == ["Reject"]
    assert result["responded_by_user"] == ADA
    assert result["params_input"] == {"reason": "worse recall"}
    # No reason: the task fails (and its retry asks again) instead of recording a bare decision.
    with pytest.raises(RegistryError, match=r"params_input\.reason is empty"):
        operator.execute_complete(context, _answer(reason=None))


# --- the event that starts the approval DAG -------------------------------------------------


def test_only_a_pending_registration_emits_the_approval_event():
    registered = {
        "dataset": "churn",
        "version": "4",
        "approval": PENDING,
        "reason": "challenger roc_auc=0.8 vs champion roc_auc=0.81",
        "champion_version": "3",
    }

    assert pending_approval_extra(registered) == {
        "dataset": "churn",
        "version": "4",
        "champion_version": "3",
        "reason": "challenger roc_auc=0.8 vs champion roc_auc=0.81",
    }
    assert pending_approval_extra({**registered, "approval": APPROVED}) is None


def test_the_training_dag_schedules_the_approval_dag_through_the_pending_asset():
    from airflow.dag_processing.dagbag import DagBag

    repo = Path(__file__).resolve().parents[2]
    dags = {}
    for name in ("training_dags.py", "model_approval_dags.py"):
        bag = DagBag(dag_folder=str(repo / "dags" / name))
        assert bag.import_errors == {}, bag.import_errors
        dags.update(bag.dags)
    training, approval = dags["churn_training"], dags["churn_model_approval"]

    emitter = training.get_task("request_approval")
    assert [a.name for a in emitter.outlets] == ["churn_model_pending_approval"]
    assert emitter.upstream_task_ids == {"register_model"}
    assert approval.timetable.asset_condition.name == "churn_model_pending_approval"
    assert approval.get_task("decide").upstream_task_ids == {"approval_request"}
    assert approval.get_task("record_decision").upstream_task_ids == {
        "approval_request",
        "decide",
    }


# --- the aws registry (SageMaker Model Registry on a moto server) ----------------------------


@pytest.fixture
def sagemaker_registry(monkeypatch, start_moto_server, aws_calls):
    """The aws registry on a moto server of the test's own, and the recorder of its requests."""
    from include.registry import SageMakerModelRegistry
    from tests.aws_fakes import AWS_UNSET, REGION, moto_environment

    for name, value in moto_environment(start_moto_server()).items():
        monkeypatch.setenv(name, value)
    for name in AWS_UNSET:
        monkeypatch.delenv(name, raising=False)
    return SageMakerModelRegistry(region=REGION), aws_calls


def test_on_aws_the_answer_is_the_packages_status_description_and_approver(sagemaker_registry):
    registry, aws_calls = sagemaker_registry
    for approval, model in ((APPROVED, "m1"), (PENDING, "m2")):
        registry.register_version(
            "appr_sm",
            model_uri=f"s3://bucket/lake/models/appr_sm/{model}/model.tar.gz",
            metrics={"roc_auc": 0.8},
            data_version="s3://bucket/lake/features/appr_sm/_manifest.json@sha256:ab",
            code_version="a" * 40,
            hyperparameters={"epochs": 3},
            baseline_uri="",
            evaluation_uri=f"s3://bucket/lake/models/appr_sm/{model}/evaluation.json",
            approval=approval,
        )
    request = approval_request("appr_sm", "2", registry=registry)
    assert "Version 2 has no model card yet" in request["body"]
    assert "| roc_auc | 0.8000 | 0.8000 | +0.0000 |" in request["body"]
    # An MWAA user name (FAB, from the IAM role) has characters metadata values do not allow.
    user = {"id": "7", "name": "assumed-role/MwaaAdmin/ada"}

    record_approval_response(
        "appr_sm",
        "2",
        _answer("Approve", "reviewed the card, same AUC", responded_by_user=user),
        registry=registry,
    )

    (update,) = aws_calls.of("sagemaker", "UpdateModelPackage")
    assert update["ModelApprovalStatus"] == APPROVED
    assert update["ApprovalDescription"] == "reviewed the card, same AUC"
    stored = registry.get_version("appr_sm", "2")
    assert (stored.approval, stored.approver) == (APPROVED, "assumed-role/MwaaAdmin/ada")
    assert registry.approved_version("appr_sm").version == "2"
