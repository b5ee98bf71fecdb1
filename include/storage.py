"""Lake storage with one narrow interface and two backends: local files and S3.

Following Metaflow's datastores: a few verbs, one implementation per URI scheme, and callers
that do not change between targets. Whole-object writes are atomic on both backends: locally
the bytes go to a temporary file beside the target and are renamed over it; an S3 PUT is atomic.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import NamedTuple, Protocol
from urllib.parse import urlparse


class LakeObject(NamedTuple):
    """One stored object as a listing gives it."""

    uri: str
    size: int
    modified: datetime  # when it was last written, timezone-aware UTC


class LakeStorage(Protocol):
    def write_bytes(self, uri: str, data: bytes) -> None: ...

    def read_bytes(self, uri: str) -> bytes: ...

    def exists(self, uri: str) -> bool: ...

    def list_uris(self, prefix_uri: str) -> list[str]:
        """Every object URI under ``prefix_uri``, sorted."""
        ...

    def list_objects(self, prefix_uri: str) -> list[LakeObject]:
        """Every object under ``prefix_uri`` with its size and modification time, sorted by URI."""
        ...


class LocalStorage:
    """``file://`` URIs on this machine."""

    @staticmethod
    def _path(uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ValueError(f"LocalStorage handles file:// URIs, got {uri!r}")
        return Path(parsed.path)

    def write_bytes(self, uri: str, data: bytes) -> None:
        path = self._path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def read_bytes(self, uri: str) -> bytes:
        return self._path(uri).read_bytes()

    def exists(self, uri: str) -> bool:
        return self._path(uri).exists()

    def list_uris(self, prefix_uri: str) -> list[str]:
        return [item.uri for item in self.list_objects(prefix_uri)]

    def list_objects(self, prefix_uri: str) -> list[LakeObject]:
        root = self._path(prefix_uri)
        if not root.exists():
            return []
        found = []
        for path in root.rglob("*"):
            try:
                info = path.stat()
            except FileNotFoundError:
                continue  # moved or deleted since the walk saw it (a commit, the inbox watcher)
            if S_ISREG(info.st_mode):
                # Spelled like every lake URI (f"{lake_root}/curated/…"), not Path.as_uri(), which
                # percent-encodes the "=" of ds= folders into URIs that would not match or read back.
                modified = datetime.fromtimestamp(info.st_mtime, UTC)
                found.append(LakeObject(f"file://{path.as_posix()}", info.st_size, modified))
        return sorted(found)


class S3Storage:
    """``s3://`` URIs; the boto3 client is created on first use, never at import."""

    def __init__(self, region_name: str | None = None, kms_key_arn: str | None = None):
        self._region_name = region_name
        self._kms_key_arn = kms_key_arn
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import boto3  # heavy import kept out of DAG parsing

            self._client = boto3.client("s3", region_name=self._region_name)
        return self._client

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"S3Storage handles s3://bucket/key URIs, got {uri!r}")
        return parsed.netloc, parsed.path.lstrip("/")

    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self._split(uri)
        extra = {}
        if self._kms_key_arn:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self._kms_key_arn}
        self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = self._split(uri)
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def exists(self, uri: str) -> bool:
        bucket, key = self._split(uri)
        response = self.client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(obj["Key"] == key for obj in response.get("Contents", []))

    def list_uris(self, prefix_uri: str) -> list[str]:
        return [item.uri for item in self.list_objects(prefix_uri)]

    def list_objects(self, prefix_uri: str) -> list[LakeObject]:
        bucket, prefix = self._split(prefix_uri)
        prefix = prefix.rstrip("/") + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        return sorted(
            LakeObject(f"s3://{bucket}/{obj['Key']}", obj["Size"], obj["LastModified"])
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        )


def storage_for(uri: str) -> LakeStorage:
    """The backend for ``uri``'s scheme, configured from settings on the aws target."""
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return LocalStorage()
    if scheme == "s3":
        from include.config import get_settings

        aws = get_settings().aws
        return S3Storage(
            region_name=aws.region if aws else None, kms_key_arn=aws.kms_key_arn if aws else None
        )
    raise ValueError(f"no lake storage for URI scheme {scheme!r} in {uri!r}")
