"""scripts/check_prereqs.sh: a missing prerequisite stops `make` with a message naming it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def find_python(repo_root, version: str) -> str:
    script = repo_root / "scripts" / "find_python.sh"
    return subprocess.run(
        [script, version], capture_output=True, text=True, check=True
    ).stdout.strip()


def run_check(repo_root, **env_overrides) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "WORKER_PYTHON": find_python(repo_root, "3.12"),
        "JOB_PYTHON": find_python(repo_root, "3.11"),
        **env_overrides,
    }
    return subprocess.run(
        [shutil.which("bash"), str(repo_root / "scripts" / "check_prereqs.sh")],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def fake_executable(directory, name: str, script: str) -> str:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


def test_passes_on_this_machine(repo_root):
    result = run_check(repo_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("prerequisites ok: Python 3.12 and 3.11, Java ")


@pytest.mark.parametrize(
    ("variable", "version"), [("WORKER_PYTHON", "3.12"), ("JOB_PYTHON", "3.11")]
)
def test_missing_python_is_named(repo_root, tmp_path, variable, version):
    result = run_check(repo_root, **{variable: str(tmp_path / f"python{version}")})
    assert result.returncode == 1
    assert f"not found. Install Python {version}" in result.stderr


@pytest.mark.parametrize(
    ("variable", "version"), [("WORKER_PYTHON", "3.12"), ("JOB_PYTHON", "3.11")]
)
def test_wrong_python_version_is_named(repo_root, tmp_path, variable, version):
    python = fake_executable(tmp_path, "python3", 'echo "3.10"')
    result = run_check(repo_root, **{variable: python})
    assert result.returncode == 1
    assert f"is Python 3.10; headrace needs Python {version}" in result.stderr


@pytest.mark.parametrize(
    ("java_output", "message"),
    [
        (None, "java not found on PATH"),
        ("echo 'openjdk version \"11.0.2\" 2019-01-15' >&2", "java is version 11"),
    ],
)
def test_missing_or_old_java_is_named(repo_root, tmp_path, java_output, message):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A PATH with the tools the script needs but with no (or an old) java.
    for tool in ("awk", "df", "dirname"):
        target = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        os.symlink(target, bin_dir / tool)
    if java_output is not None:
        fake_executable(bin_dir, "java", java_output)
    result = run_check(repo_root, PATH=str(bin_dir))
    assert result.returncode == 1
    assert message in result.stderr


def test_too_little_disk_is_named(repo_root):
    result = run_check(repo_root, MIN_FREE_GB="100000000")
    assert result.returncode == 1
    assert "GB free on" in result.stderr and "need 100000000 GB" in result.stderr
