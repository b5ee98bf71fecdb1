"""Which datasets get pipelines, and what a spec must bring: every spec in include/datasets/
loads with its quality rules and drift thresholds (so a new dataset is checked here with no new
test code), a spec missing a companion or misnamed fails naming the file, and the dataset's
training settings come from its spec."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from include.pipelines.datasets import (
    DATASETS_DIR,
    PipelineDatasetError,
    pipeline_dataset,
    pipeline_datasets,
)
from spark_jobs.dataset_spec import SpecError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_helpers import features_manifest


@pytest.fixture
def datasets_dir(tmp_path):
    """A copy of the churn spec and its companions, to break one way or another."""
    for name in ("churn.yaml", "churn.quality.yaml", "churn.monitoring.yaml"):
        shutil.copy(DATASETS_DIR / name, tmp_path / name)
    return tmp_path


def test_the_repository_has_churn_and_the_dataset_added_by_spec():
    assert {"benefit_claims", "churn"} <= set(pipeline_datasets())


def test_companion_files_are_not_datasets(datasets_dir):
    assert pipeline_datasets(datasets_dir) == ["churn"]
    info = pipeline_dataset("churn", datasets_dir)
    assert info.label == "churned"
    assert info.description.startswith("Daily customer snapshots")
    assert (info.spec_file, info.quality_file, info.monitoring_file) == (
        "include/datasets/churn.yaml",
        "include/datasets/churn.quality.yaml",
        "include/datasets/churn.monitoring.yaml",
    )
    assert pipeline_dataset("benefit_claims").title == "Benefit claims"


@pytest.mark.parametrize("missing", ["churn.quality.yaml", "churn.monitoring.yaml"])
def test_a_missing_companion_is_named(datasets_dir, missing):
    (datasets_dir / missing).unlink()
    with pytest.raises(PipelineDatasetError, match=f"dataset 'churn' lacks {missing} in "):
        pipeline_dataset("churn", datasets_dir)


def test_a_spec_named_after_another_dataset_is_refused(datasets_dir):
    for suffix in (".yaml", ".quality.yaml", ".monitoring.yaml"):
        shutil.copy(datasets_dir / f"churn{suffix}", datasets_dir / f"churn_copy{suffix}")
    with pytest.raises(PipelineDatasetError, match="dataset: 'churn' differs from the file name"):
        pipeline_dataset("churn_copy", datasets_dir)


def test_an_invalid_spec_fails_naming_file_and_field(datasets_dir):
    spec = datasets_dir / "churn.yaml"
    spec.write_text(spec.read_text().replace("label: churned", "label: churn_flag"))
    with pytest.raises(
        SpecError, match=r"churn\.yaml: label: 'churn_flag' is not a declared column"
    ):
        pipeline_dataset("churn", datasets_dir)


@pytest.mark.parametrize("dataset", pipeline_datasets())
def test_every_dataset_spec_loads_with_its_rules_and_thresholds(dataset):
    from include.dq.gate import load_dataset_rules
    from include.monitoring.thresholds import load_monitoring_config

    info = pipeline_dataset(dataset)
    rules = load_dataset_rules(dataset)
    assert rules.rules, f"{info.quality_file} holds no rule"
    config = load_monitoring_config(DATASETS_DIR / f"{dataset}.monitoring.yaml")
    assert config.score_column == "score"


def test_training_settings_come_from_the_spec():
    from include.training_jobs import dataset_hyperparameters

    assert dataset_hyperparameters("benefit_claims") == {
        "label": "flagged_for_review",
        "id-columns": "claim_id,claim_date",
        "sensitive-groups": "region,employment_status",
    }
    assert dataset_hyperparameters("churn") == {
        "label": "churned",
        "id-columns": "customer_id,snapshot_date",
        "sensitive-groups": "region",
    }


def test_the_training_request_carries_the_dataset_settings(fresh_settings, tmp_path, monkeypatch):
    from include.config import get_settings
    from include.training_jobs import training_job_request

    lake = tmp_path / "lake"
    monkeypatch.setenv("HEADRACE_LAKE_ROOT", lake.as_uri())
    # The dataset's committed features partition: its files, then the manifest listing them.
    partition = lake / "features" / "benefit_claims" / "ds=2026-03-01"
    files = {
        f"split={split}/part-00000.parquet": f"PAR1 {split}".encode()
        for split in ("train", "validation", "test")
    }
    for path, data in files.items():
        (partition / path).parent.mkdir(parents=True)
        (partition / path).write_bytes(data)
    (partition / "_manifest.json").write_bytes(
        features_manifest(f"file://{partition}", files, dataset="benefit_claims", ds="2026-03-01")
    )

    body = training_job_request(
        get_settings(), dataset="benefit_claims", ds="2026-03-01", job_name="bc-1",
        hyperparameters={"label": "overridden-by-the-task"},
    )  # fmt: skip
    hps = body["HyperParameters"]
    assert hps["id-columns"] == "claim_id,claim_date"
    assert hps["sensitive-groups"] == "region,employment_status"
    # The task's own overrides win over the spec's.
    assert hps["label"] == "overridden-by-the-task"
    # Each channel is a manifest file of the dataset's own partition, listing that split's file.
    sources = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in body["InputDataConfig"]}
    inputs = f"{lake.as_uri()}/models/benefit_claims/input/ds=2026-03-01/"
    for split in ("train", "validation", "test"):
        assert sources[split]["S3DataType"] == "ManifestFile"
        uri = sources[split]["S3Uri"]
        assert uri.startswith(inputs) and uri.endswith(f"/{split}.manifest.json"), uri
        assert json.loads(Path(uri.removeprefix("file://")).read_text()) == [
            {"prefix": f"file://{partition}/split={split}/"},
            "part-00000.parquet",
        ]
