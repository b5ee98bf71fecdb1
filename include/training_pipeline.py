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
    Idempotent: the baseline is deterministic, so a retry writes the same bytes.
    """
    from include.dq.gate import (
        curated_partition_uri,
        manifest_file_uris,
        read_manifest,
        read_partition_frame,
    )
    from include.ingestion import DATASETS_DIR
    from include.monitoring.baseline import (
        MIN_REFERENCE_ROWS_PER_PSI_BIN,
        min_score_reference_rows,
        write_baseline,
    )
    from include.monitoring.columns import monitored_columns
    from include.monitoring.thresholds import load_monitoring_config
    from spark_jobs.dataset_spec import load_spec

    spec = load_spec(DATASETS_DIR / f"{dataset}.yaml")
    config = load_monitoring_config(DATASETS_DIR / f"{dataset}.monitoring.yaml")
    partition = curated_partition_uri(settings.lake_root, dataset, ds)
    manifest = read_manifest(partition)
    frame = read_partition_frame(manifest_file_uris(manifest, f"{partition}/{MANIFEST_NAME}"), {})

    scores_uri = output_data_uri(job["model_uri"])
    key, score = spec.features.split_key, config.score_column
    metadata = {
        "dataset": dataset,
        "ds": ds,
        "training_job": job["job_name"],
        "curated_manifest": f"{partition}/{MANIFEST_NAME}",
        "scores": scores_uri,
    }
    joined, held_out = frame, None
    if score:  # the monitoring config may switch prediction drift off (score_column: null)
        joined, split = _with_baseline_scores(frame, scores_uri, key, score)
        held_out = split.isin(HELD_OUT_SPLITS).to_numpy()
        rows = {name: int((split == name).sum()) for name in (TRAINING_SPLIT, *HELD_OUT_SPLITS)}
        minimum = min_score_reference_rows(config)
        if int(held_out.sum()) < minimum:
            counts = ", ".join(f"{name} {count}" for name, count in rows.items())
            raise ValueError(
                f"{dataset} ds={ds}, training job {job['job_name']}: the score reference needs "
                f"at least {minimum} held-out rows ({MIN_REFERENCE_ROWS_PER_PSI_BIN} per PSI bin, "
                f"psi_bins={config.psi_bins} in {config.source}), the partition has "
                f"{int(held_out.sum())} ({counts} of {len(frame)} curated rows); train on a "
                "larger partition or lower psi_bins"
            )
        metadata["score_reference"] = {
            "column": score,
            "splits": list(HELD_OUT_SPLITS),
            "rows": int(held_out.sum()),
            "rows_by_split": rows,
            "unscored_rows": int(split.isna().sum()),
        }
    columns = monitored_columns(spec, joined.columns, score_column=score)
    return write_baseline(
        joined,
        columns,
        baseline_uri(settings, dataset, ds, job["job_name"]),
        config,
        metadata=metadata,
        score_rows=held_out,
    )


def _with_baseline_scores(frame, scores_uri: str, key: str, score: str):
    """``(frame left-joined on key with the job's baseline scores as column score, the split of
    each row)``; the split is missing where a row has no score."""
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
    split_column = "__baseline_split"  # not a curated column name: the spec's are identifiers
    scores = scores[expected].rename(columns={"score": score, "split": split_column})
    scores[key] = scores[key].astype(str)
    frame = frame.copy()
    frame[key] = frame[key].astype(str)
    # Left join: a curated row the features job left out shows up as a missing score, as in the
    # scored batches (scoring_pipeline.check_batch_drift joins the same way).
    joined = frame.merge(scores, on=key, how="left", validate="one_to_one")
    return joined.drop(columns=split_column), joined[split_column]


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
