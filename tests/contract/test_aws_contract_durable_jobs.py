"""Durable jobs on aws, for every job kind: a retried task re-attaches to the job its first try
started (exactly one Create/Start call per task instance), and killing the task stops it.

Which test proves what (``plugins`` = tests/plugins/, ``here`` = this module):

====================  ============================================  ===========================================
job kind              re-attach on retry (one Create/Start)         stop on kill (Stop/Cancel sent)
====================  ============================================  ===========================================
Glue job run          here: ``test_spark_retry_reattaches_…[glue]``  here: same test (BatchStopJobRun);
                      plugins: test_glue_retry_reattaches_to_the_    plugins: test_glue_on_kill_stops_the_run
                      running_run, …returns_the_finished_run
EMR Serverless run    here: ``…[emr_serverless]`` (running);         here: same test (CancelJobRun);
                      plugins: test_emr_serverless_retry_returns_    plugins: test_emr_serverless_after_a_
                      the_finished_run_without_starting              cancelled_run_starts_anew_with_a_new_token
EMR step (EMR on EC2) here: ``…[emr_ec2]``; plugins: test_emr_step_  here: same test (CancelSteps);
                      is_added_once_and_a_retry_reattaches           plugins: test_emr_step_on_kill_cancels_the_step
SageMaker training    here: ``test_sagemaker_retry_reattaches_…      here: same test (StopTrainingJob);
                      [training]`` (running); plugins: test_aws_     plugins: test_aws_on_kill_stops_the_job_it_
                      training_sends_one_valid_create_and_a_retry_   attached_to
                      reattaches (finished)
SageMaker tuning      here: ``…[tuning]`` (running) — was a gap      here: same test (StopHyperParameterTuningJob)
                                                                     — was a gap
SageMaker transform   here: ``…[transform]`` (running); plugins:     here: same test (StopTransformJob); plugins:
                      test_aws_creates_the_model_and_one_valid_      test_aws_on_kill_stops_the_transform_job
                      transform_job_and_a_retry_reattaches
SageMaker processing  here: ``…[processing]`` (running); plugins:    here: same test (StopProcessingJob); plugins:
                      test_aws_sends_one_valid_isolated_create_and_  test_aws_on_kill_stops_the_job_it_attached_to
                      a_retry_reattaches (finished)
====================  ============================================  ===========================================

Each test here starts the job with one operator instance, runs a second instance of the same
task instance (a retry: same dag_id, run_id, task_id) while the job still runs, then kills the
retry (``on_kill``, what Airflow calls when it kills a running task), asserting on the requests
captured by the session-level recorder. moto completes SageMaker jobs and EMR Serverless runs at
once and has no Stop/Cancel for Glue runs, EMR steps or SageMaker jobs: "still running" is the
answer a ``before-call`` stub (or, for EMR Serverless, an ``after-call`` edit of moto's answer)
gives, and the stop calls moto lacks are answered by stubs — the request sent is what is asserted.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.exceptions import TaskDeferred

from include.job_names import TaskRunIdentity

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_helpers import commit_s3_features

DS = "2026-01-07"


# --- Spark jobs: Glue, EMR Serverless, EMR on EC2 ------------------------------------------------

SPARK_START = {
    "glue": ("glue", "StartJobRun"),
    "emr_serverless": ("emr-serverless", "StartJobRun"),
    "emr_ec2": ("emr", "AddJobFlowSteps"),
}
SPARK_STOP = {
    "glue": ("glue", "BatchStopJobRun"),
    "emr_serverless": ("emr-serverless", "CancelJobRun"),
    "emr_ec2": ("emr", "CancelSteps"),
}


def spark_operator():
    from headrace_operators import SparkJobOperator

    class FixtureSparkJobOperator(SparkJobOperator):
        jobs_package = "tests.plugins.fixtures"

    return FixtureSparkJobOperator(
        task_id="ingest", job="sleepy_job", job_args=["--sleep", "0", "--marker", "/tmp/unused"],
        aws_conn_id=None, poll_interval=1, timeout=timedelta(minutes=30),
    )  # fmt: skip


@pytest.mark.parametrize("engine", sorted(SPARK_START))
def test_spark_retry_reattaches_to_the_running_run_and_kill_stops_it(
    engine, contract_target, aws_calls, task_context, moto_api
):
    contract_target.use(engine)
    aws_calls.stubs[("glue", "CreateSecurityConfiguration")] = lambda p: (200, {"Name": p["Name"]})
    aws_calls.stubs[("glue", "BatchStopJobRun")] = lambda p: (
        200, {"SuccessfulSubmissions": [], "Errors": []},
    )  # fmt: skip
    aws_calls.stubs[("emr", "CancelSteps")] = lambda p: (200, {"CancelStepsInfoList": []})
    if engine == "glue":  # moto's Glue runs finish on first sight: hold them STARTING
        moto_api(contract_target.endpoint, "state-manager/set-transition",
                 {"model_name": "glue::job_run",
                  "transition": {"progression": "manual", "times": 10**6}})  # fmt: skip
    if engine == "emr_serverless":  # moto's runs finish at once: they are still running here

        def still_running(params, parsed):
            for run in parsed.get("jobRuns", []):
                run["state"] = "RUNNING"

        aws_calls.after[("emr-serverless", "ListJobRuns")] = still_running
    context = task_context("churn_ingestion", "ingest")

    with pytest.raises(TaskDeferred) as first:
        spark_operator().execute(context)
    retry = spark_operator()
    with pytest.raises(TaskDeferred) as second:
        retry.execute(context)  # the retry of the same task instance
    retry.on_kill()

    run_id = first.value.kwargs["run"]["run_id"]
    assert second.value.kwargs["run"]["run_id"] == run_id
    starts = aws_calls.of(*SPARK_START[engine])
    assert len(starts) == 1, f"{engine}: a retry must re-attach, not start again"
    stops = aws_calls.of(*SPARK_STOP[engine])
    expected_stop = {
        "glue": {"JobName": "headrace-sleepy_job", "JobRunIds": [run_id]},
        "emr_serverless": {"applicationId": contract_target.application_id, "jobRunId": run_id},
        "emr_ec2": {"ClusterId": contract_target.cluster_id, "StepIds": [run_id],
                    "StepCancellationOption": "SEND_INTERRUPT"},
    }[engine]  # fmt: skip
    assert stops == [expected_stop]


# --- SageMaker training, tuning, transform, processing ------------------------------------------

SAGEMAKER = {
    # kind: (Create, Describe, Stop, name member, status member)
    "training": ("CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob",
                 "TrainingJobName", "TrainingJobStatus"),
    "tuning": ("CreateHyperParameterTuningJob", "DescribeHyperParameterTuningJob",
               "StopHyperParameterTuningJob", "HyperParameterTuningJobName",
               "HyperParameterTuningJobStatus"),
    "transform": ("CreateTransformJob", "DescribeTransformJob", "StopTransformJob",
                  "TransformJobName", "TransformJobStatus"),
    "processing": ("CreateProcessingJob", "DescribeProcessingJob", "StopProcessingJob",
                   "ProcessingJobName", "ProcessingJobStatus"),
}  # fmt: skip


def sagemaker_operator(kind: str, bucket: str):
    from headrace_operators.sagemaker_jobs import (
        SageMakerTrainingJobOperator,
        SageMakerTuningJobOperator,
    )
    from headrace_operators.sagemaker_transform import SageMakerTransformOperator

    common = {"dataset": "churn", "ds": DS, "aws_conn_id": None, "poll_interval": 1}
    if kind == "processing":
        from headrace_operators.sagemaker_jobs import SageMakerProcessingJobOperator

        class FixtureProcessingJobOperator(SageMakerProcessingJobOperator):
            source_package = "tests/plugins/fixtures/processing_package"

        lake = f"s3://{bucket}/lake"
        return FixtureProcessingJobOperator(
            task_id="profile", entry_point="probe.py",
            inputs={"features": f"{lake}/features/churn/ds={DS}"},
            outputs={"report": f"{lake}/monitoring/churn/profile/ds={DS}"}, **common,
        )  # fmt: skip
    if kind == "training":
        return SageMakerTrainingJobOperator(task_id="train", **common)
    if kind == "tuning":
        return SageMakerTuningJobOperator(task_id="tune", max_jobs=2, max_parallel_jobs=1,
                                          **common)  # fmt: skip
    model = {
        "version": "1",
        "model_uri": f"s3://{bucket}/lake/models/churn/jobs/job-a/output/model.tar.gz",
        "model_name": "headrace-churn-v1-0123456789ab",
        "id_columns": ["customer_id", "snapshot_date"],
    }
    return SageMakerTransformOperator(
        task_id="transform", model=model,
        input_uri=f"s3://{bucket}/lake/predictions/churn/input/ds={DS}/abc", **common,
    )  # fmt: skip


@pytest.mark.parametrize("kind", sorted(SAGEMAKER))
def test_sagemaker_retry_reattaches_to_the_running_job_and_kill_stops_it(
    kind, contract_target, aws_calls, task_context
):
    create, describe, stop, name_key, status_key = SAGEMAKER[kind]
    created: dict[str, dict] = {}

    def in_progress(params):
        # moto completes every job at once; SageMaker reports a job it just started this way.
        if params[name_key] not in created:
            return 400, {"Error": {"Code": "ValidationException", "Message": "not found"}}
        return 200, {**created[params[name_key]], status_key: "InProgress"}

    def remember(params, parsed):
        created[params[name_key]] = params

    aws_calls.after[("sagemaker", create)] = remember
    aws_calls.stubs[("sagemaker", describe)] = in_progress
    aws_calls.stubs[("sagemaker", stop)] = lambda params: (200, {})  # moto has no Stop*Job
    task_id = {"training": "train", "tuning": "tune", "transform": "transform",
               "processing": "profile"}[kind]  # fmt: skip
    context = task_context("churn_contract", task_id)
    if kind in ("training", "tuning"):
        # Training reads the committed features partition: its manifest names the channels' files.
        commit_s3_features(contract_target.client("s3"), contract_target.bucket, ds=DS)

    with pytest.raises(TaskDeferred) as first:
        sagemaker_operator(kind, contract_target.bucket).execute(context)
    retry = sagemaker_operator(kind, contract_target.bucket)
    with pytest.raises(TaskDeferred) as second:
        retry.execute(context)  # the retry of the same task instance
    retry.on_kill()

    rule = "sagemaker_tuning" if kind == "tuning" else "sagemaker"
    name = TaskRunIdentity("churn_contract", context["run_id"], task_id).name_for(rule)
    assert first.value.kwargs == second.value.kwargs == {"job_name": name}
    assert [params[name_key] for params in aws_calls.of("sagemaker", create)] == [name]
    assert aws_calls.of("sagemaker", stop) == [{name_key: name}]
    if kind in ("training", "tuning"):
        # The one job sent reads manifest files, which the first try wrote before creating it.
        sent = created[name].get("TrainingJobDefinition", created[name])["InputDataConfig"]
        train = next(c for c in sent if c["ChannelName"] == "train")["DataSource"]
        uri = train["S3DataSource"]["S3Uri"]
        assert train["S3DataSource"]["S3DataType"] == "ManifestFile"
        assert uri.startswith(f"s3://{contract_target.bucket}/lake/models/churn/input/ds={DS}/")
        key = uri.removeprefix(f"s3://{contract_target.bucket}/")
        body = contract_target.client("s3").get_object(Bucket=contract_target.bucket, Key=key)
        features = f"s3://{contract_target.bucket}/lake/features/churn/ds={DS}"
        assert json.loads(body["Body"].read())[0] == {"prefix": f"{features}/split=train/"}
    assert type(second.value.trigger).__name__ == "SageMakerJobTrigger"
    assert second.value.trigger.job_type == kind
