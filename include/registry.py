"""The model registry: versions of each dataset's model, their lineage, and who may serve.

One narrow interface (:class:`ModelRegistry`) with two backends picked by ``settings.target``,
as the lake's storage is: the SageMaker Model Registry on ``aws`` (a model package group per
dataset, a model package per version) and MLflow's model registry on a SQLite file in the lake's
``models`` zone on ``local`` (a registered model per dataset, a model version per version). Both
keep the same facts per version — model URI, test metrics, data version (the features
manifest's checksum), code version, hyperparameters, the monitoring baseline, the evaluation and
the model card — and the same approval statuses, named as SageMaker names them.

The champion of a dataset is its newest ``Approved`` version (SageMaker's convention: deployment
picks the latest approved package by creation time). Rejecting the champion therefore rolls back
to the previous approved version, on both backends. A new version is approved automatically when
it beats the champion (:mod:`include.model_selection`); otherwise it waits for a person, who
approves or rejects it in the ``churn_model_approval`` DAG: Airflow's human-in-the-loop request
(:func:`approval_request` writes its text), whose answer :func:`record_approval_response` records
with :func:`approve_pending_version`.

Why MLflow locally: it has a real registry (versions, tags, aliases) that runs in-process on a
SQLite file, with no server to start, and its UI reads the same file when someone wants to look.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

APPROVED = "Approved"
PENDING = "PendingManualApproval"
REJECTED = "Rejected"
APPROVAL_STATUSES = (APPROVED, PENDING, REJECTED)

# The headline test metrics a version carries in the registry (the full evaluation, with
# calibration bins and per-group metrics, lives in evaluation.json and the model card).
HEADLINE_METRICS = (
    "roc_auc",
    "f1",
    "log_loss",
    "brier",
    "accuracy",
    "precision",
    "recall",
    "positive_rate",
    "label_rate",
    "rows",
)
_DATASET = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


# The options of the human-in-the-loop approval request, and the status each one records.
APPROVE_OPTION = "Approve"
REJECT_OPTION = "Reject"
STATUS_OF_OPTION = {APPROVE_OPTION: APPROVED, REJECT_OPTION: REJECTED}
REASON_FIELD = "reason"


class RegistryError(ValueError):
    """A registry request is invalid or names a version that does not exist."""


class NotPendingError(RegistryError):
    """The version is not waiting for manual approval (decided already, or approved on merit)."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, the same on both backends; ``to_dict`` is what XCom carries."""

    dataset: str
    version: str
    model_uri: str
    approval: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    data_version: str = ""
    code_version: str = ""
    hyperparameters: dict[str, str] = field(default_factory=dict)
    baseline_uri: str = ""
    evaluation_uri: str = ""
    card_uri: str = ""
    approval_reason: str = ""
    approver: str = ""
    # The champion / challenger decision's numbers (include.model_selection.comparison_record):
    # both AUCs on the shared rows, the difference, its interval, rows, margin and outcome.
    decision: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    # Where the registry itself knows it: ``models:/headrace-churn/3`` or a model package ARN.
    registry_ref: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModelRegistry(Protocol):
    """The verbs both backends implement; versions are strings ("1", "2", …) on both."""

    def register_version(
        self,
        dataset: str,
        *,
        model_uri: str,
        metrics: Mapping[str, float | None],
        data_version: str,
        code_version: str,
        hyperparameters: Mapping[str, object],
        baseline_uri: str,
        evaluation_uri: str,
        card_uri: str = "",
        approval: str,
        approval_reason: str = "",
        decision: Mapping[str, Any] | None = None,
    ) -> ModelVersion: ...

    def get_version(self, dataset: str, version: str) -> ModelVersion: ...

    def list_versions(self, dataset: str) -> list[ModelVersion]:
        """Every version of ``dataset``, oldest first."""
        ...

    def approved_version(self, dataset: str) -> ModelVersion | None:
        """The champion: the newest ``Approved`` version, or ``None``."""
        ...

    def set_approval(
        self, dataset: str, version: str, status: str, *, approver: str, reason: str
    ) -> ModelVersion: ...

    def set_card_uri(self, dataset: str, version: str, card_uri: str) -> ModelVersion:
        """Record where the version's model card lives (written after the version exists,
        because the card names the version the registry assigned)."""
        ...


def registered_model_name(dataset: str) -> str:
    """``headrace-<dataset>``: the MLflow registered model and the SageMaker package group."""
    if not _DATASET.match(dataset):
        raise RegistryError(
            f"dataset {dataset!r} is not a valid dataset name (lower case letters, digits, _)"
        )
    # Model package group names allow letters, digits and hyphens only.
    return "headrace-" + dataset.replace("_", "-")


def headline_metrics(test_evaluation: Mapping[str, Any]) -> dict[str, float | None]:
    """The registry's metrics from ``evaluate_binary_classifier``'s result (plus the ECE)."""
    metrics: dict[str, float | None] = {
        name: test_evaluation[name] for name in HEADLINE_METRICS if name in test_evaluation
    }
    calibration = test_evaluation.get("calibration")
    if isinstance(calibration, Mapping) and "ece" in calibration:
        metrics["calibration_ece"] = calibration["ece"]
    return metrics


