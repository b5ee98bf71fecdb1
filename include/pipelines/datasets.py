"""Which datasets get pipelines: every dataset spec in ``include/datasets/``.

A dataset is one ``<name>.yaml`` spec with its ``<name>.quality.yaml`` rules and
``<name>.monitoring.yaml`` drift thresholds beside it. Only file names are read here, so the
DAG files can call this at parse time without touching the lake.
"""

from __future__ import annotations

from pathlib import Path

DATASETS_DIR = Path(__file__).resolve().parents[1] / "datasets"
# Companion files of a spec, not specs themselves.
_COMPANION_SUFFIXES = (".quality.yaml", ".monitoring.yaml")


def pipeline_datasets(datasets_dir: Path = DATASETS_DIR) -> list[str]:
    """Names of the datasets with a spec, sorted (the DAG ids are ``<name>_<stage>``)."""
    return sorted(
        path.name.removesuffix(".yaml")
        for path in datasets_dir.glob("*.yaml")
        if not path.name.endswith(_COMPANION_SUFFIXES)
    )
