"""headrace's own OpenLineage dataset facets: what a model version and a drift check found.

OpenLineage has no standard facet for a registered model's metrics or a drift verdict, so these
are custom facets as the spec allows: named with the producer's prefix (``headrace_…``), each
with its own schema URL. Imported only where an event is built (openlineage is a worker
dependency, not a DAG file's).
"""

from __future__ import annotations

import attr
from openlineage.client.generated.base import DatasetFacet

from include.lineage import PRODUCER

SCHEMA_BASE = f"{PRODUCER}/blob/main/docs/lineage.md"


@attr.define
class ModelVersionDatasetFacet(DatasetFacet):
    """A registered model version: its registry version and approval, the champion it was
    compared with, and its test-split metrics."""

    version: str
    approval: str
    championVersion: str | None  # OpenLineage facets are camelCase
    metrics: dict[str, float]

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_BASE}#model-version-facet"


@attr.define
class DriftVerdictDatasetFacet(DatasetFacet):
    """A drift check of one day's predictions against a model version's baseline."""

    ds: str
    modelVersion: str
    drifted: bool
    driftedFeatures: list[str]
    verdict: str

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_BASE}#drift-verdict-facet"
