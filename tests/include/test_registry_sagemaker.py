"""The aws registry: the SageMaker Model Registry, against a moto server on 127.0.0.1.

moto implements model package groups and packages (versions, approval status, metadata,
ListModelPackages filtered by status and sorted by creation time), so the champion logic runs
for real. Where moto lacks AWS's behaviour the requests are asserted instead: moto ignores
``ClientToken`` (AWS returns the existing package for a repeated token) and replaces
``CustomerMetadataProperties`` on update (AWS merges), which is why every update sends them whole.
Every request body is also checked against botocore's service model by the registry itself.
"""

from __future__ import annotations

import json

import pytest

from include.aws_validation import RequestValidationError
from include.registry import (
    APPROVED,
    PENDING,
    REJECTED,
    RegistryError,
    SageMakerModelRegistry,
    approve_pending_version,
    register_trained_model,
)
from training.evaluation import evaluate_binary_classifier, group_metrics

REGION = "eu-west-1"
BUCKET = "headrace-registry-test"


@pytest.fixture(scope="module")
def moto_endpoint(start_moto_server):
    return start_moto_server()


@pytest.fixture
def aws_env(monkeypatch, moto_endpoint):
    # Every boto3 client of the test (the registry's and the lake storage's) goes to moto.
    from tests.aws_fakes import AWS_UNSET, moto_environment

    for name, value in moto_environment(moto_endpoint).items():
        monkeypatch.setenv(name, value)
    for name in AWS_UNSET:
        monkeypatch.delenv(name, raising=False)
    return moto_endpoint


@pytest.fixture
def sent(aws_env, aws_calls):
    """The registry, and a function returning every SageMaker request it has sent so far, as
    ``(operation, params)`` (recorded by tests/aws_fakes.py's one recorder)."""

    def requests() -> list[tuple[str, dict]]:
        return [
            (r["operation"], r["params"]) for r in aws_calls.requests if r["service"] == "sagemaker"
        ]

    return SageMakerModelRegistry(region=REGION), requests


def _register(registry, dataset, *, auc, approval, model="m1", reason="auto"):
    return registry.register_version(
        dataset,
        model_uri=f"s3://{BUCKET}/lake/models/{dataset}/{model}/model.tar.gz",
        metrics={"roc_auc": auc, "f1": 0.5, "calibration_ece": None},
        data_version=f"s3://{BUCKET}/lake/features/{dataset}/ds=2026-01-07/_manifest.json@sha256:ab",
        code_version="a" * 40,  # a git SHA
        hyperparameters={"epochs": 3, "id-columns": "customer_id,snapshot_date"},
        baseline_uri=f"s3://{BUCKET}/lake/monitoring/{dataset}/baseline/",
        evaluation_uri=f"s3://{BUCKET}/lake/models/{dataset}/{model}/evaluation.json",
        approval=approval,
        approval_reason=reason,
    )


