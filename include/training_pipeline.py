"""The small steps of the training DAG around the training job: the plan of the monitoring
baseline's processing job, and registering the trained model with its lineage.

The worker reads only manifests, the spec and a model.tar.gz of a few MB; the heavy work —
training, tuning and the baseline (:mod:`include.monitoring.job`) — runs in SageMaker or the
local runtimes.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from typing import Any

from include.config import REPO_ROOT, Settings

EVALUATION_FILE = "evaluation.json"


def evaluation_uri_of(model_uri: str) -> str:
    """Where a registered model's test evaluation is stored: beside its ``model.tar.gz``."""
    return f"{model_uri.rsplit('/', 1)[0]}/{EVALUATION_FILE}"


MANIFEST_NAME = "_manifest.json"


def baseline_uri(settings: Settings, dataset: str, ds: str, job_name: str) -> str:
    """The monitoring baseline of the model that training job ``job_name`` trained on the window
    ending on ``ds``; the model version registered from that job points at it (its ``baseline_uri``).

    Per model, not per partition: the baseline holds the model's own score distribution.
    """
    return f"{settings.zone_uri('monitoring')}/{dataset}/baselines/ds={ds}/{job_name}"


def output_data_uri(model_uri: str) -> str:
    """The job's ``output.tar.gz`` (SM_OUTPUT_DATA_DIR): SageMaker writes it beside
    ``model.tar.gz`` under ``<S3OutputPath>/<job name>/output/``, and so does the local runtime."""
    prefix, name = model_uri.rsplit("/", 1)
    if name != "model.tar.gz":
        raise ValueError(f"{model_uri} is not a training job's model.tar.gz")
    return f"{prefix}/output.tar.gz"


def curated_day_files(settings: Settings, dataset: str, ds: str) -> tuple[str, list[str]]:
    """The curated partition of ``ds`` and the keys (relative to it) of exactly the files its
    manifest lists, in order."""
    from include.dq.gate import curated_partition_uri, manifest_file_uris, read_manifest

    partition = curated_partition_uri(settings.lake_root, dataset, ds)
    files = manifest_file_uris(read_manifest(partition), f"{partition}/{MANIFEST_NAME}")
    outside = [uri for uri in files if not uri.startswith(f"{partition}/")]
    if outside:
        raise ValueError(f"the curated manifest of {ds} lists files outside {partition}: {outside}")
    return partition, [uri[len(partition) + 1 :] for uri in files]


def monitoring_config_of(dataset: str):
    """The dataset spec and its monitoring config (named by its file name: the worker's path
    means nothing in the job)."""
    from dataclasses import replace

    from include.ingestion import DATASETS_DIR
    from include.monitoring.thresholds import load_monitoring_config
    from spark_jobs.dataset_spec import load_spec

    spec = load_spec(DATASETS_DIR / f"{dataset}.yaml")
    config_path = DATASETS_DIR / f"{dataset}.monitoring.yaml"
    return spec, replace(load_monitoring_config(config_path), source=config_path.name)


def monitoring_job_inputs(settings: Settings, dataset: str, ds: str):
    """What both monitoring jobs' plans start from: the dataset spec, its monitoring config, and
    the curated partition of ``ds`` with the keys of exactly the files its manifest lists, in
    order."""
    spec, config = monitoring_config_of(dataset)
    partition, keys = curated_day_files(settings, dataset, ds)
    return spec, config, partition, keys


def read_window(window_uri: str) -> dict[str, Any]:
    """A training window document (:meth:`include.training_jobs.TrainingWindow.document`)."""
    from include.storage import storage_for

    return json.loads(storage_for(window_uri).read_bytes(window_uri))


