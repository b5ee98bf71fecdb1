"""requirements.txt (what MWAA installs) and requirements-dev.txt (the local lock) agree."""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


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


def test_every_mwaa_pin_has_the_same_version_in_the_local_lock(repo_root):
    mwaa = _pins(repo_root / "requirements.txt")
    lock = _pins(repo_root / "requirements-dev.txt")
    assert mwaa, "requirements.txt pins nothing"
    mismatched = {
        name: (version, lock.get(name))
        for name, version in mwaa.items()
        if lock.get(name) != version
    }
    assert mismatched == {}, f"requirements.txt vs requirements-dev.txt: {mismatched}"


def test_requirements_txt_has_the_mwaa_constraint_line_for_the_locked_airflow(repo_root):
    text = (repo_root / "requirements.txt").read_text()
    constraint = re.findall(
        r'^--constraint "https://raw\.githubusercontent\.com/apache/airflow/constraints-([\d.]+)/constraints-3\.\d+\.txt"$',
        text,
        flags=re.MULTILINE,
    )
    lock = _pins(repo_root / "requirements-dev.txt")
    assert constraint == [lock["apache-airflow"]]


def test_mwaa_requirements_carry_no_torch_and_no_pyspark(repo_root):
    mwaa = _pins(repo_root / "requirements.txt")
    assert not {"torch", "pyspark", "apache-airflow"} & set(mwaa)


def test_local_lock_pins_the_stack_the_issue_names(repo_root):
    lock = _pins(repo_root / "requirements-dev.txt")
    assert lock["apache-airflow"].startswith("3.")
    assert lock["torch"] == "2.13.0+cpu"
    # Glue 5.1 and EMR 7 run Spark 3.5: the local pyspark must be the same minor version.
    assert lock["pyspark"].startswith("3.5.")
    for name in (
        "apache-airflow-providers-amazon",
        "aiobotocore",
        "great-expectations",
        "pydeequ",
        "pandas",
        "pyarrow",
        "moto",
        "pytest",
        "ruff",
        "detect-secrets",
    ):
        assert name in lock, f"{name} missing from requirements-dev.txt"
    assert lock["great-expectations"].startswith("1.")


def test_installed_environment_matches_the_lock(repo_root):
    """The venv the tests run in is the lock, not whatever happened to be installed."""
    from importlib.metadata import version

    lock = _pins(repo_root / "requirements-dev.txt")
    for name in (
        "apache-airflow",
        "apache-airflow-providers-amazon",
        "pyspark",
        "torch",
        "great-expectations",
    ):
        assert version(name) == lock[name], name
