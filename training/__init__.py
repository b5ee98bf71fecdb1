"""The PyTorch training package of headrace, in SageMaker script mode.

``train.py`` trains (``main(argv)``; hyperparameters as ``--name value`` flags, paths from
``SM_*`` variables with local defaults) and ``inference.py`` serves (``model_fn``, ``input_fn``,
``predict_fn``, ``output_fn``). The package ships alone to SageMaker, as the training job's source
tarball and again inside ``model.tar.gz`` under ``code/``: it imports nothing from ``include/``,
``dags/`` or ``plugins/``, and nothing from Airflow. Modules import each other relatively, so the
folder works under any package name (see the entry points' bootstrap).
"""
