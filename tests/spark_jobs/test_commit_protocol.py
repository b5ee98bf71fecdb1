"""The partition commit protocol and its readers: content-addressed file names, the manifest as
the commit point on S3 (against a moto server on 127.0.0.1), and ``partition_files`` reading
exactly what a manifest names on both targets."""

from __future__ import annotations

import hashlib
import json

import pytest

import spark_jobs.ingest as ingest
from spark_jobs.ingest import (
    MANIFEST_NAME,
    IngestError,
    LocalFS,
    file_uri,
    finalize_output_files,
    partition_files,
)

REGION = "eu-west-1"
BUCKET = "lake"
TARGET = f"s3://{BUCKET}/curated/churn/ds=2026-01-01"
STAGING = f"s3://{BUCKET}/curated/churn/_staging/ds=2026-01-01"


@pytest.fixture(scope="module")
def moto_endpoint(start_moto_server):
    """One moto server for this module, on loopback only."""
    return start_moto_server()


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    """An ``S3FS`` on a fresh bucket of the moto server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # pragma: allowlist secret
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    fs = ingest.S3FS()
    assert fs.client.meta.endpoint_url == moto_endpoint  # never real AWS
    fs.client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    yield fs
    fs.delete_tree(f"s3://{BUCKET}/curated")
    fs.client.delete_bucket(Bucket=BUCKET)


def content_name(index: int, body: bytes) -> str:
    return f"part-{index:05d}-{hashlib.sha256(body).hexdigest()[:16]}.snappy.parquet"


def stage_version(fs, staged: str, bodies: list[bytes], version: int) -> dict[str, bytes]:
    """Stage data files and a manifest naming them, as ``run_ingest`` does; returns name → body."""
    files = {content_name(i, body): body for i, body in enumerate(bodies)}
    for name, body in files.items():
        fs.write_bytes(f"{staged}/{name}", body)
    manifest = {
        "version": version,
        "outputs": {"curated": {"uri": TARGET, "files": [{"path": n} for n in sorted(files)]}},
    }
    fs.write_bytes(f"{staged}/{MANIFEST_NAME}", json.dumps(manifest).encode())
    return files


def read_partition(fs, partition: str) -> dict[str, bytes]:
    out = {}
    for uri in partition_files(fs, partition):
        with fs.open(uri) as body:
            out[uri.rsplit("/", 1)[-1]] = body.read()
    return out


def test_a_reader_sees_the_old_or_the_new_version_at_every_step_of_an_s3_commit(s3, monkeypatch):
    old = stage_version(s3, f"{STAGING}/a", [b"old0", b"old1"], 1)
    s3.swap_into_place(f"{STAGING}/a", TARGET)
    assert read_partition(s3, TARGET) == old
    # The new version shares one file with the old one (same bytes, same name) and drops one.
    new = stage_version(s3, f"{STAGING}/b", [b"old0", b"new1", b"new2"], 2)

    seen, steps = [], []
    real_copy, real_delete = s3.copy, s3.delete

    def observe(step: str) -> None:
        steps.append(step)
        seen.append(read_partition(s3, TARGET))

    def copy(src, dst):
        real_copy(src, dst)
        observe(f"copy {dst.rsplit('/', 1)[-1]}")

    def delete(uri):
        real_delete(uri)
        observe(f"delete {uri.rsplit('/', 1)[-1]}")

    monkeypatch.setattr(s3, "copy", copy)
    monkeypatch.setattr(s3, "delete", delete)
    s3.swap_into_place(f"{STAGING}/b", TARGET)
    monkeypatch.undo()

    assert all(version in (old, new) for version in seen), steps
    manifest_step = steps.index(f"copy {MANIFEST_NAME}")
    assert all(version == old for version in seen[:manifest_step])
    assert all(version == new for version in seen[manifest_step:])
    # The shared file was never copied over itself; the dropped one went after the manifest.
    assert f"copy {content_name(0, b'old0')}" not in steps
    assert steps.index(f"delete {content_name(1, b'old1')}") > manifest_step
    assert s3.list_tree(TARGET) == sorted([MANIFEST_NAME, *new])
    assert s3.list_tree(f"s3://{BUCKET}/curated/churn/_staging") == []


def test_an_s3_commit_killed_before_its_manifest_leaves_the_old_version_readable(s3, monkeypatch):
    staging = STAGING
    old = stage_version(s3, f"{staging}/a", [b"old0"], 1)
    s3.swap_into_place(f"{staging}/a", TARGET)
    new = stage_version(s3, f"{staging}/b", [b"new0", b"new1"], 2)
    real_copy = s3.copy

    def copy_until_manifest(src, dst):
        if dst.endswith(MANIFEST_NAME):
            raise RuntimeError("killed before the commit point")
        real_copy(src, dst)

    monkeypatch.setattr(s3, "copy", copy_until_manifest)
    with pytest.raises(RuntimeError, match="commit point"):
        s3.swap_into_place(f"{staging}/b", TARGET)
    monkeypatch.undo()
    # The new files are there beside the old ones, but no reader is shown them.
    assert set(new) <= set(s3.list_tree(TARGET))
    assert read_partition(s3, TARGET) == old
    # The next run stages again and completes; the orphans of the killed one go.
    ingest.clear_stale_staging(s3, f"s3://{BUCKET}/curated", "churn", "ds=2026-01-01")
    again = stage_version(s3, f"{staging}/c", [b"new0", b"new1"], 2)
    s3.swap_into_place(f"{staging}/c", TARGET)
    assert read_partition(s3, TARGET) == again == new
    assert s3.list_tree(TARGET) == sorted([MANIFEST_NAME, *new])


def test_partition_files_refuses_an_uncommitted_partition_naming_it(s3, tmp_path):
    s3.write_bytes(f"{TARGET}/{content_name(0, b'x')}", b"x")
    with pytest.raises(IngestError, match=r"ds=2026-01-01/_manifest.json does not exist"):
        partition_files(s3, TARGET)
    local = tmp_path / "curated" / "churn" / "ds=2026-01-01"
    local.mkdir(parents=True)
    (local / MANIFEST_NAME).write_text(json.dumps({"outputs": {"quarantine": {"files": []}}}))
    with pytest.raises(IngestError, match="no files for zone 'curated'"):
        partition_files(LocalFS(), file_uri(local))


def test_output_files_are_named_after_their_content(tmp_path):
    staged = tmp_path / "staged"
    (staged / "split=train").mkdir(parents=True)
    spark_names = {
        "part-00000-1b2c-c000.snappy.parquet": b"alpha",
        "part-00001-1b2c-c000.snappy.parquet": b"beta",
        "split=train/part-00000-9f9f-c000.snappy.parquet": b"gamma",
    }
    for name, body in spark_names.items():
        (staged / name).write_bytes(body)
    (staged / "_SUCCESS").write_bytes(b"")
    (staged / ".part-00000-1b2c-c000.snappy.parquet.crc").write_bytes(b"crc")

    entries = finalize_output_files(LocalFS(), file_uri(staged), {"part-00000": 7})
    expected = {
        content_name(0, b"alpha"): (b"alpha", 7),
        content_name(1, b"beta"): (b"beta", 0),
        f"split=train/{content_name(0, b'gamma')}": (b"gamma", 7),
    }
    assert [e["path"] for e in entries] == sorted(expected)
    for entry in entries:
        body, rows = expected[entry["path"]]
        assert (staged / entry["path"]).read_bytes() == body
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()
        assert (entry["size_bytes"], entry["rows"]) == (len(body), rows)
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == (
        sorted(expected)
    )


def test_unexpected_staged_files_fail_naming_them(tmp_path):
    (tmp_path / "notes.txt").write_text("?")
    with pytest.raises(IngestError, match=r"unexpected file 'notes\.txt'"):
        finalize_output_files(LocalFS(), file_uri(tmp_path))
