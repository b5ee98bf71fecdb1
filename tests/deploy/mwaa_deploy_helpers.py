"""Helpers the MWAA deployment tests share (a module of its own: conftest is not importable)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str, env=None, timeout: int = 600):
    """``python scripts/<script> args…`` from the repo root, as the Makefile runs it."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
