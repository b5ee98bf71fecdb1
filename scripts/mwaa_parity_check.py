"""Parity check: does the package import on MWAA as it does here? (``make package`` runs it.)

Usage: ``python scripts/mwaa_parity_check.py --package build/mwaa``.

In a fresh interpreter whose ``sys.path`` is MWAA's — the dags folder and the plugins folder
(``plugins.zip`` extracted, as MWAA does into /usr/local/airflow/plugins) ahead of the installed
packages, the repository nowhere on it — and with the environment the package's ``startup.sh``
derives from example ``headrace.*`` options (the aws target), it:

1. loads the plugins as Airflow's plugins manager does, and imports every top-level package and
   module of the plugins folder as DAG files import them;
2. parses the packaged dags folder with a ``DagBag``, honouring its ``.airflowignore``;
3. records where every imported module came from.

It fails, naming the file, on any plugin or DAG import error, on a DAG folder with no DAG, on a
library file (``include/`` …) that the ``.airflowignore`` lets through as a DAG file, and on a
module the bundle imports at parse time that MWAA would not have: one from outside the standard
library, the bundle and the distributions ``requirements.txt`` and MWAA's base image
(``apache-airflow``) pull in (``torch`` and ``pyspark`` never are). What an installed library
imports in turn is that library's business (its dependencies, or optional ``try: import``s).
It also rebuilds, on that path, the Spark and training code artifacts the operators upload at
run time and compares them with the package's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from include.worker_imports import MWAA_DIR, mwaa_distributions  # noqa: E402

# Never on an MWAA worker: they run on Glue/EMR and SageMaker.
NEVER_ON_MWAA = frozenset({"torch", "pyspark"})
# The example options the check starts the bundle with: valid in form, never sent anywhere.
EXAMPLE_MWAA_OPTIONS = {
    "headrace.aws_region": "eu-west-1",
    "headrace.bucket": "headrace-parity-lake",
    "headrace.sagemaker_role_arn": "arn:aws:iam::123456789012:role/headrace-sagemaker",
    "headrace.glue_role_arn": "arn:aws:iam::123456789012:role/headrace-glue",
    "headrace.emr_serverless_role_arn": "arn:aws:iam::123456789012:role/headrace-emr",
    "headrace.kms_key_arn": (
        "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    ),
    "headrace.subnet_ids": "subnet-0123456789abcdef0",
    "headrace.security_group_ids": "sg-0123456789abcdef0",
    "headrace.pii_salt_secret_arn": (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:headrace/pii-salt-AbCdEf"
    ),
    # Optional settings set too, so the parse takes the paths that depend on them.
    "headrace.alerts_topic_arn": "arn:aws:sns:eu-west-1:123456789012:headrace-alerts",
    "headrace.landing_queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/headrace-landing",
}
# Library trees inside the dags folder that must never be parsed as DAG files.
LIBRARY_TREES = ("include", "spark_jobs", "training")

# Runs in the fresh interpreter: argv = dags folder, plugins folder.
_PROBE = r"""
import hashlib, importlib, json, sys, sysconfig, traceback
from pathlib import Path

dags, plugins = (Path(arg).resolve() for arg in sys.argv[1:3])

# Who imported each module first: the file of the first frame outside the import machinery.
importers = {}
def record_importer(event, args):
    if event != "import" or args[0] in importers:
        return
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen importlib")
        or "/importlib/" in frame.f_code.co_filename
    ):
        frame = frame.f_back
    importers[args[0]] = frame.f_code.co_filename if frame is not None else None
sys.addaudithook(record_importer)
# MWAA's path: the dags folder and the plugins folder ahead of the installed packages.
sys.path[:0] = [str(dags), str(plugins)]
report = {"sys_path": list(sys.path), "plugin_errors": {}, "import_errors": {}}

from airflow import plugins_manager
plugins_manager.ensure_plugins_loaded()
report["plugin_errors"].update(plugins_manager.get_import_errors())
for entry in sorted(plugins.iterdir()):
    name = entry.stem if entry.suffix == ".py" else entry.name
    if entry.name.startswith((".", "_")) or not (
        entry.suffix == ".py" or (entry / "__init__.py").is_file()
    ):
        continue
    try:
        importlib.import_module(name)
    except Exception:
        report["plugin_errors"][str(entry)] = traceback.format_exc(limit=-3)

from airflow.dag_processing.dagbag import DagBag
from airflow.utils.file import list_py_file_paths
report["dag_files"] = sorted(list_py_file_paths(str(dags), safe_mode=False))
bag = DagBag(dag_folder=str(dags), safe_mode=False)
report["import_errors"].update(bag.import_errors)
report["dags"] = {dag_id: dag.fileloc for dag_id, dag in sorted(bag.dags.items())}

