"""Where a dataset's training and tuning jobs read and write in the lake, as request bodies.

The operators name a dataset and a features partition; this module turns them into the
CreateTrainingJob / CreateHyperParameterTuningJob bodies of :mod:`include.sagemaker_requests`:
the features splits as the ``train`` / ``validation`` / ``test`` channels, model artifacts under
``models/<dataset>/jobs/``, checkpoints under ``models/<dataset>/checkpoints/<job name>/`` (one
folder per job, so a job never resumes from another's checkpoints), and the training code.

A run of day ``D`` trains on a window of validated days (the spec's ``training:`` block,
:func:`training_window`): ``D`` and the ``window_days - 1`` days before it that have a committed
features partition, split at random (each day's split into the channel of its name) or by time
(earlier days train, the latest day validates and tests). Each channel is a SageMaker manifest
file listing exactly the files of its splits that the days' ``_manifest.json`` list
(:func:`write_training_channels`), never a folder: a folder can hold files of an earlier or
unfinished commit. The manifests and the window document (every used day's manifest URI and
sha256: the model's data version) sit at ``models/<dataset>/input/ds=<D>/<digest>/``, the digest
covering every used day's manifest: a new commit of any day gets new manifests, and a job's
manifest never changes under it.

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
from dataclasses import dataclass
from datetime import date, timedelta
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
# The window document beside a window's channel manifests (TrainingWindow.document).
WINDOW_FILE = "window.json"
WINDOW_KIND = "training_window"
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
    """Where the channel manifests and the window document of one training window live."""
    return f"{settings.zone_uri('models')}/{dataset}/input/ds={ds}/{digest}"


@dataclass(frozen=True)
class WindowDay:
    """One used day of a training window: its committed features manifest and the files it lists."""

    ds: str
    partition: str
    manifest_bytes: bytes
    files: tuple[str, ...]

    @property
    def manifest_uri(self) -> str:
        return f"{self.partition}/{MANIFEST_NAME}"

    @property
    def manifest(self) -> dict:
        return json.loads(self.manifest_bytes)


@dataclass(frozen=True)
class TrainingWindow:
    """The days a training run of ``ds`` reads (the spec's ``training:`` block), oldest first.

    ``days_asked`` is ``ds`` and the ``window_days - 1`` days before it; ``days`` the asked days
    with a committed features partition (a features partition exists only for a validated
    day); the others are missing.
    """

    dataset: str
    ds: str
    window_days: int
    split: str
    days_asked: tuple[str, ...]
    days: tuple[WindowDay, ...]

    @property
    def days_used(self) -> list[str]:
        return [day.ds for day in self.days]

    @property
    def days_missing(self) -> list[str]:
        used = set(self.days_used)
        return [day for day in self.days_asked if day not in used]

    def channel_parts(self) -> dict[str, list[tuple[WindowDay, str]]]:
        """Channel → the ``(day, features split)`` pairs it reads.

        ``random``: each channel reads the split of its name on every used day. ``time``: the
        train channel reads every split of the earlier days; validation and test read the latest
        day's validation and test splits (the latest day's train split is left out, so nothing of
        the latest day trains). The hash split keeps an entity in one split on every day, but
        across days the time split can put one entity's earlier rows in train and its latest
        rows in test: it measures how the model does on a later day, not on unseen entities.
        """
        if self.split == "random":
            return {name: [(day, name) for day in self.days] for name in TRAINING_CHANNELS}
        *earlier, latest = self.days
        return {
            "train": [(day, name) for day in earlier for name in TRAINING_CHANNELS],
            "validation": [(latest, "validation")],
            "test": [(latest, "test")],
        }

    def document(self) -> bytes:
        """The window document: what was asked, which days' manifests were used (URI and
        sha256, rows and label rate per split), what each channel reads, and rows per channel
        summed over the window. Its sha256 is the model's data version
        (:func:`include.registry.data_version`); deterministic bytes.

        The run's day's label, features, lookback and spec fingerprint are copied as the
        features manifest names them, so the model card reads either document alike.
        """
        latest = self.days[-1].manifest
        parts = self.channel_parts()
        document = {
            "kind": WINDOW_KIND,
            "dataset": self.dataset,
            "ds": self.ds,
            "label": latest.get("label"),
            "features": latest.get("features"),
            "lookback_days": latest.get("lookback_days"),
            "missing_days": latest.get("missing_days") or [],
            "spec_fingerprint": latest.get("spec_fingerprint"),
            "window": {
                "window_days": self.window_days,
                "split": self.split,
                "days_asked": list(self.days_asked),
                "days_used": self.days_used,
                "days_missing": self.days_missing,
                "channels": {
                    channel: [{"ds": day.ds, "split": name} for day, name in pairs]
                    for channel, pairs in parts.items()
                },
            },
            "manifests": [
                {
                    "ds": day.ds,
                    "uri": day.manifest_uri,
                    "sha256": hashlib.sha256(day.manifest_bytes).hexdigest(),
                    "splits": day.manifest.get("splits"),
                }
                for day in self.days
            ],
            "splits": {channel: _summed_splits(pairs) for channel, pairs in parts.items()},
        }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _summed_splits(pairs: list[tuple[WindowDay, str]]) -> dict[str, Any]:
    """Rows and label rate of a channel, summed over its days' splits (the features manifests'
    ``splits``); ``None`` when a manifest does not count a split's rows."""
    rows = positives = 0
    for day, name in pairs:
        split = (day.manifest.get("splits") or {}).get(name) or {}
        if split.get("rows") is None:
            return {"rows": None, "label_mean": None}
        rows += split["rows"]
        positives += split["rows"] * (split.get("label_mean") or 0.0)
    return {"rows": rows, "label_mean": round(positives / rows, 6) if rows else 0.0}


