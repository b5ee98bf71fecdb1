"""``make deploy`` against a moto server on 127.0.0.1: every object encrypted, nothing twice."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from mwaa_deploy_helpers import run_script

from include.artifact_upload import upload_if_changed

# Slow (builds and uploads the package to a moto server): left out of `make test-fast`.
pytestmark = pytest.mark.slow


def _object_versions(s3, bucket: str) -> dict[str, int]:
    versions: dict[str, int] = {}
    for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        versions[version["Key"]] = versions.get(version["Key"], 0) + 1
    return versions


def test_dry_run_prints_every_put_and_calls_no_aws(mwaa_package, mwaa_manifest, deploy_bucket):
    env, _s3, bucket, _kms = deploy_bucket
    # Nothing listens there: a dry run that called AWS would fail.
    env = {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = run_script("deploy.py", "--package", str(mwaa_package), "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    puts = re.findall(r"^PUT s3://([^/]+)/(\S+)  (\d+) bytes  sha256 ([0-9a-f]{64})$",
                      result.stdout, re.MULTILINE)  # fmt: skip
    assert {key: (int(size), digest) for _b, key, size, digest in puts} == {
        key: (entry["size"], entry["sha256"]) for key, entry in mwaa_manifest["files"].items()
    }
    assert {found_bucket for found_bucket, *_ in puts} == {bucket}


def test_deploy_uploads_everything_encrypted_once(mwaa_package, mwaa_manifest, deploy_bucket):
    env, s3, bucket, kms_key_arn = deploy_bucket
    files = mwaa_manifest["files"]

    first = run_script("deploy.py", "--package", str(mwaa_package), env=env)
    assert first.returncode == 0, first.stderr
    assert f"{len(files)} uploaded, 0 unchanged, 0 deleted" in first.stdout
    for key, entry in files.items():
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == kms_key_arn, key
        assert head["Metadata"] == {"sha256": entry["sha256"]}, key
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == (mwaa_package / key).read_bytes(), key
    plugins_version = s3.head_object(Bucket=bucket, Key="plugins.zip")["VersionId"]
    assert f"PluginsS3ObjectVersion = {plugins_version}" in first.stdout

    # What the operators upload at run time is already there: their upload sends nothing.
    for key in ("artifacts/spark_jobs/ingest.py", mwaa_manifest["training_source"]):
        data = (mwaa_package / key).read_bytes()
        assert not upload_if_changed(s3, f"s3://{bucket}/{key}", data, kms_key_arn=kms_key_arn)

    # A DAG file the package no longer has, and a lake object deploy must not touch.
    s3.put_object(Bucket=bucket, Key="dags/churn_ingestion_old.py", Body=b"# renamed away")
    s3.put_object(Bucket=bucket, Key="lake/landing/churn/ds=2026-01-01/a.csv", Body=b"id\n1\n")
    second = run_script("deploy.py", "--package", str(mwaa_package), env=env)
    assert second.returncode == 0, second.stderr
    assert f"0 uploaded, {len(files)} unchanged, 1 deleted" in second.stdout
    assert "PUT " not in second.stdout
    assert "DELETE s3://headrace-deploy-test/dags/churn_ingestion_old.py" in second.stdout
    listed = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert listed == set(files) | {"lake/landing/churn/ds=2026-01-01/a.csv"}
    # One version per packaged object: the second deploy wrote none.
    versions = _object_versions(s3, bucket)
    assert {key: versions[key] for key in files} == dict.fromkeys(files, 1)


def test_keep_stale_leaves_old_dag_files(mwaa_package, deploy_bucket):
    env, s3, bucket, _kms = deploy_bucket
    s3.put_object(Bucket=bucket, Key="dags/old.py", Body=b"# old")
    result = run_script("deploy.py", "--package", str(mwaa_package), "--keep-stale", env=env)
    assert result.returncode == 0, result.stderr
    assert s3.head_object(Bucket=bucket, Key="dags/old.py")["ContentLength"] == 5


def test_deploy_refuses_a_package_changed_after_packaging(mwaa_package, tmp_path):
    package = tmp_path / "mwaa"
    shutil.copytree(mwaa_package, package)
    with (package / "dags" / "lake_setup.py").open("a") as dag_file:
        dag_file.write("# edited by hand\n")
    (package / "dags" / "stray.py").write_text("# not packaged\n")
    result = run_script("deploy.py", "--package", str(package), "--dry-run")
    assert result.returncode == 2
    assert "dags/lake_setup.py changed after packaging" in result.stderr
    (package / "dags" / "lake_setup.py").write_bytes(
        (mwaa_package / "dags/lake_setup.py").read_bytes()
    )
    result = run_script("deploy.py", "--package", str(package), "--dry-run")
    assert result.returncode == 2
    assert "holds files the manifest does not list: dags/stray.py" in result.stderr


def test_deploy_names_the_missing_settings(mwaa_package):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("HEADRACE_") and name != "PIPELINE_TARGET"
    }
    result = run_script("deploy.py", "--package", str(mwaa_package), "--dry-run", env=env)
    assert result.returncode == 2
    assert "HEADRACE_BUCKET is required" in result.stderr
    assert "HEADRACE_KMS_KEY_ARN is required" in result.stderr
