"""DAG factories: a dataset spec in ``include/datasets/`` becomes that dataset's stage DAGs.

One module per stage builds the DAG of that stage for one dataset; the files in ``dags/`` loop
over :func:`include.pipelines.datasets.pipeline_datasets` and call them.
"""
