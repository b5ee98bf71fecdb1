"""Waits shared by the tests that start processes: for a file a process writes, for a process to end."""

from __future__ import annotations

import time
from pathlib import Path

from include.local_state import process_matches


def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    """The text of ``path`` once it exists; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def ended(pid: int, timeout: float = 0.0) -> bool:
    """Whether process ``pid`` is gone (or a zombie), waiting up to ``timeout`` seconds for it."""
    deadline = time.monotonic() + timeout
    while process_matches(pid, None):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
