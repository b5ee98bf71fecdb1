"""``make package``: the tree MWAA and the jobs read, laid out as the bucket, byte-for-byte stable."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile

import pytest
from mwaa_deploy_helpers import REPO_ROOT, run_script

from include.config import load_settings
from include.sagemaker_requests import training_source_artifact
from include.spark_job_requests import (
    build_emr_add_steps_request,
    build_glue_job_request,
    spark_job_artifacts,
)

sys.path.insert(0, str(REPO_ROOT / "scripts"))

JOBS = ("features", "ingest", "quality_deequ")


def _files(root) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _repo_files(root) -> set[str]:
    """Files of a source tree as the package ships them: no caches, dotfiles or bytecode."""
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
        and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def aws_settings(mwaa_manifest):
    bucket = "headrace-package-test"
    return load_settings(
        {
            "PIPELINE_TARGET": "aws",
            "AWS_REGION": "eu-west-1",
            "HEADRACE_BUCKET": bucket,
            "HEADRACE_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-sagemaker",
            "HEADRACE_GLUE_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-glue",
            "HEADRACE_EMR_SERVERLESS_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-emr",
            "HEADRACE_KMS_KEY_ARN": (
                "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
            ),
            "HEADRACE_SUBNET_IDS": "subnet-0123456789abcdef0",
            "HEADRACE_SECURITY_GROUP_IDS": "sg-0123456789abcdef0",
            "HEADRACE_PII_SALT_SECRET_ARN": (
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:headrace/pii-salt-AbCdEf"
            ),
            "HEADRACE_SPARK_ENGINE": "emr_ec2",
            "HEADRACE_EMR_CLUSTER_ID": "j-ABCDEFGHIJKL",
        }
    )


def _key(settings, uri: str) -> str:
    prefix = f"s3://{settings.aws.bucket}/"
    assert uri.startswith(prefix), uri
    return uri.removeprefix(prefix)


def test_the_tree_is_the_bucket_layout_mwaa_reads(mwaa_package, repo_root):
    top = {path.name for path in mwaa_package.iterdir()}
    assert top == {
        "dags",
        "plugins.zip",
        "requirements.txt",
        "startup.sh",
        "artifacts",
        "manifest.json",
    }
    dags = mwaa_package / "dags"
    assert (dags / ".airflowignore").read_bytes() == (
        repo_root / "dags/.airflowignore"
    ).read_bytes()
    # Every DAG file of the repo, whatever the files are called this week.
    dag_files = {path.name for path in (repo_root / "dags").glob("*.py")}
    assert dag_files and dag_files <= {path.name for path in dags.glob("*.py")}
    # The library trees DAGs and operators import (and build job artifacts from) on MWAA.
    for tree in ("include", "spark_jobs", "training"):
        assert {f"{tree}/{name}" for name in _repo_files(repo_root / tree)} == {
            path.relative_to(dags).as_posix() for path in (dags / tree).rglob("*") if path.is_file()
        }
    assert (dags / "include/config.py").read_bytes() == (
        repo_root / "include/config.py"
    ).read_bytes()


def test_plugins_zip_holds_the_plugins_folder_at_its_root(mwaa_package, repo_root):
    with zipfile.ZipFile(mwaa_package / "plugins.zip") as archive:
        names = set(archive.namelist())
        assert (
            archive.read("headrace_operators/__init__.py")
            == (repo_root / "plugins/headrace_operators/__init__.py").read_bytes()
        )
    assert names == _repo_files(repo_root / "plugins")
    assert not any(name.startswith("plugins/") for name in names)


def test_requirements_txt_is_the_repos_with_its_constraint_line(mwaa_package, repo_root):
    packaged = (mwaa_package / "requirements.txt").read_text()
    assert packaged == (repo_root / "requirements.txt").read_text()
    assert '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-' in packaged


def test_startup_script_is_the_repos(mwaa_package, repo_root):
    assert (mwaa_package / "startup.sh").read_bytes() == (
        repo_root / "scripts/mwaa_startup.sh"
    ).read_bytes()


@pytest.mark.parametrize("job", JOBS)
def test_spark_job_artifacts_are_what_the_job_requests_name(mwaa_package, aws_settings, job):
    """The entry script and --py-files zip sit at the keys the Glue and EMR requests carry, with
    the bytes the operator would upload: its upload at run time finds them unchanged."""
    for uri, data in spark_job_artifacts(aws_settings, job).items():
        assert (mwaa_package / _key(aws_settings, uri)).read_bytes() == data, uri
    glue = build_glue_job_request(aws_settings, job)
    emr_args = build_emr_add_steps_request(
        aws_settings, job, ["--ds", "2026-01-01"], step_name="x"
    )["Steps"][0]["HadoopJarStep"]["Args"]
    referenced = {
        glue["Command"]["ScriptLocation"],
        glue["DefaultArguments"]["--extra-py-files"],
        emr_args[emr_args.index("--py-files") + 1],
        emr_args[emr_args.index("--py-files") + 2],
    }
    assert {_key(aws_settings, uri) for uri in referenced} == {
        f"artifacts/spark_jobs/{job}.py",
        "artifacts/spark_jobs/spark_jobs.zip",
    }


def test_every_dataset_spec_sits_where_the_spark_jobs_read_it(
    mwaa_package, aws_settings, repo_root
):
    """The ingest and features jobs get ``--spec s3://<bucket>/artifacts/datasets/<name>.yaml``:
    every spec of include/datasets/ is there, byte for byte."""
    from include.ingestion import dataset_spec_uri
    from include.pipelines.datasets import pipeline_datasets

    datasets = pipeline_datasets()
    assert "churn" in datasets
    for dataset in datasets:
        key = _key(aws_settings, dataset_spec_uri(aws_settings, dataset))
        assert key == f"artifacts/datasets/{dataset}.yaml"
        assert (mwaa_package / key).read_bytes() == (
            repo_root / "include" / "datasets" / f"{dataset}.yaml"
        ).read_bytes()


def test_the_package_ships_exactly_the_spark_entry_points(mwaa_manifest):
    scripts = {
        key.removeprefix("artifacts/spark_jobs/").removesuffix(".py")
        for key in mwaa_manifest["files"]
        if key.startswith("artifacts/spark_jobs/") and key.endswith(".py")
    }
    assert scripts == set(JOBS)


def test_training_source_is_the_tarball_the_training_request_names(mwaa_package, aws_settings):
    uri, tarball = training_source_artifact(aws_settings)
    key = _key(aws_settings, uri)
    assert (mwaa_package / key).read_bytes() == tarball
    with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
        names = set(archive.getnames())
    # Script mode runs the entry point from the archive root, beside the modules it imports.
    assert {"train.py", "inference.py", "model.py"} <= names
    assert not any(name.startswith("training/") or "__pycache__" in name for name in names)


def test_manifest_lists_every_file_with_its_size_and_sha256(mwaa_package, mwaa_manifest):
    on_disk = _files(mwaa_package)
    on_disk.pop("manifest.json")
    assert set(mwaa_manifest["files"]) == set(on_disk)
    for key, data in on_disk.items():
        entry = mwaa_manifest["files"][key]
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}, key
    assert mwaa_manifest["mwaa"]["PluginsS3Path"] == "plugins.zip"


def test_the_same_tree_packages_to_the_same_bytes(mwaa_package, repo_root, tmp_path):
    again = tmp_path / "again"
    result = run_script("package.py", "--out", str(again))
    assert result.returncode == 0, result.stderr
    assert _files(again) == _files(mwaa_package)
    stat = (again / "plugins.zip").stat()
    assert stat.st_mtime == (mwaa_package / "plugins.zip").stat().st_mtime == 315532800


def _git_visible(repo_root) -> set[str]:
    """Files git tracks or would track: what tests/test_secret_scan.py scans for secrets."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return {name for name in listed if (repo_root / name).is_file()}


