"""headrace's Airflow operators: where the Amazon provider's stock operators fall short.

Airflow puts ``plugins/`` on ``sys.path`` (locally, on MWAA from ``plugins.zip``, and in tests via
``pyproject.toml``), so DAG files import ``from headrace_operators import SparkJobOperator``.
"""

from headrace_operators.quality_gate import DataQualityGateOperator
from headrace_operators.sagemaker_jobs import (
    SageMakerProcessingJobOperator,
    SageMakerTrainingJobOperator,
    SageMakerTuningJobOperator,
)
from headrace_operators.spark_job import SparkJobOperator, SparkJobRun

__all__ = [
    "DataQualityGateOperator",
    "SageMakerProcessingJobOperator",
    "SageMakerTrainingJobOperator",
    "SageMakerTuningJobOperator",
    "SparkJobOperator",
    "SparkJobRun",
]
