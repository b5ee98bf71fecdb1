"""Glue Data Quality request bodies: each validates against botocore's model and carries the
settings; the partition a run reads holds exactly the manifest's files (on a moto server); results
map back to rules by their DQDL text."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest

from include.aws_validation import RequestValidationError, validate_request
from include.config import DATASETS_DIR, load_settings
from include.dq import glue_data_quality as gdq
from include.dq.dqdl import compile_rulesets
from include.dq.gate import GateInputError
from include.dq.rules import resolve_rules
from include.job_tags import job_tags

AWS_ENV = {
    "PIPELINE_TARGET": "aws",
    "AWS_REGION": "eu-west-1",
    "HEADRACE_BUCKET": "headrace-test-lake",
    "HEADRACE_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-sagemaker",
    "HEADRACE_GLUE_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-glue",
    "HEADRACE_EMR_SERVERLESS_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-emr",
    "HEADRACE_KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    "HEADRACE_SUBNET_IDS": "subnet-0123456789abcdef0",
    "HEADRACE_SECURITY_GROUP_IDS": "sg-0123456789abcdef0",
    "HEADRACE_PII_SALT_SECRET_ARN": (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:headrace/pii-salt-AbCdEf"
    ),
}
SETTINGS = load_settings(AWS_ENV)
DS = "2026-01-10"


def churn_with_capacity(folder: Path, capacity: dict) -> Path:
    """A copy of the churn spec in ``folder`` with ``capacity`` as its capacity block."""
    import yaml

    raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    path = folder / "churn.yaml"
    path.write_text(yaml.safe_dump({**raw, "capacity": capacity}))
    return path


@pytest.fixture(scope="module")
def rulesets(churn_rules):
    rules = resolve_rules(churn_rules.rules, DS, 1000)
    return rules, compile_rulesets(rules)


def test_catalog_table_and_partition_over_the_curated_zone(churn_rules):
    table = gdq.build_curated_table_request(SETTINGS, churn_rules)
    validate_request("glue", "CreateTable", table)
    descriptor = table["TableInput"]["StorageDescriptor"]
    assert table["DatabaseName"] == "headrace" and table["TableInput"]["Name"] == "churn_curated"
    assert descriptor["Location"] == "s3://headrace-test-lake/lake/curated/churn/"
    assert {"Name": "tenure_months", "Type": "int"} in descriptor["Columns"]
    assert {"Name": "event_ts", "Type": "timestamp"} in descriptor["Columns"]
    assert table["TableInput"]["PartitionKeys"] == [{"Name": "ds", "Type": "string"}]

    staged = f"s3://headrace-test-lake/lake/reports/churn/quality/ds={DS}/glue-input/abc"
    partition = gdq.build_partition_request("CreatePartition", churn_rules, DS, staged)
    assert partition["PartitionInput"]["Values"] == [DS]
    assert partition["PartitionInput"]["StorageDescriptor"]["Location"] == f"{staged}/"


def test_rulesets_per_partition_and_severity(rulesets):
    _, compiled = rulesets
    create = gdq.build_create_ruleset_request(SETTINGS, "churn", DS, compiled["error"])
    assert create["Name"] == f"headrace-churn-ds-{DS}-error"
    assert create["Ruleset"] == compiled["error"].text
    assert create["TargetTable"] == {"DatabaseName": "headrace", "TableName": "churn_curated"}
    assert create["DataQualitySecurityConfiguration"].startswith("headrace-kms-")
    update = gdq.build_update_ruleset_request("churn", DS, compiled["error"])
    # Same text, same description: an unchanged ruleset needs no update.
    assert update["Description"] == create["Description"]
    other = gdq.build_update_ruleset_request("churn", DS, compiled["warn"])
    assert other["Description"] != create["Description"]


def test_rulesets_carry_the_runs_cost_allocation_tags(rulesets):
    # StartDataQualityRulesetEvaluationRun takes no tags: the rulesets carry the run's.
    _, compiled = rulesets
    run_id = "scheduled__2026-01-07T00:00:00+00:00"
    tags = job_tags("churn", dag_id="churn_validation", run_id=run_id)
    create = gdq.build_create_ruleset_request(SETTINGS, "churn", DS, compiled["warn"], tags)
    validate_request("glue", "CreateDataQualityRuleset", create)
    assert create["Tags"] == {
        "project": "headrace",
        "dataset": "churn",
        "dag": "churn_validation",
        "run": run_id,
        "severity": "warn",
    }
    # Without the run's (a caller that has none), the project, dataset and severity remain.
    bare = gdq.build_create_ruleset_request(SETTINGS, "churn", DS, compiled["error"])
    assert bare["Tags"] == {"project": "headrace", "dataset": "churn", "severity": "error"}


def test_evaluation_run_reads_one_partition_with_a_deterministic_token(rulesets):
    body = gdq.build_start_evaluation_run_request(
        SETTINGS,
        "churn",
        DS,
        ["headrace-churn-ds-2026-01-10-error", "headrace-churn-ds-2026-01-10-warn"],
        client_token="churn-validation-quality-gate-run-key",
        results_prefix="s3://headrace-test-lake/lake/reports/churn/quality/ds=2026-01-10/glue-row-level/",
        timeout=timedelta(minutes=45),
    )
    assert body["DataSource"]["GlueTable"]["AdditionalOptions"] == {
        "pushDownPredicate": f"ds='{DS}'"
    }
    assert body["Role"] == AWS_ENV["HEADRACE_GLUE_ROLE_ARN"]
    assert body["Timeout"] == 45
    assert body["ClientToken"] == "churn-validation-quality-gate-run-key"
    # Today's size unless the dataset's capacity says otherwise.
    assert body["NumberOfWorkers"] == 2


def test_evaluation_run_carries_the_datasets_workers(tmp_path):
    from include.config import dataset_capacity

    churn_with_capacity(
        tmp_path,
        {"quality": {"max_runtime_minutes": 30, "glue_data_quality": {"number_of_workers": 12}}},
    )
    quality = dataset_capacity("churn", tmp_path).quality
    body = gdq.build_start_evaluation_run_request(
        SETTINGS,
        "churn",
        DS,
        ["headrace-churn-ds-2026-01-10-error"],
        client_token="churn-validation-quality-gate-run-key",
        results_prefix="s3://headrace-test-lake/lake/reports/churn/quality/ds=2026-01-10/x/",
        timeout=timedelta(minutes=quality.max_runtime_minutes),
        number_of_workers=quality.glue_data_quality_workers,
    )
    validate_request("glue", "StartDataQualityRulesetEvaluationRun", body)
    assert (body["NumberOfWorkers"], body["Timeout"]) == (12, 30)


def test_too_few_glue_data_quality_workers_fail_naming_the_spec_and_field(tmp_path):
    from include.config import dataset_capacity
    from spark_jobs.dataset_spec import SpecError

    churn_with_capacity(tmp_path, {"quality": {"glue_data_quality": {"number_of_workers": 1}}})
    with pytest.raises(SpecError) as raised:
        dataset_capacity("churn", tmp_path)
    assert raised.value.problems == [
        "capacity.quality.glue_data_quality.number_of_workers: must be an integer >= 2, got 1"
    ]
    assert f"{tmp_path / 'churn.yaml'}: capacity.quality.glue_data_quality" in str(raised.value)


def test_a_bad_body_fails_naming_the_parameter():
    with pytest.raises(RequestValidationError, match="ClientToken"):
        gdq.build_start_evaluation_run_request(
            SETTINGS,
            "churn",
            DS,
            ["x"],
            client_token="t" * 300,
            results_prefix="s3://b/p/",
            timeout=timedelta(minutes=5),
        )


def test_results_map_back_to_rules_and_missing_ones_fail(rulesets):
    rules, compiled = rulesets
    error = compiled["error"]
    rule_results = [
        {
            "Description": line,
            "Result": "FAIL" if rule_id == "range_tenure_months" else "PASS",
            "EvaluationMessage": "Value: 700.0 does not meet the constraint requirement!",
            "EvaluatedMetrics": {"Column.tenure_months.Maximum": 700.0}
            if rule_id == "range_tenure_months"
            else {},
        }
        for line, rule_id in error.lines
    ]
    results = [{"RulesetName": f"headrace-churn-ds-{DS}-error", "RuleResults": rule_results}]
    outcomes = {o.rule: o for o in gdq.outcomes_from_glue_results(rules, compiled, results)}
    assert outcomes["range_tenure_months"].status == "fail"
    assert outcomes["range_tenure_months"].observed == {"Column.tenure_months.Maximum": 700.0}
    assert outcomes["schema"].status == "pass"  # its 35 DQDL rules all passed
    # The warn ruleset returned nothing: its rules fail, saying so, rather than pass silently.
    assert outcomes["mean_churned"].status == "fail"
    assert outcomes["mean_churned"].detail == "Glue Data Quality returned no result for this rule"


# --- the partition Glue reads is exactly the manifest's files ---------------------------------

CURATED = f"s3://headrace-test-lake/lake/curated/churn/ds={DS}"


def curated_manifest(files: dict[str, bytes]) -> dict:
    """An ingest-style manifest listing ``files`` (name → bytes) with their SHA-256."""
    return {
        "dataset": "churn",
        "ds": DS,
        "outputs": {
            "curated": {
                "uri": CURATED,
                "files": [
                    {
                        "path": name,
                        "size_bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                    for name, data in files.items()
                ],
            }
        },
    }


def test_copy_and_partition_requests_cover_exactly_the_manifests_files(churn_rules):
    manifest = curated_manifest({"part-00000-aaaa.parquet": b"a", "part-00001-bbbb.parquet": b"b"})
    input_uri = gdq.glue_input_uri(SETTINGS, "churn", DS, manifest)
    assert input_uri.startswith(
        f"s3://headrace-test-lake/lake/reports/churn/quality/ds={DS}/glue-input/"
    )
    # One prefix per committed manifest: the same manifest finds it again, another gets its own.
    assert gdq.glue_input_uri(SETTINGS, "churn", DS, json.loads(json.dumps(manifest))) == input_uri
    other = curated_manifest({"part-00000-cccc.parquet": b"c"})
    assert gdq.glue_input_uri(SETTINGS, "churn", DS, other) != input_uri

    copies = gdq.build_copy_requests(SETTINGS, manifest, CURATED, input_uri)
    for body in copies:
        validate_request("s3", "CopyObject", body)
    prefix = input_uri.removeprefix("s3://headrace-test-lake/")
    source = f"headrace-test-lake/lake/curated/churn/ds={DS}"
    assert [(c["CopySource"], c["Key"]) for c in copies] == [
        (f"{source}/part-00000-aaaa.parquet", f"{prefix}/part-00000-aaaa.parquet"),
        (f"{source}/part-00001-bbbb.parquet", f"{prefix}/part-00001-bbbb.parquet"),
    ]
    assert {c["SSEKMSKeyId"] for c in copies} == {AWS_ENV["HEADRACE_KMS_KEY_ARN"]}

    create = gdq.build_partition_request("CreatePartition", churn_rules, DS, input_uri)
    update = gdq.build_partition_request("UpdatePartition", churn_rules, DS, input_uri)
    for body in (create, update):
        assert body["PartitionInput"]["StorageDescriptor"]["Location"] == input_uri + "/"
        assert body["PartitionInput"]["Values"] == [DS]
    assert update["PartitionValueList"] == [DS]
    assert "PartitionValueList" not in create
    assert create["PartitionInput"] == update["PartitionInput"]
    with pytest.raises(ValueError, match="'DeletePartition'"):
        gdq.build_partition_request("DeletePartition", churn_rules, DS, input_uri)

    with pytest.raises(GateInputError, match=r"lacks outputs.curated.files"):
        gdq.build_copy_requests(SETTINGS, {"outputs": {}}, CURATED, input_uri)


@pytest.fixture(scope="module")
def moto_endpoint(start_moto_server):
    return start_moto_server()


@pytest.fixture
def moto_aws(moto_endpoint, moto_api, churn_rules):
    """boto3 S3 and Glue clients on a reset moto server, the lake bucket, a KMS key, and the
    curated catalog table the gate creates before it registers a partition."""
    import boto3

    # moto keeps one state per process, whichever server serves it: start each test clean.
    moto_api(moto_endpoint, "reset")
    endpoint = moto_endpoint
    options = {"endpoint_url": endpoint, "region_name": "eu-west-1",
               "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # fmt: skip
    s3, glue = boto3.client("s3", **options), boto3.client("glue", **options)
    s3.create_bucket(
        Bucket="headrace-test-lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    key = boto3.client("kms", **options).create_key()["KeyMetadata"]["Arn"]
    settings = load_settings({**AWS_ENV, "HEADRACE_KMS_KEY_ARN": key})
    glue.create_database(**gdq.build_create_database_request())
    glue.create_table(**gdq.build_curated_table_request(settings, churn_rules))
    return s3, glue, settings


def put_partition(s3, files: dict[str, bytes], stray: dict[str, bytes]) -> dict:
    """Files and a manifest listing ``files``; ``stray`` files sit in the folder unlisted."""
    folder = CURATED.removeprefix("s3://headrace-test-lake/")
    for name, data in {**files, **stray}.items():
        s3.put_object(Bucket="headrace-test-lake", Key=f"{folder}/{name}", Body=data)
    manifest = curated_manifest(files)
    s3.put_object(
        Bucket="headrace-test-lake", Key=f"{folder}/_manifest.json", Body=json.dumps(manifest)
    )
    return manifest


def objects_under(s3, uri: str) -> dict[str, bytes]:
    prefix = uri.removeprefix("s3://headrace-test-lake/")
    listed = s3.list_objects_v2(Bucket="headrace-test-lake", Prefix=prefix).get("Contents", [])
    return {
        item["Key"].removeprefix(prefix): s3.get_object(
            Bucket="headrace-test-lake", Key=item["Key"]
        )["Body"].read()
        for item in listed
    }


def catalog_location(glue) -> str:
    partition = glue.get_partition(
        DatabaseName="headrace", TableName="churn_curated", PartitionValues=[DS]
    )
    return partition["Partition"]["StorageDescriptor"]["Location"]


def test_the_catalog_partition_holds_only_the_manifests_files(moto_aws, churn_rules):
    s3, glue, settings = moto_aws
    files = {"part-00000-aaaa.parquet": b"rows 0", "part-00001-bbbb.parquet": b"rows 1"}
    stale = {"part-00000-old.parquet": b"an earlier commit", "part-00002-x.parquet": b"in flight"}
    manifest = put_partition(s3, files, stale)

    location = gdq.stage_manifest_partition(glue, s3, settings, churn_rules, DS, manifest)

    assert catalog_location(glue) == location
    assert "/reports/churn/quality/" in location and "/curated/" not in location
    assert objects_under(s3, location) == files

    # The day is re-ingested: a new manifest, a new prefix, and the partition follows it.
    again = {"part-00000-cccc.parquet": b"rows 0, with the late file"}
    manifest = put_partition(s3, again, {})
    moved = gdq.stage_manifest_partition(glue, s3, settings, churn_rules, DS, manifest)
    assert moved != location
    assert catalog_location(glue) == moved
    assert objects_under(s3, moved) == again
    # A retry of the same run finds the same prefix and copies the same bytes.
    assert gdq.stage_manifest_partition(glue, s3, settings, churn_rules, DS, manifest) == moved
    assert objects_under(s3, moved) == again


def test_a_listed_file_that_changed_after_the_commit_fails_the_input(moto_aws, churn_rules):
    s3, glue, settings = moto_aws
    manifest = put_partition(s3, {"part-00000-aaaa.parquet": b"rows 0"}, {})
    s3.put_object(
        Bucket="headrace-test-lake",
        Key=f"{CURATED.removeprefix('s3://headrace-test-lake/')}/part-00000-aaaa.parquet",
        Body=b"other rows",
    )
    with pytest.raises(
        GateInputError, match=r"part-00000-aaaa.parquet does not match its manifest"
    ):
        gdq.stage_manifest_partition(glue, s3, settings, churn_rules, DS, manifest)