def _check_registration(
    metrics: Mapping[str, object], approval: str, model_uri: str
) -> dict[str, float | None]:
    if approval not in APPROVAL_STATUSES:
        raise RegistryError(f"approval {approval!r} is not one of {', '.join(APPROVAL_STATUSES)}")
    if not model_uri:
        raise RegistryError("model_uri is empty: a version must point at its model artifacts")
    checked: dict[str, float | None] = {}
    for name, value in metrics.items():
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise RegistryError(
                f"metric {name!r} must be a finite number or None, got {value!r} "
                "(pass headline_metrics(evaluation), not the nested evaluation)"
            )
        checked[str(name)] = None if value is None else float(value)
    return checked


def _check_status(status: str, approver: str) -> None:
    if status not in APPROVAL_STATUSES:
        raise RegistryError(f"status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}")
    if not approver.strip():
        raise RegistryError("approver is empty: every approval decision names who made it")


# ---------------------------------------------------------------------------------------------
# local: MLflow on SQLite


def _import_mlflow():
    """MLflow with its telemetry off: set before import (MLflow reads these at import and when
    it starts its telemetry client), then re-read, in case MLflow was imported earlier."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow
    from mlflow.telemetry.client import set_telemetry_client

    set_telemetry_client()
    # MLflow gives its loggers (and alembic's, SQLAlchemy's, huey's) a stderr handler of its own,
    # and an Airflow task's log shows stderr at level ERROR: its start-up lines ("Creating
    # initial MLflow database tables…") read as errors. Through the task's logging they keep
    # their level; MLflow's own level settings stay.
    for name in ("mlflow", "alembic", "sqlalchemy.engine", "huey"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    return mlflow


_TAG = "headrace."
_CHAMPION_ALIAS = "champion"


class MLflowModelRegistry:
    """MLflow's model registry on ``<models zone>/mlflow.db``; no server, nothing listens.

    A registered model per dataset; each version's source is the model URI and its tags carry
    the approval status and the lineage (JSON for metrics and hyperparameters). Each
    registration also records an MLflow run with the metrics and hyperparameters, so MLflow's UI
    can compare versions. The ``champion`` alias always points at the newest approved version.
    """

    def __init__(self, models_zone_uri: str):
        from urllib.parse import urlparse

        parsed = urlparse(models_zone_uri)
        if parsed.scheme != "file":
            raise RegistryError(
                f"the MLflow registry lives in a local models zone (file://), got {models_zone_uri!r}"
            )
        self._zone = Path(parsed.path)
        self._artifacts_uri = f"{models_zone_uri.rstrip('/')}/mlflow-artifacts"
        self._client_instance = None

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self._zone / 'mlflow.db'}"

    @property
    def _client(self):
        if self._client_instance is None:
            mlflow = _import_mlflow()
            self._zone.mkdir(parents=True, exist_ok=True)
            self._client_instance = mlflow.MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client_instance

    def remove_dataset(self, dataset: str) -> int:
        """Delete the dataset's registered model and every version of it (the local registry
        only: ``make demo`` starts each run from an empty registry). Returns how many versions
        there were."""
        from mlflow.exceptions import MlflowException

        name = registered_model_name(dataset)
        try:
            versions = len(self.list_versions(dataset))
            self._client.delete_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return 0
        return versions

    def _ensure_registered_model(self, name: str, dataset: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self._client.create_registered_model(
                name,
                tags={f"{_TAG}dataset": dataset},
                description=f"headrace model versions for the {dataset} dataset",
            )

    def _record_run(self, name: str, metrics: Mapping[str, float | None], hyperparameters) -> str:
        from mlflow.entities import Metric, Param

        experiment = self._client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self._client.create_experiment(
                name, artifact_location=f"{self._artifacts_uri}/{name}"
            )
        )
        run = self._client.create_run(experiment_id, run_name="registration")
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        self._client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now_ms, 0) for k, v in metrics.items() if v is not None],
            params=[Param(k, str(v)) for k, v in hyperparameters.items()],
        )
        self._client.set_terminated(run.info.run_id)
        return run.info.run_id

    def register_version(
        self,
        dataset: str,
        *,
        model_uri: str,
        metrics: Mapping[str, float | None],
        data_version: str,
        code_version: str,
        hyperparameters: Mapping[str, object],
        baseline_uri: str,
        evaluation_uri: str,
        card_uri: str = "",
        approval: str,
        approval_reason: str = "",
        decision: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        name = registered_model_name(dataset)
        checked = _check_registration(metrics, approval, model_uri)
        hyperparameters = {str(k): str(v) for k, v in hyperparameters.items()}
        self._ensure_registered_model(name, dataset)
        run_id = self._record_run(name, checked, hyperparameters)
        tags = {
            "approval": approval,
            "approval_reason": approval_reason,
            "approver": "" if approval == PENDING else "headrace:champion-challenger",
            "metrics": json.dumps(checked, sort_keys=True),
            "hyperparameters": json.dumps(hyperparameters, sort_keys=True),
            "data_version": data_version,
            "code_version": code_version,
            "baseline_uri": baseline_uri,
            "evaluation_uri": evaluation_uri,
            "card_uri": card_uri,
            "decision": json.dumps(dict(decision or {}), sort_keys=True),
        }
        created = self._client.create_model_version(
            name,
            source=model_uri,
            run_id=run_id,
            tags={f"{_TAG}{k}": v for k, v in tags.items()},
            description=f"{dataset} model trained on {data_version}",
        )
        self._refresh_champion_alias(name)
        version = self.get_version(dataset, str(created.version))
        log.info("registered %s version %s as %s", name, version.version, approval)
        return version

    def _to_model_version(self, dataset: str, mv) -> ModelVersion:
        tags = {k[len(_TAG) :]: v for k, v in mv.tags.items() if k.startswith(_TAG)}
        return ModelVersion(
            dataset=dataset,
            version=str(mv.version),
            model_uri=mv.source,
            approval=tags.get("approval", ""),
            metrics=json.loads(tags.get("metrics") or "{}"),
            data_version=tags.get("data_version", ""),
            code_version=tags.get("code_version", ""),
            hyperparameters=json.loads(tags.get("hyperparameters") or "{}"),
            baseline_uri=tags.get("baseline_uri", ""),
            evaluation_uri=tags.get("evaluation_uri", ""),
            card_uri=tags.get("card_uri", ""),
            approval_reason=tags.get("approval_reason", ""),
            approver=tags.get("approver", ""),
            decision=json.loads(tags.get("decision") or "{}"),
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(),
            registry_ref=f"models:/{mv.name}/{mv.version}",
        )

    def get_version(self, dataset: str, version: str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        name = registered_model_name(dataset)
        try:
            mv = self._client.get_model_version(name, str(version))
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise RegistryError(f"{dataset} has no model version {version!r}") from error
            raise
        return self._to_model_version(dataset, mv)

    def list_versions(self, dataset: str) -> list[ModelVersion]:
        name = registered_model_name(dataset)
        found = self._client.search_model_versions(
            f"name='{name}'", order_by=["version_number ASC"]
        )
        return [self._to_model_version(dataset, mv) for mv in found]

    def approved_version(self, dataset: str) -> ModelVersion | None:
        approved = [v for v in self.list_versions(dataset) if v.approval == APPROVED]
        return max(approved, key=lambda v: int(v.version)) if approved else None

    def _refresh_champion_alias(self, name: str) -> None:
        """Point the ``champion`` alias at the newest approved version (or remove it), so MLflow
        users can load ``models:/headrace-churn@champion`` and see the same champion."""
        approved = self._client.search_model_versions(
            f"name='{name}' and tag.`{_TAG}approval`='{APPROVED}'"
        )
        if approved:
            newest = max(approved, key=lambda mv: int(mv.version))
            self._client.set_registered_model_alias(name, _CHAMPION_ALIAS, str(newest.version))
        elif _CHAMPION_ALIAS in self._client.get_registered_model(name).aliases:
            self._client.delete_registered_model_alias(name, _CHAMPION_ALIAS)

    def set_approval(
        self, dataset: str, version: str, status: str, *, approver: str, reason: str
    ) -> ModelVersion:
        _check_status(status, approver)
        name = registered_model_name(dataset)
        self.get_version(dataset, version)  # a clear error for a missing version
        for key, value in (
            ("approval", status),
            ("approver", approver),
            ("approval_reason", reason),
        ):
            self._client.set_model_version_tag(name, str(version), f"{_TAG}{key}", value)
        self._refresh_champion_alias(name)
        log.info("%s version %s is now %s (by %s: %s)", name, version, status, approver, reason)
        return self.get_version(dataset, version)

    def set_card_uri(self, dataset: str, version: str, card_uri: str) -> ModelVersion:
        name = registered_model_name(dataset)
        self.get_version(dataset, version)
        self._client.set_model_version_tag(name, str(version), f"{_TAG}card_uri", card_uri)
        return self.get_version(dataset, version)


# ---------------------------------------------------------------------------------------------
# aws: SageMaker Model Registry

# The SageMaker PyTorch inference container that serves training/inference.py: the same PyTorch
# and Python as the training image (include/config.py), CPU build for batch transform.
PYTORCH_INFERENCE_FRAMEWORK_VERSION = "2.5.1"
PYTORCH_INFERENCE_IMAGE_TAG = "2.5.1-cpu-py311-ubuntu22.04-sagemaker"


def default_inference_image_uri(region: str) -> str:
    """The SageMaker PyTorch CPU inference image of ``region`` (same DLC account as training)."""
    from include.config import DEFAULT_DLC_ACCOUNT, DLC_ACCOUNTS

    account = DLC_ACCOUNTS.get(region, DEFAULT_DLC_ACCOUNT)
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/pytorch-inference:{PYTORCH_INFERENCE_IMAGE_TAG}"


TRANSFORM_INSTANCE_TYPES = ("ml.m5.large", "ml.m5.xlarge")
REALTIME_INSTANCE_TYPES = ("ml.m5.large",)
CONTENT_TYPES = ("application/x-parquet", "text/csv", "application/json")
# CustomerMetadataProperties keys and values allow letters, digits, spaces and _ . : / = + - @
# only; anything else (commas, braces) is stored base64-encoded behind this prefix. The standard
# base64 alphabet is inside the allowed set.
_METADATA_SAFE = re.compile(r"^[\w .:/=+\-@]+$")
_B64 = "b64:"
_MAX_METADATA_VALUE = 256
_MAX_METADATA_ENTRIES = 50
_LINEAGE_KEYS = ("data_version", "code_version", "baseline_uri", "evaluation_uri", "card_uri")
# The decision's numbers kept in one metadata entry (``headrace:decision``, ``key=value`` pairs:
# a value holds 256 characters at most); its full text is the ApprovalDescription and the card.
_DECISION_KEYS = (
    "paired", "champion_version", "challenger", "champion", "difference", "lower", "upper",
    "confidence", "rows", "resamples", "seed", "margin", "outcome",
)  # fmt: skip


def _decision_metadata(decision: Mapping[str, Any]) -> str:
    """``paired=1 challenger=0.812345 … outcome=approved``: the decision's numbers, compact."""
    values = dict(decision)
    interval = values.get("interval") or [None, None]
    values["lower"], values["upper"] = interval
    values["paired"] = int(bool(values.get("paired")))
    values["outcome"] = "approved" if values.get("outcome") == "approved" else "pending"
    parts = []
    for key in _DECISION_KEYS:
        value = values.get(key)
        if value is None:
            continue
        if isinstance(value, float):
            value = f"{value:+.6f}" if key in ("difference", "lower", "upper") else f"{value:.6g}"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _decision_of_metadata(text: str) -> dict[str, Any]:
    """:func:`_decision_metadata` read back: numbers as numbers, the interval as a list."""
    decision: dict[str, Any] = {}
    for part in text.split():
        key, _, value = part.partition("=")
        try:
            decision[key] = int(value) if value.lstrip("+-").isdigit() else float(value)
        except ValueError:
            decision[key] = value
    if "paired" in decision:
        decision["paired"] = bool(decision["paired"])
    if "champion_version" in decision:
        decision["champion_version"] = str(decision["champion_version"])
    if "lower" in decision and "upper" in decision:
        decision["interval"] = [decision.pop("lower"), decision.pop("upper")]
    if decision.get("outcome") == "pending":
        decision["outcome"] = "needs manual approval"
    return decision


