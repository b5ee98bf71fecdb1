"""
### Lake setup

Creates the zones of the lake (`landing/ curated/ quarantine/ features/ models/ predictions/
monitoring/ reports/`) under the configured lake root and writes the lake descriptor
`_lake.json`, after validating every setting of the target (`PIPELINE_TARGET`).

**For** platform engineers bringing up an environment, and for every other pipeline: the
`headrace_lake` Asset it updates is the root of the lineage graph.

**Triggered** by hand (UI or REST API) and by `make demo`; safe to re-run: existing zones are
kept and the descriptor is rewritten with the same bytes.
"""

from __future__ import annotations

from airflow.sdk import chain, dag, task

from include.assets import lake_asset
from include.dag_defaults import DEFAULT_ARGS, START_DATE


@dag(
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["headrace", "platform"],
    doc_md=__doc__,
)
def lake_setup():
    @task(multiple_outputs=False)
    def validate_settings() -> dict:
        """Fail fast, naming every bad variable, before anything is written."""
        from include.config import load_settings

        settings = load_settings()
        return {"target": settings.target, "lake_root": settings.lake_root}

    @task(outlets=[lake_asset()], multiple_outputs=False)
    def initialize_lake() -> dict:
        from include.config import load_settings
        from include.lake import initialize_lake as create_lake_zones

        return create_lake_zones(load_settings())

    chain(validate_settings(), initialize_lake())


lake_setup()
