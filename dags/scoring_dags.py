"""
### Scoring DAGs, one per dataset

For every dataset spec in `include/datasets/`, the `<dataset>_scoring` DAG: batch-scores a day's
features with the champion model. Built by `include/pipelines/scoring.py`; each DAG's own docs
in the Airflow UI say more.
"""

# The words "airflow" and "dag" must stay in this file: the dag-processor's safe mode skips a
# file without them, and the DAGs here are built by a factory, not by a visible @dag.
from __future__ import annotations

from include.pipelines.datasets import pipeline_datasets
from include.pipelines.scoring import scoring_dag

for dataset in pipeline_datasets():
    scoring_dag(dataset)
