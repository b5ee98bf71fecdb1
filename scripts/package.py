"""``make package``: build the tree Amazon MWAA and the jobs read, laid out as the S3 bucket is.

Usage: ``python scripts/package.py --out build/mwaa``. Every path under the output folder is the
key the file gets in the bucket (``HEADRACE_BUCKET``); ``scripts/deploy.py`` uploads it as is::

    dags/                  MWAA's DagS3Path, synced to /usr/local/airflow/dags on every component
      .airflowignore         keeps everything but the DAG files from being parsed as DAG files
      *.py                   the DAG files of dags/
      include/               the library DAGs and operators import (``include.*``)
      spark_jobs/ training/  job code the operators upload from at run time (their REPO_ROOT is
                             the dags folder on MWAA) and include/ imports (dataset specs)
    plugins.zip            PluginsS3Path: plugins/ at the zip root, extracted to the plugins folder
    requirements.txt       RequirementsS3Path: the repo's, with its --constraint line
    startup.sh             StartupScriptS3Path: Airflow options headrace.<name> → HEADRACE_<NAME>
    artifacts/spark_jobs/<job>.py, spark_jobs.zip
                           the Glue/EMR entry scripts and --py-files zip, at the URIs the job
                           requests name (include/spark_job_requests.py)
    artifacts/datasets/<dataset>.yaml
                           the dataset specs the Spark jobs read (--spec, include/ingestion.py)
    artifacts/training/<digest>/sourcedir.tar.gz
                           the SageMaker script-mode source, at the content-addressed URI the
                           training requests name (include/sagemaker_requests.py)
    manifest.json          size and sha256 of every file above (not uploaded)

The output is deterministic: files are copied byte for byte with a fixed mtime, archives have
sorted entries, fixed timestamps, owners and modes, so the same tree gives the same bytes and
the same manifest. Caches, dotfiles, tests and ``.env`` files never enter the package.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

# Run as a script: the repository root holds include/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from include.sagemaker_requests import (
    SOURCE_PREFIX,
    SOURCE_TARBALL,
    TRAINING_PACKAGE,
    build_source_tarball,
)
from include.spark_job_requests import (
    ARTIFACTS_PREFIX,
    JOBS_PACKAGE,
    build_package_zip,
    deterministic_zip,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

DAGS_PREFIX = "dags"
PLUGINS_ZIP = "plugins.zip"
REQUIREMENTS = "requirements.txt"
STARTUP_SCRIPT = "startup.sh"
MANIFEST = "manifest.json"
DATASETS_PREFIX = f"{ARTIFACTS_PREFIX.rsplit('/', 1)[0]}/datasets"
AIRFLOWIGNORE = ".airflowignore"
# The library trees that ship inside the dags folder, next to the DAG files.
BUNDLED_TREES = ("include", JOBS_PACKAGE, TRAINING_PACKAGE)
# The MWAA environment settings each top-level object is named by.
MWAA_PATHS = {
    "DagS3Path": DAGS_PREFIX,
    "PluginsS3Path": PLUGINS_ZIP,
    "RequirementsS3Path": REQUIREMENTS,
    "StartupScriptS3Path": STARTUP_SCRIPT,
}
# 1980-01-01 UTC: the earliest time a zip entry can carry, used for every file and entry.
FIXED_MTIME = 315532800
_SKIPPED_DIRS = frozenset({"__pycache__", "tests", "test", "node_modules"})
_SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo", ".ipynb"})
_TEST_FILE = re.compile(r"^(test_.*|.*_test|conftest)\.py$")
_CONSTRAINT_LINE = re.compile(
    r'^--constraint "https://raw\.githubusercontent\.com/apache/airflow/'
    r'constraints-[\d.]+/constraints-3\.\d+\.txt"$',
    re.MULTILINE,
)
# The Spark job scripts Glue and EMR run: modules of the jobs package that run as a program.
_ENTRY_POINT = re.compile(r'^if __name__ == "__main__":', re.MULTILINE)


class PackageError(ValueError):
    """The repository cannot be packaged as it is; the message names the file."""


def shipped_files(root: Path) -> Iterator[Path]:
    """Files under ``root`` that belong in the package, sorted: no caches, dotfiles or tests."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or any(
            part.startswith(".") or part in _SKIPPED_DIRS for part in relative.parts
        ):
            continue
        if path.suffix in _SKIPPED_SUFFIXES or _TEST_FILE.match(path.name):
            continue
        yield path


def spark_entry_points(jobs_dir: Path) -> list[str]:
    """The jobs Glue and EMR can run: ``spark_jobs/<job>.py`` files with a ``__main__`` block."""
    return sorted(
        path.stem
        for path in jobs_dir.glob("*.py")
        if not path.name.startswith("_") and _ENTRY_POINT.search(path.read_text())
    )


def check_requirements(path: Path) -> bytes:
    """requirements.txt as MWAA needs it: with exactly one Airflow ``--constraint`` line."""
    text = path.read_text()
    constraints = _CONSTRAINT_LINE.findall(text)
    if len(constraints) != 1:
        raise PackageError(
            f"{path}: expected exactly one line --constraint "
            '"https://raw.githubusercontent.com/apache/airflow/constraints-<airflow>/'
            f'constraints-<python>.txt", found {len(constraints)}'
        )
    return text.encode()


