"""What a task on an MWAA worker can import, and a guard that holds local tasks to it.

An MWAA 3.3.1 worker has the image's base packages (``infra/mwaa/3.3.1/image_base_packages.txt``)
and what ``requirements.txt`` adds, with their dependencies: nothing else. The local worker
environment (``.venv``) holds more — test tools, and the local stand-ins of AWS services — so
without a guard a task that imports an undeclared library works here and fails on MWAA.

:func:`install_import_guard` puts a finder first on ``sys.meta_path`` that refuses any top-level
module whose distributions are all outside that set, with an error that names the library and
the file to declare it in. The local stack installs it in every Airflow process
(``scripts/stack_settings/airflow_local_settings.py``); task processes are forks of those.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
MWAA_BASE_PACKAGES = REPO_ROOT / "infra" / "mwaa" / "3.3.1" / "image_base_packages.txt"
MWAA_REQUIREMENTS = REPO_ROOT / "requirements.txt"

# Local stand-ins of AWS services that run inside local worker tasks and never on MWAA, where
# the service itself does the work. Each is allowed on top of what MWAA installs.
LOCAL_COUNTERPARTS = {
    "mlflow": "the local model registry (SageMaker Model Registry on aws)",
    "great-expectations": "the local quality gate (Glue Data Quality on aws)",
    "optuna": "the local tuning runtime (SageMaker automatic model tuning on aws)",
}

# Top-level modules of this repository (the dags folder root and plugins/ on MWAA).
REPO_MODULES = {"include", "spark_jobs", "training", "headrace_operators", "headrace_api_guard"}


def _requirements(path: Path) -> list[Requirement]:
    """The requirement lines of a requirements file (options, comments and blanks skipped)."""
    requirements = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip().replace("${AIRFLOW_VERSION}", "0")
        if line and not line.startswith("-"):
            requirements.append(Requirement(line))
    return requirements


def _closure(roots: Iterable[Requirement]) -> set[str]:
    """The installed distributions ``roots`` need, transitively, with the extras they name."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    pending = [(canonicalize_name(r.name), frozenset(r.extras)) for r in roots]
    while pending:
        name, extras = pending.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here (a marker for another platform): nothing to allow
        names.add(name)
        for line in distribution.requires or []:
            requirement = Requirement(line)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            )
            if wanted:
                pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return names


@cache
def worker_distributions() -> frozenset[str]:
    """The distributions a task may import from: MWAA's base packages, ``requirements.txt``,
    their dependencies, and the local counterparts of AWS services."""
    roots = [*_requirements(MWAA_BASE_PACKAGES), *_requirements(MWAA_REQUIREMENTS)]
    roots += [Requirement(name) for name in LOCAL_COUNTERPARTS]
    return frozenset(_closure(roots))


@cache
def _module_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def undeclared_distributions(module: str) -> list[str] | None:
    """The distributions providing top-level ``module`` when none of them is declared, else
    None (declared, the standard library, this repository, or no known distribution)."""
    if module in sys.stdlib_module_names or module in REPO_MODULES:
        return None
    providers = _module_distributions().get(module)
    if not providers:
        return None
    names = sorted({canonicalize_name(name) for name in providers})
    if any(name in worker_distributions() for name in names):
        return None
    return names


class UndeclaredImportFinder(importlib.abc.MetaPathFinder):
    """Refuses top-level modules that an MWAA worker would not have."""

    def __init__(self) -> None:
        self._checked: dict[str, list[str] | None] = {}

    def find_spec(self, fullname, path=None, target=None):
        if "." in fullname:
            return None  # a submodule: its top-level package was checked when it was imported
        if fullname not in self._checked:
            self._checked[fullname] = undeclared_distributions(fullname)
        undeclared = self._checked[fullname]
        if undeclared is None:
            return None
        raise ModuleNotFoundError(
            f"No module named {fullname!r} on an MWAA worker: distribution "
            f"{', '.join(undeclared)} is not in requirements.txt nor in MWAA's base packages "
            f"({MWAA_BASE_PACKAGES.relative_to(REPO_ROOT)}). Declare it in requirements.txt, "
            f"or run this work as a job (spark, training, transform) instead of in the worker.",
            name=fullname,
        )


def install_import_guard() -> None:
    """Put the guard first on ``sys.meta_path`` (once per process)."""
    if not any(isinstance(finder, UndeclaredImportFinder) for finder in sys.meta_path):
        # Computed now, not inside the first guarded import.
        worker_distributions()
        _module_distributions()
        sys.meta_path.insert(0, UndeclaredImportFinder())

