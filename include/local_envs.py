"""The interpreters of the local job environments (DESIGN.md, "Environments like AWS's").

Local Spark and quality jobs run with the Spark environment's Python (like Glue 5.1); local
training, tuning trials and batch transform with the training environment's (like the SageMaker
PyTorch container). ``make envs`` builds both beside the worker's ``.venv``; the variables
``HEADRACE_SPARK_PYTHON`` and ``HEADRACE_TRAINING_PYTHON`` point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from include.config import REPO_ROOT

ENVIRONMENTS = {
    "spark": ("HEADRACE_SPARK_PYTHON", REPO_ROOT / ".venv-spark" / "bin" / "python"),
    "training": ("HEADRACE_TRAINING_PYTHON", REPO_ROOT / ".venv-training" / "bin" / "python"),
}


def job_python(environment: str) -> str:
    """The interpreter of ``environment`` ("spark" or "training"); a clear error when missing."""
    variable, default = ENVIRONMENTS[environment]
    python = Path(os.environ.get(variable) or default)
    if not python.is_file():
        raise FileNotFoundError(
            f"the {environment} environment's Python {python} does not exist: run `make envs` "
            f"(or set {variable} to an interpreter of that environment)"
        )
    # Not resolved: a venv's python is a link to the base interpreter, and only the link's
    # path makes Python pick up the venv's site-packages.
    return str(python)


def spark_python() -> str:
    return job_python("spark")


def training_python() -> str:
    return job_python("training")
