"""
### Validation DAGs, one per dataset

For every dataset spec in `include/datasets/`, the `<dataset>_validation` DAG: the data-quality
gate of a curated partition, then the features of the validated day. Built by
`include/pipelines/validation.py`; each DAG's own docs in the Airflow UI say more.
"""

# The words "airflow" and "dag" must stay in this file: the dag-processor's safe mode skips a
# file without them, and the DAGs here are built by a factory, not by a visible @dag.
from __future__ import annotations

from include.pipelines.datasets import pipeline_datasets
from include.pipelines.validation import validation_dag

for dataset in pipeline_datasets():
    validation_dag(dataset)