def _encode_metadata_value(key: str, value: str) -> str:
    encoded = (
        value
        if _METADATA_SAFE.match(value) and not value.startswith(_B64)
        else _B64 + base64.b64encode(value.encode()).decode()
    )
    if len(encoded) > _MAX_METADATA_VALUE:
        raise RegistryError(
            f"registry metadata {key!r} is {len(encoded)} characters once stored; "
            f"SageMaker allows {_MAX_METADATA_VALUE}: {value[:80]!r}…"
        )
    return encoded


def _decode_metadata_value(value: str) -> str:
    if value.startswith(_B64):
        return base64.b64decode(value[len(_B64) :]).decode()
    return value


class SageMakerModelRegistry:
    """The SageMaker Model Registry: a model package group per dataset, a package per version.

    Lineage and headline metrics go into ``CustomerMetadataProperties`` (``headrace:<name>``,
    ``metric:<name>``, ``hp:<name>``), which Studio shows and ``DescribeModelPackage`` returns;
    the monitoring baseline's statistics and constraints and the evaluation JSON go into
    ``ModelMetrics``, where SageMaker Model Monitor and Studio look for them.

    :param region: the AWS region of the registry.
    :param client: a boto3 SageMaker client; created on first use when not given.
    :param inference_image: the serving container; default the SageMaker PyTorch CPU image.
    """

    def __init__(self, *, region: str, client=None, inference_image: str | None = None):
        self._region = region
        self._client_instance = client
        self._inference_image = inference_image or default_inference_image_uri(region)

    @property
    def _client(self):
        if self._client_instance is None:
            import boto3  # kept out of DAG parsing

            self._client_instance = boto3.client("sagemaker", region_name=self._region)
        return self._client_instance

    def _call(self, operation: str, method: str, **body):
        from include.aws_validation import validate_request

        validate_request("sagemaker", operation, body)
        return getattr(self._client, method)(**body)

    def _ensure_group(self, group: str, dataset: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.describe_model_package_group(ModelPackageGroupName=group)
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
                raise
            self._call(
                "CreateModelPackageGroup",
                "create_model_package_group",
                ModelPackageGroupName=group,
                ModelPackageGroupDescription=f"headrace model versions for the {dataset} dataset",
            )

    @staticmethod
    def _metadata(
        metrics: Mapping[str, float | None],
        hyperparameters: Mapping[str, str],
        lineage: Mapping[str, str],
        approver: str,
    ) -> dict[str, str]:
        entries: dict[str, str] = {}
        for key, value in lineage.items():
            if value:
                entries[f"headrace:{key}"] = value
        if approver:
            entries["headrace:approver"] = approver
        for name, value in metrics.items():
            if value is not None:
                entries[f"metric:{name}"] = repr(float(value))
        for name, value in hyperparameters.items():
            if value != "":
                entries[f"hp:{name}"] = value
        if len(entries) > _MAX_METADATA_ENTRIES:
            raise RegistryError(
                f"{len(entries)} registry metadata entries (lineage, metrics, hyperparameters); "
                f"SageMaker allows {_MAX_METADATA_ENTRIES}"
            )
        return {key: _encode_metadata_value(key, value) for key, value in entries.items()}

    def register_version(
        self,
        dataset: str,
        *,
        model_uri: str,
        metrics: Mapping[str, float | None],
        data_version: str,
        code_version: str,
        hyperparameters: Mapping[str, object],
        baseline_uri: str,
        evaluation_uri: str,
        card_uri: str = "",
        approval: str,
        approval_reason: str = "",
        decision: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        group = registered_model_name(dataset)
        checked = _check_registration(metrics, approval, model_uri)
        hyperparameters = {str(k): str(v) for k, v in hyperparameters.items()}
        lineage = {
            "data_version": data_version,
            "code_version": code_version,
            "baseline_uri": baseline_uri,
            "evaluation_uri": evaluation_uri,
            "card_uri": card_uri,
        }
        approver = "" if approval == PENDING else "headrace:champion-challenger"
        if decision:
            lineage["decision"] = _decision_metadata(decision)
        metadata = self._metadata(checked, hyperparameters, lineage, approver)
        self._ensure_group(group, dataset)
        model_metrics: dict[str, Any] = {
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": evaluation_uri}
            }
        }
        if baseline_uri:
            base = baseline_uri.rstrip("/")
            model_metrics["ModelDataQuality"] = {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": f"{base}/statistics.json",
                },
                "Constraints": {
                    "ContentType": "application/json",
                    "S3Uri": f"{base}/constraints.json",
                },
            }
        created = self._call(
            "CreateModelPackage",
            "create_model_package",
            ModelPackageGroupName=group,
            ModelPackageDescription=f"{dataset} model, {code_version}"[:1024],
            InferenceSpecification={
                "Containers": [
                    {
                        "Image": self._inference_image,
                        "ModelDataUrl": model_uri,
                        "Framework": "PYTORCH",
                        "FrameworkVersion": PYTORCH_INFERENCE_FRAMEWORK_VERSION,
                    }
                ],
                "SupportedContentTypes": list(CONTENT_TYPES),
                "SupportedResponseMIMETypes": ["application/json", "text/csv"],
                "SupportedTransformInstanceTypes": list(TRANSFORM_INSTANCE_TYPES),
                "SupportedRealtimeInferenceInstanceTypes": list(REALTIME_INSTANCE_TYPES),
            },
            ModelApprovalStatus=approval,
            ModelMetrics=model_metrics,
            CustomerMetadataProperties=metadata,
            # Same model artifacts → same token: a retried registration does not add a version.
            ClientToken=hashlib.sha256(f"{group}|{model_uri}".encode()).hexdigest()[:36],
        )
        arn = created["ModelPackageArn"]
        if approval_reason:
            # CreateModelPackage has no ApprovalDescription; the reason is set right after.
            self._update(arn, approval, approval_reason, metadata)
        version = self._to_model_version(dataset, self._describe(arn))
        log.info("registered %s version %s (%s) as %s", group, version.version, arn, approval)
        return version

    def _update(self, arn: str, status: str, description: str, metadata: Mapping[str, str]):
        # Every update names the status and all metadata: UpdateModelPackage merges metadata on
        # AWS, and sending it whole keeps registries that replace it (moto does) consistent.
        self._call(
            "UpdateModelPackage",
            "update_model_package",
            ModelPackageArn=arn,
            ModelApprovalStatus=status,
            ApprovalDescription=description[:1024],
            CustomerMetadataProperties=dict(metadata),
        )

    def _describe(self, arn: str) -> dict:
        return self._client.describe_model_package(ModelPackageName=arn)

    def _to_model_version(self, dataset: str, package: Mapping[str, Any]) -> ModelVersion:
        metadata = {
            key: _decode_metadata_value(value)
            for key, value in (package.get("CustomerMetadataProperties") or {}).items()
        }
        containers = package.get("InferenceSpecification", {}).get("Containers", [{}])
        created = package.get("CreationTime")
        return ModelVersion(
            dataset=dataset,
            version=str(package["ModelPackageVersion"]),
            model_uri=containers[0].get("ModelDataUrl", ""),
            approval=package.get("ModelApprovalStatus", ""),
            metrics={
                key[len("metric:") :]: float(value)
                for key, value in metadata.items()
                if key.startswith("metric:")
            },
            hyperparameters={
                key[len("hp:") :]: value for key, value in metadata.items() if key.startswith("hp:")
            },
            approval_reason=package.get("ApprovalDescription") or "",
            approver=metadata.get("headrace:approver", ""),
            decision=_decision_of_metadata(metadata.get("headrace:decision", "")),
            created_at=created.isoformat() if isinstance(created, datetime) else str(created or ""),
            registry_ref=package["ModelPackageArn"],
            **{key: metadata.get(f"headrace:{key}", "") for key in _LINEAGE_KEYS},
        )

    def _package_arns(self, dataset: str, **filters) -> list[str]:
        """Package ARNs of the group, newest first."""
        group = registered_model_name(dataset)
        body = {
            "ModelPackageGroupName": group,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            **filters,
        }
        from include.aws_validation import validate_request

        validate_request("sagemaker", "ListModelPackages", body)
        paginator = self._client.get_paginator("list_model_packages")
        try:
            return [
                summary["ModelPackageArn"]
                for page in paginator.paginate(**body)
                for summary in page.get("ModelPackageSummaryList", [])
            ]
        except self._client.exceptions.ClientError as error:
            raise RegistryError(f"cannot list the model packages of {group}: {error}") from error

    def list_versions(self, dataset: str) -> list[ModelVersion]:
        versions = [
            self._to_model_version(dataset, self._describe(arn))
            for arn in self._package_arns(dataset)
        ]
        return sorted(versions, key=lambda v: int(v.version))

    def _arn_of(self, dataset: str, version: str) -> str:
        for arn in self._package_arns(dataset):
            if arn.rsplit("/", 1)[-1] == str(version):
                return arn
        raise RegistryError(f"{dataset} has no model version {version!r}")

    def get_version(self, dataset: str, version: str) -> ModelVersion:
        return self._to_model_version(dataset, self._describe(self._arn_of(dataset, version)))

    def approved_version(self, dataset: str) -> ModelVersion | None:
        arns = self._package_arns(dataset, ModelApprovalStatus=APPROVED)
        return self._to_model_version(dataset, self._describe(arns[0])) if arns else None

    def set_approval(
        self, dataset: str, version: str, status: str, *, approver: str, reason: str
    ) -> ModelVersion:
        _check_status(status, approver)
        arn = self._arn_of(dataset, version)
        metadata = dict(self._describe(arn).get("CustomerMetadataProperties") or {})
        metadata["headrace:approver"] = _encode_metadata_value("headrace:approver", approver)
        self._update(arn, status, reason, metadata)
        log.info("%s version %s is now %s (by %s: %s)", dataset, version, status, approver, reason)
        return self._to_model_version(dataset, self._describe(arn))

    def set_card_uri(self, dataset: str, version: str, card_uri: str) -> ModelVersion:
        arn = self._arn_of(dataset, version)
        package = self._describe(arn)
        metadata = dict(package.get("CustomerMetadataProperties") or {})
        metadata["headrace:card_uri"] = _encode_metadata_value("headrace:card_uri", card_uri)
        self._update(
            arn, package["ModelApprovalStatus"], package.get("ApprovalDescription") or "", metadata
        )
        return self._to_model_version(dataset, self._describe(arn))


