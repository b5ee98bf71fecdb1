from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.config import LAKE_ZONES, load_settings
from include.lake import initialize_lake
from include.storage import LocalStorage, S3Storage, storage_for


def test_initialize_lake_creates_every_zone_and_is_idempotent(tmp_path):
    settings = load_settings({"HEADRACE_LAKE_ROOT": tmp_path.as_uri()})
    first = initialize_lake(settings)
    assert sorted(first["created_zones"]) == sorted(LAKE_ZONES)
    for zone in LAKE_ZONES:
        assert json.loads((tmp_path / zone / "_ZONE.json").read_text()) == {"zone": zone}
    descriptor_bytes = (tmp_path / "_lake.json").read_bytes()

    second = initialize_lake(settings)
    assert second["created_zones"] == []
    assert (tmp_path / "_lake.json").read_bytes() == descriptor_bytes
    assert json.loads(descriptor_bytes)["zones"]["curated"] == f"{tmp_path.as_uri()}/curated"


def test_local_write_is_atomic_when_the_writer_fails(tmp_path, monkeypatch):
    storage = LocalStorage()
    target = tmp_path / "zone" / "object.json"
    storage.write_bytes(target.as_uri(), b"old")

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr("include.storage.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        storage.write_bytes(target.as_uri(), b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["object.json"]  # no temp file left


def test_storage_for_refuses_unknown_schemes():
    with pytest.raises(ValueError, match="no lake storage for URI scheme 'gs'"):
        storage_for("gs://bucket/x")


def test_s3_storage_round_trip_against_moto(moto_s3):
    storage = S3Storage(region_name="eu-west-1")
    uri = f"s3://{moto_s3}/lake/reports/a.json"
    assert not storage.exists(uri)
    storage.write_bytes(uri, b'{"a": 1}')
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == b'{"a": 1}'
    storage.write_bytes(f"s3://{moto_s3}/lake/reports/sub/b.json", b"{}")
    assert storage.list_uris(f"s3://{moto_s3}/lake/reports") == [
        f"s3://{moto_s3}/lake/reports/a.json",
        f"s3://{moto_s3}/lake/reports/sub/b.json",
    ]
    # A prefix that merely starts the same is not listed as inside the folder.
    assert storage.list_uris(f"s3://{moto_s3}/lake/rep") == []


def test_local_list_uris(tmp_path: Path):
    storage = LocalStorage()
    storage.write_bytes((tmp_path / "b" / "2.txt").as_uri(), b"2")
    storage.write_bytes((tmp_path / "a.txt").as_uri(), b"1")
    assert storage.list_uris(tmp_path.as_uri()) == [
        (tmp_path / "a.txt").as_uri(),
        (tmp_path / "b" / "2.txt").as_uri(),
    ]


def test_local_listing_of_a_partition_reads_back(tmp_path: Path):
    """Listed URIs are spelled like lake URIs (``ds=``, not ``ds%3D``) and can be read."""
    storage = LocalStorage()
    uri = f"file://{tmp_path}/curated/churn/ds=2026-01-07/_manifest.json"
    storage.write_bytes(uri, b"{}")
    (listed,) = storage.list_uris(f"file://{tmp_path}/curated/churn")
    assert listed == uri
    assert storage.read_bytes(listed) == b"{}"
