"""Helpers of the scoring tests: churn days from the landing-data generator, laid out in the lake
as curated and features partitions, and a small model trained on them by training/train.py.

The features here are a pandas stand-in for spark_jobs/features.py's output (same layout:
``features/<dataset>/ds=D/split=<name>/part-*.parquet`` and ``_manifest.json``; a subset of
its columns): the scoring steps only need the model's feature columns, and Spark would add
seconds per test for nothing the scoring reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "training"))

ID_COLUMNS = ("customer_id", "snapshot_date")
NUMERIC = ("tenure_months", "monthly_charge", "sessions", "payment_failures_90d",
           "support_tickets_30d")  # fmt: skip
CATEGORICAL = {
    "contract": ("month-to-month", "one-year", "two-year"),
    "region": ("na-east", "na-west", "eu-west", "eu-central", "apac", "latam"),
}
SPLITS = (("train", 0, 70), ("validation", 70, 85), ("test", 85, 100))
TINY_TRAINING_FLAGS = [
    "--epochs", "3", "--batch-size", "256", "--learning-rate", "0.003", "--hidden-width", "16",
    "--patience", "2", "--checkpoint-every-steps", "0", "--amp", "off", "--seed", "5",
]  # fmt: skip


def generate_days(root: Path, *, seed: int, days: int, rows: int, drift=None) -> dict[str, Path]:
    """Landing CSVs of the churn generator; ``{ds: csv path}``."""
    from include.datagen.churn import DriftPlan, GeneratorConfig, generate

    generate(
        GeneratorConfig(
            out=root, start=date(2026, 1, 1), days=days, seed=seed, rows_per_day=rows,
            rows_per_file=rows, chunk_rows=rows, drift=drift or DriftPlan(),
        )
    )  # fmt: skip
    return {
        folder.name.removeprefix("ds="): next(folder.glob("part-*.csv"))
        for folder in sorted((root / "churn").glob("ds=*"))
    }


def read_landing(path: Path) -> pd.DataFrame:
    """A landing CSV as curated data looks to pandas: only the empty field is null."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"]).dt.date
    return frame


def feature_rows(curated: pd.DataFrame) -> pd.DataFrame:
    """ids, numeric features (nulls as 0), one-hot categoricals, the label."""
    features = pd.DataFrame({name: curated[name] for name in ID_COLUMNS})
    for name in NUMERIC:
        features[name] = pd.to_numeric(curated[name], errors="coerce").fillna(0.0).astype(float)
    for name, values in CATEGORICAL.items():
        for value in values:
            features[f"{name}__{value.replace('-', '_')}"] = (curated[name] == value).astype(float)
    features["churned"] = curated["churned"].astype(int)
    return features


def _split_of(keys: pd.Series) -> np.ndarray:
    bucket = pd.util.hash_array(keys.astype(str).to_numpy()) % 100
    split = np.empty(len(keys), dtype=object)
    for name, lo, hi in SPLITS:
        split[(bucket >= lo) & (bucket < hi)] = name
    return split