def registry_for(settings=None) -> ModelRegistry:
    """The registry of the configured target (MLflow locally, SageMaker on aws)."""
    if settings is None:
        from include.config import get_settings

        settings = get_settings()
    if settings.is_local:
        return MLflowModelRegistry(settings.zone_uri("models"))
    return SageMakerModelRegistry(region=settings.aws.region)


# ---------------------------------------------------------------------------------------------
# lineage: code and data versions


def code_version(repo_root: str | Path, shared_modules: Sequence[str] = ()) -> str:
    """The version of the training code that produced a model.

    The code is what the job's source tarball carries: ``training/`` and the repository modules
    it ships beside it (``shared_modules``, paths from the root: the processing jobs' monitoring
    code, :data:`include.sagemaker_requests.SHARED_MODULES`), as on aws, where the version is the
    tarball's digest. The git SHA of ``HEAD`` when none of it has uncommitted or untracked
    changes; otherwise ``tree:<sha256>`` of the source tarball those files make. A dirty
    tree's SHA would lie — it names a commit whose code did not train this model — while the
    tree hash names exactly the code that shipped. Outside a git checkout (MWAA's dags folder)
    the tree hash is the only honest answer too.
    """
    root = Path(repo_root)
    training = root / "training"
    if not training.is_dir():
        raise RegistryError(f"no training/ directory under {root}: cannot version the code")
    missing = [module for module in shared_modules if not (root / module).is_file()]
    if missing:
        raise RegistryError(f"shared modules missing under {root}: {missing}")
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", "training",
             *shared_modules],
            cwd=root, capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        if not status.stdout.strip():
            head = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=root, capture_output=True, text=True, check=True, timeout=30,
            )  # fmt: skip
            return head.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        log.info("no usable git checkout at %s; versioning training/ by its content", root)
    return "tree:" + _tree_hash(root, shared_modules)


