"""Model approval through Airflow's human-in-the-loop request, on the real local stack.

A pending version is registered in the stack's registry (MLflow under its lake); the
``churn_model_approval`` run asks about it; the test finds the request through
``GET .../hitlDetails`` and answers it with ``PATCH`` as the admin user, as the UI's *Required
actions* page does; the registry then holds the answer, the person and the reason. Without an
answer the deadline passes, the run fails and the version stays pending. The asset event the
training DAG emits for a pending version starts the same run.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from include.registry import APPROVED, PENDING, REJECTED, MLflowModelRegistry
from scripts.airflow_api import AirflowApiError
from training.evaluation import evaluate_binary_classifier, group_metrics

pytestmark = pytest.mark.e2e

DATASET = "churn"
DAG_ID = f"{DATASET}_model_approval"
PENDING_ASSET = f"{DATASET}_model_pending_approval"
# Several scheduler loops, also on a loaded CI machine (see _wait_for_request).
PARK_SETTLE_SECONDS = 10


def _evaluation(signal: float) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    region = np.where(x[:, 1] > 0, "eu_west", "us_east")
    y = (x[:, 0] + rng.normal(scale=1.0, size=400) > 0).astype(int)
    scores = 1 / (1 + np.exp(-signal * x[:, 0]))
    return {
        "metrics": evaluate_binary_classifier(y, scores),
        "groups": group_metrics(y, scores, {"region": region}),
        "permutation_importance": None,
    }


@pytest.fixture
def registry(local_stack) -> MLflowModelRegistry:
    """The registry the stack's tasks use: MLflow in its lake's models zone."""
    return MLflowModelRegistry(f"{local_stack.lake.as_uri()}/models")


@pytest.fixture
def register_pending(local_stack, registry, tmp_path):
    """Registers a champion if there is none, then a challenger that waits for a person (the
    same model cannot beat the champion by the margin); returns the challenger's version."""
    from include.registry import register_trained_model

    manifest = tmp_path / "_manifest.json"
    manifest.write_text(json.dumps({"dataset": DATASET, "ds": "2026-01-07", "splits": {}}))
    models_zone = f"{local_stack.lake.as_uri()}/models"

    def register(job: str) -> str:
        registered = register_trained_model(
            DATASET,
            registry=registry,
            models_zone_uri=models_zone,
            model_uri=f"{models_zone}/{DATASET}/e2e-{job}/model.tar.gz",
            evaluation=_evaluation(2.0),
            # Per job: the same hyperparameters on the same data and code reproduce a version.
            hyperparameters={"epochs": 3, "seed": job},
            manifest_uri=f"file://{manifest}",
            baseline_uri=f"{local_stack.lake.as_uri()}/monitoring/{DATASET}/e2e-{job}",
            evaluation_uri=f"{models_zone}/{DATASET}/e2e-{job}/evaluation.json",
            code_version_id="tree:e2e",
        )
        return registered["version"]

    def pending(name: str) -> str:
        if registry.approved_version(DATASET) is None:
            register(f"{name}-champion")
        version = register(name)
        assert registry.get_version(DATASET, version).approval == PENDING
        return version

    return pending


@pytest.fixture
def approval_dag(airflow_api):
    """The approval DAG unpaused for the test, paused again after it: the stack is shared, and
    other tests trigger this DAG only to see their conf accepted."""
    airflow_api.unpause(DAG_ID)
    yield DAG_ID
    # After the last test that uses it the shared stack is already down (conftest's teardown
    # hook runs before fixtures are finalized): then there is nothing left to pause.
    with contextlib.suppress(OSError):
        airflow_api.pause(DAG_ID)


def _run_path(run_id: str) -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"


def _wait_for_request(api, run_id: str, timeout: float = 180.0) -> dict:
    """The run's open human-in-the-loop request, once the ``decide`` task has written it and
    is parked waiting for it (``awaiting_input``).

    Waiting for the park, not only the request, and then ``PARK_SETTLE_SECONDS`` more: Airflow
    3.3.1's scheduler takes in the parking workload's end (the executor's "success" event) on
    its next loop. An answer before that moves the task to scheduled and then queued, and the
    late event then reads as "state changed externally": the try is marked up_for_retry, and
    the retry writes the request again with the answer cleared (seen in the scheduler log of
    a failed run: the answer 0.7 s after the park). A person takes longer than a loop; a test
    must wait for it.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = api.get(f"{_run_path(run_id)}/hitlDetails", response_received="false")
        if found["total_entries"]:
            assert found["total_entries"] == 1, found
            (request,) = found["hitl_details"]
            if request["task_instance"]["state"] == "awaiting_input":
                time.sleep(PARK_SETTLE_SECONDS)
                return request
        run = api.dag_run(DAG_ID, run_id)
        if run["state"] == "failed" or time.monotonic() > deadline:
            states = {t["task_id"]: t["state"] for t in api.task_instances(DAG_ID, run_id)}
            raise AssertionError(f"no approval request in run {run_id} ({run['state']}): {states}")
        time.sleep(2)


def _answer(api, run_id: str, option: str, reason: str) -> dict:
    return api.patch(
        f"{_run_path(run_id)}/taskInstances/decide/-1/hitlDetails",
        {"chosen_options": [option], "params_input": {"reason": reason}},
    )


def _task_states(api, run_id: str) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in api.task_instances(DAG_ID, run_id)}


def _wait_for_run(api, run_id: str, timeout: float) -> dict:
    """The finished run; on a timeout the error shows the tasks and the request's state."""
    try:
        return api.wait_for_run(DAG_ID, run_id, timeout=timeout)
    except TimeoutError as error:
        detail = api.get(f"{_run_path(run_id)}/taskInstances/decide/-1/hitlDetails")
        facts = {k: detail[k] for k in ("response_received", "chosen_options", "responded_at")}
        raise AssertionError(
            f"{error}: tasks {_task_states(api, run_id)}, request {facts}"
        ) from error


