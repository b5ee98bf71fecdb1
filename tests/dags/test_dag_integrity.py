"""DAG integrity: every DAG of every file in dags/ is checked here, so neither a new DAG file nor
a new dataset spec needs new test code.

Two kinds of DAG file:

- a hand-written DAG file defines exactly one DAG, whose id is the file's stem
  (``dags/lake_setup.py`` → ``lake_setup``);
- a factory file ``dags/<stage>_dags.py`` defines the DAG ``<dataset>_<stage>`` of every dataset
  spec in ``include/datasets/`` (``include.pipelines.datasets.pipeline_datasets``), and nothing
  else.

Every DAG either way follows the house rules: docs, owner, approved tags, retries, a start date
that does not move between parses, Params the trigger form can validate, and a file that imports
nothing heavy and creates no AWS client at parse time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from include.dag_defaults import APPROVED_TAGS
from include.pipelines.datasets import pipeline_datasets

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (REPO_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
FACTORY_SUFFIX = "_dags"
HEAVY_MODULES = ("torch", "pyspark", "pandas", "great_expectations")
DATASETS = pipeline_datasets()
# The stages every dataset gets from a factory file.
FACTORY_STAGES = (
    "ingestion",
    "validation",
    "training",
    "model_approval",
    "scoring",
    "monitoring",
    "reconciliation",
)


def expected_dag_ids(path: Path) -> list[str]:
    """What ``path`` must define: a factory file one DAG per dataset, any other file itself."""
    if path.stem.endswith(FACTORY_SUFFIX):
        stage = path.stem.removesuffix(FACTORY_SUFFIX)
        return sorted(f"{dataset}_{stage}" for dataset in DATASETS)
    return [path.stem]


def test_dags_folder_is_not_empty():
    assert DAG_FILES, "dags/ holds no DAG file"
    assert DATASETS, "include/datasets/ holds no dataset spec"


@pytest.fixture(scope="module")
def dagbags():
    from airflow.dag_processing.dagbag import DagBag

    # Safe mode on, as the dag-processor parses: a file that never mentions "airflow" and "dag"
    # is skipped there, and so it must be here too.
    return {path: DagBag(dag_folder=str(path), safe_mode=True) for path in DAG_FILES}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_defines_the_expected_dags(path, dagbags):
    bag = dagbags[path]
    assert bag.import_errors == {}, f"{path.name}: {bag.import_errors}"
    # The UI, the logs and the file (or the dataset and the stage) agree on the DAG id.
    assert sorted(bag.dags) == expected_dag_ids(path), f"{path.name} defines {sorted(bag.dags)}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_dag_follows_the_house_rules(path, dagbags):
    bag = dagbags[path]
    assert bag.dags, f"{path.name} defines no DAG ({bag.import_errors})"
    for dag in bag.dags.values():
        assert dag.doc_md and len(dag.doc_md.strip()) > 40, (
            f"{dag.dag_id}: doc_md missing or too short"
        )
        assert dag.tags, f"{dag.dag_id}: no tags"
        assert set(dag.tags) <= APPROVED_TAGS, (
            f"{dag.dag_id}: unapproved tags {set(dag.tags) - APPROVED_TAGS}"
        )
        assert dag.start_date is not None, f"{dag.dag_id}: no start_date"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag.dag_id}.{task.task_id}: no owner"
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id}: retries={task.retries}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_param_is_typed_titled_and_described(path, dagbags):
    """The trigger form and the REST API validate a run's conf against these schemas: a Param
    without a type accepts anything, and one without a title or description is a bare box."""
    for dag in dagbags[path].dags.values():
        for name, param in dag.params.items():
            where = f"{dag.dag_id}: param {name!r}"
            assert param.schema.get("type"), f"{where} has no JSON-schema type"
            assert param.schema.get("title"), f"{where} has no title"
            assert param.description and len(param.description) > 10, f"{where}: no description"
            # A default must pass its own schema, or every run without that field fails.
            if param.has_value:
                param.resolve()


@pytest.mark.parametrize(
    "path",
    [p for p in DAG_FILES if p.stem.endswith(FACTORY_SUFFIX)],
    ids=lambda p: p.name,
)
def test_factory_dags_document_their_own_dataset(path, dagbags):
    for dataset in DATASETS:
        dag = dagbags[path].dags[f"{dataset}_{path.stem.removesuffix(FACTORY_SUFFIX)}"]
        assert f"include/datasets/{dataset}." in dag.doc_md, (
            f"{dag.dag_id}: doc_md does not say where {dataset}'s files are"
        )
        others = [d for d in DATASETS if d != dataset and f"`{d}_" in dag.doc_md]
        assert not others, f"{dag.dag_id}: doc_md names the DAGs of {others}"


def test_every_dataset_gets_every_stage(dagbags):
    defined = {dag_id for bag in dagbags.values() for dag_id in bag.dags}
    missing = [
        f"{dataset}_{stage}"
        for dataset in DATASETS
        for stage in FACTORY_STAGES
        if f"{dataset}_{stage}" not in defined
    ]
    assert not missing, f"datasets without their stage DAGs: {missing}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_start_date_is_fixed_across_parses(path):
    """A start_date computed from now() changes at every parse; two parses must agree."""
    from airflow.dag_processing.dagbag import DagBag

    first = DagBag(dag_folder=str(path)).dags
    second = DagBag(dag_folder=str(path)).dags
    assert first and sorted(first) == sorted(second)
    for dag_id, dag in first.items():
        assert dag.start_date == second[dag_id].start_date, dag_id


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


# Slow (a fresh interpreter per DAG file): left out of `make test-fast`.
@pytest.mark.slow
@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_has_no_heavy_imports_and_creates_no_aws_client(path):
    report = run_probe(path)
    assert report["heavy"] == [], f"{path.name} imports {report['heavy']} at parse time"
    assert report["clients"] == [], (
        f"{path.name} creates boto3 clients at parse time: {report['clients']}"
    )


@pytest.mark.slow
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


def test_a_factory_file_without_the_safe_mode_words_is_caught(tmp_path):
    """The safe-mode check above must be able to fail: a file that builds its DAGs through a
    factory and never says "airflow" is skipped by the parser, so it defines no DAG."""
    from airflow.dag_processing.dagbag import DagBag

    hidden = tmp_path / "validation_dags.py"
    hidden.write_text(
        "from include.pipelines.validation import validation_dag as build\n"
        "for name in ['churn']:\n    build(name)\n"
    )
    assert DagBag(dag_folder=str(hidden), safe_mode=True).dags == {}
