"""The small steps of the training DAG around the training job: the monitoring baseline of the
training partition, and registering the trained model with its lineage.

Both run in the Airflow task itself on both targets: the baseline streams the curated day's
Parquet record batches (include/monitoring/streaming.py), so its memory does not grow with the
day's rows, but the training scores' keys are still held whole for the join (moving it into a
processing job is still to do); registration reads a model.tar.gz of a few MB. The heavy work —
training and tuning — runs in SageMaker or the local runtime.
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


# What train.py writes into SM_OUTPUT_DATA_DIR (output.tar.gz beside model.tar.gz): every
# training-partition row's ids with its split and the final model's score.
BASELINE_SCORES_FILE = "baseline_scores.parquet"
# The splits the model did not train on: the score's reference distribution comes from these
# alone (a model scores its own training rows more confidently than new data).
TRAINING_SPLIT = "train"
HELD_OUT_SPLITS = ("validation", "test")


def baseline_uri(settings: Settings, dataset: str, ds: str, job_name: str) -> str:
    """The monitoring baseline of the model that training job ``job_name`` trained on partition
    ``ds``; the model version registered from that job points at it (its ``baseline_uri``).

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


def write_training_baseline(
    settings: Settings, dataset: str, ds: str, job: Mapping[str, Any]
) -> dict[str, str]:
    """Model Monitor statistics/constraints and the drift reference of the model ``job`` trained.

    The reference is curated partition ``ds`` (the columns the model reads, before one-hot) joined
    on the split key with the scores the model gave those rows (``baseline_scores.parquet`` from
    the job's output), so batches are checked for prediction drift as well as feature drift. The
    features' reference is the whole partition; the score's distribution comes from the
    validation and test rows only (see :data:`HELD_OUT_SPLITS`), its missing rate from every row.
    The profile's ``metadata.score_reference`` says which rows and how many.
    The curated files are streamed a record batch at a time
    (:func:`include.monitoring.baseline.build_baseline_from_parquet`); the scores, joined to each
    batch by key, are held whole (key, split and score of each row).
    Idempotent: the baseline is deterministic, so a retry writes the same bytes.
    """
    from include.dq.gate import curated_partition_uri, manifest_file_uris, read_manifest
    from include.ingestion import DATASETS_DIR
    from include.monitoring.baseline import (
        MIN_REFERENCE_ROWS_PER_PSI_BIN,
        SCORE_ROWS_COLUMN,
        build_baseline_from_parquet,
        min_score_reference_rows,
        store_baseline,
    )
    from include.monitoring.columns import monitored_columns
    from include.monitoring.streaming import parquet_columns, parquet_source, run_pass
    from include.monitoring.thresholds import load_monitoring_config
    from spark_jobs.dataset_spec import load_spec

    spec = load_spec(DATASETS_DIR / f"{dataset}.yaml")
    config = load_monitoring_config(DATASETS_DIR / f"{dataset}.monitoring.yaml")
    partition = curated_partition_uri(settings.lake_root, dataset, ds)
    manifest = read_manifest(partition)
    paths = manifest_file_uris(manifest, f"{partition}/{MANIFEST_NAME}")
    curated_columns = parquet_columns(paths)

    scores_uri = output_data_uri(job["model_uri"])
    key, score = spec.features.split_key, config.score_column
    metadata = {
        "dataset": dataset,
        "ds": ds,
        "training_job": job["job_name"],
        "curated_manifest": f"{partition}/{MANIFEST_NAME}",
        "scores": scores_uri,
    }
    scores = None
    if score:  # the monitoring config may switch prediction drift off (score_column: null)
        scores = _baseline_scores(scores_uri, key, score)
        counter = _SplitCounter(scores, key)
        run_pass(parquet_source(paths, [key]), [counter])
        rows, unscored, total = counter.rows, counter.unscored, counter.total
        held_out = sum(rows[name] for name in HELD_OUT_SPLITS)
        minimum = min_score_reference_rows(config)
        if held_out < minimum:
            counts = ", ".join(f"{name} {count}" for name, count in rows.items())
            raise ValueError(
                f"{dataset} ds={ds}, training job {job['job_name']}: the score reference needs "
                f"at least {minimum} held-out rows ({MIN_REFERENCE_ROWS_PER_PSI_BIN} per PSI bin, "
                f"psi_bins={config.psi_bins} in {config.source}), the partition has "
                f"{held_out} ({counts} of {total} curated rows); train on a "
                "larger partition or lower psi_bins"
            )
        metadata["score_reference"] = {
            "column": score,
            "splits": list(HELD_OUT_SPLITS),
            "rows": held_out,
            "rows_by_split": rows,
            "unscored_rows": unscored,
        }
        scores = scores.assign(**{SCORE_ROWS_COLUMN: scores["split"].isin(HELD_OUT_SPLITS)})
        curated_columns = [*curated_columns, score]
    columns = monitored_columns(spec, curated_columns, score_column=score)
    baseline, sample = build_baseline_from_parquet(
        paths, columns, config, metadata=metadata, scores=scores, key=key
    )
    return store_baseline(baseline, sample, baseline_uri(settings, dataset, ds, job["job_name"]))


