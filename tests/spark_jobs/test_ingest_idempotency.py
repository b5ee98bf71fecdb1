"""Idempotent, atomic commits: re-runs write the same bytes; a run killed at any point leaves the
previous partition readable and intact; the next run completes the job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from datetime import date
from pathlib import Path

import pytest
from lake_helpers import (
    REPO_ROOT,
    TEST_SALT,
    ingest_command,
    ingest_env,
    lake_paths,
    read_rows,
    sorted_rows_hash,
    tree_digest,
)

import spark_jobs.ingest as ingest
from include.datagen.churn import GeneratorConfig, generate
from spark_jobs.ingest import LocalFS, file_uri, run_ingest

DS = "2026-04-01"


class SimulatedKill(RuntimeError):
    pass


def make_landing(root: Path, rows: int, seed: int) -> Path:
    config = GeneratorConfig(
        out=root,
        start=date.fromisoformat(DS),
        rows_per_day=rows,
        rows_per_file=max(rows // 3, 1),
        chunk_rows=2000,
        seed=seed,
        fmt="mixed",
        corrupt_rate=0.05,
    )
    generate(config)
    return root


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    return make_landing(tmp_path_factory.mktemp("idem") / "landing", 4000, seed=3)


@pytest.fixture(scope="module")
def other_landing(tmp_path_factory) -> Path:
    return make_landing(tmp_path_factory.mktemp("idem-other") / "landing", 1500, seed=4)


def snapshot(lake: Path) -> dict:
    paths = lake_paths(lake, DS)
    return {
        "curated_rows": sorted_rows_hash(paths["curated"]),
        "quarantine_rows": sorted_rows_hash(paths["quarantine"]),
        "curated_files": tree_digest(paths["curated"]),
        "quarantine_files": tree_digest(paths["quarantine"]),
    }


def ingest_once(spark, spec, landing: Path, lake: Path):
    return run_ingest(
        spark, spec, landing_uri=str(landing), ds=DS, lake_root=str(lake), pii_salt=TEST_SALT
    )


@pytest.mark.e2e
def test_three_runs_write_identical_partitions(spark, spec, landing, tmp_path):
    lake = tmp_path / "lake"
    snapshots = []
    for _ in range(3):
        ingest_once(spark, spec, landing, lake)
        snapshots.append(snapshot(lake))
    assert snapshots[0] == snapshots[1] == snapshots[2]
    # The same bytes, file for file, and the manifest too (it holds no clock or run id).
    assert "_manifest.json" in snapshots[0]["curated_files"]
    rows = read_rows(lake_paths(lake, DS)["curated"])
    keys = [(r["customer_id"], r["snapshot_date"]) for r in rows]
    assert len(keys) == len(set(keys)) > 3000
    # No staging or trash is left behind.
    for zone in ("curated", "quarantine"):
        leftovers = [p for p in (lake / zone / "churn").iterdir() if p.name.startswith("_")]
        assert [p for p in leftovers if any(p.rglob("*"))] == []


@pytest.mark.e2e
@pytest.mark.parametrize("fail_on_call", [1, 2], ids=["before-any-commit", "between-commits"])
def test_a_failure_after_staging_keeps_the_previous_partition(
    spark, spec, landing, other_landing, tmp_path, monkeypatch, fail_on_call
):
    lake = tmp_path / "lake"
    ingest_once(spark, spec, landing, lake)
    before = snapshot(lake)

    calls = []
    real_commit = ingest.commit_partition

    def commit_then_die(fs, staged, target):
        calls.append(target)
        if len(calls) == fail_on_call:
            assert LocalFS.path(staged).is_dir()  # the new version is fully staged
            raise SimulatedKill(f"killed while committing {target}")
        real_commit(fs, staged, target)

    monkeypatch.setattr(ingest, "commit_partition", commit_then_die)
    with pytest.raises(SimulatedKill):
        ingest_once(spark, spec, other_landing, lake)
    monkeypatch.undo()

    after = snapshot(lake)
    # The curated partition (what downstream reads) is untouched and readable by Spark.
    assert after["curated_files"] == before["curated_files"]
    accepted = read_rows(lake_paths(lake, DS)["curated"])
    assert spark.read.parquet(str(lake_paths(lake, DS)["curated"])).count() == len(accepted)
    if fail_on_call == 1:
        assert after == before
    # The next run cleans up the staging the failed one left and writes the same bytes again.
    ingest_once(spark, spec, landing, lake)
    assert snapshot(lake) == before


def test_swap_exchanges_directories_atomically(tmp_path):
    target, staged = tmp_path / "ds=1", tmp_path / "_staging" / "ds=1"
    target.mkdir()
    (target / "old.parquet").write_text("old")
    staged.mkdir(parents=True)
    (staged / "new.parquet").write_text("new")
    LocalFS().swap_into_place(file_uri(staged), file_uri(target))
    assert [p.name for p in target.iterdir()] == ["new.parquet"]
    assert not staged.exists()
    assert not (tmp_path / "_trash").exists()


def test_fallback_swap_puts_the_old_partition_back_when_it_fails(tmp_path, monkeypatch):
    target, staged = tmp_path / "ds=1", tmp_path / "_staging" / "ds=1"
    target.mkdir()
    (target / "old.parquet").write_text("old")
    staged.mkdir(parents=True)
    (staged / "new.parquet").write_text("new")
    monkeypatch.setattr(ingest, "_exchange_directories", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old moved aside; now the new one cannot move in
            raise OSError("device went away")
        return real_rename(src, dst)

    monkeypatch.setattr(ingest.os, "rename", rename)
    with pytest.raises(OSError, match="device went away"):
        LocalFS().swap_into_place(file_uri(staged), file_uri(target))
    monkeypatch.undo()
    assert (target / "old.parquet").read_text() == "old"


def test_recover_restores_a_partition_a_killed_fallback_swap_left_aside(tmp_path):
    target = tmp_path / "ds=1"
    aside = tmp_path / "_trash" / "ds=1.deadbeef"
    aside.mkdir(parents=True)
    (aside / "old.parquet").write_text("old")
    LocalFS().recover(file_uri(target))
    assert (target / "old.parquet").read_text() == "old"
    assert not aside.exists()


# The S3 commit protocol is tested against a moto server in test_commit_protocol.py.


@pytest.mark.e2e
def test_killing_the_job_process_mid_write_keeps_the_previous_partition(
    spark, spec, other_landing, tmp_path
):
    lake = tmp_path / "lake"
    ingest_once(spark, spec, other_landing, lake)
    before = snapshot(lake)
    big = make_landing(tmp_path / "big", 120_000, seed=5)

    # A SIGKILLed JVM cannot delete its blockmgr-* and spark-* directories: keep them here, not
    # in /tmp, where this test left three per run (Spark's local dirs and the JVM's temp dir).
    spark_local = tmp_path / "spark-local"
    spark_local.mkdir()
    env = ingest_env(
        SPARK_LOCAL_DIRS=str(spark_local), JDK_JAVA_OPTIONS=f"-Djava.io.tmpdir={spark_local}"
    )
    command = ingest_command(str(big), DS, lake.as_uri())
    # Its own process group: the kill reaches the Python driver and its JVM together.
    job = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    staging = [lake / zone / "churn" / "_staging" for zone in ("curated", "quarantine")]
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and job.poll() is None:
            if any(p.is_dir() and any(p.rglob("*")) for p in staging):
                break
            time.sleep(0.01)
        assert job.poll() is None, "the job ended before it was killed"
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL
    assert any(spark_local.glob("blockmgr-*"))  # the killed JVM's, where it was put
    assert any(p.exists() for p in staging)  # killed mid-write, not before it
    assert snapshot(lake) == before
    # The next run clears the dead run's staging and commits its own partition.
    ingest_once(spark, spec, other_landing, lake)
    assert snapshot(lake) == before
    assert not any(p.exists() and any(p.rglob("*")) for p in staging)
    shutil.rmtree(big, ignore_errors=True)
