"""Entry point of the monitoring processing jobs: ``python3 monitor.py drift``.

Runs from the unpacked source tarball, where ``include/monitoring/`` ships beside the training
code (:data:`include.sagemaker_requests.SHARED_MODULES`); the body is
:mod:`include.monitoring.job`.
"""

import sys

from include.monitoring.job import main

if __name__ == "__main__":
    sys.exit(main())
