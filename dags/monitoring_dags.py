"""
### Monitoring DAGs, one per dataset

For every dataset spec in `include/datasets/`, the `<dataset>_monitoring` DAG: checks a scored
day for drift and, over threshold, triggers retraining. Built by
`include/pipelines/monitoring.py`; each DAG's own docs in the Airflow UI say more.
"""

# The words "airflow" and "dag" must stay in this file: the dag-processor's safe mode skips a
# file without them, and the DAGs here are built by a factory, not by a visible @dag.
from __future__ import annotations

from include.pipelines.datasets import pipeline_datasets
from include.pipelines.monitoring import monitoring_dag

for dataset in pipeline_datasets():
    monitoring_dag(dataset)
