"""Killing a deferred task stops its remote job, for every job kind; a triggerer restart does not.

Each test starts the job through its operator against moto, takes the trigger the task defers
with, and runs it through Airflow 3.3.1's own triggerer code: the trigger row
(``airflow.models.trigger.Trigger``: classpath and encrypted kwargs) goes to a real
``TriggerRunner`` as a ``RunTrigger`` workload, and ``create_triggers()`` inflates it and runs it
in ``run_trigger()``. Then, while the trigger is polling AWS:

1. the triggerer stops (restart, deploy): the event loop ends with the trigger still running and
   ``asyncio.run`` cancels it with no message, as in the triggerer process — no Stop call;
2. a new triggerer picks the same row up, and the user marks the task failed: the scheduler drops
   the trigger, the runner finds its id in ``to_cancel`` and ``cancel_triggers()`` cancels it with
   the user-action message, so ``run_trigger()`` awaits the trigger's ``on_kill`` — exactly one
   Stop call, for the job the operator started.

What moto lacks is answered by the recorder's stubs (tests/aws_fakes.py) and the request is asserted:
moto has no Glue BatchStopJobRun, EMR CancelSteps or SageMaker Stop*Job, and it finishes EMR
Serverless runs and SageMaker jobs at once, so the trigger's status call is stubbed "running"
(for SageMaker, as an earlier try's running job). EMR Serverless CancelJobRun is moto's own: the
run's state in moto is asserted too. The triggerer's supervisor is stood in for by one object
answering the task-state query the provider's EMR Serverless trigger makes when it is cancelled
without the user-action message (the task is still DEFERRED on a restart).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from airflow.exceptions import TaskDeferred
from airflow.jobs import triggerer_job_runner
from airflow.jobs.triggerer_job_runner import TriggerRunner

from headrace_operators import (
    DataQualityGateOperator,
    SageMakerProcessingJobOperator,
    SageMakerTrainingJobOperator,
    SageMakerTuningJobOperator,
    SparkJobOperator,
)
from headrace_operators.sagemaker_transform import SageMakerTransformOperator
from include.job_names import TaskRunIdentity

# Slow (runs triggers and jobs against a moto server): left out of `make test-fast`.
pytestmark = pytest.mark.slow

DS = "2026-01-07"
TRIGGER_ID = 1
# How long the trigger may take to send its first status call.
POLL_WAIT_S = 30


class FixtureSparkJobOperator(SparkJobOperator):
    """The operator with the test fixtures as its jobs package (spark_jobs/ is not ours here)."""

    jobs_package = "tests.plugins.fixtures"


@dataclass
class Kind:
    """One job kind: how it defers, the status call its trigger polls with, and its Stop call."""

    dag_id: str
    task_id: str
    poll: tuple[str, str]
    stop: tuple[str, str]
    trigger_class: str


KINDS = {
    "glue": Kind("ingest_daily", "ingest", ("glue", "GetJobRun"), ("glue", "BatchStopJobRun"),
                 "headrace_operators.job_triggers.GlueJobRunTrigger"),
    "emr_serverless": Kind("ingest_daily", "ingest", ("emr-serverless", "GetJobRun"),
                           ("emr-serverless", "CancelJobRun"),
                           "airflow.providers.amazon.aws.triggers.emr.EmrServerlessStartJobTrigger"),
    "emr_ec2": Kind("ingest_daily", "ingest", ("emr", "DescribeStep"), ("emr", "CancelSteps"),
                    "headrace_operators.job_triggers.EmrStepTrigger"),
    "training": Kind("churn_training", "train", ("sagemaker", "DescribeTrainingJob"),
                     ("sagemaker", "StopTrainingJob"),
                     "headrace_operators.job_triggers.SageMakerJobTrigger"),
    "tuning": Kind("churn_training", "tune", ("sagemaker", "DescribeHyperParameterTuningJob"),
                   ("sagemaker", "StopHyperParameterTuningJob"),
                   "headrace_operators.job_triggers.SageMakerJobTrigger"),
    "transform": Kind("churn_scoring", "transform", ("sagemaker", "DescribeTransformJob"),
                      ("sagemaker", "StopTransformJob"),
                      "headrace_operators.job_triggers.SageMakerJobTrigger"),
    "processing": Kind("churn_monitoring", "profile", ("sagemaker", "DescribeProcessingJob"),
                       ("sagemaker", "StopProcessingJob"),
                       "headrace_operators.job_triggers.SageMakerJobTrigger"),
    "glue_data_quality": Kind("churn_validation", "quality_gate",
                              ("glue", "GetDataQualityRulesetEvaluationRun"),
                              ("glue", "CancelDataQualityRulesetEvaluationRun"),
                              "headrace_operators.job_triggers.GlueDataQualityRunTrigger"),
}  # fmt: skip


class FixtureProcessingJobOperator(SageMakerProcessingJobOperator):
    """The operator with a fixture package (a probe entry point) as its code."""

    source_package = "tests/plugins/fixtures/processing_package"


def put_curated_partition(aws_target) -> None:
    """A committed curated partition of churn in moto: its manifest and the one file it lists."""
    s3 = aws_target.client("s3")
    uri = f"s3://{aws_target.bucket}/lake/curated/churn/ds={DS}"
    manifest = {
        "spec_fingerprint": "test",
        "totals": {"rows_accepted": 40},
        "outputs": {"curated": {"uri": uri, "files": [{"path": "part-00000.snappy.parquet"}]}},
    }
    prefix = f"lake/curated/churn/ds={DS}"
    s3.put_object(Bucket=aws_target.bucket, Key=f"{prefix}/part-00000.snappy.parquet", Body=b"x")
    s3.put_object(
        Bucket=aws_target.bucket, Key=f"{prefix}/_manifest.json", Body=json.dumps(manifest)
    )


def defer(kind: str, aws_target, aws_calls, context) -> tuple[TaskDeferred, dict]:
    """Start the job of ``kind`` through its operator; the deferral and the expected Stop params."""
    spark = {"job": "sleepy_job", "job_args": ["--sleep", "0"], "aws_conn_id": None,
             "poll_interval": 1, "timeout": timedelta(minutes=30)}  # fmt: skip
    sagemaker = {"dataset": "churn", "ds": DS, "aws_conn_id": None, "poll_interval": 1}
    name = TaskRunIdentity.from_context(context).name_for("sagemaker")
    if kind == "glue":
        aws_target.hold_glue_runs_starting()
        aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})
        aws_calls.stubs[("glue", "BatchStopJobRun")] = (
            200,
            {"SuccessfulSubmissions": [], "Errors": []},
        )
        operator = FixtureSparkJobOperator(task_id="ingest", **spark)
    elif kind in ("emr_serverless", "emr_ec2"):
        aws_target.use(kind)
        if kind == "emr_serverless":
            aws_calls.stubs[("emr-serverless", "GetJobRun")] = (
                200,
                {"jobRun": {"state": "RUNNING", "stateDetails": ""}},
            )
        else:
            aws_calls.stubs[("emr", "CancelSteps")] = (200, {"CancelStepsInfoList": []})
        operator = FixtureSparkJobOperator(task_id="ingest", **spark)
    elif kind == "training":
        running = {"TrainingJobName": name, "TrainingJobStatus": "InProgress"}
        aws_calls.stubs[("sagemaker", "DescribeTrainingJob")] = (200, running)
        aws_calls.stubs[("sagemaker", "StopTrainingJob")] = (200, {})
        operator = SageMakerTrainingJobOperator(task_id="train", hyperparameters={}, **sagemaker)
    elif kind == "tuning":
        name = TaskRunIdentity.from_context(context).name_for("sagemaker_tuning")
        running = {
            "HyperParameterTuningJobName": name,
            "HyperParameterTuningJobStatus": "InProgress",
        }
        aws_calls.stubs[("sagemaker", "DescribeHyperParameterTuningJob")] = (200, running)
        aws_calls.stubs[("sagemaker", "StopHyperParameterTuningJob")] = (200, {})
        operator = SageMakerTuningJobOperator(task_id="tune", **sagemaker)
    elif kind == "processing":
        running = {"ProcessingJobName": name, "ProcessingJobStatus": "InProgress"}
        aws_calls.stubs[("sagemaker", "DescribeProcessingJob")] = (200, running)
        aws_calls.stubs[("sagemaker", "StopProcessingJob")] = (200, {})
        lake = f"s3://{aws_target.bucket}/lake"
        operator = FixtureProcessingJobOperator(
            task_id="profile", entry_point="probe.py",
            outputs={"report": f"{lake}/monitoring/churn/profile/ds={DS}"}, **sagemaker,
        )  # fmt: skip
    elif kind == "glue_data_quality":
        put_curated_partition(aws_target)
        not_found = (400, {"Error": {"Code": "EntityNotFoundException", "Message": "none"}})
        aws_calls.stubs.update({
            ("glue", "CreateSecurityConfiguration"): (200, {"Name": "stubbed"}),
            ("glue", "GetDataQualityRuleset"): not_found,
            ("glue", "CreateDataQualityRuleset"): (200, {"Name": "stubbed"}),
            ("glue", "StartDataQualityRulesetEvaluationRun"): (200, {"RunId": "dqrun-0123"}),
            ("glue", "GetDataQualityRulesetEvaluationRun"): (
                200, {"RunId": "dqrun-0123", "Status": "RUNNING"}),
            ("glue", "CancelDataQualityRulesetEvaluationRun"): (200, {}),
        })  # fmt: skip
        operator = DataQualityGateOperator(
            task_id="quality_gate", dataset="churn", ds=DS, aws_conn_id=None, poll_interval=1
        )
    else:
        bucket = aws_target.bucket
        running = {"TransformJobName": name, "TransformJobStatus": "InProgress", "ModelName": "m",
                   "TransformOutput": {"S3OutputPath": f"s3://{bucket}/out"}}  # fmt: skip
        aws_calls.stubs[("sagemaker", "DescribeTransformJob")] = (200, running)
        aws_calls.stubs[("sagemaker", "StopTransformJob")] = (200, {})
        model = {
            "version": "3",
            "model_uri": f"s3://{bucket}/lake/models/churn/jobs/job-a/output/model.tar.gz",
            "model_name": "headrace-churn-v3-0123456789ab",
            "id_columns": ["customer_id", "snapshot_date"],
        }
        operator = SageMakerTransformOperator(
            task_id="transform", model=model, input_uri=f"s3://{bucket}/in", **sagemaker
        )

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    kwargs = deferred.value.kwargs
    if kind == "glue":
        expected = {"JobName": "headrace-sleepy_job", "JobRunIds": [kwargs["run"]["run_id"]]}
    elif kind == "emr_serverless":
        expected = {"applicationId": aws_target.application_id, "jobRunId": kwargs["run"]["run_id"]}
    elif kind == "emr_ec2":
        expected = {"ClusterId": aws_target.cluster_id, "StepIds": [kwargs["run"]["run_id"]],
                    "StepCancellationOption": "SEND_INTERRUPT"}  # fmt: skip
    elif kind == "glue_data_quality":
        expected = {"RunId": "dqrun-0123"}
    else:
        parameter = {"training": "TrainingJobName", "tuning": "HyperParameterTuningJobName",
                     "transform": "TransformJobName",
                     "processing": "ProcessingJobName"}[kind]  # fmt: skip
        expected = {parameter: kwargs["job_name"]}
    return deferred.value, expected


class SupervisorStandIn:
    """Answers what a trigger asks the triggerer's supervisor: the task's state, DEFERRED."""

    def __init__(self, ti):
        self.ti = ti
        self.asked: list[str] = []

    def send(self, msg):
        from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult

        assert isinstance(msg, GetTaskStates), f"unexpected supervisor request {msg!r}"
        self.asked.append(type(msg).__name__)
        return TaskStatesResult(task_states={self.ti.run_id: {self.ti.task_id: "deferred"}})


def run_in_triggerer(workload, aws_calls, poll: tuple[str, str], *, user_kills: bool) -> dict:
    """One triggerer's life with the trigger: create it, wait until it polls AWS, then either the
    user kills the task (``cancel_triggers``) or the triggerer stops with the trigger running."""
    runner = TriggerRunner()
    outcome: dict[str, Any] = {}

    async def triggerer() -> None:
        first_call = len(aws_calls.requests)
        runner.to_create.append(workload)
        await runner.create_triggers()
        task = runner.triggers[TRIGGER_ID]["task"]
        deadline = time.monotonic() + POLL_WAIT_S
        while not any(
            (call["service"], call["operation"]) == poll for call in aws_calls.requests[first_call:]
        ):
            assert not task.done(), f"the trigger ended before it polled: {task}"
            assert time.monotonic() < deadline, f"the trigger sent no {poll} in {POLL_WAIT_S}s"
            await asyncio.sleep(0.05)
        if user_kills:
            # What the triggerer does when the scheduler has dropped the trigger of a task the
            # user marked failed: its id comes back in to_cancel.
            runner.to_cancel.append(TRIGGER_ID)
            await runner.cancel_triggers()
            await asyncio.wait([task], timeout=POLL_WAIT_S)
            outcome["cancelled"] = task.cancelled()
        outcome["events"] = list(runner.events)
        # Returning with the trigger still running: asyncio.run cancels it, message-less, as
        # when the triggerer process stops.

    asyncio.run(triggerer())
    return outcome


@pytest.mark.parametrize("kind", list(KINDS))
def test_killing_the_deferred_task_stops_the_job_and_a_restart_does_not(
    kind, aws_target, aws_calls, task_context, monkeypatch
):
    from airflow.executors.workloads import RunTrigger
    from airflow.executors.workloads.task import TaskInstanceDTO
    from airflow.models.trigger import Trigger
    from airflow.sdk.execution_time import task_runner

    spec = KINDS[kind]
    context = task_context(dag_id=spec.dag_id, task_id=spec.task_id, run_id="run-1")
    deferred, expected_stop = defer(kind, aws_target, aws_calls, context)

    # The trigger row as the scheduler stores it, and the workload the triggerer gets.
    row = Trigger.from_object(deferred.trigger)
    assert row.classpath == spec.trigger_class
    assert row.kwargs["cancel_on_kill"] is True
    ti = TaskInstanceDTO(
        id=uuid.uuid4(), dag_id=spec.dag_id, task_id=spec.task_id, run_id="run-1",
        try_number=1, dag_version_id=uuid.uuid4(), pool_slots=1, priority_weight=1,
    )  # fmt: skip
    workload = RunTrigger(
        id=TRIGGER_ID, classpath=row.classpath, encrypted_kwargs=row.encrypted_kwargs, ti=ti
    )
    supervisor = SupervisorStandIn(ti)
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", supervisor, raising=False)
    stops = lambda: aws_calls.of(*spec.stop)  # noqa: E731

    # The trigger the triggerer inflates from the row is the one the operator deferred with.
    rebuilt = TriggerRunner().get_trigger_by_classpath(row.classpath)(**row.kwargs)
    assert rebuilt.serialize() == deferred.trigger.serialize()

    restart = run_in_triggerer(workload, aws_calls, spec.poll, user_kills=False)
    assert restart["events"] == []
    assert stops() == [], f"a triggerer restart stopped the {kind} job"
    if kind == "emr_serverless":
        # The provider's trigger asks whether the task is still deferred before cancelling.
        assert supervisor.asked == ["GetTaskStates"]

    killed = run_in_triggerer(workload, aws_calls, spec.poll, user_kills=True)
    assert killed["cancelled"] is True and killed["events"] == []
    assert stops() == [expected_stop], f"killing the deferred task must stop the {kind} job once"
    if kind == "emr_serverless":
        aws_calls.stubs.pop(("emr-serverless", "GetJobRun"))
        run = aws_target.client("emr-serverless").get_job_run(**expected_stop)["jobRun"]
        assert run["state"] == "CANCELLED"


def test_cancel_on_kill_off_leaves_the_job_running(aws_target, aws_calls, task_context):
    """``cancel_on_kill=False`` survives serialization and keeps on_kill from stopping the job."""
    from airflow.models.trigger import Trigger

    from headrace_operators.job_triggers import GlueJobRunTrigger

    context = task_context(run_id="run-1")
    deferred, _ = defer("glue", aws_target, aws_calls, context)
    kwargs = deferred.trigger.serialize()[1]
    off = GlueJobRunTrigger(**{**kwargs, "cancel_on_kill": False})
    row = Trigger.from_object(off)
    rebuilt = GlueJobRunTrigger(**row.kwargs)
    assert rebuilt.serialize() == off.serialize() and rebuilt.cancel_on_kill is False
    asyncio.run(rebuilt.on_kill())
    assert aws_calls.of("glue", "BatchStopJobRun") == []


def test_a_sagemaker_trigger_for_a_job_type_it_cannot_stop_is_refused():
    from headrace_operators.job_triggers import SageMakerJobTrigger

    with pytest.raises(ValueError, match="job_type='endpoint'"):
        SageMakerJobTrigger(job_name="x", job_type="endpoint")


def test_the_triggerer_cancels_with_the_user_action_message_on_kill_expects():
    # The contract the tests above rely on, read from the installed triggerer.
    assert triggerer_job_runner._USER_ACTION_CANCEL_MSG == "__airflow_user_action__"
