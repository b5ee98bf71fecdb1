"""
### Model approval DAGs, one per dataset

For every dataset spec in `include/datasets/`, the `<dataset>_model_approval` DAG: a person
approves or rejects a model version that waits for manual approval, answering Airflow's
human-in-the-loop request (*Required actions* in the UI). Built by
`include/pipelines/model_approval.py`; each DAG's own docs in the Airflow UI say more.
"""

# The words "airflow" and "dag" must stay in this file: the dag-processor's safe mode skips a
# file without them, and the DAGs here are built by a factory, not by a visible @dag.
from __future__ import annotations

from include.pipelines.datasets import pipeline_datasets
from include.pipelines.model_approval import model_approval_dag

for dataset in pipeline_datasets():
    model_approval_dag(dataset)
