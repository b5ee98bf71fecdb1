"""What training/ imports, the training image has: the network-isolated job installs nothing.

Every import statement of every ``.py`` under training/ (at any depth, inside functions too)
names the standard library, a module of training/ itself, or a module that
``training/image_packages.txt`` lists as the image's. The standard library's names are those of
the interpreter running this test: the training environment's Python 3.11, the image's. The
serving files (``code/`` in model.tar.gz) need only torch, numpy and pandas.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING = REPO_ROOT / "training"
MANIFEST_NAME = "image_packages.txt"
# What the serving container needs beyond the standard library (training/README.md, Serving):
# the SageMaker PyTorch inference image (pytorch/inference/docker/2.5/py3/Dockerfile.cpu of
# aws/deep-learning-containers) has numpy in its common conda packages, torch from its wheel, and
# pandas from its `sagemaker` stage ("Install extra packages": mamba install scikit-learn pandas).
SERVING_PROVIDED = frozenset({"torch", "numpy", "pandas"})


def image_modules(manifest: Path) -> dict[str, str]:
    """Import name -> the distribution that provides it in the image, from the manifest."""
    modules = {}
    for number, raw in enumerate(manifest.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(
                f"{manifest}:{number}: expected '<import name> <distribution>', got {raw!r}"
            )
        modules[fields[0]] = fields[1]
    return modules


def own_modules(package: Path) -> set[str]:
    """Top-level names the package's own code answers to: the package itself, and each module
    or subpackage beside train.py (SageMaker runs train.py from /opt/ml/code, where they import
    by their own names)."""
    names = {package.name}
    for path in package.iterdir():
        if path.suffix == ".py":
            names.add(path.stem)
        elif path.is_dir() and (path / "__init__.py").is_file():
            names.add(path.name)
    return names


def imports(path: Path, relative: bool = False) -> list[tuple[int, str]]:
    """``(line, top-level module)`` of every absolute import in a file; with ``relative``, of
    every relative one instead (``from .model import x`` -> ``model``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import) and not relative:
            found.extend((node.lineno, alias.name.partition(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.level > 0) == relative:
            if node.module:
                found.append((node.lineno, node.module.partition(".")[0]))
            else:  # from . import model
                found.extend((node.lineno, alias.name) for alias in node.names)
    return sorted(found)


def unprovided_imports(
    package: Path, files: list[Path], own: set[str], provided: set[str], what: str
) -> list[str]:
    """One line per import in ``files`` of a module neither the standard library, in ``own``
    (the package's), nor in ``provided``: ``file:line: imports 'module', ...``."""
    problems = []
    for path in files:
        for line, module in imports(path):
            if module in sys.stdlib_module_names or module in own or module in provided:
                continue
            problems.append(
                f"{path.relative_to(package.parent)}:{line}: imports {module!r}, which is neither "
                f"the standard library, a module of {package.name}/, nor in {what}"
            )
    return problems


def python_files(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def check_training_imports(package: Path) -> list[str]:
    manifest = package / MANIFEST_NAME
    return unprovided_imports(
        package,
        python_files(package),
        own_modules(package) | {"include"},  # what of include/ ships is checked below
        set(image_modules(manifest)),
        f"the training image ({manifest.relative_to(package.parent)})",
    )


def shared_files() -> list[Path]:
    """The .py files of the repository's modules the source tarball carries beside training/."""
    from include.sagemaker_requests import SHARED_MODULES

    files = []
    for module in SHARED_MODULES:
        path = REPO_ROOT / module
        files += [path] if path.is_file() else python_files(path)
    return sorted(files)


def dotted_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import of a module of include/, by its full name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [(node.lineno, name) for name in names if name.partition(".")[0] == "include"]
    return sorted(found)


# Imports of the shared modules that neither ship nor are in the image, and why a job never
# reaches them (each is inside the one function that needs it).
UNREACHED_IN_JOBS = {
    ("include/storage.py", "include.config"): "only for s3:// URIs; a job reads local paths",
    ("include/monitoring/thresholds.py", "yaml"): "parses the YAML file on the worker; the job "
    "gets the parsed config in its plan",
}


def reached(problem: str) -> bool:
    """Whether an :func:`unprovided_imports` line is not one of :data:`UNREACHED_IN_JOBS`."""
    where, _, rest = problem.partition(": imports ")
    return (where.rsplit(":", 1)[0], rest.split("'")[1]) not in UNREACHED_IN_JOBS


def test_training_imports_only_what_the_training_image_has():
    assert python_files(TRAINING), f"no .py files under {TRAINING}"
    assert check_training_imports(TRAINING) == []


def test_the_shared_modules_import_only_the_image_and_each_other():
    """include/monitoring/ runs in the processing jobs from the same tarball and image."""
    files = shared_files()
    assert REPO_ROOT / "include" / "monitoring" / "job.py" in files
    provided = set(image_modules(TRAINING / MANIFEST_NAME))
    include = REPO_ROOT / "include"
    problems = unprovided_imports(include, files, {"include"}, provided, "the training image")
    assert [problem for problem in problems if reached(problem)] == []
    shipped = {
        ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in files
    }
    unshipped = [
        f"{path.relative_to(REPO_ROOT)}:{line}: imports {module}"
        for path in [*files, *python_files(TRAINING)]
        for line, module in dotted_imports(path)
        if module not in shipped
        and (path.relative_to(REPO_ROOT).as_posix(), module) not in UNREACHED_IN_JOBS
    ]
    assert unshipped == []


def test_an_import_the_image_lacks_fails_naming_file_line_and_module(tmp_path):
    package = tmp_path / "training"
    shutil.copytree(TRAINING, package, ignore=shutil.ignore_patterns("__pycache__"))
    data = package / "data.py"
    lines = data.read_text().splitlines()
    data.write_text("\n".join([*lines, "import polars", "from xml.etree import ElementTree", ""]))
    (package / "extra").mkdir()
    (package / "extra" / "__init__.py").write_text("import json\nfrom extra import helpers\n")
    (package / "extra" / "helpers.py").write_text("def read():\n    import duckdb.query\n")

    assert check_training_imports(package) == [
        f"training/data.py:{len(lines) + 1}: imports 'polars', which is neither the standard "
        "library, a module of training/, nor in the training image (training/image_packages.txt)",
        "training/extra/helpers.py:2: imports 'duckdb', which is neither the standard library, "
        "a module of training/, nor in the training image (training/image_packages.txt)",
    ]


def test_a_malformed_manifest_line_is_named(tmp_path):
    manifest = tmp_path / MANIFEST_NAME
    manifest.write_text("# comment\ntorch torch==2.5.1  # pip\npyarrow\n")
    try:
        image_modules(manifest)
    except ValueError as error:
        assert str(error) == (
            f"{manifest}:3: expected '<import name> <distribution>', got 'pyarrow'"
        )
    else:
        raise AssertionError("a line without a distribution was accepted")


def test_what_the_image_has_the_training_environment_has_too():
    """So the tests here run training/ against the same libraries (at other versions)."""
    modules = image_modules(TRAINING / MANIFEST_NAME)
    assert {"torch", "numpy", "sklearn", "pyarrow"} <= modules.keys()
    assert [name for name in modules if importlib.util.find_spec(name) is None] == []


def test_serving_files_import_only_torch_and_numpy():
    from training.train import SERVING_FILES

    files = [TRAINING / name for name in SERVING_FILES]
    shipped = {Path(name).stem for name in SERVING_FILES} | {TRAINING.name}
    assert (
        unprovided_imports(TRAINING, files, shipped, set(SERVING_PROVIDED), "torch, numpy, pandas")
        == []
    )
    # Their relative imports stay among the files that ship with them in code/.
    outside = [
        f"{path.name}:{line}: .{module}"
        for path in files
        for line, module in imports(path, relative=True)
        if module not in shipped
    ]
    assert outside == []
    assert ("serving.py", "model") in {
        (path.name, module) for path in files for _, module in imports(path, relative=True)
    }
