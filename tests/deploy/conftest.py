"""Fixtures for the MWAA deployment tests: one package built by the real script, and a moto
server on 127.0.0.1 standing in for the environment's bucket."""

from __future__ import annotations

import json
import os

import pytest
from mwaa_deploy_helpers import run_script

from tests.aws_fakes import aws_client


@pytest.fixture(scope="session")
def mwaa_package(tmp_path_factory):
    """build/mwaa as ``make package`` builds it, in a temporary folder."""
    out = tmp_path_factory.mktemp("package") / "mwaa"
    result = run_script("package.py", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def mwaa_manifest(mwaa_package) -> dict:
    return json.loads((mwaa_package / "manifest.json").read_text())


@pytest.fixture(scope="session")
def deploy_moto_server(start_moto_server):
    """One moto server for these tests, on loopback only; each test resets its state."""
    return start_moto_server()


@pytest.fixture
def deploy_bucket(deploy_moto_server, fake_aws_account):
    """A fresh versioned bucket and KMS key in moto (the fake account of tests/aws_fakes.py), and
    the aws settings deploy reads.

    Returns ``(env, s3 client, bucket, kms key arn)``; ``env`` is what a deploy subprocess runs
    with: this test's environment, which the fake account's fixture points at moto.
    """
    account = fake_aws_account(deploy_moto_server, "headrace-deploy-test", versioned=True)
    return {**os.environ}, aws_client("s3"), account.bucket, account.kms_key_arn
