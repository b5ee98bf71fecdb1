"""Airflow Assets shared by the DAGs: the lineage a person sees in the UI.

Asset URIs come from settings, so the same definitions name ``file://`` locations locally and
``s3://`` locations on AWS. Only names and URIs are built here: no I/O at parse time.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import Asset, AssetWatcher, PartitionedAssetTimetable
from airflow.sdk.definitions.asset import BaseAsset

from include.config import get_settings


def per_partition(assets: BaseAsset) -> PartitionedAssetTimetable:
    """A schedule of one run per partition key of ``assets``' events: per day for the stages
    after ingestion (the upstream task emits the day it wrote), per version for approvals.

    Events for the same key that arrive before the run is created make one run; keys never
    merge, so five days landing at once give five runs (queued, ``max_active_runs`` at a time).
    """
    return PartitionedAssetTimetable(assets=assets)


def lake_asset() -> Asset:
    """The initialized lake: every zone exists and the lake descriptor is written."""
    return Asset(name="headrace_lake", uri=f"{get_settings().lake_root}/_lake.json")


def landing_asset(dataset: str, watchers: Sequence[AssetWatcher] = ()) -> Asset:
    """Raw files of ``dataset`` in the landing zone (``landing/<dataset>/ds=…/``).

    ``watchers`` make a file landing an event: the ingestion DAG passes the target's watcher
    (the local inbox trigger, or the SQS queue S3 notifies); the name and URI are the same
    either way, so lineage and REST-posted events look alike on both targets.
    """
    return Asset(
        name=f"{dataset}_landing",
        uri=f"{get_settings().zone_uri('landing')}/{dataset}",
        watchers=list(watchers),
    )


def curated_asset(dataset: str) -> Asset:
    """Curated Parquet of ``dataset``: typed, deduplicated, PII treated, partitioned by ds."""
    return Asset(name=f"{dataset}_curated", uri=f"{get_settings().zone_uri('curated')}/{dataset}")


def quarantine_asset(dataset: str) -> Asset:
    """Rows of ``dataset`` that failed the spec, each with its reason code."""
    return Asset(
        name=f"{dataset}_quarantine", uri=f"{get_settings().zone_uri('quarantine')}/{dataset}"
    )


def validated_asset(dataset: str) -> Asset:
    """Curated partitions of ``dataset`` that passed every ``error`` rule of the quality gate."""
    return Asset(
        name=f"{dataset}_validated", uri=f"{get_settings().zone_uri('reports')}/{dataset}/quality"
    )


def features_asset(dataset: str) -> Asset:
    """Model features of ``dataset`` with the train/validation/test split, and its monitoring baseline."""
    return Asset(name=f"{dataset}_features", uri=f"{get_settings().zone_uri('features')}/{dataset}")


def model_asset(dataset: str) -> Asset:
    """Registered model versions of ``dataset`` (metrics, lineage, approval status)."""
    return Asset(name=f"{dataset}_model", uri=f"{get_settings().zone_uri('models')}/{dataset}")


def model_pending_asset(dataset: str) -> Asset:
    """A version of ``dataset``'s model registered as waiting for a person's approval; the
    event's extra names it (``{"version": "3"}``) and schedules ``<dataset>_model_approval``."""
    return Asset(
        name=f"{dataset}_model_pending_approval",
        uri=f"{get_settings().zone_uri('models')}/{dataset}/pending_approval",
    )


def predictions_asset(dataset: str) -> Asset:
    """Batch predictions of ``dataset``'s approved model, partitioned by ds."""
    return Asset(
        name=f"{dataset}_predictions", uri=f"{get_settings().zone_uri('predictions')}/{dataset}"
    )


def drift_asset(dataset: str) -> Asset:
    """Drift over threshold for ``dataset``: an event here (drifted features in its extra) retrains."""
    return Asset(
        name=f"{dataset}_drift", uri=f"{get_settings().zone_uri('monitoring')}/{dataset}/drift"
    )
