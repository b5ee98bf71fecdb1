"""PySpark entry points of headrace (``python -m spark_jobs.<job>``, or a Glue/EMR script).

Each job module has ``main(argv)`` and takes only ``--key value`` arguments (what Glue passes).
This package ships alone to Glue and EMR: it imports nothing from ``include/``, ``dags/`` or
``plugins/``, and nothing from Airflow.
"""