class PackageWriter:
    """Writes files under the output folder and keeps their sizes and digests for the manifest."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files: dict[str, dict] = {}

    def write(self, key: str, data: bytes) -> None:
        if key in self.files:
            raise PackageError(f"two files would be written to {key}")
        target = self.out / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.files[key] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    def copy_tree(self, source: Path, prefix: str) -> None:
        for path in shipped_files(source):
            self.write(f"{prefix}/{path.relative_to(source).as_posix()}", path.read_bytes())

    def finish(self, extra: dict) -> dict:
        """Fixes every file's mtime and writes the manifest; returns it."""
        for key in self.files:
            target = self.out / key
            target.chmod(0o644)
            # The same tree gives the same file metadata too, not only the same bytes.
            os.utime(target, (FIXED_MTIME, FIXED_MTIME))
        manifest = {**extra, "files": dict(sorted(self.files.items()))}
        (self.out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return manifest


def _prepare_out(out: Path) -> None:
    """Empty ``out``, refusing to delete a folder that is not an earlier package."""
    if out.exists():
        if not out.is_dir():
            raise PackageError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise PackageError(
                f"--out {out} is not empty and holds no {MANIFEST}: refusing to replace it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)


def build_package(out: Path, repo_root: Path = REPO_ROOT) -> dict:
    """Build the package under ``out`` (replacing an earlier one); returns the manifest."""
    dags_dir = repo_root / DAGS_PREFIX
    if not (dags_dir / AIRFLOWIGNORE).is_file():
        raise PackageError(f"{dags_dir / AIRFLOWIGNORE} is missing: MWAA would parse include/")
    _prepare_out(out)
    writer = PackageWriter(out)

    # The dags folder: DAG files, their .airflowignore, and the trees they import.
    writer.write(f"{DAGS_PREFIX}/{AIRFLOWIGNORE}", (dags_dir / AIRFLOWIGNORE).read_bytes())
    writer.copy_tree(dags_dir, DAGS_PREFIX)
    for tree in BUNDLED_TREES:
        if (dags_dir / tree).exists():
            raise PackageError(f"{dags_dir / tree} would clash with the bundled {tree}/ tree")
        writer.copy_tree(repo_root / tree, f"{DAGS_PREFIX}/{tree}")

    plugins_dir = repo_root / "plugins"
    writer.write(
        PLUGINS_ZIP,
        deterministic_zip(
            {
                path.relative_to(plugins_dir).as_posix(): path.read_bytes()
                for path in shipped_files(plugins_dir)
            }
        ),
    )
    writer.write(REQUIREMENTS, check_requirements(repo_root / REQUIREMENTS))
    writer.write(STARTUP_SCRIPT, (repo_root / "scripts" / "mwaa_startup.sh").read_bytes())

    # Job artifacts are built from the packaged dags folder, the REPO_ROOT the operators see on
    # MWAA, so what deploy uploads is byte for byte what an operator would upload at run time.
    bundle_root = out / DAGS_PREFIX
    jobs = spark_entry_points(bundle_root / JOBS_PACKAGE)
    if not jobs:
        raise PackageError(f"{repo_root / JOBS_PACKAGE} has no entry point (__main__ block)")
    for job in jobs:
        writer.write(
            f"{ARTIFACTS_PREFIX}/{job}.py", (bundle_root / JOBS_PACKAGE / f"{job}.py").read_bytes()
        )
    writer.write(
        f"{ARTIFACTS_PREFIX}/{JOBS_PACKAGE}.zip", build_package_zip(JOBS_PACKAGE, bundle_root)
    )
    # The Spark jobs read their dataset spec from the bucket (include.ingestion.dataset_spec_uri).
    specs = sorted((bundle_root / "include" / "datasets").glob("*.yaml"))
    for spec in specs:
        writer.write(f"{DATASETS_PREFIX}/{spec.name}", spec.read_bytes())
    tarball = build_source_tarball(TRAINING_PACKAGE, bundle_root)
    # Same content address as include.sagemaker_requests.training_source_artifact.
    source_key = f"{SOURCE_PREFIX}/{hashlib.sha256(tarball).hexdigest()[:16]}/{SOURCE_TARBALL}"
    writer.write(source_key, tarball)

    return writer.finish(
        {
            "mwaa": MWAA_PATHS,
            "spark_jobs": {job: f"{ARTIFACTS_PREFIX}/{job}.py" for job in jobs}
            | {"py_files": f"{ARTIFACTS_PREFIX}/{JOBS_PACKAGE}.zip"},
            "dataset_specs": [f"{DATASETS_PREFIX}/{spec.name}" for spec in specs],
            "training_source": source_key,
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. build/mwaa")
    args = parser.parse_args(argv)
    try:
        manifest = build_package(args.out)
    except (PackageError, FileNotFoundError) as error:
        print(f"package: {error}", file=sys.stderr)
        return 2
    total = sum(entry["size"] for entry in manifest["files"].values())
    print(f"Packaged {len(manifest['files'])} files ({total:,} bytes) under {args.out}")
    for setting, key in manifest["mwaa"].items():
        print(f"  {setting:<20} {key}")
    print(f"  {'training source':<20} {manifest['training_source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