def test_every_shipped_file_is_one_the_repository_secret_scan_covers(mwaa_package, repo_root):
    """Nothing git ignores (.env, caches, local state) reaches the bucket: every copied file is a
    file tests/test_secret_scan.py scans, and the archives are built from those files only."""
    visible = _git_visible(repo_root)
    sources = []
    for key in _files(mwaa_package):
        if key.startswith("dags/"):
            relative = key.removeprefix("dags/")
            top = relative.split("/")[0]
            sources.append(relative if top in ("include", "spark_jobs", "training") else key)
    with zipfile.ZipFile(mwaa_package / "plugins.zip") as archive:
        sources += [f"plugins/{name}" for name in archive.namelist()]
    sources += ["requirements.txt", "scripts/mwaa_startup.sh"]
    outside = sorted(name for name in sources if name not in visible)
    assert outside == []
    for name in sources:
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
        assert "/tests/" not in name and "/test_" not in name and "conftest" not in name, name


def test_dotfiles_caches_and_tests_stay_out_of_the_package(repo_root, tmp_path):
    """A repository holding a .env, a cache, a test and a notebook: none of them is packaged."""
    from package import build_package

    from include.sagemaker_requests import SHARED_MODULES

    fake = tmp_path / "repo"
    # The modules the training source tarball carries beside training/ (a repository without
    # them cannot build it).
    shared = dict.fromkeys(SHARED_MODULES, "")
    files = {
        **shared,
        "dags/.airflowignore": "/include/\n",
        "dags/example.py": "# a DAG file\n",
        "dags/.env": "HEADRACE_PII_SALT=abc\n",
        "dags/__pycache__/example.cpython-311.pyc": "",
        "include/__init__.py": "",
        "include/.env": "SECRET=1\n",
        "include/tests/test_thing.py": "",
        "plugins/my_plugin/__init__.py": "",
        "plugins/my_plugin/test_my_plugin.py": "",
        "plugins/.env": "X=1\n",
        "spark_jobs/__init__.py": "",
        "spark_jobs/job.py": 'if __name__ == "__main__":\n    pass\n',
        "spark_jobs/helpers.py": "",
        "training/train.py": "",
        "training/notes.ipynb": "{}",
        "requirements.txt": (repo_root / "requirements.txt").read_text(),
        "scripts/mwaa_startup.sh": "true\n",
    }
    for name, text in files.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(text)
    manifest = build_package(tmp_path / "out", repo_root=fake)
    assert set(manifest["files"]) == {
        *(f"dags/{module}" for module in shared),
        "dags/.airflowignore",
        "dags/example.py",
        "dags/include/__init__.py",
        "dags/spark_jobs/__init__.py",
        "dags/spark_jobs/job.py",
        "dags/spark_jobs/helpers.py",
        "dags/training/train.py",
        "plugins.zip",
        "requirements.txt",
        "startup.sh",
        "artifacts/spark_jobs/job.py",
        "artifacts/spark_jobs/spark_jobs.zip",
        manifest["training_source"],
    }
    with zipfile.ZipFile(tmp_path / "out/plugins.zip") as archive:
        assert archive.namelist() == ["my_plugin/__init__.py"]


def test_package_refuses_to_replace_a_folder_that_is_not_a_package(repo_root, tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    result = run_script("package.py", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "holds no manifest.json" in result.stderr
    assert precious.read_text() == "keep me"


def test_manifest_names_the_keys_the_environment_and_jobs_use(mwaa_manifest):
    assert mwaa_manifest["mwaa"] == {
        "DagS3Path": "dags",
        "PluginsS3Path": "plugins.zip",
        "RequirementsS3Path": "requirements.txt",
        "StartupScriptS3Path": "startup.sh",
    }
    assert mwaa_manifest["spark_jobs"]["py_files"] == "artifacts/spark_jobs/spark_jobs.zip"
    assert mwaa_manifest["training_source"] in mwaa_manifest["files"]
    json.dumps(mwaa_manifest)  # plain JSON, no paths of this machine
    assert "/work/" not in json.dumps(mwaa_manifest)
