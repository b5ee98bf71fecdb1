"""The model artifact served by AWS's own serving code: ``scripts/verify_serving_toolkit.py``.

The script trains a tiny model, packages and extracts ``model.tar.gz`` like SageMaker, and sends
batch-transform mini-batches (CSV after the InputFilter, CSV with ids, JSON lines, CSV with a
charset) through TorchServe's Python worker and the ``sagemaker-pytorch-inference`` handler
service in a side virtualenv, checking scores against ``predict_fn`` and ids through the join.
Building that virtualenv takes a package index and some 1 GB, so this test runs only where it
already exists (``.local/serving-venv``, built by the script) or when ``HEADRACE_VERIFY_SERVING=1``
asks for the build; otherwise it skips and says so.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "verify_serving_toolkit.py"


def _script_module():
    # The script's top level imports the standard library only.
    spec = importlib.util.spec_from_file_location("verify_serving_toolkit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_tar_gz_serves_through_the_sagemaker_pytorch_toolkit():
    verifier = _script_module()
    if not verifier.venv_is_ready() and os.environ.get("HEADRACE_VERIFY_SERVING") != "1":
        pytest.skip(
            "no .local/serving-venv with the serving toolkit: run "
            "`python scripts/verify_serving_toolkit.py` or set HEADRACE_VERIFY_SERVING=1"
        )
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if result.returncode == verifier.EXIT_NOT_VERIFIED:
        pytest.skip(result.stdout.strip().splitlines()[-1])
    assert result.returncode == verifier.EXIT_PASS, result.stdout + result.stderr[-4000:]
    out = result.stdout
    assert "sagemaker-pytorch-inference==2.0.25" in out
    assert "sagemaker-inference==1.10.1" in out
    assert "torchserve==0.12.0" in out
    verdicts = [line for line in out.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert len(verdicts) == 4, out
    assert all(line.startswith("PASS ") for line in verdicts), out
    assert all(line.endswith("3 requests, 20 lines") for line in verdicts), out
    assert "PASS: 4 cases, 12 requests" in out
