"""Run real DAGs of ``dags/`` through ``dag.test()`` for some days; print the outcome.

Run as ``python tests/include/scoring_dag_run.py DAG_ID:DS [DAG_ID:DS...]`` with
``AIRFLOW_HOME`` pointing at a migrated database and the lake settings in the environment. Each
pair is one run of that DAG with ``{"ds": DS}`` as its conf, in the order given: one process
pays Airflow's start-up (about 7.5 CPU-s) for all of them. Prints one ``OUTCOME`` JSON line: per
DAG and day the run's state, every task's state, its XComs' return values, and the asset events
the run emitted (asset name and extra), read back from Airflow's database.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "plugins")]


def main(runs: list[tuple[str, str]]) -> dict:
    import pendulum
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.serialization.definitions.dag import SerializedDAG
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session
    from sqlalchemy import select

    # The whole folder: a DAG is found by its id, whichever file (or factory) defines it.
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag_ids = list(dict.fromkeys(dag_id for dag_id, _ in runs))
    for dag_id in dag_ids:
        assert dag_id in bag.dags, f"no DAG {dag_id!r} in dags/ (it has {sorted(bag.dags)})"
    # What the dag processor does before a real run, and dag.test() does not: register the DAGs
    # and their assets (a task can emit an event only for an active asset).
    DagBundlesManager().sync_bundles_to_db()
    SerializedDAG.bulk_write_to_db(
        "dags-folder", None, [LazyDeserializedDAG.from_dag(bag.dags[d]) for d in dag_ids]
    )
    outcome: dict[str, dict] = {dag_id: {} for dag_id in dag_ids}
    for dag_id, ds in runs:
        runs_of_dag = outcome[dag_id]
        run = bag.dags[dag_id].test(
            logical_date=pendulum.datetime(2026, 3, 1 + len(runs_of_dag), tz="UTC"),
            run_conf={"ds": ds},
        )
        with create_session() as session:
            events = session.execute(
                select(AssetModel.name, AssetEvent.extra)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetEvent.source_run_id == run.run_id)
            ).all()
        runs_of_dag[ds] = {
            "dag_run_state": str(run.state),
            "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()},
            "xcom": {
                ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in run.get_task_instances()
            },
            "events": [{"asset": name, "extra": extra} for name, extra in events],
        }
    return outcome


if __name__ == "__main__":
    pairs = [tuple(argument.split(":", 1)) for argument in sys.argv[1:]]
    print("OUTCOME " + json.dumps(main(pairs), sort_keys=True, default=str))
