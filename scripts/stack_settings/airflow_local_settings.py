"""Airflow local settings of the local stack only (never shipped to MWAA).

Every Airflow process of ``make up`` imports this file at start (``scripts/airflow_stack.py`` puts
its folder on PYTHONPATH); task processes are forks of those. It holds tasks to the libraries an
MWAA worker has: an undeclared import fails here as it would fail there.
"""

import atexit
import gc

from include.worker_imports import install_import_guard

install_import_guard()

# At exit every object still alive is frozen, so the interpreter's final garbage collections pass
# over none of them: the API server's gunicorn master spent 3-4 s of its stop in them, over the app
# it preloaded (about 613,000 objects), and `make down` took 9.5-13.6 s with them, 4.4-5.8 s
# without (docs/benchmarks.md). What they would free goes with the process. Atexit handlers run
# last registered first, so logging's own, registered on its import, still flushes every log after.
atexit.register(gc.freeze)
