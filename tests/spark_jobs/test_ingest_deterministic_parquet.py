"""Byte-identical re-runs across processes: the same input gives the same Parquet bytes, so the
content-addressed file names and the manifest do not change.

parquet-mr writes each column chunk's encoding list in an order that differs from one JVM to
the next; the job sorts those lists in place (``canonical_parquet_footer``). Within one JVM the
order happens to repeat, so only a run in a second process shows the difference.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lake_helpers import (
    REPO_ROOT,
    TEST_SALT,
    csv_text,
    ingest_command,
    ingest_env,
    lake_paths,
    record,
    tree_digest,
)

import spark_jobs.ingest as ingest
from spark_jobs.ingest import (
    _ENCODINGS_PATH,
    LocalFS,
    _Thrift,
    canonical_parquet_footer,
    canonicalize_parquet,
    file_uri,
    run_ingest,
)

DS = "2026-06-01"


def _footer(path: Path) -> bytes:
    data = path.read_bytes()
    length = int.from_bytes(data[-8:-4], "little")
    return data[-8 - length : -8]


def _encodings(footer: bytes) -> list[list[bytes]]:
    reader = _Thrift(footer)
    reader.struct()
    return [[footer[start:end] for start, end in items] for items in reader.lists]


def test_encoding_lists_are_sorted_in_place(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table({"a": ["x", "y", None] * 10, "b": [1, 2, 3] * 10})
    pq.write_table(table, path, use_dictionary=True)
    footer = _footer(path)
    lists = _encodings(footer)
    assert _ENCODINGS_PATH == (4, 1, 3, 2)
    assert len(lists) == 2 and all(len(items) >= 2 for items in lists)
    # Reverse every list, as another JVM might have written it.
    shuffled = bytearray(footer)
    reader = _Thrift(footer)
    reader.struct()
    for items in reader.lists:
        first, last = items[0][0], items[-1][1]
        shuffled[first:last] = b"".join(footer[s:e] for s, e in reversed(items))
    assert bytes(shuffled) != footer or all(len(set(i)) == 1 for i in lists)
    canonical = canonical_parquet_footer(bytes(shuffled))
    assert canonical == canonical_parquet_footer(footer)
    assert len(canonical) == len(footer)
    for items in _encodings(canonical):
        assert items == sorted(items, key=lambda chunk: chunk[0])
    # The patched file still reads.
    data = path.read_bytes()
    patched = tmp_path / "p.parquet"
    patched.write_bytes(data[: -8 - len(footer)] + canonical + data[-8:])
    assert pq.read_table(patched).equals(table)


def _shuffled_file(tmp_path: Path) -> tuple[bytes, bytes]:
    """A Parquet file with its encoding lists reversed, and the same file canonical."""
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"a": ["x", "y", None] * 10}), path, use_dictionary=True)
    data = path.read_bytes()
    footer = _footer(path)
    reader = _Thrift(footer)
    reader.struct()
    shuffled = bytearray(footer)
    for items in reader.lists:
        shuffled[items[0][0] : items[-1][1]] = b"".join(footer[s:e] for s, e in reversed(items))
    head, tail = data[: -8 - len(footer)], data[-8:]
    return head + bytes(shuffled) + tail, head + canonical_parquet_footer(footer) + tail


def test_canonical_on_local_files_and_s3_objects_alike(tmp_path, start_moto_server, monkeypatch):
    shuffled, canonical = _shuffled_file(tmp_path)
    assert shuffled != canonical
    local = tmp_path / "part-00000.parquet"
    local.write_bytes(shuffled)
    canonicalize_parquet(LocalFS(), file_uri(local))
    assert local.read_bytes() == canonical
    (tmp_path / "not-parquet").write_bytes(b"alpha")
    canonicalize_parquet(LocalFS(), file_uri(tmp_path / "not-parquet"))  # left as it is
    assert (tmp_path / "not-parquet").read_bytes() == b"alpha"

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # pragma: allowlist secret
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", start_moto_server())
    s3 = ingest.S3FS()
    s3.client.create_bucket(
        Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    s3.write_bytes("s3://lake/staged/part-00000.parquet", shuffled)
    canonicalize_parquet(s3, "s3://lake/staged/part-00000.parquet")
    with s3.open("s3://lake/staged/part-00000.parquet") as handle:
        assert handle.read() == canonical


@pytest.mark.e2e
def test_a_run_in_another_process_writes_the_same_bytes(spark, spec, tmp_path):
    day = tmp_path / "landing" / "churn" / f"ds={DS}"
    day.mkdir(parents=True)
    records = [record(n, DS, device_model=f"Model {n % 7}") for n in range(300)]
    records.append(record(5, DS, tenure_months="x"))  # a quarantine file too
    (day / "part-00000.csv").write_text(csv_text(records))
    lake = tmp_path / "lake"
    run_ingest(spark, spec, landing_uri=str(day), ds=DS, lake_root=str(lake), pii_salt=TEST_SALT)
    paths = lake_paths(lake, DS)
    before = {zone: tree_digest(paths[zone]) for zone in paths}
    env = ingest_env()
    process = subprocess.run(
        ingest_command(str(day), DS, str(lake)),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    after = {zone: tree_digest(paths[zone]) for zone in paths}
    assert after == before
    assert any(name.endswith(".parquet") for name in before["quarantine"])