def test_registration_creates_the_group_and_a_package_with_its_lineage(sent):
    registry, requests = sent

    first = _register(registry, "sm_first", auc=0.8, approval=APPROVED, reason="no champion")

    assert first.version == "1" and first.approval == APPROVED
    assert first.registry_ref.endswith(":model-package/headrace-sm-first/1")
    assert first.metrics == {"roc_auc": 0.8, "f1": 0.5}  # None is not stored on SageMaker
    # The comma is outside CustomerMetadataProperties' alphabet: stored encoded, read back whole.
    assert first.hyperparameters == {"epochs": "3", "id-columns": "customer_id,snapshot_date"}
    assert first.approval_reason == "no champion"
    assert first.approver == "headrace:champion-challenger"
    assert first.data_version.endswith("ds=2026-01-07/_manifest.json@sha256:ab")
    assert registry.approved_version("sm_first") == first

    operations = [name for name, _ in requests()]
    assert operations[:3] == [
        "DescribeModelPackageGroup",
        "CreateModelPackageGroup",
        "CreateModelPackage",
    ]
    create = dict(requests())["CreateModelPackage"]
    assert create["ModelPackageGroupName"] == "headrace-sm-first"
    container = create["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/lake/models/sm_first/m1/model.tar.gz"
    assert container["Image"] == (
        f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference:2.5.1-cpu-py311-ubuntu22.04-sagemaker"
    )
    assert create["ModelMetrics"]["ModelDataQuality"]["Statistics"]["S3Uri"] == (
        f"s3://{BUCKET}/lake/monitoring/sm_first/baseline/statistics.json"
    )
    assert create["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith(
        "/m1/evaluation.json"
    )
    assert create["CustomerMetadataProperties"]["hp:id-columns"].startswith("b64:")
    assert create["CustomerMetadataProperties"]["metric:roc_auc"] == "0.8"
    # AWS makes a repeated registration of the same artifacts idempotent by this token.
    assert len(create["ClientToken"]) == 36
    update = dict(requests())["UpdateModelPackage"]
    assert update["ApprovalDescription"] == "no champion"
    assert update["CustomerMetadataProperties"] == create["CustomerMetadataProperties"]


def test_champion_is_the_newest_approved_package(sent):
    registry, _ = sent
    _register(registry, "sm_flow", auc=0.80, approval=APPROVED)
    pending = _register(registry, "sm_flow", auc=0.801, approval=PENDING, model="m2")

    assert pending.version == "2" and pending.approver == ""
    assert registry.approved_version("sm_flow").version == "1"

    decided = approve_pending_version(
        "sm_flow", "2", "ada@example.com", "reviewed the card", registry=registry
    )

    assert decided["approval"] == APPROVED and decided["approver"] == "ada@example.com"
    assert decided["approval_reason"] == "reviewed the card"
    champion = registry.approved_version("sm_flow")
    assert champion.version == "2"
    # The approval kept the version's lineage (sent whole with the update).
    assert champion.hyperparameters["id-columns"] == "customer_id,snapshot_date"

    registry.set_approval("sm_flow", "2", REJECTED, approver="bob", reason="bad canary")
    assert registry.approved_version("sm_flow").version == "1"
    assert [(v.version, v.approval) for v in registry.list_versions("sm_flow")] == [
        ("1", APPROVED),
        ("2", REJECTED),
    ]
    with pytest.raises(RegistryError, match="sm_flow has no model version '9'"):
        registry.get_version("sm_flow", "9")


def test_inference_image_follows_the_regions_dlc_account():
    from include.registry import default_inference_image_uri

    assert default_inference_image_uri("af-south-1").startswith(
        "626614931356.dkr.ecr.af-south-1.amazonaws.com/pytorch-inference:"
    )
    assert ".dkr.ecr.cn-north-1.amazonaws.com.cn/" in default_inference_image_uri("cn-north-1")


def test_a_local_model_uri_is_refused_before_it_reaches_aws(sent):
    registry, requests = sent

    with pytest.raises(RequestValidationError, match="ModelDataUrl"):
        registry.register_version(
            "sm_bad",
            model_uri="file:///tmp/model.tar.gz",
            metrics={"roc_auc": 0.8},
            data_version="d",
            code_version="c",
            hyperparameters={},
            baseline_uri="",
            evaluation_uri=f"s3://{BUCKET}/e.json",
            approval=APPROVED,
        )
    assert "CreateModelPackage" not in [name for name, _ in requests()]


def test_register_trained_model_on_aws_writes_the_card_to_s3(sent):
    import boto3
    import numpy as np

    registry, _ = sent
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    manifest_key = "lake/features/sm_e2e/ds=2026-01-07/_manifest.json"
    manifest = {"dataset": "sm_e2e", "ds": "2026-01-07", "label": "churned", "features": ["a"]}
    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=json.dumps(manifest).encode())
    y = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.2, 0.7, 0.4, 0.9, 0.3, 0.1])

    result = register_trained_model(
        "sm_e2e",
        registry=registry,
        models_zone_uri=f"s3://{BUCKET}/lake/models",
        model_uri=f"s3://{BUCKET}/lake/models/sm_e2e/job-1/model.tar.gz",
        evaluation={
            "metrics": evaluate_binary_classifier(y, scores),
            "groups": group_metrics(y, scores, {"region": np.array(["a", "b"] * 3)}),
            "permutation_importance": None,  # train.py writes None when it cannot compute it
        },
        hyperparameters={"epochs": 2},
        manifest_uri=f"s3://{BUCKET}/{manifest_key}",
        baseline_uri=f"s3://{BUCKET}/lake/monitoring/sm_e2e/baseline",
        evaluation_uri=f"s3://{BUCKET}/lake/models/sm_e2e/job-1/evaluation.json",
        code_version_id="tree:abc",
    )

    assert result["approval"] == APPROVED and result["version"] == "1"
    assert result["card_uri"] == f"s3://{BUCKET}/lake/models/sm_e2e/1/model_card.json"
    card = json.loads(
        s3.get_object(Bucket=BUCKET, Key="lake/models/sm_e2e/1/model_card.json")["Body"].read()
    )
    # Of the nine (positive, negative) pairs only (0.3, 0.4) is misordered.
    assert card["metrics"]["roc_auc"] == pytest.approx(8 / 9)
    assert card["model"]["registry_ref"].endswith("model-package/headrace-sm-e2e/1")
    markdown = s3.get_object(Bucket=BUCKET, Key="lake/models/sm_e2e/1/model_card.md")["Body"]
    assert markdown.read().decode().startswith("# Model card: sm_e2e version 1")
    assert registry.get_version("sm_e2e", "1").card_uri == result["card_uri"]


def test_the_decision_numbers_round_trip_through_package_metadata(sent):
    registry, requests = sent
    decision = {
        "paired": True,
        "metric": "roc_auc",
        "champion_version": "1",
        "challenger": 0.912345,
        "champion": 0.801234,
        "difference": 0.111111,
        "interval": [0.0421, 0.1803],
        "confidence": 0.95,
        "rows": 1234,
        "resamples": 1000,
        "seed": 0,
        "margin": 0.005,
        "outcome": "approved",
        "method": "paired bootstrap (percentile)",
    }
    registry.register_version(
        "sm_decision",
        model_uri=f"s3://{BUCKET}/lake/models/sm_decision/m1/model.tar.gz",
        metrics={"roc_auc": 0.912345},
        data_version="d",
        code_version="c",
        hyperparameters={},
        baseline_uri="",
        evaluation_uri=f"s3://{BUCKET}/e.json",
        approval=APPROVED,
        approval_reason="on the same 1234 test rows: …",
        decision=decision,
    )

    created = next(params for name, params in requests() if name == "CreateModelPackage")
    stored = created["CustomerMetadataProperties"]["headrace:decision"]
    assert stored == (
        "paired=1 champion_version=1 challenger=0.912345 champion=0.801234 difference=+0.111111 "
        "lower=+0.042100 upper=+0.180300 confidence=0.95 rows=1234 resamples=1000 seed=0 "
        "margin=0.005 outcome=approved"
    )
    read = registry.get_version("sm_decision", "1").decision
    assert read["paired"] is True and read["champion_version"] == "1"
    assert read["interval"] == [0.0421, 0.1803] and read["rows"] == 1234
    assert (read["challenger"], read["champion"], read["margin"]) == (0.912345, 0.801234, 0.005)
    assert read["outcome"] == "approved"