@pytest.mark.parametrize(
    ("option", "status", "reason"),
    [
        ("Reject", REJECTED, "recall for eu_west dropped; keep the champion"),
        ("Approve", APPROVED, "same AUC on newer data; the card shows no new gaps"),
    ],
)
def test_a_persons_answer_is_recorded_in_the_registry(
    airflow_api, approval_dag, registry, register_pending, option, status, reason
):
    version = register_pending(f"answer-{option.lower()}")
    champion = registry.approved_version(DATASET)
    run_id = airflow_api.trigger(DAG_ID, {"version": int(version)})

    request = _wait_for_request(airflow_api, run_id)

    assert request["subject"] == f"Approve {DATASET} model version {version}?"
    assert request["options"] == ["Approve", "Reject"]
    assert request["defaults"] is None and request["multiple"] is False
    assert list(request["params"]) == ["reason"]
    assert request["response_received"] is False
    assert request["task_instance"]["task_id"] == "decide"
    # The model card summary: the challenger against the champion, and the group gaps.
    body = request["body"]
    assert f"| metric | version {version} | champion (version {champion.version}) |" in body
    assert f"| roc_auc | {registry.get_version(DATASET, version).metrics['roc_auc']:.4f} |" in body
    assert "| region | positive-rate gap |" in body and "| region | recall gap |" in body

    answered = _answer(airflow_api, run_id, option, reason)

    assert answered["chosen_options"] == [option]
    responder = answered["responded_by"]["name"]
    assert responder == "admin"
    # One answer per request: a second one is refused.
    with pytest.raises(AirflowApiError) as again:
        _answer(airflow_api, run_id, "Approve", "changed my mind about it")
    assert again.value.status == 409

    run = _wait_for_run(airflow_api, run_id, timeout=240)

    assert run["state"] == "success", _task_states(airflow_api, run_id)
    stored = registry.get_version(DATASET, version)
    assert (stored.approval, stored.approver, stored.approval_reason) == (
        status,
        responder,
        reason,
    )
    recorded = airflow_api.xcom(DAG_ID, run_id, "record_decision")
    assert (recorded["version"], recorded["approval"]) == (version, status)
    card = json.loads(Path(stored.card_uri.removeprefix("file://")).read_text())
    assert (card["approval"]["status"], card["approval"]["approver"]) == (status, responder)
    expected_champion = version if status == APPROVED else champion.version
    assert registry.approved_version(DATASET).version == expected_champion


def test_without_an_answer_the_deadline_leaves_the_version_pending(
    airflow_api, approval_dag, registry, register_pending
):
    version = register_pending("timeout")
    run_id = airflow_api.trigger(DAG_ID, {"version": int(version), "response_timeout_minutes": 0.5})
    request = _wait_for_request(airflow_api, run_id)
    assert request["response_received"] is False

    run = _wait_for_run(airflow_api, run_id, timeout=300)

    assert run["state"] == "failed"
    assert _task_states(airflow_api, run_id) == {
        "approval_request": "success",
        "decide": "failed",
        "record_decision": "upstream_failed",
    }
    stored = registry.get_version(DATASET, version)
    assert (stored.approval, stored.approver) == (PENDING, "")
    # Nobody answered, and no default was written for anybody.
    detail = airflow_api.get(f"{_run_path(run_id)}/taskInstances/decide/-1/hitlDetails")
    assert detail["response_received"] is False and detail["chosen_options"] is None


def test_the_pending_version_event_starts_the_request(
    airflow_api, approval_dag, registry, register_pending
):
    """What ``churn_training``'s ``request_approval`` task emits, posted through the API."""
    version = register_pending("event")
    known = {run["dag_run_id"] for run in airflow_api.dag_runs(DAG_ID)}

    asset = airflow_api.asset(PENDING_ASSET)
    airflow_api.post_asset_event(
        asset["id"], {"dataset": DATASET, "version": version}, partition_key=str(version)
    )
    run_id = airflow_api.wait_for_new_run(DAG_ID, known, timeout=120)
    assert run_id is not None, f"no {DAG_ID} run after a {PENDING_ASSET} event"
    request = _wait_for_request(airflow_api, run_id)
    assert request["subject"] == f"Approve {DATASET} model version {version}?"

    _answer(airflow_api, run_id, "Approve", "approved from the event-started request")
    run = _wait_for_run(airflow_api, run_id, timeout=240)

    assert run["state"] == "success", _task_states(airflow_api, run_id)
    stored = registry.get_version(DATASET, version)
    assert (stored.approval, stored.approver) == (APPROVED, "admin")
    assert registry.approved_version(DATASET).version == version