def _tree_hash(root: Path, shared_modules: Sequence[str]) -> str:
    """The SHA-256 of the source tarball these files make (the files the job ships, chosen as the
    tarball chooses them; on aws the tarball's key is named by the same digest)."""
    from include.sagemaker_requests import TRAINING_PACKAGE, build_source_tarball

    return hashlib.sha256(build_source_tarball(TRAINING_PACKAGE, root, shared_modules)).hexdigest()


def reproduced_version(
    versions: list[ModelVersion],
    data_version_id: str,
    code_version_id: str,
    hyperparameters: Mapping[str, object],
) -> ModelVersion | None:
    """The newest registered version trained on the same data version with the same code
    version and hyperparameters (compared as text, as the registries store them), if any."""
    wanted = {str(k): str(v) for k, v in hyperparameters.items()}
    same = [
        v
        for v in versions
        if v.data_version == data_version_id
        and v.code_version == code_version_id
        and {str(k): str(x) for k, x in v.hyperparameters.items()} == wanted
    ]
    return same[-1] if same else None


def data_version(manifest_uri: str, manifest_bytes: bytes | None = None) -> str:
    """``<manifest URI>@sha256:<digest>``: the training data, pinned to its exact manifest.

    The pipeline passes the training window document
    (:meth:`include.training_jobs.TrainingWindow.document`): it lists every used day's features
    manifest URI with its sha256, and each features manifest lists its input partitions'
    manifest checksums and every output file, so the digest identifies the training data down
    to the byte, and a change to any day's manifest gives another data version.
    """
    if manifest_bytes is None:
        from include.storage import storage_for

        manifest_bytes = storage_for(manifest_uri).read_bytes(manifest_uri)
    return f"{manifest_uri}@sha256:{hashlib.sha256(manifest_bytes).hexdigest()}"