def write_features_partition(features_root: Path, ds: str, features: pd.DataFrame) -> Path:
    """``<features_root>/churn/ds=D/split=*/part-00000.parquet`` and a ``_manifest.json`` that
    lists them as the features job's does (``outputs.files``: path, size, SHA-256)."""
    partition = features_root / "churn" / f"ds={ds}"
    split = _split_of(features["customer_id"])
    files = []
    for name, _, _ in SPLITS:
        folder = partition / f"split={name}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "part-00000.parquet"
        features[split == name].reset_index(drop=True).to_parquet(path, index=False)
        data = path.read_bytes()
        files.append(
            {
                "path": path.relative_to(partition).as_posix(),
                "size_bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    manifest = {
        "dataset": "churn",
        "ds": ds,
        "outputs": {"uri": f"file://{partition}", "files": files},
    }
    (partition / "_manifest.json").write_text(json.dumps(manifest))
    return partition


def write_curated_partition(curated_root: Path, ds: str, frame: pd.DataFrame) -> Path:
    """One parquet file and an ingest-style manifest (``outputs.curated.uri/files``)."""
    partition = curated_root / "churn" / f"ds={ds}"
    partition.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(partition / "part-00000.parquet", index=False)
    manifest = {
        "outputs": {
            "curated": {"uri": f"file://{partition}", "files": [{"path": "part-00000.parquet"}]}
        },
        "totals": {"rows_accepted": len(frame)},
    }
    (partition / "_manifest.json").write_text(json.dumps(manifest))
    return partition


def train_model(features_partition: Path, run_dir: Path) -> Path:
    """A small model trained by training/train.py on the partition's splits, in the training
    environment (torch is not in the worker's), as a local training job runs it."""
    from training_helpers import TRAIN_SCRIPT, sagemaker_env, subprocess_env

    from include.local_envs import training_python

    channels = {name: features_partition / f"split={name}" for name, _, _ in SPLITS}
    env = sagemaker_env(run_dir, channels)
    result = subprocess.run(
        [training_python(), str(TRAIN_SCRIPT), *TINY_TRAINING_FLAGS],
        env=subprocess_env(env), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return Path(env["SM_MODEL_DIR"])


def package_model(model_dir: Path, tarball: Path) -> str:
    """``model.tar.gz`` of the model directory, as SageMaker packages it; its file:// URI."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=path.relative_to(model_dir).as_posix())
    tarball.write_bytes(raw.getvalue())
    return f"file://{tarball}"


def input_lines(features: pd.DataFrame, model_features: list[str]) -> pd.DataFrame:
    """The columns of a transform input line: ids, then the model's features in order."""
    return features[[*ID_COLUMNS, *model_features]]


def run_processing_job(settings, plan: dict, command: str, job_name: str) -> dict:
    """One processing job as the DAGs start it (the operator's request body, from
    the repository's source tarball), run by the local processing runtime; its description.
    A failed job raises ``LocalJobError`` with its FailureReason."""
    from include.local_processing import start_processing_job, wait_for_processing_job
    from include.sagemaker_requests import build_processing_job_request, training_source_artifact
    from include.storage import storage_for

    source_uri, tarball = training_source_artifact(settings)
    storage_for(source_uri).write_bytes(source_uri, tarball)
    request = build_processing_job_request(
        settings, job_name=job_name, entry_point="process.py", source_uri=source_uri,
        inputs=plan["inputs"], manifest_inputs=plan["manifest_inputs"], outputs=plan["outputs"],
        arguments=[command],
    )  # fmt: skip
    work_root = settings.local_runs_root
    start_processing_job(request, work_root=work_root)
    return wait_for_processing_job(job_name, work_root=work_root, timeout=300)


def run_drift_check(settings, dataset: str, ds: str, job_name: str) -> dict:
    """The monitoring DAG's steps: the plan, the drift job, the result."""
    from include.scoring_pipeline import drift_check_result, drift_job_plan

    plan = drift_job_plan(settings, dataset, ds)
    run_processing_job(settings, plan, "drift", job_name)
    return drift_check_result(settings, dataset, plan)


def write_training_baseline(settings, dataset: str, ds: str, job: dict) -> str:
    """The training DAG's baseline steps: the plan, the baseline job; the baseline's URI."""
    from include.monitoring.job import BASELINE_OUTPUT
    from include.training_pipeline import baseline_job_plan

    plan = baseline_job_plan(settings, dataset, ds, job)
    run_processing_job(settings, plan, "baseline", f"baseline-{job['job_name']}")
    return plan["outputs"][BASELINE_OUTPUT]


def write_scoring_input(settings, dataset: str, ds: str, model: dict, job_name: str, **kwargs):
    """The scoring DAG's first steps: the plan, the scoring-input job; the plan and its facts."""
    from include.scoring_pipeline import job_facts, scoring_input_plan

    plan = scoring_input_plan(settings, dataset, ds, model, **kwargs)
    run_processing_job(settings, plan, "scoring-input", job_name)
    return plan, job_facts(plan["outputs"])


def commit_transform_output(
    settings, dataset: str, ds: str, *, output_uri: str, model: dict, scoring_input: dict,
    job_name: str,
) -> dict:  # fmt: skip
    """The scoring DAG's last steps: the predictions plan and job, then the commit."""
    from include.scoring_pipeline import commit_predictions, predictions_job_plan

    plan = predictions_job_plan(
        settings, dataset, ds, output_uri=output_uri, model=model, scoring_input=scoring_input
    )
    run_processing_job(settings, plan, "predictions", job_name)
    return commit_predictions(settings, dataset, ds, model=model, plan=plan)