def _baseline_scores(scores_uri: str, key: str, score: str):
    """The job's baseline scores indexed by key (as text): columns ``score`` (named ``score``)
    and ``split``, checked."""
    import pandas as pd

    scores = pd.read_parquet(io.BytesIO(read_tar_member(scores_uri, BASELINE_SCORES_FILE)))
    expected = [key, "split", "score"]
    if any(name not in scores.columns for name in expected):
        raise ValueError(
            f"{scores_uri}: {BASELINE_SCORES_FILE} has columns {list(scores.columns)}, "
            f"not the split key {key!r}, 'split' and 'score'"
        )
    if scores[key].duplicated().any():
        raise ValueError(f"{scores_uri}: {BASELINE_SCORES_FILE} scores a {key} more than once")
    unknown = sorted(set(scores["split"].dropna().astype(str)) - {TRAINING_SPLIT, *HELD_OUT_SPLITS})
    if unknown or scores["split"].isna().any():
        raise ValueError(
            f"{scores_uri}: {BASELINE_SCORES_FILE} column 'split' holds {unknown or ['null']}, "
            f"expected only {', '.join((TRAINING_SPLIT, *HELD_OUT_SPLITS))}"
        )
    # Left join by key as text: a curated row the features job left out shows up as a missing
    # score, as in the scored batches (scoring_pipeline.check_batch_drift joins the same way).
    index = pd.Index(scores[key].astype(str), name=key)
    return pd.DataFrame(
        {score: scores["score"].to_numpy(), "split": scores["split"].astype(str).to_numpy()},
        index=index,
    )


class _SplitCounter:
    """Curated rows per split of their score (a pass over the key column only)."""

    def __init__(self, scores, key: str):
        self.splits = scores["split"].to_numpy()
        self.index, self.key = scores.index, key
        self.rows = dict.fromkeys((TRAINING_SPLIT, *HELD_OUT_SPLITS), 0)
        self.unscored = self.total = 0

    def __call__(self, offset: int, chunk) -> None:
        position = self.index.get_indexer(chunk[self.key].astype(str))
        for name in self.rows:
            self.rows[name] += int((self.splits[position[position >= 0]] == name).sum())
        self.unscored += int((position < 0).sum())
        self.total += len(chunk)


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
        baseline_uri=baseline_uri(settings, dataset, ds, job["job_name"]),
        evaluation_uri=evaluation_uri,
        code_version_id=code_version_of(settings, job),
        margin=margin,
    )


def pending_approval_extra(registered: Mapping[str, Any]) -> dict[str, Any] | None:
    """The extra of the ``<dataset>_model_pending_approval`` asset event for a registration
    (``register_job_model``'s result), or None when the version needs no person's approval."""
    from include.registry import PENDING

    if registered["approval"] != PENDING:
        return None
    return {
        "dataset": registered["dataset"],
        "version": registered["version"],
        "champion_version": registered.get("champion_version"),
        "reason": registered.get("reason", ""),
    }