paths = sysconfig.get_paths()
stdlib = {Path(paths[key]).resolve() for key in ("stdlib", "platstdlib")}
site = {Path(paths[key]).resolve() for key in ("purelib", "platlib")}
origins = {}
for name, module in sorted(sys.modules.items()):
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) or getattr(module, "__file__", None)
    if not origin or origin in ("built-in", "frozen") or name in sys.builtin_module_names:
        continue
    path = Path(origin).resolve()
    if path.is_relative_to(dags) or path.is_relative_to(plugins):
        kind = "bundle"
    elif any(path.is_relative_to(root) for root in site):
        kind = "site"
    elif any(path.is_relative_to(root) for root in stdlib):
        kind = "stdlib"
    else:
        kind = "elsewhere"
    origins[name] = [kind, str(path), importers.get(name)]
report["modules"] = origins

# The code artifacts as the operators build them on MWAA (their REPO_ROOT: the dags folder).
from include.sagemaker_requests import build_source_tarball
from include.spark_job_requests import build_package_zip
report["runtime_artifacts"] = {
    "spark_jobs_zip": hashlib.sha256(build_package_zip()).hexdigest(),
    "training_tarball": hashlib.sha256(build_source_tarball()).hexdigest(),
}
print("PARITY " + json.dumps(report))
"""


class ParityError(RuntimeError):
    """The package would not import on MWAA; the message lists every problem."""


def requirements_problems(requirements: Path, mwaa_dir: Path = MWAA_DIR) -> list[str]:
    """How ``requirements`` breaks MWAA's install: a --constraint line that is not MWAA's file,
    a pin the constraints pin differently (pip refuses the whole file), a pin of MWAA's
    essential constraints changed (MWAA refuses it), or a line that is no requirement."""
    constraints = _pins(mwaa_dir / "airflow_constraints.txt")
    essential = _pins(mwaa_dir / "mwaa_essential_constraints.txt")
    expected_url = constraints_url(mwaa_dir)
    problems = []
    constraint_lines = []
    for number, raw in enumerate(requirements.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        where = f"{requirements.name}:{number}"
        if line.startswith("--constraint"):
            constraint_lines.append(line)
            if line.split(maxsplit=1)[-1].strip("\"'") != expected_url:
                problems.append(f"{where}: {line!r} is not MWAA's constraints ({expected_url})")
            continue
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            problems.append(f"{where}: {line!r} is not a requirement: {error}")
            continue
        name = canonicalize_name(requirement.name)
        for pins, what in ((essential, "an essential MWAA pin"), (constraints, "the constraints")):
            if name in pins and not requirement.specifier.contains(pins[name], prereleases=True):
                problems.append(
                    f"{where}: {line!r} conflicts with {what} ({name}=={pins[name]}, "
                    f"{mwaa_dir.name})"
                )
                break
    if not constraint_lines:
        problems.append(f"{requirements.name}: no --constraint line (MWAA's is {expected_url})")
    return problems


def constraints_url(mwaa_dir: Path = MWAA_DIR) -> str:
    """The URL the constraints file of ``mwaa_dir`` was copied from (its header says)."""
    for line in (mwaa_dir / "airflow_constraints.txt").read_text().splitlines():
        if line.startswith("# https://raw.githubusercontent.com/apache/airflow/constraints-"):
            return line.removeprefix("# ").strip()
    raise ParityError(f"{mwaa_dir / 'airflow_constraints.txt'} names no constraints URL")


def _pins(path: Path) -> dict[str, str]:
    """name -> version of the ``name==version`` lines of a constraints file."""
    pins = {}
    for raw in path.read_text().splitlines():
        name, sep, pinned = raw.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[canonicalize_name(name.split("[")[0])] = pinned.strip()
    return pins


def _example_environment(airflow_home: Path, dags: Path, plugins: Path) -> dict[str, str]:
    """A clean environment: Airflow pointed at the bundle, options as MWAA exposes them."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(airflow_home),
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Parsing must not reach AWS: any call fails fast against a port nothing listens on.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "parity-check",
        "AWS_SECRET_ACCESS_KEY": "parity-check",  # pragma: allowlist secret
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for option, value in EXAMPLE_MWAA_OPTIONS.items():
        section, key = option.split(".", 1)
        env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
    return env


def run_probe(package: Path, workdir: Path, timeout_s: int = 600) -> dict:
    """Run the probe in a fresh interpreter on MWAA's path; returns its report."""
    dags = package / "dags"
    plugins = workdir / "plugins"
    with zipfile.ZipFile(package / "plugins.zip") as archive:
        archive.extractall(plugins)
    airflow_home = workdir / "airflow"
    airflow_home.mkdir()
    startup = package / "startup.sh"
    # -I: no PYTHONPATH, no user site, no script or working folder on sys.path. -B: the check
    # leaves the package as it found it (no __pycache__ for deploy to refuse).
    python = [sys.executable, "-I", "-B", "-c", _PROBE, str(dags), str(plugins)]
    if startup.is_file():
        command = ["bash", "-c", 'source "$0" && exec "$@"', str(startup), *python]
    else:
        command = python
    result = subprocess.run(
        command,
        cwd=workdir,
        env=_example_environment(airflow_home, dags, plugins),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("PARITY ")]
    if result.returncode != 0 or not lines:
        raise ParityError(
            f"the probe failed (exit {result.returncode}) before reporting:\n"
            f"{result.stderr[-4000:]}"
        )
    return json.loads(lines[-1].removeprefix("PARITY "))


