"""Where a dataset's training and tuning jobs read and write in the lake, as request bodies.

The operators name a dataset and a features partition; this module turns them into the
CreateTrainingJob / CreateHyperParameterTuningJob bodies of :mod:`include.sagemaker_requests`:
the features splits as the ``train`` / ``validation`` / ``test`` channels, model artifacts under
``models/<dataset>/jobs/``, checkpoints under ``models/<dataset>/checkpoints/<job name>/`` (one
folder per job, so a job never resumes from another's checkpoints), and the training code.

Each channel is a SageMaker manifest file listing exactly the split's files that the features
partition's ``_manifest.json`` lists (:func:`write_training_channels`), never the split's folder:
the folder can hold files of an earlier or unfinished commit. The manifests sit at
``models/<dataset>/input/ds=<ds>/<digest of the features manifest>/<split>.manifest.json``:
a new commit of the partition gets new manifests, and a job's manifest never changes under it.

When the dataset has an approved model (the champion), the job also gets a ``champion`` channel:
a manifest listing the champion's ``model.tar.gz`` (:func:`write_champion_channel`), so
``training/train.py`` scores the champion on the challenger's own test rows and the registration
compares the two on identical rows (:mod:`include.model_selection`).

What differs between datasets reaches ``training/train.py`` as hyperparameters read from the
dataset spec (:func:`dataset_hyperparameters`): the label, the id columns the features job
writes, the categorical features and audit columns that group the fairness audit, and the
audit's threshold and limits, so a new dataset needs no change to the training code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from include.config import Settings
from include.sagemaker_requests import (
    MANIFEST_FILE,
    TRAINING_CHANNELS,
    build_training_job_request,
    build_tuning_job_request,
    channel_manifest,
    training_source_artifact,
)

# A committed partition's manifest, as spark_jobs/ingest.py names it.
MANIFEST_NAME = "_manifest.json"
CHANNEL_MANIFEST_SUFFIX = ".manifest.json"
# The channel that carries the champion's model.tar.gz (training/train.py's SM_CHANNEL_CHAMPION).
CHAMPION_CHANNEL = "champion"

# The hyperparameters a run starts from; tuning searches around them (training/train.py flags).
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "epochs": 20,
    "batch-size": 2048,
    "learning-rate": 0.002,
    "weight-decay": 0.0001,
    "hidden-width": 128,
    "num-layers": 2,
    "dropout": 0.1,
    "patience": 3,
    "seed": 17,
    "checkpoint-every-steps": 200,
}


def dataset_hyperparameters(dataset: str) -> dict[str, str]:
    """``label``, ``id-columns``, ``sensitive-groups`` and the fairness audit's flags of
    ``dataset``, from its spec.

    The id columns are what ``spark_jobs/features.py`` writes beside the features: the split key
    and the partition column. ``sensitive-groups`` is sent only when the spec declares
    ``features.sensitive_groups`` (an empty list turns group metrics off); a spec without it
    leaves train.py's own default. ``audit-attributes`` (columns the features job carries for
    the audit only) and ``features.fairness`` (``decision-threshold``, ``min-group-rows``,
    ``max-group-difference``, ``min-disparate-impact``) are sent only when the spec sets them.
    """
    from include.ingestion import DATASETS_DIR
    from spark_jobs.dataset_spec import load_spec

    spec = load_spec(DATASETS_DIR / f"{dataset}.yaml")
    if spec.features is None:
        raise ValueError(f"{spec.source}: has no features: block, so there is nothing to train on")
    hyperparameters = {
        "label": spec.label,
        "id-columns": f"{spec.features.split_key},{spec.partition_column}",
    }
    if spec.features.sensitive_groups is not None:
        hyperparameters["sensitive-groups"] = ",".join(spec.features.sensitive_groups)
    if spec.features.audit_attributes:
        hyperparameters["audit-attributes"] = ",".join(spec.features.audit_attributes)
    hyperparameters.update(spec.features.fairness.hyperparameters())
    return hyperparameters


def features_partition_uri(settings: Settings, dataset: str, ds: str) -> str:
    """The features partition of ``ds`` that spark_jobs/features.py commits."""
    return f"{settings.zone_uri('features')}/{dataset}/ds={ds}"


def features_files(settings: Settings, dataset: str, ds: str) -> tuple[list[str], bytes]:
    """The files the features manifest of ``ds`` lists, and the manifest's bytes.

    Never a folder listing: the folder can hold files of an earlier or unfinished commit.
    """
    from include.storage import storage_for
    from spark_jobs.ingest import IngestError, listed_files

    partition = features_partition_uri(settings, dataset, ds)
    manifest_uri = f"{partition}/{MANIFEST_NAME}"
    storage = storage_for(manifest_uri)
    if not storage.exists(manifest_uri):
        raise FileNotFoundError(
            f"{manifest_uri} does not exist: the features partition of {ds} was never committed "
            "(the features job runs after ingestion and validation)"
        )
    manifest_bytes = storage.read_bytes(manifest_uri)
    try:
        files = listed_files(json.loads(manifest_bytes), partition)
    except (ValueError, IngestError) as error:
        raise ValueError(f"cannot read the files of {manifest_uri}: {error}") from None
    return files, manifest_bytes


def training_inputs_uri(settings: Settings, dataset: str, ds: str, digest: str) -> str:
    """Where the channel manifests of one commit of the features partition ``ds`` live."""
    return f"{settings.zone_uri('models')}/{dataset}/input/ds={ds}/{digest}"


def training_channel_manifests(
    settings: Settings, dataset: str, ds: str
) -> dict[str, tuple[str, bytes]]:
    """Split → ``(URI, bytes)`` of its SageMaker manifest file: the prefix is the split's folder,
    the keys the files of that split the features manifest lists, sorted.

    Reads only the features manifest (no data). The URI holds the features manifest's digest, so
    the same commit always gives the same URIs and bytes.
    """
    files, manifest_bytes = features_files(settings, dataset, ds)
    partition = features_partition_uri(settings, dataset, ds)
    inputs = training_inputs_uri(
        settings, dataset, ds, hashlib.sha256(manifest_bytes).hexdigest()[:16]
    )
    manifests = {}
    for split in TRAINING_CHANNELS:
        prefix = f"{partition}/split={split}/"
        keys = sorted(uri[len(prefix) :] for uri in files if uri.startswith(prefix))
        if not keys:
            raise ValueError(
                f"the features manifest {partition}/{MANIFEST_NAME} lists no files under "
                f"split={split}/: the {split} channel would be empty"
            )
        manifests[split] = (
            f"{inputs}/{split}{CHANNEL_MANIFEST_SUFFIX}",
            channel_manifest(prefix, keys),
        )
    return manifests


def write_training_channels(settings: Settings, dataset: str, ds: str) -> dict[str, str]:
    """Write the channel manifests of the features partition ``ds``; split → manifest URI.

    Idempotent: a retried task writes the same bytes to the same objects.
    """
    from include.storage import storage_for

    channels = {}
    for split, (uri, data) in training_channel_manifests(settings, dataset, ds).items():
        storage_for(uri).write_bytes(uri, data)
        channels[split] = uri
    return channels


def champion_channel_manifest(settings: Settings, dataset: str, champion) -> tuple[str, bytes]:
    """``(URI, bytes)`` of the manifest of the ``champion`` channel: exactly the champion's
    ``model.tar.gz``, at ``models/<dataset>/input/champion/<version>.manifest.json``."""
    prefix, name = champion.model_uri.rsplit("/", 1)
    uri = (
        f"{settings.zone_uri('models')}/{dataset}/input/{CHAMPION_CHANNEL}/"
        f"{champion.version}{CHANNEL_MANIFEST_SUFFIX}"
    )
    return uri, channel_manifest(f"{prefix}/", [name])


def write_champion_channel(settings: Settings, dataset: str) -> str | None:
    """Write the ``champion`` channel's manifest and return its URI, or None when the dataset
    has no approved version (the first model has nothing to be compared with)."""
    from include.registry import registry_for
    from include.storage import storage_for

    champion = registry_for(settings).approved_version(dataset)
    if champion is None:
        return None
    uri, data = champion_channel_manifest(settings, dataset, champion)
    storage_for(uri).write_bytes(uri, data)
    return uri


def jobs_output_uri(settings: Settings, dataset: str) -> str:
    """Where every job of ``dataset`` writes ``<job name>/output/model.tar.gz``."""
    return f"{settings.zone_uri('models')}/{dataset}/jobs"


def checkpoint_uri(settings: Settings, dataset: str, job_name: str) -> str:
    return f"{settings.zone_uri('models')}/{dataset}/checkpoints/{job_name}"


def source_artifact(settings: Settings) -> tuple[str | None, bytes | None]:
    """The training code tarball to upload on aws; locally the repository's training/ runs."""
    if settings.is_local:
        return None, None
    return training_source_artifact(settings)