def training_window(settings: Settings, dataset: str, ds: str) -> TrainingWindow:
    """The training window of ``ds`` from the dataset spec's ``training:`` block and the lake.

    Reads only features manifests. ``ds`` itself must be committed (as it always had to be); an
    earlier day without a committed features partition is missing. A ``time`` split with no
    earlier day present, or days whose features differ from ``ds``'s (the spec's features
    changed in between), are refused with the reason.
    """
    from include.ingestion import DATASETS_DIR
    from include.storage import storage_for
    from spark_jobs.dataset_spec import load_spec

    spec = load_spec(DATASETS_DIR / f"{dataset}.yaml")
    training = spec.training
    anchor = date.fromisoformat(ds)
    asked = tuple(
        (anchor - timedelta(days=back)).isoformat()
        for back in range(training.window_days - 1, -1, -1)
    )
    days = []
    for day in asked:
        partition = features_partition_uri(settings, dataset, day)
        if day != ds and not storage_for(partition).exists(f"{partition}/{MANIFEST_NAME}"):
            continue
        files, manifest_bytes = features_files(settings, dataset, day)
        days.append(WindowDay(day, partition, manifest_bytes, tuple(files)))
    window = TrainingWindow(dataset, ds, training.window_days, training.split, asked, tuple(days))
    if training.split == "time" and len(days) < 2:
        raise ValueError(
            f"{spec.source}: training.split is 'time' (train on earlier days, test on the latest) "
            f"but no day of {asked[0]}..{asked[-2]} before {ds} has a committed features "
            "partition: nothing to train on; wait for earlier days or use split: random"
        )
    features = days[-1].manifest.get("features")
    for day in days[:-1]:
        if day.manifest.get("features") != features:
            raise ValueError(
                f"the features manifest of ds={day.ds} ({day.manifest_uri}) lists other features "
                f"than ds={ds}'s (the spec's features changed in between): re-run the features "
                f"job of ds={day.ds} or shorten training.window_days in {spec.source}"
            )
    return window