# ---------------------------------------------------------------------------------------------
# the pipeline's two entry points: register a trained model, and a person's decision


def model_version_uri(models_zone_uri: str, dataset: str, version: str, name: str) -> str:
    """Where a version's own documents live: ``<models>/<dataset>/<version>/<name>``."""
    return f"{models_zone_uri.rstrip('/')}/{dataset}/{version}/{name}"


def paired_comparison(
    champion: ModelVersion | None, comparison: Mapping[str, Any] | None
) -> tuple[Mapping[str, Any] | None, str]:
    """The job's ``champion_comparison`` when it is paired and scored ``champion``'s very
    model.tar.gz (same sha256), else ``(None, why not)``.

    Reads the champion's model.tar.gz (a few MB) to check its digest: the champion can change
    between the start of the training job and its registration (a person approves another
    version), and a comparison with a model that is no longer the champion decides nothing.
    """
    if champion is None:
        return None, ""
    if not comparison:
        return None, "the training job had no champion channel"
    if not comparison.get("paired"):
        return None, f"the job could not score the champion: {comparison.get('reason', '?')}"
    from include.storage import storage_for

    try:
        data = storage_for(champion.model_uri).read_bytes(champion.model_uri)
    except (OSError, ValueError) as error:
        return None, f"cannot read champion version {champion.version}'s model: {error}"
    if hashlib.sha256(data).hexdigest() != comparison.get("champion_sha256"):
        return None, (
            f"the job scored another model than champion version {champion.version} "
            f"({champion.model_uri}); the champion changed after the job started"
        )
    return comparison, ""


