"""The stage DAGs' processing jobs: one ``training/process.py`` command over a worker's plan."""

from __future__ import annotations

from typing import Any

from headrace_operators.sagemaker_jobs import SageMakerProcessingJobOperator

ENTRY_POINT = "process.py"


def processing_job(task_id: str, dataset: str, ds: Any, command: str, plan: Any):
    """The processing job that runs ``process.py <command>`` on what a plan task returned
    (``inputs``, ``manifest_inputs``, ``outputs``: XComArgs of a ``multiple_outputs`` task)."""
    return SageMakerProcessingJobOperator(
        task_id=task_id,
        dataset=dataset,
        ds=ds,
        entry_point=ENTRY_POINT,
        arguments=[command],
        inputs=plan["inputs"],
        manifest_inputs=plan["manifest_inputs"],
        outputs=plan["outputs"],
    )
