"""requirements.txt (what MWAA installs), MWAA's constraints and the three environment locks agree."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

MWAA = "infra/mwaa/3.3.1"


def _pins(path) -> dict[str, str]:
    """name -> version of every ``name==version`` line (extras and markers ignored)."""
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"{path.name}: {line!r} is not pinned with =="
        )
        pins[canonicalize_name(requirement.name)] = specifiers[0].version
    return pins


@pytest.fixture(scope="module")
def mwaa_requirements(repo_root):
    return _pins(repo_root / "requirements.txt")


@pytest.fixture(scope="module")
def constraints(repo_root):
    return _pins(repo_root / MWAA / "airflow_constraints.txt")


@pytest.fixture(scope="module")
def worker_lock(repo_root):
    return _pins(repo_root / "envs" / "worker.txt")


def test_requirements_txt_names_mwaas_constraints_file_for_the_locked_airflow(
    repo_root, worker_lock
):
    text = (repo_root / "requirements.txt").read_text()
    constraint = re.findall(
        r'^--constraint "https://raw\.githubusercontent\.com/apache/airflow/constraints-([\d.]+)/constraints-3\.12\.txt"$',
        text,
        flags=re.MULTILINE,
    )
    assert constraint == [worker_lock["apache-airflow"]] == ["3.3.1"]
    # The local copy of the constraints is the file that URL names.
    header = (repo_root / MWAA / "airflow_constraints.txt").read_text()
    assert "constraints-3.3.1/constraints-3.12.txt" in header


def test_requirements_txt_pins_nothing_the_constraints_pin_differently(
    mwaa_requirements, constraints
):
    assert mwaa_requirements, "requirements.txt pins nothing"
    differing = {
        name: (pin, constraints[name])
        for name, pin in mwaa_requirements.items()
        if name in constraints and constraints[name] != pin
    }
    assert differing == {}
    assert mwaa_requirements["apache-airflow-providers-amazon"] == "9.34.0"


def test_every_mwaa_pin_is_the_worker_environments_pin(mwaa_requirements, worker_lock):
    mismatched = {
        name: (pin, worker_lock.get(name))
        for name, pin in mwaa_requirements.items()
        if worker_lock.get(name) != pin
    }
    assert mismatched == {}, f"requirements.txt vs envs/worker.txt: {mismatched}"


def test_the_worker_environment_is_mwaas_constraints_but_for_the_explained_overrides(
    repo_root, worker_lock, constraints
):
    overrides = _pins(repo_root / "envs" / "worker-overrides.txt")
    differing = {
        name: (pin, constraints[name])
        for name, pin in worker_lock.items()
        if name in constraints and constraints[name] != pin
    }
    assert set(differing) == set(overrides)
    for name in ("apache-airflow-providers-amazon", "pandas", "numpy", "pyarrow"):
        assert worker_lock[name] == constraints[name], name
    assert worker_lock["apache-airflow-providers-standard"] == "1.17.0"


def test_mwaa_requirements_carry_no_torch_and_no_pyspark(mwaa_requirements, worker_lock):
    assert not {"torch", "pyspark", "apache-airflow"} & set(mwaa_requirements)
    # Nor does the worker environment: those run as jobs, in their own environments.
    assert not {"torch", "pyspark"} & set(worker_lock)


def test_the_job_environments_pin_their_aws_counterparts(repo_root):
    spark = _pins(repo_root / "envs" / "spark.txt")
    # Glue 5.1: Spark 3.5.6 and the Python modules it provides, at its versions.
    assert spark["pyspark"] == "3.5.6"
    assert (spark["pandas"], spark["numpy"], spark["pyarrow"]) == ("2.3.3", "2.3.4", "22.0.0")
    training = _pins(repo_root / "envs" / "training.txt")
    assert training["torch"] == "2.13.0+cpu"
    assert "pyspark" not in training and "apache-airflow" not in training


def test_installed_worker_environment_matches_its_lock(worker_lock):
    """The venv the tests run in is the lock, not whatever happened to be installed."""
    for name in (
        "apache-airflow",
        "apache-airflow-providers-amazon",
        "apache-airflow-providers-standard",
        "pandas",
        "pyarrow",
        "great-expectations",
    ):
        assert version(name) == worker_lock[name], name


def test_the_vendored_mwaa_files_are_the_teams_reference_copy(repo_root):
    """infra/mwaa/3.3.1/ is a copy of what MWAA installs; where the team's reference folder
    (../shared/mwaa/3.3.1, beside a checkout) is present, the two are the same bytes."""
    reference = repo_root.parent / "shared" / "mwaa" / "3.3.1"
    if not reference.is_dir():
        pytest.skip(f"no reference copy at {reference}")
    for name in (
        "airflow_constraints.txt",
        "image_base_packages.txt",
        "mwaa_essential_constraints.txt",
    ):
        assert (repo_root / MWAA / name).read_bytes() == (reference / name).read_bytes(), name
