"""
### Reconciliation DAGs, one per dataset

For every dataset spec in `include/datasets/`, the `<dataset>_reconciliation` DAG: daily, how
far each day has come through the stages and which days are stuck or failed, with the reason,
and an alert on them. Built by `include/pipelines/reconciliation.py`; each DAG's own docs in the
Airflow UI say more.
"""

# The words "airflow" and "dag" must stay in this file: the dag-processor's safe mode skips a
# file without them, and the DAGs here are built by a factory, not by a visible @dag.
from __future__ import annotations

from include.pipelines.datasets import pipeline_datasets
from include.pipelines.reconciliation import reconciliation_dag

for dataset in pipeline_datasets():
    reconciliation_dag(dataset)
