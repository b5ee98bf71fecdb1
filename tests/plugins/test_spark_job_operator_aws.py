"""SparkJobOperator on the aws target, against a moto server: Glue, EMR Serverless, EMR steps.

What moto lacks is answered by a stub on botocore's ``before-call`` event (tests/aws_fakes.py), and
each such test says so; the request the operator sent is asserted either way:
- Glue CreateSecurityConfiguration, UpdateJob and BatchStopJobRun are not implemented by moto;
  its Glue runs never fail (they move STARTING → RUNNING → SUCCEEDED), so a failed run's
  GetJobRun answer is stubbed.
- EMR Serverless ignores ``clientToken`` (no idempotency) and finishes every run at once with
  SUCCESS; re-attachment is shown through ListJobRuns by name, as on AWS.
- EMR on EC2 has no CancelSteps, and its steps stay RUNNING forever (so no trigger run here);
  a failed step's DescribeStep answer is stubbed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import timedelta

import pytest
from airflow.exceptions import AirflowException, AirflowFailException, TaskDeferred

from headrace_operators import SparkJobOperator
from include.job_names import TaskRunIdentity

# Slow (runs the operator against a moto server): left out of `make test-fast`.
pytestmark = pytest.mark.slow

FIXTURE_JOB_ARGS = ["--sleep", "0", "--marker", "/tmp/headrace-unused"]


class FixtureSparkJobOperator(SparkJobOperator):
    """The operator with the test fixtures as its jobs package (spark_jobs/ is not ours here)."""

    jobs_package = "tests.plugins.fixtures"


def make_operator(**overrides) -> FixtureSparkJobOperator:
    arguments = {
        "task_id": "ingest",
        "job": "sleepy_job",
        "job_args": FIXTURE_JOB_ARGS,
        "aws_conn_id": None,
        "poll_interval": 1,
        "timeout": timedelta(minutes=30),
    }
    arguments.update(overrides)
    return FixtureSparkJobOperator(**arguments)


def run_trigger(trigger) -> dict:
    """Run a provider trigger to its first event, as the triggerer would."""

    async def first_event():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(first_event())


def trigger_args(trigger) -> dict:
    """What the triggerer re-creates the trigger from: proves it serializes."""
    return trigger.serialize()[1]


def run_key_of(context) -> str:
    return TaskRunIdentity.from_context(context).run_key


# --- Glue ----------------------------------------------------------------------------------


def test_glue_first_try_uploads_code_defines_job_and_defers(aws_target, aws_calls, task_context):
    aws_target.hold_glue_runs_starting()
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})
    context = task_context()

    with pytest.raises(TaskDeferred) as deferred:
        make_operator().execute(context)

    glue = aws_target.client("glue")
    (job_run,) = glue.get_job_runs(JobName="headrace-sleepy_job")["JobRuns"]
    trigger = deferred.value.trigger
    # Ours, not the provider's GlueJobCompleteTrigger it extends: it stops the run on a kill.
    assert type(trigger).__name__ == "GlueJobRunTrigger"
    assert trigger.job_name == "headrace-sleepy_job"
    assert trigger.run_id == job_run["Id"]
    # 30 minutes plus the queueing allowance, polled every second.
    assert trigger.attempts == 2250
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs["run"]["run_id"] == job_run["Id"]
    assert job_run["Arguments"]["--headrace-run-key"] == run_key_of(context)
    assert job_run["Arguments"]["--sleep"] == "0"

    # The code is in S3, KMS-encrypted, tagged with its hash.
    s3 = aws_target.client("s3")
    prefix = "artifacts/spark_jobs"
    script = s3.get_object(Bucket=aws_target.bucket, Key=f"{prefix}/sleepy_job.py")
    with open("tests/plugins/fixtures/sleepy_job.py", "rb") as source:
        source_bytes = source.read()
    assert script["Body"].read() == source_bytes
    assert script["Metadata"]["sha256"] == hashlib.sha256(source_bytes).hexdigest()
    assert script["ServerSideEncryption"] == "aws:kms"
    package = s3.head_object(Bucket=aws_target.bucket, Key=f"{prefix}/tests.plugins.fixtures.zip")
    assert package["SSEKMSKeyId"] == aws_target.kms_key_arn

    # The job definition, its network connection and its encryption.
    job = glue.get_job(JobName="headrace-sleepy_job")["Job"]
    assert job["GlueVersion"] == "5.1"
    assert job["Command"]["ScriptLocation"] == (f"s3://{aws_target.bucket}/{prefix}/sleepy_job.py")
    assert job["DefaultArguments"]["--extra-py-files"].endswith("/tests.plugins.fixtures.zip")
    connection_name = f"headrace-network-{aws_target.subnet_id}"
    assert job["Connections"] == {"Connections": [connection_name]}
    connection = glue.get_connection(Name=connection_name)["Connection"]
    assert connection["PhysicalConnectionRequirements"]["AvailabilityZone"] == (
        aws_target.availability_zone
    )
    (security,) = aws_calls.of("glue", "CreateSecurityConfiguration")
    assert job["SecurityConfiguration"] == security["Name"]
    s3_encryption = security["EncryptionConfiguration"]["S3Encryption"]
    assert s3_encryption == [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": aws_target.kms_key_arn}]


def test_glue_retry_reattaches_to_the_running_run(aws_target, aws_calls, task_context):
    aws_target.hold_glue_runs_starting()
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})
    context = task_context()

    with pytest.raises(TaskDeferred) as first:
        make_operator().execute(context)
    # A retry is a new operator instance with the same task instance identity.
    with pytest.raises(TaskDeferred) as second:
        make_operator().execute(context)

    assert second.value.trigger.run_id == first.value.trigger.run_id
    assert len(aws_calls.of("glue", "StartJobRun")) == 1
    assert len(aws_calls.of("s3", "PutObject")) == 2  # script and zip, by the first try only
    runs = aws_target.client("glue").get_job_runs(JobName="headrace-sleepy_job")["JobRuns"]
    assert [run["Id"] for run in runs] == [first.value.trigger.run_id]

    # Another task instance (another map index) gets its own run.
    with pytest.raises(TaskDeferred) as mapped:
        make_operator().execute(task_context(map_index=0))
    assert mapped.value.trigger.run_id != first.value.trigger.run_id
    assert len(aws_calls.of("glue", "StartJobRun")) == 2
    # Its code was checked, found unchanged, and not uploaded again.
    assert len(aws_calls.of("s3", "HeadObject")) == 4
    assert len(aws_calls.of("s3", "PutObject")) == 2


def test_glue_waits_in_the_worker_and_a_retry_returns_the_finished_run(
    aws_target, aws_calls, task_context
):
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})
    context = task_context()

    result = make_operator(deferrable=False, poll_interval=0.01).execute(context)

    (job_run,) = aws_target.client("glue").get_job_runs(JobName="headrace-sleepy_job")["JobRuns"]
    assert result == {
        "engine": "glue",
        "job": "sleepy_job",
        "run_key": run_key_of(context),
        "run_id": job_run["Id"],
        "state": "SUCCEEDED",
        "job_name": "headrace-sleepy_job",
    }
    again = make_operator(deferrable=False, poll_interval=0.01).execute(context)
    assert again == result
    assert len(aws_calls.of("glue", "StartJobRun")) == 1


def test_glue_trigger_event_completes_the_task(aws_target, aws_calls, task_context):
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})
    context = task_context()
    operator = make_operator()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)

    # The provider's trigger, run against moto as the triggerer would (aiobotocore).
    event = run_trigger(deferred.value.trigger)
    assert event == {"status": "success", "run_id": deferred.value.trigger.run_id}

    result = make_operator().execute_complete(context, event=event, **deferred.value.kwargs)
    assert result["state"] == "SUCCEEDED"
    assert result["run_id"] == deferred.value.trigger.run_id


def test_glue_changed_definition_updates_the_job(aws_target, aws_calls, task_context):
    # moto has no UpdateJob: the request is answered by a stub and asserted.
    aws_target.hold_glue_runs_starting()
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})
    aws_calls.stubs[("glue", "UpdateJob")] = (200, {"JobName": "headrace-sleepy_job"})
    # An older script is in S3 too: changed code is uploaded again.
    script_key = "artifacts/spark_jobs/sleepy_job.py"
    s3 = aws_target.client("s3")
    s3.put_object(Bucket=aws_target.bucket, Key=script_key, Body=b"old", Metadata={"sha256": "old"})
    aws_target.client("glue").create_job(
        Name="headrace-sleepy_job",
        Role="arn:aws:iam::123456789012:role/old",
        Command={"Name": "glueetl", "ScriptLocation": "s3://old/old.py"},
        Description="an older definition",
    )

    with pytest.raises(TaskDeferred):
        make_operator(timeout=timedelta(minutes=45)).execute(task_context())

    (update,) = aws_calls.of("glue", "UpdateJob")
    assert update["JobName"] == "headrace-sleepy_job"
    assert update["JobUpdate"]["Timeout"] == 45
    assert update["JobUpdate"]["Role"] == "arn:aws:iam::123456789012:role/headrace-glue"
    assert update["JobUpdate"]["Description"].startswith("headrace Spark job tests.plugins")
    with open("tests/plugins/fixtures/sleepy_job.py", "rb") as source:
        assert s3.get_object(Bucket=aws_target.bucket, Key=script_key)["Body"].read() == (
            source.read()
        )
    # The only CreateJob is this test's own, above.
    assert [call["Description"] for call in aws_calls.of("glue", "CreateJob")] == [
        "an older definition"
    ]


def test_glue_on_kill_stops_the_run(aws_target, aws_calls, task_context):
    # moto has no BatchStopJobRun: the request is answered by a stub and asserted.
    aws_target.hold_glue_runs_starting()
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})
    aws_calls.stubs[("glue", "BatchStopJobRun")] = (
        200,
        {"SuccessfulSubmissions": [], "Errors": []},
    )
    operator = make_operator()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(task_context())

    operator.on_kill()

    assert aws_calls.of("glue", "BatchStopJobRun") == [
        {"JobName": "headrace-sleepy_job", "JobRunIds": [deferred.value.trigger.run_id]}
    ]


def test_a_run_still_going_when_the_trigger_gives_up_is_stopped(
    aws_target, aws_calls, task_context
):
    """The trigger's attempts cover the run's wait; past them the run is stopped, as the polling
    path stops it at its deadline, not left running unwatched."""
    aws_target.hold_glue_runs_starting()
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})
    aws_calls.stubs[("glue", "BatchStopJobRun")] = (
        200,
        {"SuccessfulSubmissions": [], "Errors": []},
    )
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        make_operator().execute(context)
    run_id = deferred.value.trigger.run_id
    given_up = {"status": "error", "message": "Waiter error: max attempts reached"}

    with pytest.raises(AirflowException, match=rf"run {run_id} .* still STARTING after its wait"):
        make_operator().execute_complete(context, event=given_up, **deferred.value.kwargs)
    assert aws_calls.of("glue", "BatchStopJobRun") == [
        {"JobName": "headrace-sleepy_job", "JobRunIds": [run_id]}
    ]


def test_glue_failed_run_fails_the_task_with_glues_error_message(
    aws_target, aws_calls, task_context
):
    # moto's Glue runs cannot fail: GetJobRun is stubbed with what Glue reports for one.
    aws_target.hold_glue_runs_starting()
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        make_operator().execute(context)
    run_id = deferred.value.trigger.run_id
    aws_calls.stubs[("glue", "GetJobRun")] = (
        200,
        {
            "JobRun": {
                "Id": run_id,
                "JobName": "headrace-sleepy_job",
                "JobRunState": "FAILED",
                "ErrorMessage": "AnalysisException: Path does not exist: s3://lake/landing/x",
            }
        },
    )

    # The provider's trigger raised on the failed run: Airflow resumes the task with __fail__.
    with pytest.raises(AirflowException, match="Path does not exist: s3://lake/landing/x"):
        make_operator().resume_execution(
            next_method="__fail__",
            next_kwargs={"error": "Trigger failure", "traceback": ["AWS Glue job failed."]},
            context=context,
        )
    # An error event handed to execute_complete fails with the same reason.
    with pytest.raises(AirflowException, match=rf"glue run {run_id} .* ended FAILED"):
        make_operator().execute_complete(
            context, event={"status": "error"}, **deferred.value.kwargs
        )


# --- EMR Serverless ------------------------------------------------------------------------


def test_emr_serverless_start_defers_and_the_trigger_completes_it(
    aws_target, aws_calls, task_context
):
    aws_target.use("emr_serverless")
    context = task_context()
    identity = TaskRunIdentity.from_context(context)

    with pytest.raises(TaskDeferred) as deferred:
        make_operator().execute(context)

    (start,) = aws_calls.of("emr-serverless", "StartJobRun")
    assert start["applicationId"] == aws_target.application_id
    assert start["name"] == identity.name_for("emr_serverless_name")
    assert start["clientToken"] == identity.name_for("emr_serverless_client_token", suffix="0")
    assert start["jobDriver"]["sparkSubmit"]["entryPoint"] == (
        f"s3://{aws_target.bucket}/artifacts/spark_jobs/sleepy_job.py"
    )
    assert start["jobDriver"]["sparkSubmit"]["entryPointArguments"] == FIXTURE_JOB_ARGS
    monitoring = start["configurationOverrides"]["monitoringConfiguration"]
    assert monitoring["s3MonitoringConfiguration"]["encryptionKeyArn"] == aws_target.kms_key_arn
    assert start["executionTimeoutMinutes"] == 30
    # The run's cost allocation tags: the DAG and run of the task (a job of no dataset).
    assert start["tags"] == {
        "project": "headrace",
        "dag": "ingest_daily",
        "run": "scheduled__2026-01-02T00:00:00+00:00",
        "spark_job": "sleepy_job",
    }

    trigger = deferred.value.trigger
    classpath, arguments = trigger.serialize()
    assert classpath == "airflow.providers.amazon.aws.triggers.emr.EmrServerlessStartJobTrigger"
    assert arguments["application_id"] == aws_target.application_id
    assert arguments["aws_conn_id"] is None
    event = run_trigger(trigger)
    # Amazon provider 9.34 reports the run as job_details (it was job_id).
    assert event == {
        "status": "success",
        "job_details": {
            "application_id": aws_target.application_id,
            "job_id": trigger_args(trigger)["job_id"],
        },
    }
    result = make_operator().execute_complete(context, event=event, **deferred.value.kwargs)
    assert result == {
        "engine": "emr_serverless",
        "job": "sleepy_job",
        "run_key": identity.run_key,
        "run_id": trigger_args(trigger)["job_id"],
        "state": "SUCCESS",
        "application_id": aws_target.application_id,
    }
    # Resumed without the defer kwargs (as dag.test() does), the run key finds the run.
    assert make_operator().execute_complete(context, event=event) == result


def test_emr_serverless_retry_returns_the_finished_run_without_starting(
    aws_target, aws_calls, task_context
):
    aws_target.use("emr_serverless")
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        make_operator().execute(context)

    result = make_operator().execute(context)

    assert result["run_id"] == trigger_args(deferred.value.trigger)["job_id"]
    assert result["state"] == "SUCCESS"
    assert len(aws_calls.of("emr-serverless", "StartJobRun")) == 1
    runs = aws_target.client("emr-serverless").list_job_runs(
        applicationId=aws_target.application_id
    )["jobRuns"]
    assert len(runs) == 1


def test_emr_serverless_after_a_cancelled_run_starts_anew_with_a_new_token(
    aws_target, aws_calls, task_context
):
    aws_target.use("emr_serverless")
    context = task_context()
    identity = TaskRunIdentity.from_context(context)
    operator = make_operator()
    with pytest.raises(TaskDeferred) as first:
        operator.execute(context)

    operator.on_kill()  # CancelJobRun: moto implements it

    emr_serverless = aws_target.client("emr-serverless")
    cancelled = emr_serverless.get_job_run(
        applicationId=aws_target.application_id,
        jobRunId=trigger_args(first.value.trigger)["job_id"],
    )["jobRun"]
    assert cancelled["state"] == "CANCELLED"

    with pytest.raises(TaskDeferred) as second:
        make_operator().execute(context)
    assert (
        trigger_args(second.value.trigger)["job_id"] != trigger_args(first.value.trigger)["job_id"]
    )
    tokens = [start["clientToken"] for start in aws_calls.of("emr-serverless", "StartJobRun")]
    assert tokens == [
        identity.name_for("emr_serverless_client_token", suffix="0"),
        identity.name_for("emr_serverless_client_token", suffix="1"),
    ]


# --- EMR on EC2 ----------------------------------------------------------------------------


def test_emr_step_is_added_once_and_a_retry_reattaches(aws_target, aws_calls, task_context):
    aws_target.use("emr_ec2")
    context = task_context()
    identity = TaskRunIdentity.from_context(context)

    with pytest.raises(TaskDeferred) as first:
        make_operator().execute(context)
    with pytest.raises(TaskDeferred) as second:
        make_operator().execute(context)

    (add_steps,) = aws_calls.of("emr", "AddJobFlowSteps")
    (step,) = add_steps["Steps"]
    assert add_steps["JobFlowId"] == aws_target.cluster_id
    assert step["Name"] == identity.name_for("emr_step")
    assert step["ActionOnFailure"] == "CONTINUE"
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    assert step["HadoopJarStep"]["Args"][:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert step["HadoopJarStep"]["Args"][-len(FIXTURE_JOB_ARGS) :] == FIXTURE_JOB_ARGS

    classpath, arguments = first.value.trigger.serialize()
    # Ours, not the provider's EmrStepSensorTrigger it extends: it cancels the step on a kill.
    assert classpath == "headrace_operators.job_triggers.EmrStepTrigger"
    assert arguments["job_flow_id"] == aws_target.cluster_id
    assert arguments["step_id"] == first.value.kwargs["run"]["run_id"]
    assert second.value.trigger.serialize() == first.value.trigger.serialize()
    steps = aws_target.client("emr").list_steps(ClusterId=aws_target.cluster_id)["Steps"]
    assert [listed["Id"] for listed in steps] == [first.value.kwargs["run"]["run_id"]]


def test_emr_step_on_kill_cancels_the_step(aws_target, aws_calls, task_context):
    # moto has no CancelSteps: the request is answered by a stub and asserted.
    aws_target.use("emr_ec2")
    aws_calls.stubs[("emr", "CancelSteps")] = (200, {"CancelStepsInfoList": []})
    operator = make_operator()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(task_context())

    operator.on_kill()

    assert aws_calls.of("emr", "CancelSteps") == [
        {
            "ClusterId": aws_target.cluster_id,
            "StepIds": [deferred.value.kwargs["run"]["run_id"]],
            "StepCancellationOption": "SEND_INTERRUPT",
        }
    ]


def test_emr_step_failure_names_the_reason_and_log(aws_target, aws_calls, task_context):
    aws_target.use("emr_ec2")
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        make_operator().execute(context)
    step_id = deferred.value.kwargs["run"]["run_id"]
    # moto's steps never fail: DescribeStep is stubbed with what EMR reports for one.
    aws_calls.stubs[("emr", "DescribeStep")] = (
        200,
        {
            "Step": {
                "Id": step_id,
                "Status": {
                    "State": "FAILED",
                    "FailureDetails": {
                        "Reason": "Unknown Error.",
                        "Message": "Exception in thread main: java.lang.OutOfMemoryError",
                        "LogFile": "s3://logs/steps/s-1/stderr.gz",
                    },
                },
            }
        },
    )

    with pytest.raises(
        AirflowException, match=re.escape("OutOfMemoryError; s3://logs/steps/s-1/stderr.gz")
    ):
        make_operator().execute_complete(
            context, event={"status": "success"}, **deferred.value.kwargs
        )
    # Waiting in the worker, a retry re-attaches to the step and fails with the same reason.
    with pytest.raises(AirflowException, match=rf"emr_ec2 run {step_id} .* ended FAILED: Unknown"):
        make_operator(deferrable=False, poll_interval=0.01).execute(context)
    assert len(aws_calls.of("emr", "AddJobFlowSteps")) == 1


# --- capacity: the dataset spec sizes the run --------------------------------------------------

BIG_SPARK = {
    "max_runtime_minutes": 240,
    "glue": {"worker_type": "G.2X", "number_of_workers": 20},
    "emr_serverless": {"max_executors": 50, "executor_cores": 8, "executor_memory_gb": 50},
    "emr_step": {"max_executors": 30, "executor_cores": 4, "executor_memory_gb": 20},
}

BIG_BUDGET = {"budget_per_run_usd": 200, "budget_per_job_usd": 100}


def sized_operator(tmp_path, **overrides) -> FixtureSparkJobOperator:
    """The fixture operator for dataset ``churn``, whose spec (a copy in ``tmp_path``) sets
    ``capacity.spark`` to :data:`BIG_SPARK`."""
    import yaml

    from include.config import DATASETS_DIR

    raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    # 20 G.2X workers for 4 h: $70.40 at worst, over the default budget; this dataset pays for it.
    big = {**raw, "capacity": {"spark": BIG_SPARK}, "cost": BIG_BUDGET}
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(big))

    class SizedOperator(FixtureSparkJobOperator):
        datasets_dir = tmp_path

    arguments = {"task_id": "ingest", "job": "sleepy_job", "job_args": FIXTURE_JOB_ARGS}
    arguments.update(aws_conn_id=None, poll_interval=1, dataset="churn", **overrides)
    return SizedOperator(**arguments)


def test_glue_run_gets_the_datasets_workers_and_runtime(
    tmp_path, aws_target, aws_calls, task_context
):
    aws_target.hold_glue_runs_starting()
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})

    with pytest.raises(TaskDeferred) as deferred:
        sized_operator(tmp_path).execute(task_context())

    (start,) = aws_calls.of("glue", "StartJobRun")
    assert (start["WorkerType"], start["NumberOfWorkers"], start["Timeout"]) == ("G.2X", 20, 240)
    # The job definition every dataset shares keeps today's size and runtime.
    job = aws_target.client("glue").get_job(JobName="headrace-sleepy_job")["Job"]
    assert (job["WorkerType"], job["NumberOfWorkers"], job["Timeout"]) == ("G.1X", 2, 120)
    # 240 minutes plus the queueing allowance, polled every second.
    assert deferred.value.trigger.attempts == 18000


def test_an_explicit_timeout_wins_over_the_datasets(tmp_path, aws_target, aws_calls, task_context):
    aws_target.hold_glue_runs_starting()
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})

    with pytest.raises(TaskDeferred):
        sized_operator(tmp_path, timeout=timedelta(minutes=30)).execute(task_context())

    (start,) = aws_calls.of("glue", "StartJobRun")
    assert (start["NumberOfWorkers"], start["Timeout"]) == (20, 30)


def test_emr_runs_get_the_datasets_executors(tmp_path, aws_target, aws_calls, task_context):
    aws_target.use("emr_serverless")
    with pytest.raises(TaskDeferred):
        sized_operator(tmp_path).execute(task_context())
    (start,) = aws_calls.of("emr-serverless", "StartJobRun")
    submit = start["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
    assert submit.endswith(
        " --conf spark.dynamicAllocation.maxExecutors=50"
        " --conf spark.executor.cores=8 --conf spark.executor.memory=50g"
    )
    assert start["executionTimeoutMinutes"] == 240
    assert start["tags"] == {
        "project": "headrace",
        "dataset": "churn",
        "dag": "ingest_daily",
        "run": "scheduled__2026-01-02T00:00:00+00:00",
        "spark_job": "sleepy_job",
    }


def test_emr_step_gets_the_datasets_executors(tmp_path, aws_target, aws_calls, task_context):
    aws_target.use("emr_ec2")
    with pytest.raises(TaskDeferred):
        sized_operator(tmp_path).execute(task_context())
    (add_steps,) = aws_calls.of("emr", "AddJobFlowSteps")
    args = add_steps["Steps"][0]["HadoopJarStep"]["Args"]
    assert "spark.dynamicAllocation.maxExecutors=30" in args
    assert args[args.index("spark.executor.memory=20g") - 1] == "--conf"
    # Options before the script: spark-submit hands whatever follows it to the job.
    assert args.index("spark.executor.memory=20g") < args.index(
        f"s3://{aws_target.bucket}/artifacts/spark_jobs/sleepy_job.py"
    )


def test_a_bad_capacity_fails_the_task_naming_the_spec_and_field(
    tmp_path, aws_target, aws_calls, task_context
):
    from spark_jobs.dataset_spec import SpecError

    aws_target.hold_glue_runs_starting()
    operator = sized_operator(tmp_path)
    spec = tmp_path / "churn.yaml"
    spec.write_text(spec.read_text().replace("number_of_workers: 20", "number_of_workers: 1"))

    with pytest.raises(
        SpecError,
        match=re.escape(
            f"{spec}: capacity.spark.glue.number_of_workers: must be an integer >= 2, got 1"
        ),
    ):
        operator.execute(task_context())
    assert aws_calls.of("glue", "StartJobRun") == []


# --- cost: no run starts over the dataset's budget ---------------------------------------------


def test_a_glue_run_over_the_datasets_budget_is_refused_before_it_starts(
    tmp_path, aws_target, aws_calls, task_context
):
    aws_target.hold_glue_runs_starting()
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = (200, {"Name": "stubbed"})
    operator = sized_operator(tmp_path)
    spec = tmp_path / "churn.yaml"
    spec.write_text(spec.read_text().replace("budget_per_job_usd: 100", "budget_per_job_usd: 50"))

    with pytest.raises(AirflowFailException) as refused:
        operator.execute(task_context())
    message = str(refused.value)
    # 2 DPU x 20 workers x 4 h x $0.44 (us-east-1, include/aws_prices.json)
    assert re.search(
        r"glue job headrace-sleepy_job \(.+\): worst case \$70\.40 \(G\.2X 2 DPU x 20 workers x "
        r"4\.0 h x \$0\.44/DPU-h = \$70\.40\) exceeds the per-job budget \$50\.00",
        message,
    ), message
    assert f"{spec} cost:" in message
    assert aws_calls.of("glue", "StartJobRun") == []


def test_an_emr_serverless_application_without_a_maximum_capacity_is_refused(
    aws_target, aws_calls, task_context
):
    aws_target.use("emr_serverless", emr_serverless_maximum_capacity=None)
    with pytest.raises(AirflowFailException, match="has no maximumCapacity: a run on it has no"):
        make_operator().execute(task_context())
    assert aws_calls.of("emr-serverless", "GetApplication") == [
        {"applicationId": aws_target.application_id}
    ]
    assert aws_calls.of("emr-serverless", "StartJobRun") == []