def baseline_job_plan(
    settings: Settings, dataset: str, ds: str, job: Mapping[str, Any]
) -> dict[str, Any]:
    """Write the plan of the monitoring baseline of the model ``job`` trained; returns the
    processing job's ``inputs``, ``manifest_inputs`` and ``outputs``.

    The baseline (:func:`include.monitoring.job.run_baseline_job`) is the curated rows of every
    day of the model's training window (the columns the model reads, before one-hot) joined on
    the day and the split key with the scores the model gave those rows
    (``baseline_scores.parquet`` in the job's ``output.tar.gz``), so batches are checked for
    prediction drift as well as feature drift. The curated channel lists each day's files as
    ``ds=<D>/…`` under the dataset's curated folder. Reads only the window document, the
    curated manifests, the spec and the monitoring config; writes the plan and the channel
    manifests under ``monitoring/<dataset>/jobs/baseline/ds=<D>/<digest>/``.
    """
    from include.monitoring.columns import monitored_columns
    from include.monitoring.job import BASELINE_OUTPUT, CURATED_INPUT, SCORES_INPUT, baseline_plan
    from include.sagemaker_requests import write_processing_inputs
    from include.training_jobs import job_window_uri

    spec, config = monitoring_config_of(dataset)
    window_uri = job_window_uri(settings, dataset, ds, job)
    days = read_window(window_uri)["window"]["days_used"]
    curated_keys, manifests = [], []
    for day in days:
        partition, keys = curated_day_files(settings, dataset, day)
        # Every day's partition is <curated zone>/<dataset>/ds=<day>: the key's first folder.
        curated = partition.rsplit("/", 1)[0]
        curated_keys.extend(f"ds={day}/{key}" for key in keys)
        manifests.append(f"{partition}/{MANIFEST_NAME}")
    score = config.score_column
    curated_columns = [name for name, _ in spec.curated_columns()]
    columns = monitored_columns(
        spec, [*curated_columns, *([score] if score else [])], score_column=score
    )
    scores_uri = output_data_uri(job["model_uri"])
    plan = baseline_plan(
        columns=list(columns),
        key=spec.features.split_key,
        config=config,
        metadata={
            "dataset": dataset,
            "ds": ds,
            "training_job": job["job_name"],
            "training_window": window_uri,
            "days": days,
            # The scores' column that says which day a row is of (train.py's id columns).
            "partition_column": spec.partition_column,
            "curated_manifests": manifests,
            "scores": scores_uri,
        },
        curated_files=curated_keys,
    )
    scores_folder, scores_name = scores_uri.rsplit("/", 1)
    channels = {CURATED_INPUT: (curated, curated_keys)}
    if score:
        channels[SCORES_INPUT] = (scores_folder, [scores_name])
    inputs, manifest_inputs = write_processing_inputs(
        f"{settings.zone_uri('monitoring')}/{dataset}/jobs/baseline/ds={ds}", plan, channels
    )
    return {
        "ds": ds,
        "inputs": inputs,
        "manifest_inputs": manifest_inputs,
        "outputs": {BASELINE_OUTPUT: baseline_uri(settings, dataset, ds, job["job_name"])},
    }


def read_tar_member(tarball_uri: str, name: str) -> bytes:
    """One file of a ``.tar.gz`` (model.tar.gz, output.tar.gz); an error names both."""
    from include.storage import storage_for

    data = storage_for(tarball_uri).read_bytes(tarball_uri)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.name.lstrip("./") == name and member.isfile():
                return archive.extractfile(member).read()
    raise FileNotFoundError(f"{tarball_uri} has no {name}: the training job did not write it")


def read_model_file(model_uri: str, name: str) -> bytes:
    """One file of a model.tar.gz."""
    return read_tar_member(model_uri, name)


def code_version_of(settings: Settings, job: Mapping[str, Any]) -> str:
    """The training code a job ran: the repository's version locally; on aws the
    content-addressed source tarball the job was given (MWAA has no git checkout)."""
    from include.registry import code_version
    from include.sagemaker_requests import SHARED_MODULES

    if settings.is_local:
        return code_version(REPO_ROOT, SHARED_MODULES)
    return f"sourcedir:{job['code_uri']}" if job.get("code_uri") else "unknown"


# The run params that change what a training produces (approval_margin only changes the decision).
TRAINING_RUN_PARAMS = ("epochs", "max_trials", "parallel_trials")


def planned_code_version(settings: Settings) -> str:
    """The code version a training started now would register (:func:`code_version_of`):
    the repository's locally; on aws the content-addressed source tarball the job will get."""
    from include.registry import code_version
    from include.sagemaker_requests import SHARED_MODULES, training_source_artifact

    if settings.is_local:
        return code_version(REPO_ROOT, SHARED_MODULES)
    return f"sourcedir:{training_source_artifact(settings)[0]}"


