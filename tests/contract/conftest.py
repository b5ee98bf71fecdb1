"""Fixtures of the AWS contract suite: a moto server on 127.0.0.1 and the aws target pointed at
it (the fake account and the request recorder, ``aws_calls``, are tests/aws_fakes.py's, as the
lifecycle driver's are). The lifecycle itself runs in a subprocess of its own."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.aws_fakes import aws_client

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parents[1] / ".local" / "test-artifacts"
_SESSION_START = time.time()


def pytest_terminal_summary(terminalreporter):
    """Where this run's request logs are: kept as test artifacts (git-ignored .local/)."""
    logs = sorted(
        str(path)
        for path in ARTIFACTS.glob("aws_requests-*.jsonl")
        if path.stat().st_mtime >= _SESSION_START
    )
    if logs:
        terminalreporter.write_line("AWS contract request logs (JSON lines): " + ", ".join(logs))


@pytest.fixture(scope="session")
def contract_moto(start_moto_server):
    return start_moto_server()


@pytest.fixture
def contract_target(contract_moto, moto_api, fake_aws_account, aws_calls, monkeypatch):
    """``PIPELINE_TARGET=aws`` against a fresh moto, the engines' resources created in it."""
    from include.config import get_settings

    account = fake_aws_account(
        contract_moto, "headrace-contract-lake", engine_resources=("emr_serverless", "emr_ec2")
    )

    def use(engine: str) -> None:
        monkeypatch.setenv("HEADRACE_SPARK_ENGINE", engine)
        get_settings.cache_clear()

    yield SimpleNamespace(
        endpoint=contract_moto, bucket=account.bucket, kms_key_arn=account.kms_key_arn,
        client=aws_client, use=use,
        application_id=account.settings["HEADRACE_EMR_SERVERLESS_APPLICATION_ID"],
        cluster_id=account.settings["HEADRACE_EMR_CLUSTER_ID"],
    )  # fmt: skip
    moto_api(contract_moto, "state-manager/unset-transition", {"model_name": "glue::job_run"})


@pytest.fixture
def task_context():
    """A task context as Airflow passes it, reduced to what the operators read."""

    def make(dag_id: str, task_id: str, run_id: str = "manual__2026-01-07T00:00:00+00:00"):
        ti = SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=-1)
        return {"ti": ti, "run_id": run_id}

    return make