def register_trained_model(
    dataset: str,
    *,
    registry: ModelRegistry,
    models_zone_uri: str,
    model_uri: str,
    evaluation: Mapping[str, Any],
    hyperparameters: Mapping[str, object],
    manifest_uri: str,
    baseline_uri: str,
    evaluation_uri: str,
    code_version_id: str,
    metric: str = "roc_auc",
    margin: float = 0.005,
    intended_use: str | None = None,
) -> dict[str, Any]:
    """Compare a trained model with the champion, register it, and write its model card.

    :param manifest_uri: what the model trained on: the training window document (or one
        features manifest); its URI and digest are the data version (:func:`data_version`) and
        the model card states its rows and days.
    :param evaluation: ``evaluation.json`` as ``training/train.py`` writes it:
        ``{"metrics": evaluate_binary_classifier(…), "groups": group_metrics(…),
        "permutation_importance": permutation_importance(…) or None, …}`` (test split).
    :return: small JSON-able facts for XCom: version, approval, reason, card URIs, champion.

    A retry after a partial run finds the version already registered for ``model_uri`` and
    finishes its card instead of registering the model twice. A model that reproduces a
    registered version (:func:`reproduced_version`) is recorded as such (``reproduced``, the
    version it reproduces) and not registered.
    """
    from include.model_card import build_model_card, write_model_card
    from include.model_selection import LOWER_IS_BETTER, decide_champion_challenger
    from include.storage import storage_for

    test = evaluation.get("metrics")
    if not isinstance(test, Mapping):
        raise RegistryError(
            f"evaluation has no test 'metrics' (keys: {', '.join(sorted(evaluation)) or 'none'})"
        )
    manifest_bytes = storage_for(manifest_uri).read_bytes(manifest_uri)
    versions = registry.list_versions(dataset)
    existing = [v for v in versions if v.model_uri == model_uri]
    reproduced = reproduced_version(
        versions, data_version(manifest_uri, manifest_bytes), code_version_id, hyperparameters
    )
    if not existing and reproduced is not None:
        # Two causes (a features and a drift event of one day) trained the same window with the
        # same code and hyperparameters: the second model is the first one again, and a version
        # of it would only wait for a person beside the first. Recorded, not registered.
        reason = (
            f"reproduces version {reproduced.version} (same data version, code version and "
            f"hyperparameters): {model_uri} is not registered again"
        )
        log.info("%s %s", dataset, reason)
        return {
            "dataset": dataset,
            "version": reproduced.version,
            "approval": reproduced.approval,
            "reason": reason,
            "reproduced": True,
            "champion_version": None,
            "decision": reproduced.decision,
            "card_uri": reproduced.card_uri,
            "card_markdown_uri": "",
            "registry_ref": reproduced.registry_ref,
        }
    if existing:
        version = existing[-1]
        # The champion it was compared with: the newest approved version registered before it.
        earlier = [
            v for v in versions if v.approval == APPROVED and int(v.version) < int(version.version)
        ]
        champion = earlier[-1] if earlier else None
        decision_reason = version.approval_reason
        log.info("%s is already version %s; finishing its card", model_uri, version.version)
        decision_record = version.decision
    else:
        champion = registry.approved_version(dataset)
        comparison, not_paired_because = paired_comparison(
            champion, evaluation.get("champion_comparison")
        )
        decision = decide_champion_challenger(
            headline_metrics(test), champion.metrics if champion else None,
            metric=metric, margin=margin, higher_is_better=metric not in LOWER_IS_BETTER,
            comparison=comparison, champion_version=champion.version if champion else None,
            not_paired_because=not_paired_because,
        )  # fmt: skip
        decision_reason = decision.reason
        decision_record = decision.comparison or {}
        version = registry.register_version(
            dataset,
            model_uri=model_uri,
            metrics=headline_metrics(test),
            data_version=data_version(manifest_uri, manifest_bytes),
            code_version=code_version_id,
            hyperparameters=hyperparameters,
            baseline_uri=baseline_uri,
            evaluation_uri=evaluation_uri,
            approval=decision.approval_status,
            approval_reason=decision.reason,
            decision=decision.comparison,
        )
    card = build_model_card(
        version=version,
        manifest=json.loads(manifest_bytes),
        evaluation=evaluation,
        champion_version=champion.version if champion else None,
        intended_use=intended_use,
        decision=decision_record,
    )
    json_uri, markdown_uri = write_model_card(
        card, model_version_uri(models_zone_uri, dataset, version.version, "model_card")
    )
    version = registry.set_card_uri(dataset, version.version, json_uri)
    return {
        "dataset": dataset,
        "version": version.version,
        "approval": version.approval,
        "reason": decision_reason,
        "champion_version": champion.version if champion else None,
        "decision": decision_record,
        "card_uri": json_uri,
        "card_markdown_uri": markdown_uri,
        "registry_ref": version.registry_ref,
    }


