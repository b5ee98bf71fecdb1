"""Which datasets get pipelines: every dataset spec in ``include/datasets/``, with its companions.

A dataset is one ``<name>.yaml`` spec with its ``<name>.quality.yaml`` rules and
``<name>.monitoring.yaml`` drift thresholds beside it. The DAG files call this at parse time, so
it reads only those small YAML files (never the lake) and imports nothing heavy; a spec without
its companions, or a spec that does not validate, fails the parse of every stage's DAG file with
an error naming the file, which the Airflow UI shows as an import error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATASETS_DIR = Path(__file__).resolve().parents[1] / "datasets"
QUALITY_SUFFIX = ".quality.yaml"
MONITORING_SUFFIX = ".monitoring.yaml"
# Companion files of a spec, not specs themselves.
_COMPANION_SUFFIXES = (QUALITY_SUFFIX, MONITORING_SUFFIX)
# Where the files are, as a person reads them in the docs of the DAGs (repository-relative).
_REPO_DATASETS_DIR = "include/datasets"


class PipelineDatasetError(ValueError):
    """A dataset cannot get its pipelines; the message names the file at fault."""


@dataclass(frozen=True)
class PipelineDataset:
    """What the DAG factories need to know about one dataset at parse time."""

    name: str
    description: str
    label: str
    spec_file: str  # repository-relative, for the DAGs' docs
    quality_file: str
    monitoring_file: str

    @property
    def title(self) -> str:
        """The name as a heading: ``benefit_claims`` → ``Benefit claims``."""
        return self.name.replace("_", " ").capitalize()


def pipeline_datasets(datasets_dir: Path = DATASETS_DIR) -> list[str]:
    """Names of the datasets with a spec, sorted (the DAG ids are ``<name>_<stage>``)."""
    return sorted(
        path.name.removesuffix(".yaml")
        for path in datasets_dir.glob("*.yaml")
        if not path.name.endswith(_COMPANION_SUFFIXES)
    )


def pipeline_dataset(name: str, datasets_dir: Path = DATASETS_DIR) -> PipelineDataset:
    """The spec of ``name`` validated, its companion files checked, and its docs' facts.

    :raises PipelineDatasetError: the spec or a companion file is missing, or the spec's
        ``dataset:`` is not its file name (the DAG ids and lake paths come from the name).
    :raises spark_jobs.dataset_spec.SpecError: the spec does not validate (every field named).
    """
    from spark_jobs.dataset_spec import load_spec

    spec_path = datasets_dir / f"{name}.yaml"
    missing = [
        path.name
        for path in (
            spec_path,
            datasets_dir / f"{name}{QUALITY_SUFFIX}",
            datasets_dir / f"{name}{MONITORING_SUFFIX}",
        )
        if not path.is_file()
    ]
    if missing:
        raise PipelineDatasetError(
            f"dataset {name!r} lacks {', '.join(missing)} in {datasets_dir}: a pipeline needs the "
            f"spec, its quality rules and its drift thresholds (make new-pipeline NAME={name} "
            "scaffolds all three)"
        )
    spec = load_spec(spec_path)
    if spec.dataset != name:
        raise PipelineDatasetError(
            f"{spec_path}: dataset: {spec.dataset!r} differs from the file name {name!r}; "
            "they must agree (DAG ids, Assets and lake paths use the name)"
        )
    return PipelineDataset(
        name=name,
        description=spec.description.strip() or f"The {name} dataset.",
        label=spec.label,
        spec_file=f"{_REPO_DATASETS_DIR}/{name}.yaml",
        quality_file=f"{_REPO_DATASETS_DIR}/{name}{QUALITY_SUFFIX}",
        monitoring_file=f"{_REPO_DATASETS_DIR}/{name}{MONITORING_SUFFIX}",
    )
