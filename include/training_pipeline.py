"""The small steps of the training DAG around the training job: the monitoring baseline of the
training partition, and registering the trained model with its lineage.

Both are light (a day of curated rows into pandas; a model.tar.gz of a few MB), so they run in
the Airflow task itself on both targets; the heavy work — training and tuning — runs in
SageMaker or the local runtime.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from typing import Any

from include.config import REPO_ROOT, Settings
from include.training_jobs import features_partition_uri

EVALUATION_FILE = "evaluation.json"
MANIFEST_NAME = "_manifest.json"


def baseline_uri(settings: Settings, dataset: str, ds: str) -> str:
    """The monitoring baseline of the training partition ``ds``; model versions trained on that
    partition point at it from the registry (their ``baseline_uri``)."""
    return f"{settings.zone_uri('monitoring')}/{dataset}/baselines/ds={ds}"


def write_training_baseline(settings: Settings, dataset: str, ds: str) -> dict[str, str]:
    """Model Monitor statistics/constraints and the drift reference of curated partition ``ds``.

    Idempotent: the baseline is deterministic, so a retry writes the same bytes.
    """
    from include.dq.gate import (
        curated_partition_uri,
        manifest_file_uris,
        read_manifest,
        read_partition_frame,
    )
    from include.ingestion import DATASETS_DIR
    from include.monitoring.baseline import write_baseline
    from include.monitoring.columns import monitored_columns
    from include.monitoring.thresholds import load_monitoring_config
    from spark_jobs.dataset_spec import load_spec

    spec = load_spec(DATASETS_DIR / f"{dataset}.yaml")
    partition = curated_partition_uri(settings.lake_root, dataset, ds)
    manifest = read_manifest(partition)
    frame = read_partition_frame(manifest_file_uris(manifest, f"{partition}/{MANIFEST_NAME}"), {})
    columns = monitored_columns(spec, frame.columns)
    return write_baseline(
        frame,
        columns,
        baseline_uri(settings, dataset, ds),
        load_monitoring_config(DATASETS_DIR / f"{dataset}.monitoring.yaml"),
        metadata={"dataset": dataset, "ds": ds, "curated_manifest": f"{partition}/{MANIFEST_NAME}"},
    )


def read_model_file(model_uri: str, name: str) -> bytes:
    """One file of a model.tar.gz; an error names the archive and the missing file."""
    from include.storage import storage_for

    data = storage_for(model_uri).read_bytes(model_uri)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.name.lstrip("./") == name and member.isfile():
                return archive.extractfile(member).read()
    raise FileNotFoundError(f"{model_uri} has no {name}: the training job did not write it")


def code_version_of(settings: Settings, job: Mapping[str, Any]) -> str:
    """The training code a job ran: the repository's version locally; on aws the
    content-addressed source tarball the job was given (MWAA has no git checkout)."""
    from include.registry import code_version

    if settings.is_local:
        return code_version(REPO_ROOT)
    return f"sourcedir:{job['code_uri']}" if job.get("code_uri") else "unknown"


def register_job_model(
    settings: Settings,
    dataset: str,
    job: Mapping[str, Any],
    *,
    margin: float = 0.005,
) -> dict[str, Any]:
    """Register the model of a finished training (or the best of a tuning) job.

    Reads the test-split evaluation the job wrote into its model, stores it beside the model,
    compares the model with the champion, registers the version (approved automatically when it
    beats the champion by ``margin``, else pending a person's approval) with its data version
    (the features manifest), code version, hyperparameters and monitoring baseline, and writes
    its model card. Returns small facts for XCom.
    """
    from include import registry
    from include.storage import storage_for

    model_uri = job["model_uri"]
    evaluation_bytes = read_model_file(model_uri, EVALUATION_FILE)
    evaluation_uri = f"{model_uri.rsplit('/', 1)[0]}/{EVALUATION_FILE}"
    storage_for(evaluation_uri).write_bytes(evaluation_uri, evaluation_bytes)
    ds = job["ds"]
    return registry.register_trained_model(
        dataset,
        registry=registry.registry_for(settings),
        models_zone_uri=settings.zone_uri("models"),
        model_uri=model_uri,
        evaluation=json.loads(evaluation_bytes),
        hyperparameters=job.get("hyperparameters", {}),
        manifest_uri=f"{features_partition_uri(settings, dataset, ds)}/{MANIFEST_NAME}",
        baseline_uri=baseline_uri(settings, dataset, ds),
        evaluation_uri=evaluation_uri,
        code_version_id=code_version_of(settings, job),
        margin=margin,
    )
