"""Triggers that stop their remote job when a person kills the deferred task.

Airflow 3.3 calls a trigger's ``async on_kill()`` when the user marks its deferred task failed or
success, or clears it — never when the triggerer restarts, shuts down or hands the trigger to
another triggerer. The Amazon provider (9.34) implements ``on_kill`` only for EMR Serverless
(``EmrServerlessStartJobTrigger``, used as is); its Glue job, Glue Data Quality, EMR step and
SageMaker triggers have none, so a killed task left its job running and billing. These subclasses
add the missing ``on_kill``: one Stop call for the job the trigger waits on, and nothing else
changes — they wait exactly as the provider's triggers do.

Each takes ``cancel_on_kill`` (default ``True``, like the provider's own) and serializes it, so the
triggerer re-creates the trigger with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger
from airflow.providers.amazon.aws.triggers.glue import (
    GlueDataQualityRuleSetEvaluationRunCompleteTrigger,
    GlueJobCompleteTrigger,
)
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

# The SageMaker call that stops each job type, and the name of its job-name parameter.
SAGEMAKER_STOP_CALLS: dict[str, tuple[str, str]] = {
    "training": ("stop_training_job", "TrainingJobName"),
    "tuning": ("stop_hyper_parameter_tuning_job", "HyperParameterTuningJobName"),
    "transform": ("stop_transform_job", "TransformJobName"),
    "processing": ("stop_processing_job", "ProcessingJobName"),
}


class _StopsJobOnKill:
    """``on_kill`` that runs the subclass's blocking ``stop_job`` off the triggerer's event loop."""

    cancel_on_kill: bool

    def describe_job(self) -> str:
        raise NotImplementedError

    def stop_job(self) -> None:
        raise NotImplementedError

    async def on_kill(self) -> None:
        if not self.cancel_on_kill:
            self.log.info(
                "The task was killed; cancel_on_kill is off: %s runs on", self.describe_job()
            )
            return
        self.log.info("The task was killed: stopping %s", self.describe_job())
        try:
            # boto3 blocks: the triggerer's loop runs every other trigger meanwhile.
            await asyncio.to_thread(self.stop_job)
        except Exception:
            self.log.exception("Could not stop %s; it may still be running", self.describe_job())
            raise
        self.log.info("Asked AWS to stop %s", self.describe_job())


class GlueJobRunTrigger(_StopsJobOnKill, GlueJobCompleteTrigger):
    """The provider's ``GlueJobCompleteTrigger``, stopping the run (BatchStopJobRun) on kill."""

    def __init__(self, job_name: str, run_id: str, *, cancel_on_kill: bool = True, **kwargs: Any):
        super().__init__(job_name=job_name, run_id=run_id, **kwargs)
        self.cancel_on_kill = cancel_on_kill
        self.serialized_fields["cancel_on_kill"] = cancel_on_kill

    def describe_job(self) -> str:
        return f"Glue job {self.job_name} run {self.run_id}"

    def stop_job(self) -> None:
        response = self.hook().conn.batch_stop_job_run(
            JobName=self.job_name, JobRunIds=[self.run_id]
        )
        errors = [error.get("ErrorDetail") for error in response.get("Errors", [])]
        if errors:
            raise RuntimeError(f"Glue refused to stop run {self.run_id}: {errors}")


class GlueDataQualityRunTrigger(
    _StopsJobOnKill, GlueDataQualityRuleSetEvaluationRunCompleteTrigger
):
    """The provider's Glue Data Quality evaluation-run trigger, cancelling the run on kill."""

    def __init__(self, evaluation_run_id: str, *, cancel_on_kill: bool = True, **kwargs: Any):
        super().__init__(evaluation_run_id=evaluation_run_id, **kwargs)
        self.evaluation_run_id = evaluation_run_id
        self.cancel_on_kill = cancel_on_kill
        self.serialized_fields["cancel_on_kill"] = cancel_on_kill

    def describe_job(self) -> str:
        return f"Glue Data Quality run {self.evaluation_run_id}"

    def stop_job(self) -> None:
        self.hook().conn.cancel_data_quality_ruleset_evaluation_run(RunId=self.evaluation_run_id)


class EmrStepTrigger(_StopsJobOnKill, EmrStepSensorTrigger):
    """The provider's ``EmrStepSensorTrigger``, cancelling the step (CancelSteps) on kill."""

    def __init__(
        self, job_flow_id: str, step_id: str, *, cancel_on_kill: bool = True, **kwargs: Any
    ):
        super().__init__(job_flow_id=job_flow_id, step_id=step_id, **kwargs)
        self.job_flow_id = job_flow_id
        self.step_id = step_id
        self.cancel_on_kill = cancel_on_kill
        self.serialized_fields["cancel_on_kill"] = cancel_on_kill

    def describe_job(self) -> str:
        return f"EMR step {self.step_id} on cluster {self.job_flow_id}"

    def stop_job(self) -> None:
        response = self.hook().conn.cancel_steps(
            ClusterId=self.job_flow_id,
            StepIds=[self.step_id],
            StepCancellationOption="SEND_INTERRUPT",
        )
        failed = [
            info.get("Reason")
            for info in response.get("CancelStepsInfoList", [])
            if info.get("Status") == "FAILED"
        ]
        if failed:
            raise RuntimeError(f"EMR did not cancel step {self.step_id}: {failed}")


class SageMakerJobTrigger(_StopsJobOnKill, SageMakerTrigger):
    """The provider's ``SageMakerTrigger`` for a training, tuning or transform job, stopping the
    job (StopTrainingJob / StopHyperParameterTuningJob / StopTransformJob / StopProcessingJob)
    on kill."""

    def __init__(self, job_name: str, job_type: str, *, cancel_on_kill: bool = True, **kwargs):
        if job_type.lower() not in SAGEMAKER_STOP_CALLS:
            raise ValueError(
                f"job_type={job_type!r}: SageMakerJobTrigger stops only "
                f"{sorted(SAGEMAKER_STOP_CALLS)} jobs"
            )
        super().__init__(job_name=job_name, job_type=job_type, **kwargs)
        self.cancel_on_kill = cancel_on_kill
        self.serialized_fields["cancel_on_kill"] = cancel_on_kill

    def describe_job(self) -> str:
        return f"SageMaker {self.job_type} job {self.job_name}"

    def stop_job(self) -> None:
        method, parameter = SAGEMAKER_STOP_CALLS[self.job_type.lower()]
        getattr(self.hook().conn, method)(**{parameter: self.job_name})