def training_cause(
    settings: Settings, dataset: str, ds: str, run_params: Mapping[str, Any]
) -> dict[str, Any]:
    """What a training run of ``ds`` would train: the window's data version, the code version
    and the run's training parameters, keyed by the digest of the three.

    Two runs with one key train the same model (a features and a drift event of one day, say):
    the second one is not needed (:func:`previous_training`). Reads only features manifests.
    """
    import hashlib

    from include.registry import data_version
    from include.training_jobs import training_window, window_document_uri

    window = training_window(settings, dataset, ds)
    cause = {
        "dataset": dataset,
        "ds": ds,
        "data_version": data_version(window_document_uri(settings, window), window.document()),
        "code_version": planned_code_version(settings),
        "params": {name: run_params[name] for name in TRAINING_RUN_PARAMS},
    }
    digest = hashlib.sha256(json.dumps(cause, sort_keys=True).encode()).hexdigest()[:16]
    return {**cause, "key": digest}


def training_record_uri(settings: Settings, dataset: str, key: str) -> str:
    """Where the training of one cause is recorded: ``models/<dataset>/trainings/<key>.json``."""
    return f"{settings.zone_uri('models')}/{dataset}/trainings/{key}.json"


def previous_training(settings: Settings, cause: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record of a finished training of the same cause, if one registered its model."""
    from include.storage import storage_for

    uri = training_record_uri(settings, cause["dataset"], cause["key"])
    storage = storage_for(uri)
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None


def record_training(
    settings: Settings, cause: Mapping[str, Any], registered: Mapping[str, Any], run_id: str
) -> str:
    """Record that ``run_id`` trained ``cause`` and what the registry made of it; its URI.

    Written after registration, so a run that failed before it leaves no record and the next
    run of the cause trains. The training DAG runs one run at a time, so no two runs of one
    cause can both find no record and train.
    """
    from include.scoring_job import json_bytes
    from include.storage import storage_for

    uri = training_record_uri(settings, cause["dataset"], cause["key"])
    record = {
        **cause,
        "run_id": run_id,
        "version": registered["version"],
        "approval": registered["approval"],
        "reproduced": bool(registered.get("reproduced")),
    }
    storage_for(uri).write_bytes(uri, json_bytes(record))
    return uri


def register_job_model(
    settings: Settings,
    dataset: str,
    job: Mapping[str, Any],
    *,
    margin: float = 0.005,
) -> dict[str, Any]:
    """Register the model of a finished training (or the best of a tuning) job.

    Reads the test-split evaluation the job wrote into its model, stores it beside the model,
    compares the model with the champion, registers the version (approved automatically when the
    lower bound of the paired interval of its AUC gain clears ``margin``, else pending a
    person's approval) with its data version
    (the training window document, which names every used day's features manifest and its
    sha256: :func:`include.training_jobs.job_window_uri`), code version, hyperparameters and
    monitoring baseline, and writes its model card. Returns small facts for XCom.
    """
    from include import registry
    from include.storage import storage_for
    from include.training_jobs import job_window_uri

    model_uri = job["model_uri"]
    evaluation_bytes = read_model_file(model_uri, EVALUATION_FILE)
    evaluation_uri = evaluation_uri_of(model_uri)
    storage_for(evaluation_uri).write_bytes(evaluation_uri, evaluation_bytes)
    ds = job["ds"]
    return registry.register_trained_model(
        dataset,
        registry=registry.registry_for(settings),
        models_zone_uri=settings.zone_uri("models"),
        model_uri=model_uri,
        evaluation=json.loads(evaluation_bytes),
        hyperparameters=job.get("hyperparameters", {}),
        manifest_uri=job_window_uri(settings, dataset, ds, job),
        baseline_uri=baseline_uri(settings, dataset, ds, job["job_name"]),
        evaluation_uri=evaluation_uri,
        code_version_id=code_version_of(settings, job),
        margin=margin,
    )


def pending_approval_extra(registered: Mapping[str, Any]) -> dict[str, Any] | None:
    """The extra of the ``<dataset>_model_pending_approval`` asset event for a registration
    (``register_job_model``'s result), or None when the version needs no person's approval."""
    from include.registry import PENDING

    # A reproduction of a registered version asks nothing: that version's request stands.
    if registered["approval"] != PENDING or registered.get("reproduced"):
        return None
    return {
        "dataset": registered["dataset"],
        "version": registered["version"],
        "champion_version": registered.get("champion_version"),
        "reason": registered.get("reason", ""),
    }
