"""The parity check: the package imports on MWAA's sys.path, and the check can fail."""

from __future__ import annotations

import shutil
import sys
import zipfile

import pytest
from mwaa_deploy_helpers import REPO_ROOT, run_script

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from mwaa_parity_check import check_package, requirements_problems

from include.worker_imports import mwaa_distributions

# Slow (builds the MWAA package and imports it in a fresh interpreter): left out of `make test-fast`.
pytestmark = pytest.mark.slow

# The DAG ids the pipeline's stages have, whichever files define them.
LIFECYCLE_DAGS = {
    "lake_setup",
    "churn_ingestion",
    "churn_validation",
    "churn_training",
    "churn_model_approval",
    "churn_scoring",
    "churn_monitoring",
}


def test_the_package_imports_on_mwaas_path(mwaa_package, mwaa_manifest):
    report = check_package(mwaa_package)
    # The check leaves the package as it was (no __pycache__ that deploy would refuse).
    on_disk = {
        p.relative_to(mwaa_package).as_posix() for p in mwaa_package.rglob("*") if p.is_file()
    }
    assert on_disk == set(mwaa_manifest["files"]) | {"manifest.json"}
    assert set(report["dags"]) >= LIFECYCLE_DAGS
    dags = str((mwaa_package / "dags").resolve())
    # MWAA's order: the dags folder, then the plugins folder, ahead of the installed packages.
    assert report["sys_path"][0] == dags
    assert report["sys_path"][1].endswith("/plugins")
    assert not any(entry.rstrip("/") == str(REPO_ROOT) for entry in report["sys_path"])
    assert not any(entry in ("", ".") for entry in report["sys_path"])
    # Every DAG came from the packaged dags folder, and no library file was parsed as one.
    for dag_id, fileloc in report["dags"].items():
        assert fileloc.startswith(dags + "/"), dag_id
    assert all("/include/" not in path for path in report["dag_files"])
    # The operators imported from the extracted plugins.zip, not from the repository.
    kind, path, _importer = report["modules"]["headrace_operators"]
    assert kind == "bundle" and "/plugins/headrace_operators/" in path
    assert report["modules"]["include.config"][1].startswith(dags + "/include/")
    # Parsing the DAGs imports neither torch nor pyspark.
    assert not {"torch", "pyspark"} & {name.split(".")[0] for name in report["modules"]}


@pytest.fixture
def broken_package(mwaa_package, tmp_path):
    """The real package with the mistakes the check exists for planted in it."""
    package = tmp_path / "mwaa"
    shutil.copytree(mwaa_package, package)
    dags = package / "dags"
    (dags / "needs_torch.py").write_text(
        '"""A DAG file that imports torch at parse time."""\n'
        "import torch  # noqa: F401\n"
        "from airflow.sdk import dag\n\n\n"
        '@dag(dag_id="needs_torch", schedule=None)\n'
        "def needs_torch():\n    pass\n\n\nneeds_torch()\n"
    )
    # Only in the repository, not in the bundle: works locally, breaks on MWAA.
    (dags / "needs_the_repo.py").write_text(
        "from airflow.sdk import dag  # noqa: F401\nfrom bench import bench_dag_parse  # noqa\n"
    )
    (dags / "include" / "uses_great_expectations.py").write_text("import great_expectations\n")
    ignore = dags / ".airflowignore"
    ignore.write_text(ignore.read_text().replace("/include/\n", ""))
    with zipfile.ZipFile(package / "plugins.zip", "a") as archive:
        archive.writestr("broken_plugin.py", "import headrace_no_such_module\n")
    return package


def test_the_check_names_every_broken_file(broken_package):
    result = run_script("mwaa_parity_check.py", "--package", str(broken_package))
    assert result.returncode == 1
    problems = result.stderr
    assert (
        "DAG file dags/needs_the_repo.py: ModuleNotFoundError: No module named 'bench'" in problems
    )
    assert (
        "plugin plugins.zip:broken_plugin.py: No module named 'headrace_no_such_module'" in problems
    )
    # torch is not in the worker environment either: the DAG file fails as it would on MWAA.
    assert "DAG file dags/needs_torch.py: ModuleNotFoundError: No module named 'torch'" in problems
    assert (
        "module great_expectations imported by dags/include/uses_great_expectations.py: "
        "great-expectations is in neither requirements.txt nor MWAA's base packages" in problems
    )
    assert (
        "dags/include/config.py would be parsed as a DAG file: "
        "dags/.airflowignore must exclude it" in problems
    )
    # What the great_expectations import drags in is not reported on its own.
    assert "module pandas" not in problems and "module scipy" not in problems


def test_mwaa_distributions_follow_requirements_and_the_base_packages(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pyyaml==6.0.3\n")
    allowed = mwaa_distributions(requirements)
    # MWAA 3.3.1's base packages: Airflow with celery, the Amazon provider with aiobotocore…
    assert {"apache-airflow-task-sdk", "celery", "psycopg2", "aiobotocore", "pyyaml"} <= allowed
    # … and nothing the workers import for data: that is requirements.txt's to declare.
    assert not {"torch", "pyspark", "great-expectations", "pandas", "mlflow"} & allowed
    requirements.write_text("pandas==3.0.5\n")
    assert {"pandas", "numpy"} <= mwaa_distributions(requirements)


def test_requirements_that_mwaa_would_refuse_are_named_by_line(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-3.0.6/constraints-3.12.txt"\n'
        "pandas==2.1.4\n"
        "Flask==3.0.0\n"
        "numpy==2.5.1\n"
    )
    problems = requirements_problems(requirements)
    assert len(problems) == 3, problems
    assert problems[0].startswith("requirements.txt:1: ") and "constraints-3.3.1/" in problems[0]
    assert problems[1] == (
        "requirements.txt:2: 'pandas==2.1.4' conflicts with the constraints (pandas==3.0.5, 3.3.1)"
    )
    assert problems[2] == (
        "requirements.txt:3: 'Flask==3.0.0' conflicts with an essential MWAA pin "
        "(flask==3.1.3, 3.3.1)"
    )
    requirements.write_text("numpy==2.5.1\n")
    assert requirements_problems(requirements) == [
        "requirements.txt: no --constraint line (MWAA's is "
        "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt)"
    ]
    # The repository's own requirements.txt passes.
    assert requirements_problems(REPO_ROOT / "requirements.txt") == []
