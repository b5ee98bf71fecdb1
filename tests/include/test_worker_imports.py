"""Local worker tasks can import only what an MWAA worker has (include/worker_imports.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from include.worker_imports import undeclared_distributions

# Slow (runs tasks in fresh interpreters): left out of `make test-fast`.
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
# Runs the DAG as the stack does: airflow_local_settings.py of the stack on the path, the DAG
# stored in the metadata database (dag.test() finds DAGs there since Airflow 3.3).
RUNNER = """
import json, sys
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
DagBundlesManager().sync_bundles_to_db()
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
sync_bag_to_db(bag, "dags-folder", None)
run = bag.dags["undeclared_import"].test()
print("OUTCOME " + json.dumps({ti.task_id: str(ti.state) for ti in run.get_task_instances()}))
"""


def test_a_task_importing_an_undeclared_library_fails_naming_it(
    repo_root, migrated_airflow_home, tmp_path
):
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(HERE / "fixtures" / "undeclared_import_dag.py", dags)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(migrated_airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "PYTHONPATH": os.pathsep.join(
            [str(repo_root), str(repo_root / "scripts" / "stack_settings")]
        ),
    }
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(dags)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    outcome = [line for line in result.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert outcome, output[-3000:]
    states = json.loads(outcome[0].removeprefix("OUTCOME "))
    assert states == {"declared": "success", "undeclared": "failed"}
    assert "No module named 'hypothesis' on an MWAA worker" in output
    assert "distribution hypothesis is not in requirements.txt" in output


def test_declared_libraries_local_counterparts_and_the_repo_pass_the_guard():
    for module in ("pandas", "pyarrow", "yaml", "boto3", "airflow", "celery", "mlflow", "include"):
        assert undeclared_distributions(module) is None, module
    assert undeclared_distributions("json") is None  # the standard library
    for module, distribution in [
        ("hypothesis", "hypothesis"),
        ("moto", "moto"),
        ("_pytest", "pytest"),
    ]:
        assert undeclared_distributions(module) == [distribution], module
