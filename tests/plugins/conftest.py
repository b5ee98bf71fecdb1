"""Fixtures for operator tests: a moto server on 127.0.0.1, the aws target pointed at it (the
fake account of tests/aws_fakes.py; its request recorder is ``aws_calls``), and an Airflow task
context."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.aws_fakes import EMR_SERVERLESS_MAXIMUM, aws_client, create_engine_resource


@pytest.fixture(scope="session")
def moto_server(start_moto_server):
    """One moto server for the session, on loopback only; each test resets its state."""
    return start_moto_server()


@pytest.fixture
def aws_target(moto_server, moto_api, monkeypatch, fake_aws_account):
    """``PIPELINE_TARGET=aws`` against a fresh moto: bucket, KMS key, subnet, security group.

    Returns a namespace with the ids, a boto3 client factory, and ``use(engine)`` that creates
    the engine's application or cluster in moto and selects it in settings.
    """
    from include.config import get_settings

    account = fake_aws_account(moto_server, "headrace-test-lake", engine_resources=())
    target = SimpleNamespace(
        endpoint=moto_server,
        bucket=account.bucket,
        kms_key_arn=account.kms_key_arn,
        subnet_id=account.subnet_id,
        availability_zone=account.availability_zone,
        security_group_id=account.security_group_id,
        client=aws_client,
        application_id=None,
        cluster_id=None,
    )

    def use(engine: str, emr_serverless_maximum_capacity=EMR_SERVERLESS_MAXIMUM) -> None:
        """Select ``engine``; an EMR Serverless application has ``emr_serverless_maximum_capacity``
        (a deployment's has one: a run is priced at it; None: none, which is refused)."""
        created = create_engine_resource(engine, emr_serverless_maximum_capacity)
        for name, value in created.items():
            monkeypatch.setenv(name, value)
        target.application_id = created.get(
            "HEADRACE_EMR_SERVERLESS_APPLICATION_ID", target.application_id
        )
        target.cluster_id = created.get("HEADRACE_EMR_CLUSTER_ID", target.cluster_id)
        monkeypatch.setenv("HEADRACE_SPARK_ENGINE", engine)
        get_settings.cache_clear()

    def hold_glue_runs_starting() -> None:
        """moto finishes Glue runs on first sight; keep them STARTING, like a real queue."""
        moto_api(
            moto_server,
            "state-manager/set-transition",
            {
                "model_name": "glue::job_run",
                "transition": {"progression": "manual", "times": 10**6},
            },
        )

    target.use = use
    target.hold_glue_runs_starting = hold_glue_runs_starting
    yield target
    moto_api(moto_server, "state-manager/unset-transition", {"model_name": "glue::job_run"})


@pytest.fixture
def task_context():
    """A task context as Airflow passes it, reduced to what the operator reads."""

    def make(
        dag_id: str = "ingest_daily",
        run_id: str = "scheduled__2026-01-02T00:00:00+00:00",
        task_id: str = "ingest",
        map_index: int = -1,
    ) -> dict:
        ti = SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)
        return {"ti": ti, "run_id": run_id}

    return make
