"""No secrets in the repo: detect-secrets scans every tracked file, and is shown to catch one."""

from __future__ import annotations

import subprocess

import pytest
from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

# Slow (scans the whole repository): left out of `make test-fast`.
pytestmark = pytest.mark.slow


def scan(paths: list[str]) -> dict[str, list[str]]:
    """file -> secret types found, with detect-secrets' default plugins and filters."""
    collection = SecretsCollection()
    with default_settings():
        for path in paths:
            collection.scan_file(path)
    return {
        filename: sorted({secret.type for secret in secrets})
        for filename, secrets in collection.data.items()
        if secrets
    }


def repo_files(repo_root) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [str(repo_root / name) for name in listed if (repo_root / name).is_file()]


def test_repository_holds_no_secrets(repo_root):
    files = repo_files(repo_root)
    assert len(files) > 20, "the scan found almost nothing to scan"
    assert scan(files) == {}


def test_scanner_catches_a_planted_fake_key(tmp_path):
    # Built at run time so this file itself holds no key-shaped string.
    access_key_id = "AKIA" + "Q3EGRIEXAMPLE7XK"
    fake_value = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYzEXAMPLEKEY9"
    planted = tmp_path / "settings.py"
    planted.write_text(
        f'AWS_ACCESS_KEY_ID = "{access_key_id}"\naws_secret_access_key = "{fake_value}"\n'
    )
    clean = tmp_path / "clean.py"
    clean.write_text('REGION = "eu-west-1"\n')

    found = scan([str(planted), str(clean)])
    assert list(found) == [str(planted)]
    assert "AWS Access Key" in found[str(planted)]