def training_channel_manifests(
    settings: Settings, window: TrainingWindow
) -> dict[str, tuple[str, bytes]]:
    """Split → ``(URI, bytes)`` of its SageMaker manifest file: the keys of the files each
    channel reads (:meth:`TrainingWindow.channel_parts`) that the features manifests list, sorted.

    A one-day window (``window_days: 1``) keeps the one-partition layout: the prefix is the
    split's folder and the URI holds the features manifest's digest. A longer window's prefix
    is the dataset's features folder, its keys ``ds=<D>/split=<S>/…``, its URI the digest of
    the window document (which lists every used day's manifest and sha256). Reads no data; the
    same window always gives the same URIs and bytes.
    """
    base = f"{settings.zone_uri('features')}/{window.dataset}"
    inputs = training_inputs_uri(settings, window.dataset, window.ds, window_digest(window))
    manifests = {}
    for channel, pairs in window.channel_parts().items():
        uris = []
        for day, name in pairs:
            folder = f"{day.partition}/split={name}/"
            uris.extend(uri for uri in day.files if uri.startswith(folder))
        if not uris:
            where = "; ".join(
                f"the features manifest {day.manifest_uri} lists no files under split={name}/"
                for day, name in pairs
            )
            raise ValueError(f"{where}: the {channel} channel would be empty")
        if window.window_days == 1:
            prefix = f"{window.days[0].partition}/split={channel}/"
        else:
            prefix = f"{base}/"
        manifests[channel] = (
            f"{inputs}/{channel}{CHANNEL_MANIFEST_SUFFIX}",
            channel_manifest(prefix, sorted(uri[len(prefix) :] for uri in uris)),
        )
    return manifests


def window_digest(window: TrainingWindow) -> str:
    """The content address of a window's inputs folder: the features manifest's digest for a
    one-day window (the one-partition layout), else the window document's."""
    data = window.days[0].manifest_bytes if window.window_days == 1 else window.document()
    return hashlib.sha256(data).hexdigest()[:16]


def window_document_uri(settings: Settings, window: TrainingWindow) -> str:
    """Where the window document sits: beside the channel manifests it describes."""
    digest = window_digest(window)
    return f"{training_inputs_uri(settings, window.dataset, window.ds, digest)}/{WINDOW_FILE}"


def write_training_window(settings: Settings, window: TrainingWindow) -> str:
    """Write the window document and return its URI (idempotent: the same bytes, same object)."""
    from include.storage import storage_for

    uri = window_document_uri(settings, window)
    storage_for(uri).write_bytes(uri, window.document())
    return uri


def write_training_channels(settings: Settings, dataset: str, ds: str) -> dict[str, str]:
    """Write the window document and the channel manifests of the training window of ``ds``;
    split → manifest URI.

    Idempotent: a retried task writes the same bytes to the same objects.
    """
    from include.storage import storage_for

    window = training_window(settings, dataset, ds)
    write_training_window(settings, window)
    channels = {}
    for split, (uri, data) in training_channel_manifests(settings, window).items():
        storage_for(uri).write_bytes(uri, data)
        channels[split] = uri
    return channels


def job_window_uri(settings: Settings, dataset: str, ds: str, job: Mapping[str, Any]) -> str:
    """The window document of the window a finished training job read.

    The job's train channel's folder when the job names its channels (``job["channels"]``);
    else the window of ``ds`` as the lake has it now, written if absent.
    """
    channels = job.get("channels") or {}
    if train := channels.get("train"):
        return f"{train.rsplit('/', 1)[0]}/{WINDOW_FILE}"
    return write_training_window(settings, training_window(settings, dataset, ds))


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
    tags: Mapping[str, str] | None = None,
) -> dict:
    """CreateTrainingJob for ``dataset`` on the features partition of ``ds``.

    Writes the channel manifests the body names (:func:`write_training_channels`, and
    :func:`write_champion_channel` when there is a champion), so the body is ready to send.
    Hyperparameters: the defaults, then the dataset's (:func:`dataset_hyperparameters`), then
    ``hyperparameters`` (the task's overrides). ``tags``: the job's cost allocation tags
    (:func:`include.job_tags.job_tags`); ``features-ds`` is added.
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
        tags={"dataset": dataset, **(tags or {}), "features-ds": ds},
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
    tags: Mapping[str, str] | None = None,
) -> dict:
    """CreateHyperParameterTuningJob: a Bayesian search over training jobs of ``dataset``; every
    trial reads the channels :func:`training_job_request` writes. ``tags`` as there."""
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
        tags={"dataset": dataset, **(tags or {}), "features-ds": ds},
    )
