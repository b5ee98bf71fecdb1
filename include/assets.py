"""Airflow Assets shared by the DAGs: the lineage a person sees in the UI.

Asset URIs come from settings, so the same definitions name ``file://`` locations locally and
``s3://`` locations on AWS. Only names and URIs are built here: no I/O at parse time.
"""

from __future__ import annotations

from airflow.sdk import Asset

from include.config import get_settings


def lake_asset() -> Asset:
    """The initialized lake: every zone exists and the lake descriptor is written."""
    return Asset(name="headrace_lake", uri=f"{get_settings().lake_root}/_lake.json")


def curated_asset(dataset: str) -> Asset:
    """Curated Parquet of ``dataset``: typed, deduplicated, PII treated, partitioned by ds."""
    return Asset(name=f"{dataset}_curated", uri=f"{get_settings().zone_uri('curated')}/{dataset}")


def quarantine_asset(dataset: str) -> Asset:
    """Rows of ``dataset`` that failed the spec, each with its reason code."""
    return Asset(
        name=f"{dataset}_quarantine", uri=f"{get_settings().zone_uri('quarantine')}/{dataset}"
    )
