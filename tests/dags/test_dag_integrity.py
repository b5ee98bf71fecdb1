"""DAG integrity: every file in dags/ is checked here, so a new DAG needs no new test code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from include.dag_defaults import APPROVED_TAGS

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (REPO_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
HEAVY_MODULES = ("torch", "pyspark", "pandas", "great_expectations")


def test_dags_folder_is_not_empty():
    assert DAG_FILES, "dags/ holds no DAG file"


@pytest.fixture(scope="module")
def dagbags():
    from airflow.models.dagbag import DagBag

    return {
        path: DagBag(dag_folder=str(path), include_examples=False, safe_mode=False)
        for path in DAG_FILES
    }


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_and_follows_the_house_rules(path, dagbags):
    bag = dagbags[path]
    assert bag.import_errors == {}, f"{path.name}: {bag.import_errors}"
    # One DAG per file, dag_id == file stem: the UI, the logs and the file name agree.
    assert list(bag.dags) == [path.stem], f"{path.name} defines {list(bag.dags)}"
    dag = bag.dags[path.stem]

    assert dag.doc_md and len(dag.doc_md.strip()) > 40, f"{dag.dag_id}: doc_md missing or too short"
    assert dag.tags, f"{dag.dag_id}: no tags"
    assert set(dag.tags) <= APPROVED_TAGS, (
        f"{dag.dag_id}: unapproved tags {set(dag.tags) - APPROVED_TAGS}"
    )
    assert dag.start_date is not None, f"{dag.dag_id}: no start_date"
    for task in dag.tasks:
        assert task.owner and task.owner != "airflow", f"{dag.dag_id}.{task.task_id}: no owner"
        assert task.retries >= 1, f"{dag.dag_id}.{task.task_id}: retries={task.retries}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_start_date_is_fixed_across_parses(path):
    """A start_date computed from now() changes at every parse; two parses must agree."""
    from airflow.models.dagbag import DagBag

    first = DagBag(dag_folder=str(path), include_examples=False).dags[path.stem]
    second = DagBag(dag_folder=str(path), include_examples=False).dags[path.stem]
    assert first.start_date == second.start_date


# Runs in a fresh interpreter: imports airflow, then the DAG file, and reports which heavy
# modules got imported and how many AWS clients were created while importing the DAG file.
_PROBE = r"""
import importlib.util, json, sys
import airflow.sdk  # noqa: F401  (what every DAG file imports anyway)
import botocore.session
created = []
original = botocore.session.Session.create_client
def recording_create_client(self, service_name, *args, **kwargs):
    created.append(service_name)
    return original(self, service_name, *args, **kwargs)
botocore.session.Session.create_client = recording_create_client
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
heavy = sorted(
    name for name in set(sys.modules) - before
    if name.split(".")[0] in {"torch", "pyspark", "pandas", "great_expectations"}
)
print("PROBE " + json.dumps({"heavy": sorted({n.split(".")[0] for n in heavy}), "clients": created}))
"""


def run_probe(path: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE "))


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_has_no_heavy_imports_and_creates_no_aws_client(path):
    report = run_probe(path)
    assert report["heavy"] == [], f"{path.name} imports {report['heavy']} at parse time"
    assert report["clients"] == [], (
        f"{path.name} creates boto3 clients at parse time: {report['clients']}"
    )


def test_probe_catches_a_heavy_import_and_a_client(tmp_path):
    """The probe above must be able to fail: a DAG file that breaks both rules is caught."""
    bad = tmp_path / "bad_dag.py"
    bad.write_text(
        "import pandas\nimport boto3\n"
        "boto3.client('s3', region_name='eu-west-1', aws_access_key_id='x', aws_secret_access_key='y')\n"
    )
    report = run_probe(bad)
    assert report["heavy"] == ["pandas"]
    assert report["clients"] == ["s3"]