def approve_pending_version(
    dataset: str,
    version: str,
    approver: str,
    reason: str,
    *,
    decision: str = APPROVED,
    registry: ModelRegistry | None = None,
) -> dict[str, Any]:
    """A person's decision on a version waiting for manual approval.

    Only a ``PendingManualApproval`` version can be decided here, so a mistyped version number
    cannot silently demote the champion; the version's model card is rewritten with the
    decision. Returns the version's facts for XCom.

    :param decision: ``Approved`` or ``Rejected``.
    """
    if decision not in (APPROVED, REJECTED):
        raise RegistryError(f"decision {decision!r} must be {APPROVED} or {REJECTED}")
    if not reason.strip():
        raise RegistryError("reason is empty: say why the version is approved or rejected")
    registry = registry or registry_for()
    current = registry.get_version(dataset, str(version))
    if (current.approval, current.approver, current.approval_reason) == (
        decision,
        approver,
        reason,
    ):
        # The same decision already recorded: a retried task whose first try got this far.
        return current.to_dict()
    if current.approval != PENDING:
        raise NotPendingError(
            f"{dataset} version {version} is {current.approval}, not {PENDING}: "
            "only a pending version can be decided here"
        )
    updated = registry.set_approval(
        dataset, str(version), decision, approver=approver, reason=reason
    )
    if updated.card_uri:
        from include.model_card import update_card_approval

        update_card_approval(updated.card_uri, updated)
    return updated.to_dict()


def approval_request(
    dataset: str, version: str, *, registry: ModelRegistry | None = None
) -> dict[str, Any]:
    """The subject and Markdown body of the request a person answers for a pending version.

    The body is the model card's summary: test metrics of the version against the current
    champion's, the group gaps of both, and the card's limitations (see
    :func:`include.model_card.approval_summary`).

    :raises NotPendingError: the version is not ``PendingManualApproval``.
    """
    from include.model_card import approval_summary, read_model_card

    registry = registry or registry_for()
    challenger = registry.get_version(dataset, str(version))
    if challenger.approval != PENDING:
        raise NotPendingError(
            f"{dataset} version {version} is {challenger.approval}, not {PENDING}: "
            "there is nothing to decide"
        )
    champion = registry.approved_version(dataset)
    champion_has_card = champion is not None and champion.card_uri
    body = approval_summary(
        challenger,
        champion,
        challenger_card=read_model_card(challenger.card_uri) if challenger.card_uri else None,
        champion_card=read_model_card(champion.card_uri) if champion_has_card else None,
    )
    return {
        "dataset": dataset,
        "version": challenger.version,
        "champion_version": champion.version if champion else None,
        "subject": f"Approve {dataset} model version {challenger.version}?",
        "body": body,
    }


def decision_of_response(response: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(status, approver, reason)`` of the approval request's answer: the return value of
    Airflow's ``HITLOperator`` (``chosen_options``, ``params_input``, ``responded_by_user``).

    Refuses an answer nobody gave (a timeout's default), one option other than Approve or
    Reject, or no reason: a registry decision always names who made it and why.
    """
    user = response.get("responded_by_user") or {}
    approver = str(user.get("name") or "").strip()
    if response.get("timedout") or not approver:
        raise RegistryError(
            "the approval request has no responding user (responded_by_user is empty): "
            "nothing is decided without a person"
        )
    chosen = list(response.get("chosen_options") or [])
    if len(chosen) != 1 or chosen[0] not in STATUS_OF_OPTION:
        raise RegistryError(
            f"chosen_options {chosen!r} must be exactly one of {', '.join(STATUS_OF_OPTION)}"
        )
    reason = (response.get("params_input") or {}).get(REASON_FIELD)
    if not isinstance(reason, str) or not reason.strip():
        raise RegistryError(
            f"params_input.{REASON_FIELD} is empty: {approver} must say why the version is "
            f"{STATUS_OF_OPTION[chosen[0]].lower()}"
        )
    return STATUS_OF_OPTION[chosen[0]], approver, reason.strip()


def record_approval_response(
    dataset: str,
    version: str,
    response: Mapping[str, Any],
    *,
    registry: ModelRegistry | None = None,
) -> dict[str, Any]:
    """Record the answer to the approval request on the version: the status, the person who
    answered (``responded_by_user``) as the approver, and their reason; the card follows."""
    status, approver, reason = decision_of_response(response)
    return approve_pending_version(
        dataset, str(version), approver, reason, decision=status, registry=registry
    )
