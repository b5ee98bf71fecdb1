"""Fixtures for the MWAA deployment tests: one package built by the real script, and a moto
server on 127.0.0.1 standing in for the environment's bucket."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from mwaa_deploy_helpers import run_script


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
def deploy_bucket(deploy_moto_server, monkeypatch):
    """A fresh versioned bucket and KMS key in moto, and the aws settings deploy reads.

    Returns ``(env, s3 client, bucket, kms key arn)``; ``env`` is what a deploy subprocess runs
    with. moto accepts any credentials: the fake ones only keep boto3 from looking for real ones.
    """
    import boto3

    request = urllib.request.Request(f"{deploy_moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    aws = {
        **dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "testing"),
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": deploy_moto_server,
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
        "AWS_CONFIG_FILE": "/nonexistent/config",
    }
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3 = boto3.client("s3", region_name="eu-west-1")
    bucket = "headrace-deploy-test"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    kms_key_arn = boto3.client("kms", region_name="eu-west-1").create_key()["KeyMetadata"]["Arn"]

    settings = {
        "PIPELINE_TARGET": "aws",
        "HEADRACE_BUCKET": bucket,
        "HEADRACE_LAKE_ROOT": f"s3://{bucket}/lake",
        "HEADRACE_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-sagemaker",
        "HEADRACE_GLUE_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-glue",
        "HEADRACE_EMR_SERVERLESS_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-emr",
        "HEADRACE_KMS_KEY_ARN": kms_key_arn,
        "HEADRACE_SUBNET_IDS": "subnet-0123456789abcdef0",
        "HEADRACE_SECURITY_GROUP_IDS": "sg-0123456789abcdef0",
        "HEADRACE_PII_SALT_SECRET_ARN": (
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:headrace/pii-salt-AbCdEf"
        ),
    }
    return {**os.environ, **aws, **settings}, s3, bucket, kms_key_arn
