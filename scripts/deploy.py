"""``make deploy``: upload the package ``make package`` built to the environment's bucket.

Usage: ``python scripts/deploy.py --package build/mwaa [--dry-run] [--keep-stale]``.

The bucket is ``HEADRACE_BUCKET`` and the key ``HEADRACE_KMS_KEY_ARN`` from the settings
(``include/config.py``, validated as for ``PIPELINE_TARGET=aws``). Every file of the package's
manifest goes to the key it has in the package, encrypted with SSE-KMS under that key, with its
sha256 in the object metadata — the same contract as ``include.artifact_upload``, so an
object deploy wrote is one an operator finds unchanged, and the other way round:

- an object whose metadata already carries the file's sha256 is skipped, so deploying an
  unchanged package uploads nothing;
- objects under ``dags/`` that the package no longer holds are deleted (the bucket is
  versioned, so they stay recoverable), because MWAA would keep parsing a DAG file that was
  renamed or removed; ``--keep-stale`` leaves them;
- ``--dry-run`` prints every PUT it would send (key, size, sha256) and calls no AWS API.

At the end it prints the S3 version ids of plugins.zip, requirements.txt and startup.sh: MWAA
reads those three at the version its environment names, so a change needs the environment
updated with the new ids.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# Run as a script: the repository root holds include/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from include.config import ConfigError, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent

MANIFEST = "manifest.json"
DAGS_PREFIX = "dags/"
# MWAA reads these at the object version its environment names (…S3ObjectVersion).
VERSIONED_BY_MWAA = {
    "plugins.zip": "PluginsS3ObjectVersion",
    "requirements.txt": "RequirementsS3ObjectVersion",
    "startup.sh": "StartupScriptS3ObjectVersion",
}


class DeployError(RuntimeError):
    """The package or the settings are not fit to deploy; the message names the file."""


@dataclass(frozen=True)
class PackagedFile:
    key: str
    path: Path
    size: int
    sha256: str


def read_package(package: Path) -> list[PackagedFile]:
    """The package's files, each checked against the manifest ``make package`` wrote."""
    manifest_path = package / MANIFEST
    if not manifest_path.is_file():
        raise DeployError(f"{manifest_path} not found: run make package first")
    manifest = json.loads(manifest_path.read_text())
    files = []
    for key, entry in sorted(manifest["files"].items()):
        path = package / key
        if not path.is_file():
            raise DeployError(f"{path} is in {MANIFEST} but missing: run make package again")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise DeployError(
                f"{path} changed after packaging (sha256 {digest[:12]}, manifest "
                f"{entry['sha256'][:12]}): run make package again"
            )
        files.append(PackagedFile(key, path, entry["size"], digest))
    listed = {file.key for file in files} | {MANIFEST}
    unlisted = sorted(
        path.relative_to(package).as_posix()
        for path in package.rglob("*")
        if path.is_file() and path.relative_to(package).as_posix() not in listed
    )
    if unlisted:
        raise DeployError(
            f"{package} holds files the manifest does not list: {', '.join(unlisted[:5])}"
        )
    return files


def deploy_settings(environ=None) -> tuple[str, str, str]:
    """``(bucket, kms_key_arn, region)`` from the aws settings, every bad variable named."""
    env = dict(os.environ if environ is None else environ)
    env["PIPELINE_TARGET"] = "aws"
    try:
        settings = load_settings(env)
    except ConfigError as error:
        raise DeployError(f"deploy needs the aws settings: {error}") from None
    return settings.aws.bucket, settings.aws.kms_key_arn, settings.aws.region


def upload(s3_client, bucket: str, file: PackagedFile, kms_key_arn: str) -> tuple[bool, str]:
    """PUT ``file`` unless the object already carries its sha256; ``(uploaded, version id)``."""
    from botocore.exceptions import ClientError

    try:
        head = s3_client.head_object(Bucket=bucket, Key=file.key)
        if head.get("Metadata", {}).get("sha256") == file.sha256:
            return False, head.get("VersionId", "")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
            raise
    response = s3_client.put_object(
        Bucket=bucket,
        Key=file.key,
        Body=file.path.read_bytes(),
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=kms_key_arn,
        Metadata={"sha256": file.sha256},
    )
    return True, response.get("VersionId", "")


def stale_dag_objects(s3_client, bucket: str, keys: set[str]) -> list[str]:
    """Keys under ``dags/`` in the bucket that the package does not hold."""
    stale = []
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=DAGS_PREFIX):
        stale.extend(item["Key"] for item in page.get("Contents", []) if item["Key"] not in keys)
    return sorted(stale)


def deploy(package: Path, *, dry_run: bool, keep_stale: bool, environ=None) -> dict:
    """Upload ``package``; returns counts and the MWAA object versions (empty on a dry run)."""
    files = read_package(package)
    bucket, kms_key_arn, region = deploy_settings(environ)
    if dry_run:
        for file in files:
            print(f"PUT s3://{bucket}/{file.key}  {file.size} bytes  sha256 {file.sha256}")
        print(
            f"dry run: {len(files)} PUTs at most (objects already holding the same sha256 are "
            f"skipped), SSE-KMS with {kms_key_arn}; stale objects under {DAGS_PREFIX} are "
            "not listed without calling AWS"
        )
        return {"uploaded": 0, "unchanged": 0, "deleted": 0, "versions": {}}

    import boto3

    s3_client = boto3.client("s3", region_name=region)
    uploaded = unchanged = 0
    versions = {}
    for file in files:
        sent, version = upload(s3_client, bucket, file, kms_key_arn)
        if sent:
            uploaded += 1
            print(f"PUT s3://{bucket}/{file.key}  {file.size} bytes  sha256 {file.sha256}")
        else:
            unchanged += 1
        if file.key in VERSIONED_BY_MWAA:
            versions[VERSIONED_BY_MWAA[file.key]] = version
    deleted = 0
    if not keep_stale:
        for key in stale_dag_objects(s3_client, bucket, {file.key for file in files}):
            s3_client.delete_object(Bucket=bucket, Key=key)
            deleted += 1
            print(f"DELETE s3://{bucket}/{key}  (no longer in the package)")
    print(
        f"deployed to s3://{bucket}: {uploaded} uploaded, {unchanged} unchanged, {deleted} deleted"
    )
    for setting, version in sorted(versions.items()):
        print(f"  {setting} = {version or '(bucket not versioned)'}")
    return {"uploaded": uploaded, "unchanged": unchanged, "deleted": deleted, "versions": versions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, required=True, help="e.g. build/mwaa")
    parser.add_argument("--dry-run", action="store_true", help="print the PUTs, call no AWS API")
    parser.add_argument(
        "--keep-stale", action="store_true", help="leave objects under dags/ the package lacks"
    )
    args = parser.parse_args(argv)
    try:
        deploy(args.package, dry_run=args.dry_run, keep_stale=args.keep_stale)
    except DeployError as error:
        print(f"deploy: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