def training_channels(settings: Settings, dataset: str, ds: str) -> dict[str, str]:
    """Channel → manifest URI: the three splits, and ``champion`` when there is one."""
    channels = write_training_channels(settings, dataset, ds)
    if champion := write_champion_channel(settings, dataset):
        channels[CHAMPION_CHANNEL] = champion
    return channels


def training_job_request(
    settings: Settings,
    *,
    dataset: str,
    ds: str,
    job_name: str,
    hyperparameters: Mapping[str, Any] | None = None,
    source_uri: str | None = None,
) -> dict:
    """CreateTrainingJob for ``dataset`` on the features partition of ``ds``.

    Writes the channel manifests the body names (:func:`write_training_channels`, and
    :func:`write_champion_channel` when there is a champion), so the body is ready to send.
    Hyperparameters: the defaults, then the dataset's (:func:`dataset_hyperparameters`), then
    ``hyperparameters`` (the task's overrides).
    """
    return build_training_job_request(
        settings,
        job_name=job_name,
        hyperparameters={
            **DEFAULT_HYPERPARAMETERS,
            **dataset_hyperparameters(dataset),
            **(hyperparameters or {}),
        },
        channels=training_channels(settings, dataset, ds),
        channel_data_type=MANIFEST_FILE,
        output_uri=jobs_output_uri(settings, dataset),
        checkpoint_uri=checkpoint_uri(settings, dataset, job_name),
        source_uri=source_uri,
        tags={"dataset": dataset, "features-ds": ds},
    )


def tuning_job_request(
    settings: Settings,
    *,
    dataset: str,
    ds: str,
    tuning_job_name: str,
    hyperparameters: Mapping[str, Any] | None = None,
    source_uri: str | None = None,
    max_jobs: int | None = None,
    max_parallel_jobs: int | None = None,
) -> dict:
    """CreateHyperParameterTuningJob: a Bayesian search over training jobs of ``dataset``; every
    trial reads the channels :func:`training_job_request` writes."""
    training = training_job_request(
        settings,
        dataset=dataset,
        ds=ds,
        job_name=tuning_job_name,
        hyperparameters=hyperparameters,
        source_uri=source_uri,
    )
    return build_tuning_job_request(
        settings,
        tuning_job_name=tuning_job_name,
        training_request=training,
        max_jobs=max_jobs,
        max_parallel_jobs=max_parallel_jobs,
        tags={"dataset": dataset, "features-ds": ds},
    )
