"""
### Training DAGs, one per dataset

For every dataset spec in `include/datasets/`, the `<dataset>_training` DAG: tunes, evaluates
and registers the model of a features partition. Built by `include/pipelines/training.py`; each
DAG's own docs in the Airflow UI say more.
"""

# The words "airflow" and "dag" must stay in this file: the dag-processor's safe mode skips a
# file without them, and the DAGs here are built by a factory, not by a visible @dag.
from __future__ import annotations

from include.pipelines.datasets import pipeline_datasets
from include.pipelines.training import training_dag

for dataset in pipeline_datasets():
    training_dag(dataset)
