"""PII never leaves the landing zone in the clear: not in curated data, not in quarantine, not in
the manifest, not in the job's logs (Spark's own included); and the salt stays secret too."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
from datetime import date

import pytest
from lake_helpers import (
    REPO_ROOT,
    TEST_SALT,
    all_text,
    ingest_command,
    ingest_env,
    lake_paths,
    planted_pii,
    read_rows,
)

from include.datagen.churn import GeneratorConfig, generate
from spark_jobs.ingest import IngestError, resolve_pii_salt

DS = "2026-05-01"


@pytest.fixture(scope="module")
def job_run(tmp_path_factory):
    """The ingest entry point as the local runner starts it: its own process, logs captured."""
    root = tmp_path_factory.mktemp("pii")
    landing = root / "landing"
    generate(
        GeneratorConfig(
            out=landing,
            start=date.fromisoformat(DS),
            rows_per_day=3000,
            rows_per_file=1000,
            chunk_rows=1000,
            seed=21,
            fmt="mixed",
            corrupt_rate=0.08,
        )
    )
    lake = root / "lake"
    # Verbose on purpose: every plan, task and file Spark logs is searched for leaks.
    env = ingest_env(HEADRACE_SPARK_LOG_LEVEL="INFO")
    process = subprocess.run(
        # --JOB_RUN_ID is what Glue adds to every run: ignored, not refused.
        ingest_command(str(landing), DS, lake.as_uri(), "--JOB_RUN_ID", "jr_0123"),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return process, landing, lake


@pytest.mark.e2e
def test_the_job_succeeds_and_prints_its_summary(job_run):
    process, _, _ = job_run
    assert process.returncode == 0, process.stderr[-3000:]
    summary = json.loads(process.stdout.strip().splitlines()[-1])
    assert summary["rows_read"] == summary["rows_accepted"] + summary["rows_quarantined"]
    assert summary["rows_quarantined"] > 200
    assert summary["manifest_uri"].endswith(f"curated/churn/ds={DS}/_manifest.json")
    assert "ignoring platform arguments: --JOB_RUN_ID" in process.stderr
    assert len(process.stderr) > 10_000  # INFO logging really was on


@pytest.mark.e2e
def test_no_planted_pii_or_salt_anywhere(job_run):
    process, landing, lake = job_run
    planted = planted_pii(landing)
    assert len(planted) > 8000  # ~3 per customer, corrupted lines included
    paths = lake_paths(lake, DS)
    places = {
        "curated": all_text(read_rows(paths["curated"])),
        "quarantine": all_text(read_rows(paths["quarantine"])),
        "manifest": (paths["curated"] / "_manifest.json").read_text(),
        "logs": process.stdout + process.stderr,
    }
    for place, text in places.items():
        leaked = sorted(value.decode() for value in planted if value.decode() in text)
        assert leaked == [], f"PII in {place}: {leaked[:5]}"
        assert TEST_SALT not in text, f"salt in {place}"


@pytest.mark.e2e
def test_pii_is_hashed_masked_and_dropped_as_the_spec_says(job_run):
    _, landing, lake = job_run
    curated = {r["customer_id"]: r for r in read_rows(lake_paths(lake, DS)["curated"])}
    text = (landing / "churn" / f"ds={DS}" / "part-00000.csv").read_text(errors="replace")
    first = next(
        r
        for r in csv.DictReader(io.StringIO(text))
        if r["customer_id"] in curated and r["email"] and r["phone"]
    )
    row = curated[first["customer_id"]]
    expected = hashlib.sha256((TEST_SALT + first["email"].lower()).encode()).hexdigest()
    assert row["email_sha256"] == expected
    assert row["phone"] == "+*-***-***-**" + first["phone"][-2:]
    assert "national_id" not in row and "email" not in row
    # Quarantined records carry the same hash (joinable) and never the id.
    quarantine = read_rows(lake_paths(lake, DS)["quarantine"])
    line_level = ("malformed_record", "bad_encoding", "header_mismatch")
    parsed = [json.loads(q["raw_record"]) for q in quarantine if q["reason"] not in line_level]
    assert parsed and all(p.get("national_id") in (None, "[dropped]") for p in parsed)
    assert all(len(p["email_sha256"]) == 64 for p in parsed if p.get("email_sha256"))


def test_salt_from_the_environment():
    assert resolve_pii_salt("MY_SALT", None, {"MY_SALT": "s" * 32}) == "s" * 32
    with pytest.raises(IngestError, match="environment variable MY_SALT is missing or shorter"):
        resolve_pii_salt("MY_SALT", None, {"MY_SALT": "short"})
    with pytest.raises(IngestError, match="exactly one of"):
        resolve_pii_salt(None, None, {})
    with pytest.raises(IngestError, match="exactly one of"):
        resolve_pii_salt("A", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x", {})


def test_salt_from_secrets_manager(monkeypatch):
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        import boto3

        client = boto3.client("secretsmanager", region_name="eu-west-1")
        plain = client.create_secret(Name="headrace/pii-salt", SecretString="p" * 40)["ARN"]
        wrapped = client.create_secret(
            Name="headrace/pii-salt-json", SecretString=json.dumps({"pii_salt": "j" * 40})
        )["ARN"]
        assert resolve_pii_salt(None, plain) == "p" * 40
        assert resolve_pii_salt(None, wrapped) == "j" * 40
        missing = plain.replace("pii-salt", "nope")
        with pytest.raises(IngestError, match="cannot read the PII salt secret") as raised:
            resolve_pii_salt(None, missing)
        assert "p" * 40 not in str(raised.value)
