"""Fixtures shared by the tests of ``include/``."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def moto_s3(monkeypatch):
    """A real moto server on loopback, and an empty bucket of this test's own in it."""
    import boto3

    from tests.aws_fakes import start_moto

    server, endpoint = start_moto()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bucket = f"headrace-lake-test-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    yield bucket
    server.stop()


@pytest.fixture
def service_quotas():
    """A ``service-quotas`` client whose answers the test queues; every queued answer must be
    asked for."""
    import botocore.session
    from aws_test_env import AWS_ENV
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.stub import Stubber

    client = botocore.session.get_session().create_client(
        "service-quotas",
        region_name=AWS_ENV["AWS_REGION"],
        config=Config(signature_version=UNSIGNED),
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()
