"""Airflow local settings of the local stack only (never shipped to MWAA).

Every Airflow process of ``make up`` imports this file at start (``scripts/airflow_stack.py`` puts
its folder on PYTHONPATH); task processes are forks of those. It holds tasks to the libraries an
MWAA worker has: an undeclared import fails here as it would fail there.
"""

from include.worker_imports import install_import_guard

install_import_guard()