def _relative(path: str, package: Path, workdir: Path) -> str:
    for root, label in ((package, ""), (workdir / "plugins", "plugins.zip:")):
        try:
            return label + Path(path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return path


def _last_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else str(text)


def problems_in(report: dict, package: Path, workdir: Path) -> list[str]:
    """Every way the report shows the package would break on MWAA, one line each."""
    problems = []
    for path, error in sorted(report["plugin_errors"].items()):
        problems.append(f"plugin {_relative(path, package, workdir)}: {_last_line(error)}")
    for path, error in sorted(report["import_errors"].items()):
        problems.append(f"DAG file {_relative(path, package, workdir)}: {_last_line(error)}")
    if not report["dags"]:
        problems.append("the dags folder defines no DAG")
    dags = (package / "dags").resolve()
    for path in report["dag_files"]:
        relative = Path(path).resolve().relative_to(dags)
        if relative.parts[0] in LIBRARY_TREES:
            problems.append(
                f"dags/{relative.as_posix()} would be parsed as a DAG file: "
                "dags/.airflowignore must exclude it"
            )
    for entry in report["sys_path"]:
        if Path(entry).resolve() == REPO_ROOT:
            problems.append(f"the repository {REPO_ROOT} is on sys.path")

    problems.extend(requirements_problems(package / "requirements.txt"))
    allowed = mwaa_distributions(package / "requirements.txt")
    top_level = importlib.metadata.packages_distributions()
    modules = report["modules"]
    bundle_roots = ((package / "dags").resolve(), (workdir / "plugins").resolve())
    missing: dict[str, str] = {}
    for name, (kind, path, importer) in modules.items():
        top = name.split(".")[0]
        # Only imports the bundle makes count: what an installed library imports (its own
        # dependencies, or ``try: import x`` extras such as jsonschema's format checkers) is
        # that library's concern, and the bundle's import of the library is reported instead.
        from_bundle = importer is not None and any(
            Path(importer).resolve().is_relative_to(root) for root in bundle_roots
        )
        if top in missing or not (from_bundle or kind == "elsewhere"):
            continue
        by = f" by {_relative(importer, package, workdir)}" if importer else ""
        if kind == "elsewhere":
            missing[top] = f"imported{by} from {path}, outside the bundle and site-packages"
        elif kind == "site":
            distributions = {canonicalize_name(d) for d in top_level.get(top, [])}
            if top in NEVER_ON_MWAA or distributions & NEVER_ON_MWAA:
                missing[top] = f"imported{by}: it runs on Glue/EMR/SageMaker, never on MWAA"
            elif not distributions & allowed:
                found = ", ".join(sorted(distributions)) or "no known distribution"
                missing[top] = (
                    f"imported{by}: {found} is in neither requirements.txt nor MWAA's base packages"
                )
    problems.extend(f"module {top} {why}" for top, why in sorted(missing.items()))

    manifest_path = package / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        packaged = {
            "spark_jobs_zip": manifest["files"][manifest["spark_jobs"]["py_files"]]["sha256"],
            "training_tarball": manifest["files"][manifest["training_source"]]["sha256"],
        }
        for name, digest in report["runtime_artifacts"].items():
            if packaged[name] != digest:
                problems.append(
                    f"the {name} operators build on MWAA (sha256 {digest[:12]}) differs from "
                    f"the packaged one ({packaged[name][:12]}): rebuild the package"
                )
    return problems


def check_package(package: Path) -> dict:
    """Run the parity check; raises :class:`ParityError` listing every problem."""
    for required in ("dags", "plugins.zip", "requirements.txt"):
        if not (package / required).exists():
            raise ParityError(f"{package / required} is missing: run make package first")
    with tempfile.TemporaryDirectory(prefix="headrace-parity-") as tmp:
        workdir = Path(tmp)
        report = run_probe(package, workdir)
        problems = problems_in(report, package, workdir)
    if problems:
        raise ParityError(f"{package} would not import on MWAA:\n  - " + "\n  - ".join(problems))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=REPO_ROOT / "build" / "mwaa")
    args = parser.parse_args(argv)
    try:
        report = check_package(args.package.resolve())
    except ParityError as error:
        print(f"parity check FAILED: {error}", file=sys.stderr)
        return 1
    print(
        f"parity check passed: {len(report['dags'])} DAGs from {len(report['dag_files'])} "
        "DAG files, no import errors; every installed module the bundle imports at parse time "
        "comes from requirements.txt or MWAA's base image"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
