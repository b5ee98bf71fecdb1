"""The Deequ job on real local Spark. The Deequ jar is not here (Maven is unreachable), so the job
must stop with exit code 2 and say the jar is missing, writing no result; the parts that need only
Spark (reading exactly the manifest's files, the schema check, sampling offending keys, the
result document) run for real."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include" / "dq"))

from dq_partitions import DS, clean_frame, write_partition

from include.dq.deequ_checks import build_deequ_checks, deequ_constraint
from include.dq.gate import load_dataset_rules
from include.dq.results import GateResult
from include.dq.rules import resolve_rules
from spark_jobs import quality_deequ


@pytest.fixture(scope="module")
def churn_rules():
    return load_dataset_rules("churn")


@pytest.fixture
def partition(tmp_path, churn_rules):
    """A curated partition with two planted violations, and the compiled checks for it."""
    types = churn_rules.curated_types()
    frame = clean_frame(types)
    frame.loc[8, "region"] = "mars"
    frame.loc[5, "customer_id"] = frame.loc[4, "customer_id"]
    lake = (tmp_path / "lake").as_uri()
    write_partition(lake, frame, types)
    rules = resolve_rules(churn_rules.rules, DS, None)
    checks = build_deequ_checks(rules, dataset="churn", ds=DS, key_columns=churn_rules.key_columns)
    checks_path = tmp_path / "deequ_checks.json"
    checks_path.write_text(json.dumps(checks))
    return {"lake": lake, "checks_uri": checks_path.as_uri(), "rules": {r.id: r for r in rules}}


def job_args(partition, ds: str = DS) -> list[str]:
    return [
        "--checks-uri", partition["checks_uri"],
        "--lake-root", partition["lake"],
        "--dataset", "churn",
        "--ds", ds,
    ]  # fmt: skip


def test_without_the_deequ_jar_the_job_fails_saying_so(spark, partition, capsys):
    assert quality_deequ.deequ_on_classpath(spark) is False

    exit_code = quality_deequ.main(job_args(partition))

    assert exit_code == quality_deequ.EXIT_DEEQU_MISSING == 2
    err = capsys.readouterr().err
    assert "the Deequ jar is missing from the Spark classpath" in err
    assert "com.amazon.deequ.VerificationSuite not found" in err
    assert "deequ-2.0.8-spark-3.5.jar" in err
    result = (
        Path(partition["lake"].removeprefix("file://"))
        / "reports"
        / "churn"
        / "quality"
        / f"ds={DS}"
        / "result.json"
    )
    assert not result.exists()


def test_checks_compiled_for_another_partition_are_refused(partition):
    with pytest.raises(
        quality_deequ.DeequJobError,
        match="compiled for churn ds=2026-01-10, not churn ds=2026-01-11",
    ):
        quality_deequ.main(job_args(partition, ds="2026-01-11"))


def test_spark_reads_exactly_the_manifest_files_with_the_spec_types(spark, partition):
    manifest_uri, files = quality_deequ.partition_files(partition["lake"], "churn", DS)
    assert manifest_uri.endswith(f"curated/churn/ds={DS}/_manifest.json")
    assert [f.rsplit("/", 1)[1] for f in files] == [
        "part-00000.snappy.parquet",
        "part-00001.snappy.parquet",
    ]
    frame = spark.read.parquet(*files)
    assert frame.count() == 40  # not 41: the stray file is not listed

    schema = deequ_constraint(partition["rules"]["schema"])
    outcome = quality_deequ._schema_outcome(frame, schema["args"][0])
    assert outcome == {
        "status": "pass",
        "observed": {"missing_columns": [], "unexpected_columns": [], "wrong_types": {}},
    }
    wrong = quality_deequ._schema_outcome(
        frame.withColumn("sessions", frame.sessions.cast("bigint")), schema["args"][0]
    )
    assert wrong["status"] == "fail"
    assert wrong["observed"]["wrong_types"] == {"sessions": "bigint"}


def test_offending_rows_are_counted_and_sampled_by_key(spark, partition):
    _, files = quality_deequ.partition_files(partition["lake"], "churn", DS)
    frame = spark.read.parquet(*files)
    keys = ["customer_id", "snapshot_date"]

    region = quality_deequ._offending(
        frame, deequ_constraint(partition["rules"]["allowed_values_region"]), keys, 5
    )
    assert region == {
        "unexpected_count": 1,
        "offending_keys": [{"customer_id": "C100000008", "snapshot_date": DS}],
        "unexpected_values": ["mars"],
    }
    duplicates = quality_deequ._offending(
        frame, deequ_constraint(partition["rules"]["primary_key_unique"]), keys, 5
    )
    assert duplicates["unexpected_count"] == 2
    assert duplicates["offending_keys"] == [{"customer_id": "C100000004", "snapshot_date": DS}] * 2


def test_result_document_is_the_gates_result_format():
    outcome = {
        **quality_deequ._base_outcome(
            {
                "rule": "completeness_plan",
                "kind": "completeness",
                "column": "plan",
                "severity": "error",
                "expected": {"min_fraction": 1.0},
            }
        ),
        "status": "fail",
        "observed": 0.975,
    }
    warn = {
        **quality_deequ._base_outcome(
            {
                "rule": "mean_churned",
                "kind": "mean",
                "column": "churned",
                "severity": "warn",
                "expected": {},
            }
        )
    }
    document = quality_deequ.result_document(
        [outcome, warn], dataset="churn", ds=DS, partition={"files": 2}
    )

    result = GateResult.from_dict(document)
    assert result.passed is False
    assert result.as_dict() == document
    assert "completeness_plan (completeness) on plan: observed 0.975" in result.failure_message()
