"""Entry point of the processing jobs: ``python3 process.py <job>``.

The jobs run from the unpacked source tarball, where ``include/monitoring/`` and
``include/scoring_job.py`` ship beside the training code
(:data:`include.sagemaker_requests.SHARED_MODULES`): ``baseline`` and ``drift``
(:mod:`include.monitoring.job`), ``scoring-input`` and ``predictions``
(:mod:`include.scoring_job`). Each reads its inputs under ``/opt/ml/processing/input`` and leaves
its outputs under ``/opt/ml/processing/output``.
"""

import importlib
import json
import os
import sys
from pathlib import Path

# The module of each job (its JOBS maps the job to its function). A job imports its own module
# only: the monitoring package imports pandas, 1.5 s of start-up the scoring jobs do not need.
JOB_MODULES = {
    "baseline": "include.monitoring.job",
    "drift": "include.monitoring.job",
    "scoring-input": "include.scoring_job",
    "predictions": "include.scoring_job",
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in JOB_MODULES:
        print(f"usage: process.py {'|'.join(JOB_MODULES)} (got {argv})", file=sys.stderr)
        return 2
    root = Path(os.environ.get("HEADRACE_PROCESSING_ROOT", "/opt/ml/processing"))
    job = importlib.import_module(JOB_MODULES[argv[0]]).JOBS[argv[0]]
    try:
        outcome = job(root)
    except (ValueError, FileNotFoundError) as error:
        # The log's last lines become the job's FailureReason.
        print(f"{argv[0]} job failed: {error}", file=sys.stderr)
        return 1
    print(f"{argv[0]}: {json.dumps(outcome, default=str)[:2000]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
