"""`make test` runs every test file exactly once: its lanes (the Makefile) divide the suite by
paths and ``--ignore`` options, so a file moved out of one lane and into none would silently never
run in CI, and one named by two lanes would run twice."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_commands() -> list[list[str]]:
    """The arguments of each pytest command `make test` runs (``make -n``: nothing is run)."""
    # Not the flags of a make this test may run under (`make test` itself: its jobserver).
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    printed = subprocess.run(
        ["make", "-n", "--no-print-directory", "test"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    lines = printed.replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        # Only pytest's lines are split as shell words (an install line may hold `$(…)`).
        if " -m pytest " in line:
            words = shlex.split(line)
            commands.append(words[words.index("pytest") + 1 :])
    return commands


def selected_files(arguments: list[str], test_files: list[Path]) -> set[Path]:
    """The test files a pytest command collects: under its paths (``testpaths`` when it names
    none), not under an ``--ignore``."""
    paths = [REPO_ROOT / a for a in arguments if not a.startswith("-")] or [REPO_ROOT / "tests"]
    ignored = [
        REPO_ROOT / a.removeprefix("--ignore=") for a in arguments if a.startswith("--ignore=")
    ]

    def under(file: Path, roots: list[Path]) -> bool:
        return any(file == root or root in file.parents for root in roots)

    return {f for f in test_files if under(f, paths) and not under(f, ignored)}


def test_every_test_file_runs_in_exactly_one_lane():
    test_files = sorted((REPO_ROOT / "tests").rglob("test_*.py"))
    commands = pytest_commands()
    # The lanes: end-to-end, every-day-once, the worker's, Spark's and training's.
    assert len(commands) == 5, commands
    runs = Counter(f for arguments in commands for f in selected_files(arguments, test_files))
    never = [str(f.relative_to(REPO_ROOT)) for f in test_files if runs[f] == 0]
    twice = [str(f.relative_to(REPO_ROOT)) for f in test_files if runs[f] > 1]
    assert (never, twice) == ([], [])
    assert len(test_files) > 100


def test_a_file_ignored_by_its_lane_and_named_by_none_is_found():
    """The check itself: a lane that ignores a file no other lane names leaves it out."""
    test_files = [REPO_ROOT / "tests" / "include" / "test_x.py", REPO_ROOT / "tests" / "test_y.py"]
    worker = ["--durations=15", "--ignore=tests/include/test_x.py"]
    assert selected_files(worker, test_files) == {REPO_ROOT / "tests" / "test_y.py"}
    assert selected_files(["tests/include/test_x.py"], test_files) == {test_files[0]}
