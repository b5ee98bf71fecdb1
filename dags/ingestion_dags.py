"""
### Ingestion DAGs, one per dataset

For every dataset spec in `include/datasets/`, the `<dataset>_ingestion` DAG: landing files of a
day into curated Parquet and quarantine, started by a file landing (the landing Asset's watcher:
a local inbox, or S3 notifications through SQS on AWS), daily, or by hand. Built by
`include/pipelines/ingestion.py`; each DAG's own docs in the Airflow UI say more.
"""

# The words "airflow" and "dag" must stay in this file: the dag-processor's safe mode skips a
# file without them, and the DAGs here are built by a factory, not by a visible @dag.
from __future__ import annotations

from include.pipelines.datasets import pipeline_datasets
from include.pipelines.ingestion import ingestion_dag

for dataset in pipeline_datasets():
    ingestion_dag(dataset)
