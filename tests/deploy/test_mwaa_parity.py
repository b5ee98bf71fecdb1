"""The parity check: the package imports on MWAA's sys.path, and the check can fail."""

from __future__ import annotations

import shutil
import sys
import zipfile

import pytest
from mwaa_deploy_helpers import REPO_ROOT, run_script

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from mwaa_parity_check import allowed_distributions, check_package

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
    assert "module torch imported by dags/needs_torch.py" in problems
    assert (
        "module great_expectations imported by dags/include/uses_great_expectations.py: "
        "great-expectations is in neither requirements.txt nor MWAA's base image" in problems
    )
    assert (
        "dags/include/config.py would be parsed as a DAG file: "
        "dags/.airflowignore must exclude it" in problems
    )
    # What the great_expectations import drags in is not reported on its own.
    assert "module pandas" not in problems and "module scipy" not in problems


def test_allowed_distributions_follow_requirements_and_airflow():
    allowed = allowed_distributions(
        ["apache-airflow-providers-amazon[aiobotocore]==9.12.0", "pyyaml==6.0.2"]
    )
    assert {"apache-airflow-core", "apache-airflow-task-sdk", "boto3", "aiobotocore"} <= allowed
    assert {"pyyaml", "apache-airflow-providers-amazon"} <= allowed
    assert not {"torch", "pyspark", "great-expectations", "pandas"} & allowed
    # The aiobotocore extra is what brings aiobotocore in.
    assert "aiobotocore" not in allowed_distributions(["apache-airflow-providers-amazon==9.12.0"])
