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
import os
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
# What MWAA 3.3.1 installs, copied from aws/amazon-mwaa-docker-images (infra/mwaa/README.md).
MWAA_DIR = REPO_ROOT / "infra" / "mwaa" / "3.3.1"
MWAA_BASE_PACKAGES = MWAA_DIR / "image_base_packages.txt"
MWAA_REQUIREMENTS = REPO_ROOT / "requirements.txt"

# Local stand-ins of AWS services that run inside local worker tasks and never on MWAA, where
# the service itself does the work. The repository may import each on top of what MWAA installs
# (their own dependencies are theirs to import, not the repository's).
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


def mwaa_distributions(requirements: Path = MWAA_REQUIREMENTS) -> frozenset[str]:
    """The distributions an MWAA worker has: its base packages, ``requirements``, and their
    dependencies (markers evaluated for this interpreter: Python 3.12 on Linux, like MWAA's)."""
    return frozenset(_closure([*_requirements(MWAA_BASE_PACKAGES), *_requirements(requirements)]))


@cache
def _allowed_distributions() -> frozenset[str]:
    """What the repository may import in a local task: MWAA's, and the local counterparts."""
    return mwaa_distributions() | LOCAL_COUNTERPARTS.keys()


@cache
def _module_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def undeclared_distributions(module: str) -> list[str] | None:
    """The distributions providing top-level ``module`` when none of them is declared, else
    None (declared, a local counterpart, the standard library, this repository, or a module of
    no known distribution)."""
    if module in sys.stdlib_module_names or module in REPO_MODULES:
        return None
    providers = _module_distributions().get(module)
    if not providers:
        return None
    names = sorted({canonicalize_name(name) for name in providers})
    if any(name in _allowed_distributions() for name in names):
        return None
    return names


# Code whose imports are checked: the repository's (and the dags and plugins folders Airflow is
# pointed at), not the environments inside it.
_UNCHECKED_ROOTS = tuple(
    f"{REPO_ROOT / name}{os.sep}" for name in (".venv", ".venv-spark", ".venv-training")
)


def _importer_file() -> str:
    """The file of the frame that runs the import statement (importlib's own frames skipped)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else ""


class UndeclaredImportFinder(importlib.abc.MetaPathFinder):
    """Refuses, in this repository's code, top-level modules an MWAA worker would not have.

    What an installed library imports in turn is that library's concern (its own dependencies,
    or optional ``try: import``s), as it is on MWAA; the repository's import of it is checked.
    """

    def __init__(self) -> None:
        self._checked: dict[str, list[str] | None] = {}
        folders = [
            REPO_ROOT,
            *(os.environ.get(f"AIRFLOW__CORE__{name}_FOLDER") for name in ("DAGS", "PLUGINS")),
        ]
        self._checked_roots = tuple(
            f"{Path(folder).resolve()}{os.sep}" for folder in folders if folder
        )

    def find_spec(self, fullname, path=None, target=None):
        if "." in fullname:
            return None  # a submodule: its top-level package was checked when it was imported
        importer = _importer_file()
        if not importer.startswith(self._checked_roots) or importer.startswith(_UNCHECKED_ROOTS):
            return None
        if fullname not in self._checked:
            self._checked[fullname] = undeclared_distributions(fullname)
        undeclared = self._checked[fullname]
        if undeclared is None:
            return None
        raise ModuleNotFoundError(
            f"No module named {fullname!r} on an MWAA worker (imported by {importer}): "
            f"distribution {', '.join(undeclared)} is not in requirements.txt nor in MWAA's "
            f"base packages ({MWAA_BASE_PACKAGES.relative_to(REPO_ROOT)}). Declare it in "
            f"requirements.txt, or run this work as a job (spark, training, transform) instead "
            f"of in the worker.",
            name=fullname,
        )


def install_import_guard() -> None:
    """Put the guard first on ``sys.meta_path`` (once per process)."""
    if not any(isinstance(finder, UndeclaredImportFinder) for finder in sys.meta_path):
        # Computed now, not inside the first guarded import.
        _allowed_distributions()
        _module_distributions()
        sys.meta_path.insert(0, UndeclaredImportFinder())
