"""Entry point of the processing jobs: ``python3 process.py <job>``.

The jobs run from the unpacked source tarball, where ``include/monitoring/`` and
``include/scoring_job.py`` ship beside the training code
(:data:`include.sagemaker_requests.SHARED_MODULES`): ``baseline`` and ``drift``
(:mod:`include.monitoring.job`), ``scoring-input`` and ``predictions``
(:mod:`include.scoring_job`). Each reads its inputs under ``/opt/ml/processing/input`` and leaves
its outputs under ``/opt/ml/processing/output``.
"""

import json
import os
import sys
from pathlib import Path

from include.monitoring.job import JOBS as MONITORING_JOBS
from include.scoring_job import JOBS as SCORING_JOBS

JOBS = {**MONITORING_JOBS, **SCORING_JOBS}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in JOBS:
        print(f"usage: process.py {'|'.join(JOBS)} (got {argv})", file=sys.stderr)
        return 2
    root = Path(os.environ.get("HEADRACE_PROCESSING_ROOT", "/opt/ml/processing"))
    try:
        outcome = JOBS[argv[0]](root)
    except (ValueError, FileNotFoundError) as error:
        # The log's last lines become the job's FailureReason.
        print(f"{argv[0]} job failed: {error}", file=sys.stderr)
        return 1
    print(f"{argv[0]}: {json.dumps(outcome, default=str)[:2000]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
