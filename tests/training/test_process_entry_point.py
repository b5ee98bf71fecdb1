"""``training/process.py``: each processing job is run by its own module, and imports only it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from include import scoring_job
from include.monitoring import job as monitoring_job
from training import process

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_job_is_named_with_the_module_that_runs_it():
    assert set(process.JOB_MODULES) == set(scoring_job.JOBS) | set(monitoring_job.JOBS)
    for name, module in process.JOB_MODULES.items():
        assert name in importlib.import_module(module).JOBS, (name, module)


def test_a_scoring_job_starts_without_pandas():
    probe = (
        "import importlib, sys; from training import process; "
        "importlib.import_module(process.JOB_MODULES['predictions']); "
        "importlib.import_module(process.JOB_MODULES['scoring-input']); "
        "print('pandas' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_an_unknown_job_is_refused_with_the_list(capsys):
    assert process.main(["nope"]) == 2
    assert "usage: process.py baseline|drift|scoring-input|predictions (got ['nope'])" in (
        capsys.readouterr().err
    )
