"""Helpers of the training tests: feature channels with a planted signal, written with pandas in
the layout of ``spark_jobs/features.py`` (``split=<name>/part-*.parquet`` and the partition's
``_manifest.json``), committed features partitions in S3 for the aws-target tests, and job
environments."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO_ROOT / "training" / "train.py"

CONTRACTS = ("month_to_month", "one_year", "two_year")
REGIONS = ("na_east", "na_west", "eu_west", "eu_central", "apac", "latam")
# Split by a hash of the key, like the features job: 70/15/15.
SPLIT_BOUNDS = (("train", 0, 70), ("validation", 70, 85), ("test", 85, 100))
FEATURES_DS = "2026-01-07"
# The regex of the training job's MetricDefinitions (the shared contract).
METRIC_VALUE = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def feature_frame(rows: int, seed: int) -> pd.DataFrame:
    """Feature rows of the churn layout; ``churned`` depends on failed payments, the contract
    and tenure (the true logit scores an AUC of about 0.88), not on region or sessions."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(len(CONTRACTS), rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(len(REGIONS), rows)
    tenure = rng.integers(0, 120, rows).astype(float)
    failures = rng.poisson(0.6, rows).astype(float)
    charge = np.round(rng.uniform(10, 120, rows), 2)
    sessions = rng.poisson(20, rows).astype(float)
    logit = -2.5 + 1.6 * failures + 2.2 * (contract == 0) - 0.035 * tenure + 0.006 * charge
    churned = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int32)
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:09d}" for i in range(rows)],
            "snapshot_date": pd.Timestamp("2026-01-07").date(),
            "tenure_months": tenure,
            "monthly_charge": charge,
            "sessions": sessions,
            "payment_failures_90d": failures,
        }
    )
    for index, name in enumerate(CONTRACTS):
        frame[f"contract__{name}"] = (contract == index).astype(float)
    for index, name in enumerate(REGIONS):
        frame[f"region__{name}"] = (region == index).astype(float)
    frame["autopay"] = rng.integers(0, 2, rows).astype(float)
    frame["churned"] = churned
    bucket = pd.util.hash_array(frame["customer_id"].to_numpy()) % 100
    frame["split"] = ""
    for name, lo, hi in SPLIT_BOUNDS:
        frame.loc[(bucket >= lo) & (bucket < hi), "split"] = name
    return frame


def features_manifest(
    partition_uri: str, files: Mapping[str, bytes], *, dataset: str = "churn", ds: str = FEATURES_DS
) -> bytes:
    """The ``_manifest.json`` ``spark_jobs/features.py`` commits for a partition of ``files``
    (path relative to the partition → content): ``outputs.files`` lists ``{path, size_bytes,
    sha256}`` sorted by path as ``finalize_output_files`` does, written with sorted keys."""
    entries = [
        {"path": path, "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in sorted(files.items())
    ]
    manifest = {
        "job": "spark_jobs.features",
        "dataset": dataset,
        "ds": ds,
        "outputs": {"uri": partition_uri, "files": entries},
    }
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def write_feature_channels(root: Path, *, rows: int, seed: int) -> dict[str, Path]:
    """``<root>/ds=…/split=<name>/part-0000N.parquet`` (two files per split) and the partition's
    ``_manifest.json`` listing them; the channels."""
    frame = feature_frame(rows, seed)
    partition = root / f"ds={FEATURES_DS}"
    channels = {}
    for name, _, _ in SPLIT_BOUNDS:
        directory = partition / f"split={name}"
        directory.mkdir(parents=True)
        # The partition column lives in the directory name, as Spark writes it.
        part = frame[frame["split"] == name].drop(columns="split").reset_index(drop=True)
        half = len(part) // 2
        part.iloc[:half].to_parquet(directory / "part-00000.parquet", index=False)
        part.iloc[half:].to_parquet(directory / "part-00001.parquet", index=False)
        (directory / "_SUCCESS").write_text("")
        channels[name] = directory
    # Written last, as the features job commits it; _SUCCESS is not a data file, so not listed.
    files = {
        path.relative_to(partition).as_posix(): path.read_bytes()
        for path in partition.rglob("*.parquet")
    }
    (partition / "_manifest.json").write_bytes(features_manifest(f"file://{partition}", files))
    return channels


def commit_s3_features(
    s3, bucket: str, *, dataset: str = "churn", ds: str = FEATURES_DS, lake: str = "lake"
) -> tuple[bytes, dict[str, list[str]]]:
    """A features partition in S3 as the features job commits it: the data files, then the
    manifest listing them; beside them a file of an earlier commit that it does not list (what
    a folder channel would wrongly pick up). Nothing reads the bytes on the aws target in tests.

    Returns the manifest's bytes and split → the listed files' names within the split's folder.
    """
    prefix = f"{lake}/features/{dataset}/ds={ds}"
    names = {
        "train": ["part-00000-0a0a0a0a0a0a0a0a.snappy.parquet",
                  "part-00001-1b1b1b1b1b1b1b1b.snappy.parquet"],
        "validation": ["part-00000-2c2c2c2c2c2c2c2c.snappy.parquet"],
        "test": ["part-00000-3d3d3d3d3d3d3d3d.snappy.parquet"],
    }  # fmt: skip
    files = {
        f"split={split}/{name}": f"PAR1 {split}/{name}".encode()
        for split, listed in names.items()
        for name in listed
    }
    for path, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{path}", Body=data)
    s3.put_object(
        Bucket=bucket, Key=f"{prefix}/split=train/part-00009-e9e9e9e9e9e9e9e9.snappy.parquet",
        Body=b"PAR1 of an earlier commit",
    )  # fmt: skip
    manifest = features_manifest(f"s3://{bucket}/{prefix}", files, dataset=dataset, ds=ds)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/_manifest.json", Body=manifest)
    return manifest, names


def sagemaker_env(run_dir: Path, channels: dict[str, Path]) -> dict[str, str]:
    return {
        **{f"SM_CHANNEL_{name.upper()}": str(path) for name, path in channels.items()},
        "SM_MODEL_DIR": str(run_dir / "model"),
        "SM_OUTPUT_DATA_DIR": str(run_dir / "output" / "data"),
        "HEADRACE_CHECKPOINT_DIR": str(run_dir / "checkpoints"),
    }


def train_command(*flags: str) -> list[str]:
    """``python training/train.py …``: the file, as SageMaker runs it (not ``-m``)."""
    return [sys.executable, str(TRAIN_SCRIPT), *flags]


def subprocess_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without its SM_* variables, plus the job's, on one thread."""
    merged = {key: value for key, value in os.environ.items() if not key.startswith("SM_")}
    merged.update(env)
    merged.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    return merged


def run_train_in_process(env: dict[str, str], argv: list[str]) -> tuple[int, str]:
    """``training.train.main(argv)`` in this process under ``env``, on one thread (as the
    subprocess runs are), returning ``(exit code, stdout)``."""
    import contextlib
    import io

    import torch

    from training import train

    saved_env = {key: os.environ.get(key) for key in [*env, "SM_HPS"]}
    saved_threads = torch.get_num_threads()
    stdout = io.StringIO()
    try:
        os.environ.pop("SM_HPS", None)
        os.environ.update(env)
        torch.set_num_threads(1)
        with contextlib.redirect_stdout(stdout):
            code = train.main(argv)
    finally:
        torch.set_num_threads(saved_threads)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, stdout.getvalue()
