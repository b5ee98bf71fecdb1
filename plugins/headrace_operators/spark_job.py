"""SparkJobOperator: run a ``spark_jobs`` entry point on local Spark, Glue, EMR Serverless or EMR on EC2.

One interface on every engine: the task names a job module and its argv; settings choose where
it runs (``PIPELINE_TARGET``, ``HEADRACE_SPARK_ENGINE``). Runs are durable: each task instance
has a deterministic run key (:mod:`include.job_names`), and a retried task finds the run an
earlier try started — still running, so it waits on it, or finished, so it returns it — instead
of starting a duplicate. Waiting on AWS is deferred to the triggerer with the Amazon provider's
triggers (subclassed in :mod:`headrace_operators.job_triggers` where they cannot stop the run);
``on_kill`` stops the run, and so does the trigger's when the deferred task is killed. XCom
gets small ids, never data.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from headrace_operators.job_budget import enforce_budget_or_fail
from include import spark_job_requests
from include.artifact_upload import upload_if_changed
from include.config import DATASETS_DIR, Settings, dataset_capacity, get_settings
from include.job_names import TaskRunIdentity
from include.job_tags import job_tags
from include.local_spark_runner import LocalSparkJobError, LocalSparkRunner
from spark_jobs.dataset_spec import SparkCapacity

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

# The next_method Airflow resumes a task with when its trigger failed (airflow.models.trigger).
TRIGGER_FAIL_REPR = "__fail__"
# How long past the job's own timeout a wait goes on: queueing and start-up are not runtime.
WAIT_ALLOWANCE = 0.25
LOCAL_POLL_INTERVAL = 0.5


@dataclass
class SparkJobRun:
    """One run of a Spark job as the operator tracks it; :meth:`as_xcom` is what tasks get."""

    engine: str
    job: str
    run_key: str
    run_id: str
    state: str
    # The engine's resource the run lives in: Glue job name, application id or cluster id.
    resource: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def as_xcom(self) -> dict[str, str]:
        return {
            "engine": self.engine,
            "job": self.job,
            "run_key": self.run_key,
            "run_id": self.run_id,
            "state": self.state,
            **self.resource,
        }

    @classmethod
    def from_xcom(cls, payload: dict[str, str]) -> SparkJobRun:
        payload = dict(payload)
        fixed = {key: payload.pop(key) for key in ("engine", "job", "run_key", "run_id", "state")}
        return cls(**fixed, resource=payload)


class _RemoteEngine:
    """The verbs the operator needs from one AWS engine; one subclass per engine."""

    name: ClassVar[str]
    success_states: ClassVar[frozenset[str]]
    # Runs in these states are waited on or returned, never started again.
    reusable_states: ClassVar[frozenset[str]]
    # The state a run is in just after its start call, before anything describes it.
    initial_state: ClassVar[str]

    def __init__(self, operator: SparkJobOperator, settings: Settings):
        self.operator = operator
        self.settings = settings
        self.client = operator.hook.conn

    def make_run(
        self, identity: TaskRunIdentity, run_id: str, state: str, reason: str = ""
    ) -> SparkJobRun:
        return SparkJobRun(
            engine=self.name,
            job=self.operator.job,
            run_key=identity.run_key,
            run_id=run_id,
            state=state,
            resource=self.resource(),
            reason=reason,
        )

    def resource(self) -> dict[str, str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Make sure what every run needs exists (job definitions, network, encryption)."""

    def find(self, identity: TaskRunIdentity) -> SparkJobRun | None:
        """The newest run of this task instance, in any state; ``None`` if it never ran."""
        raise NotImplementedError

    def start(self, identity: TaskRunIdentity, job_args: list[str]) -> SparkJobRun:
        raise NotImplementedError

    def describe(self, run: SparkJobRun) -> SparkJobRun:
        raise NotImplementedError

    def trigger(self, run: SparkJobRun, waiter_delay: int, max_attempts: int) -> BaseTrigger:
        raise NotImplementedError

    def stop(self, run: SparkJobRun) -> None:
        raise NotImplementedError


class _GlueEngine(_RemoteEngine):
    name = "glue"
    success_states = frozenset({"SUCCEEDED"})
    reusable_states = frozenset({"STARTING", "RUNNING", "WAITING", "SUCCEEDED"})
    initial_state = "STARTING"

    @property
    def job_name(self) -> str:
        return spark_job_requests.glue_job_name(self.operator.job)

    def resource(self) -> dict[str, str]:
        return {"job_name": self.job_name}

    def prepare(self) -> None:
        settings = self.settings
        # Named after the KMS key, so an existing one is the right one.
        with contextlib.suppress(self.client.exceptions.AlreadyExistsException):
            self.client.create_security_configuration(
                **spark_job_requests.build_glue_security_configuration_request(settings)
            )

        connection_name = spark_job_requests.glue_network_connection_name(settings)
        try:
            self.client.get_connection(Name=connection_name, HidePassword=True)
        except self.client.exceptions.EntityNotFoundException:
            subnet_id = settings.aws.subnet_ids[0]
            subnets = self.operator.ec2_client.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
            request = spark_job_requests.build_glue_network_connection_request(
                settings, availability_zone=subnets[0]["AvailabilityZone"]
            )
            # A concurrent task may have created it meanwhile.
            with contextlib.suppress(self.client.exceptions.AlreadyExistsException):
                self.client.create_connection(**request)

        job_request = spark_job_requests.build_glue_job_request(
            settings,
            self.operator.job,
            package=self.operator.jobs_package,
            # Not the dataset's: every dataset shares this definition, and each run carries its
            # own Timeout and workers (a per-dataset value would rewrite it run after run).
            timeout=self.operator.timeout or spark_job_requests.DEFAULT_TIMEOUT,
        )
        try:
            existing = self.client.get_job(JobName=self.job_name)["Job"]
        except self.client.exceptions.EntityNotFoundException:
            try:
                self.client.create_job(**job_request)
                self.operator.log.info("Created Glue job %s", self.job_name)
                return
            except self.client.exceptions.AlreadyExistsException:
                existing = self.client.get_job(JobName=self.job_name)["Job"]
        if existing.get("Description") != job_request["Description"]:
            self.client.update_job(**spark_job_requests.build_glue_update_job_request(job_request))
            self.operator.log.info("Updated Glue job %s to the current definition", self.job_name)

    def find(self, identity: TaskRunIdentity) -> SparkJobRun | None:
        key_argument = spark_job_requests.GLUE_RUN_KEY_ARGUMENT
        pages = self.client.get_paginator("get_job_runs").paginate(JobName=self.job_name)
        try:
            matching = [
                job_run
                for page in pages
                for job_run in page["JobRuns"]
                if (job_run.get("Arguments") or {}).get(key_argument) == identity.run_key
            ]
        except self.client.exceptions.EntityNotFoundException:
            return None  # the Glue job itself does not exist yet
        if not matching:
            return None
        newest = max(matching, key=lambda job_run: str(job_run.get("StartedOn", "")))
        return self.make_run(
            identity, newest["Id"], newest["JobRunState"], newest.get("ErrorMessage", "")
        )

    def start(self, identity: TaskRunIdentity, job_args: list[str]) -> SparkJobRun:
        request = spark_job_requests.build_glue_start_job_run_request(
            self.settings,
            self.operator.job,
            job_args,
            identity.run_key,
            timeout=self.operator.run_timeout,
            capacity=self.operator.capacity.glue,
        )
        self.operator._enforce_budget(self.settings, "glue", "StartJobRun", request)
        run_id = self.client.start_job_run(**request)["JobRunId"]
        return self.make_run(identity, run_id, self.initial_state)

    def describe(self, run: SparkJobRun) -> SparkJobRun:
        job_run = self.client.get_job_run(
            JobName=self.job_name, RunId=run.run_id, PredecessorsIncluded=False
        )["JobRun"]
        return replace(run, state=job_run["JobRunState"], reason=job_run.get("ErrorMessage", ""))

    def trigger(self, run: SparkJobRun, waiter_delay: int, max_attempts: int) -> BaseTrigger:
        from headrace_operators.job_triggers import GlueJobRunTrigger

        return GlueJobRunTrigger(
            job_name=self.job_name,
            run_id=run.run_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=max_attempts,
            aws_conn_id=self.operator.aws_conn_id,
            region_name=self.settings.aws.region,
        )

    def stop(self, run: SparkJobRun) -> None:
        response = self.client.batch_stop_job_run(JobName=self.job_name, JobRunIds=[run.run_id])
        for error in response.get("Errors", []):
            self.operator.log.error(
                "Glue did not stop run %s: %s", run.run_id, error.get("ErrorDetail")
            )


class _EmrServerlessEngine(_RemoteEngine):
    name = "emr_serverless"
    success_states = frozenset({"SUCCESS"})
    reusable_states = frozenset(
        {"SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "QUEUED", "SUCCESS"}
    )
    initial_state = "SUBMITTED"
    # How far back a retry looks for its runs; older ones are not re-attached to.
    lookback = timedelta(days=30)

    @property
    def application_id(self) -> str:
        return self.settings.aws.emr_serverless_application_id

    def resource(self) -> dict[str, str]:
        return {"application_id": self.application_id}

    def _runs_named(self, name: str) -> list[dict]:
        # Whole seconds: the API's timestamp format, and what moto parses too.
        since = (datetime.now(UTC) - self.lookback).replace(microsecond=0)
        pages = self.client.get_paginator("list_job_runs").paginate(
            applicationId=self.application_id, createdAtAfter=since
        )
        try:
            return [run for page in pages for run in page["jobRuns"] if run.get("name") == name]
        except self.client.exceptions.ResourceNotFoundException:
            # No such application (moto also says so of one without runs yet): nothing to
            # re-attach to, and StartJobRun reports a missing application in its own words.
            return []

    def find(self, identity: TaskRunIdentity) -> SparkJobRun | None:
        runs = self._runs_named(identity.name_for("emr_serverless_name"))
        if not runs:
            return None
        newest = max(runs, key=lambda run: str(run.get("createdAt", "")))
        return self.make_run(
            identity, newest["id"], newest["state"], newest.get("stateDetails") or ""
        )

    def start(self, identity: TaskRunIdentity, job_args: list[str]) -> SparkJobRun:
        name = identity.name_for("emr_serverless_name")
        # One token per start: a repeated call (a zombie try racing its retry) gets the same
        # run back, while a start after a failed run gets a new token, not the failed run.
        attempt = len(self._runs_named(name))
        request = spark_job_requests.build_emr_serverless_start_job_run_request(
            self.settings,
            self.operator.job,
            job_args,
            name=name,
            client_token=identity.name_for("emr_serverless_client_token", suffix=str(attempt)),
            package=self.operator.jobs_package,
            timeout=self.operator.run_timeout,
            executors=self.operator.capacity.emr_serverless,
            tags=self.operator.job_tags(identity),
        )
        # A run may take all of the application's capacity: that is its worst case.
        application = self.client.get_application(applicationId=self.application_id)
        self.operator._enforce_budget(
            self.settings,
            "emr-serverless",
            "StartJobRun",
            request,
            maximum_capacity=application["application"].get("maximumCapacity"),
        )
        run_id = self.client.start_job_run(**request)["jobRunId"]
        return self.make_run(identity, run_id, self.initial_state)

    def describe(self, run: SparkJobRun) -> SparkJobRun:
        job_run = self.client.get_job_run(applicationId=self.application_id, jobRunId=run.run_id)[
            "jobRun"
        ]
        return replace(run, state=job_run["state"], reason=job_run.get("stateDetails") or "")

    def trigger(self, run: SparkJobRun, waiter_delay: int, max_attempts: int) -> BaseTrigger:
        from airflow.providers.amazon.aws.triggers.emr import EmrServerlessStartJobTrigger

        # This trigger takes no region: its hook uses the connection's (or AWS_DEFAULT_REGION).
        # The provider's own on_kill cancels the run when the deferred task is killed.
        return EmrServerlessStartJobTrigger(
            application_id=self.application_id,
            job_id=run.run_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=max_attempts,
            aws_conn_id=self.operator.aws_conn_id,
            cancel_on_kill=True,
        )

    def stop(self, run: SparkJobRun) -> None:
        self.client.cancel_job_run(applicationId=self.application_id, jobRunId=run.run_id)


class _EmrStepEngine(_RemoteEngine):
    name = "emr_ec2"
    success_states = frozenset({"COMPLETED"})
    reusable_states = frozenset({"PENDING", "RUNNING", "COMPLETED"})
    initial_state = "PENDING"

    @property
    def cluster_id(self) -> str:
        return self.settings.aws.emr_cluster_id

    def resource(self) -> dict[str, str]:
        return {"cluster_id": self.cluster_id}

    def find(self, identity: TaskRunIdentity) -> SparkJobRun | None:
        name = identity.name_for("emr_step")
        pages = self.client.get_paginator("list_steps").paginate(ClusterId=self.cluster_id)
        steps = [step for page in pages for step in page["Steps"] if step.get("Name") == name]
        if not steps:
            return None
        newest = max(
            steps, key=lambda step: str(step["Status"].get("Timeline", {}).get("CreationDateTime"))
        )
        return self.make_run(
            identity, newest["Id"], newest["Status"]["State"], _step_reason(newest["Status"])
        )

    def start(self, identity: TaskRunIdentity, job_args: list[str]) -> SparkJobRun:
        request = spark_job_requests.build_emr_add_steps_request(
            self.settings,
            self.operator.job,
            job_args,
            step_name=identity.name_for("emr_step"),
            package=self.operator.jobs_package,
            executors=self.operator.capacity.emr_step,
        )
        step_id = self.client.add_job_flow_steps(**request)["StepIds"][0]
        return self.make_run(identity, step_id, self.initial_state)

    def describe(self, run: SparkJobRun) -> SparkJobRun:
        status = self.client.describe_step(ClusterId=self.cluster_id, StepId=run.run_id)["Step"][
            "Status"
        ]
        return replace(run, state=status["State"], reason=_step_reason(status))

    def trigger(self, run: SparkJobRun, waiter_delay: int, max_attempts: int) -> BaseTrigger:
        from headrace_operators.job_triggers import EmrStepTrigger

        return EmrStepTrigger(
            job_flow_id=self.cluster_id,
            step_id=run.run_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=max_attempts,
            aws_conn_id=self.operator.aws_conn_id,
        )

    def stop(self, run: SparkJobRun) -> None:
        response = self.client.cancel_steps(
            ClusterId=self.cluster_id, StepIds=[run.run_id], StepCancellationOption="SEND_INTERRUPT"
        )
        for info in response.get("CancelStepsInfoList", []):
            if info.get("Status") == "FAILED":
                self.operator.log.error(
                    "EMR did not cancel step %s: %s", info.get("StepId"), info.get("Reason")
                )


def _step_reason(status: dict) -> str:
    details = status.get("FailureDetails") or {}
    parts = [details.get("Reason"), details.get("Message"), details.get("LogFile")]
    parts.append((status.get("StateChangeReason") or {}).get("Message"))
    return "; ".join(part for part in parts if part)


_ENGINES: dict[str, type[_RemoteEngine]] = {
    engine.name: engine for engine in (_GlueEngine, _EmrServerlessEngine, _EmrStepEngine)
}


class SparkJobOperator(BaseOperator):
    """
    Run a ``spark_jobs`` entry point where settings say: local Spark, Glue, EMR Serverless or EMR.

    The same task runs ``python -m spark_jobs.<job> <job_args>`` in a local subprocess when
    ``PIPELINE_TARGET=local``, and the same module with the same argv on the engine named by
    ``HEADRACE_SPARK_ENGINE`` when ``PIPELINE_TARGET=aws`` (the code is uploaded to the lake
    bucket's ``artifacts/spark_jobs/`` prefix when it changed). A retried task re-attaches to the
    run an earlier try started rather than starting another.

    Returns ``{"engine", "job", "run_key", "run_id", "state"}`` plus where the run lives:
    ``job_name`` (Glue), ``application_id`` (EMR Serverless), ``cluster_id`` (EMR on EC2) or
    ``log_path`` (local).

    :param job: module name under ``spark_jobs/``, e.g. ``"ingest"``. (templated)
    :param job_args: the job's argv, e.g. ``["--ds", "{{ ds }}"]``; on Glue it must be
        ``--key value`` pairs. (templated)
    :param dataset: the dataset the job works on: its spec's ``capacity.spark`` sizes the run
        (Glue workers, EMR executors) and gives its maximum runtime. ``None``: today's smallest
        sizes and a two-hour runtime.
    :param timeout: the job's maximum runtime; AWS stops it after this (Glue ``Timeout``, EMR
        Serverless ``executionTimeoutMinutes``), and the operator stops an EMR step or local
        job that runs longer. ``None``: the dataset's ``capacity.spark.max_runtime_minutes``.
    :param deferrable: wait on AWS in the triggerer rather than in a worker slot. The local
        target always waits in the worker, on a subprocess.
    :param poll_interval: seconds between status checks of an AWS run.
    :param aws_conn_id: the Airflow connection for AWS credentials; ``None`` for boto3's
        default chain (MWAA's execution role).
    :param asset_extra: the ``extra`` of every outlet Asset event the task emits on success,
        e.g. ``{"ds": "{{ params.ds }}"}``. (templated)
    :param partition_key: the partition key of every outlet Asset event (the day a job wrote),
        so the DAGs scheduled per partition on the Asset run once for that day. (templated)
    """

    template_fields: Sequence[str] = ("job", "job_args", "asset_extra", "partition_key")
    template_fields_renderers = {"job_args": "json", "asset_extra": "json"}
    ui_color = "#f4e3c1"

    # The package entry points are modules of; tests point it at their fixture jobs.
    jobs_package: ClassVar[str] = spark_job_requests.JOBS_PACKAGE
    # Where the dataset specs are; tests point it at their own.
    datasets_dir: ClassVar[Path] = DATASETS_DIR

    def __init__(
        self,
        *,
        job: str,
        job_args: Sequence[str] | None = None,
        dataset: str | None = None,
        timeout: timedelta | None = None,
        deferrable: bool = True,
        poll_interval: float = 30,
        aws_conn_id: str | None = "aws_default",
        asset_extra: dict[str, Any] | None = None,
        partition_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.job_args = job_args or []
        self.dataset = dataset
        self.asset_extra = asset_extra or {}
        self.partition_key = partition_key
        self.timeout = timeout
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.aws_conn_id = aws_conn_id
        # State kept for on_kill, set by execute.
        self._spark_run: SparkJobRun | None = None
        self._local_run_key: str | None = None

    # --- hooks ---------------------------------------------------------------------------

    @cached_property
    def engine_name(self) -> str:
        """``local``, or the AWS engine from settings: ``glue``, ``emr_serverless``, ``emr_ec2``."""
        settings = get_settings()
        return "local" if settings.is_local else settings.aws.spark_engine

    @cached_property
    def hook(self) -> AwsBaseHook | None:
        """The Amazon provider hook of the configured engine; ``None`` on the local target."""
        if self.engine_name == "local":
            return None
        # Imported here: the provider pulls in boto3, and DAG files import this module.
        from airflow.providers.amazon.aws.hooks.emr import EmrHook, EmrServerlessHook
        from airflow.providers.amazon.aws.hooks.glue import GlueJobHook

        region = get_settings().aws.region
        if self.engine_name == "glue":
            return GlueJobHook(aws_conn_id=self.aws_conn_id, region_name=region)
        if self.engine_name == "emr_serverless":
            return EmrServerlessHook(aws_conn_id=self.aws_conn_id, region_name=region)
        return EmrHook(aws_conn_id=self.aws_conn_id, emr_conn_id=None, region_name=region)

    @cached_property
    def s3_client(self):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id, region_name=get_settings().aws.region).conn

    @cached_property
    def ec2_client(self):
        from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook

        return EC2Hook(
            aws_conn_id=self.aws_conn_id,
            region_name=get_settings().aws.region,
            api_type="client_type",
        ).conn

    @cached_property
    def capacity(self) -> SparkCapacity:
        """The run's size: the dataset spec's ``capacity.spark``, or today's defaults."""
        if not self.dataset:
            return SparkCapacity()
        return dataset_capacity(self.dataset, self.datasets_dir).spark

    def job_tags(self, identity: TaskRunIdentity) -> dict[str, str]:
        """The run's cost allocation tags (:func:`include.job_tags.job_tags`): project, the
        dataset if any, the task's DAG and run, and the spec's ``tags:``."""
        return job_tags(
            self.dataset,
            dag_id=identity.dag_id,
            run_id=identity.run_id,
            datasets_dir=self.datasets_dir,
        )

    @property
    def run_timeout(self) -> timedelta:
        """The job's maximum runtime: ``timeout`` if given, else the dataset's."""
        if self.timeout is not None:
            return self.timeout
        return timedelta(minutes=self.capacity.max_runtime_minutes)

    def _enforce_budget(
        self, settings: Settings, service: str, operation: str, request: dict, **bounds: Any
    ) -> None:
        """Log the run's worst-case cost; fail the task, starting nothing, when it is over the
        dataset's budget (its spec's ``cost:`` block; no dataset: the default) or cannot be
        priced."""
        enforce_budget_or_fail(
            service,
            operation,
            request,
            dataset=self.dataset,
            datasets_dir=self.datasets_dir,
            region=settings.aws.region,
            log=self.log,
            **bounds,
        )

    @cached_property
    def _engine(self) -> _RemoteEngine:
        return _ENGINES[self.engine_name](self, get_settings())

    @cached_property
    def local_runner(self) -> LocalSparkRunner:
        return LocalSparkRunner()

    # --- execution -----------------------------------------------------------------------

    def _checked_args(self) -> list[str]:
        if isinstance(self.job_args, str | bytes) or not isinstance(self.job_args, Sequence):
            raise TypeError(
                f"job_args must be a list of strings, got {type(self.job_args).__name__}: "
                f"{self.job_args!r}"
            )
        return [str(arg) for arg in self.job_args]

    def _max_wait(self) -> float:
        return self.run_timeout.total_seconds() * (1 + WAIT_ALLOWANCE)

    def _set_asset_extra(self, context: Context) -> None:
        # Emitted only if the task succeeds; set again after a deferral (a new context).
        for outlet in self.outlets:
            if self.asset_extra:
                context["outlet_events"][outlet].extra = dict(self.asset_extra)
            if self.partition_key:
                context["outlet_events"][outlet].add_partitions(self.partition_key)

    def execute(self, context: Context) -> dict[str, str]:
        # A bad capacity block in the dataset's spec fails here, before anything starts.
        _ = self.capacity
        self._set_asset_extra(context)
        identity = TaskRunIdentity.from_context(context)
        job_args = self._checked_args()
        if self.engine_name == "local":
            return self._execute_local(identity, job_args)

        engine = self._engine
        existing = engine.find(identity)
        if existing is not None and existing.state in engine.reusable_states:
            self.log.info(
                "Re-attaching to %s run %s of %s (%s), started by an earlier try",
                engine.name,
                existing.run_id,
                self.job,
                existing.state,
            )
            run = existing
        else:
            if existing is not None:
                self.log.info(
                    "The earlier %s run %s of %s ended %s: starting a new one",
                    engine.name,
                    existing.run_id,
                    self.job,
                    existing.state,
                )
            self._upload_artifacts()
            engine.prepare()
            run = engine.start(identity, job_args)
            self.log.info(
                "Started %s run %s of %s with run key %s",
                engine.name,
                run.run_id,
                self.job,
                run.run_key,
            )
        self._spark_run = run

        if run.state in engine.success_states:
            return run.as_xcom()
        if self.deferrable:
            waiter_delay = max(1, int(self.poll_interval))
            self.defer(
                trigger=engine.trigger(
                    run, waiter_delay, max(1, math.ceil(self._max_wait() / waiter_delay))
                ),
                method_name="execute_complete",
                kwargs={"run": run.as_xcom()},
            )
        return self._wait(engine, run)

    def _wait(self, engine: _RemoteEngine, run: SparkJobRun) -> dict[str, str]:
        deadline = time.monotonic() + self._max_wait()
        while True:
            run = engine.describe(run)
            self._spark_run = run
            if run.state in engine.success_states:
                return run.as_xcom()
            if run.state not in engine.reusable_states:
                raise AirflowException(self._failure_message(run))
            if time.monotonic() >= deadline:
                engine.stop(run)
                raise AirflowException(
                    f"{engine.name} run {run.run_id} of {self.job} still {run.state} after "
                    f"{self._max_wait():.0f}s (timeout {self.run_timeout}); stopped it"
                )
            self.log.info("%s run %s of %s is %s", engine.name, run.run_id, self.job, run.state)
            time.sleep(self.poll_interval)

    def _failure_message(self, run: SparkJobRun) -> str:
        reason = run.reason or "no reason given"
        return f"{run.engine} run {run.run_id} of Spark job {self.job} ended {run.state}: {reason}"

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, run: dict | None = None
    ) -> dict[str, str]:
        """Resume after the trigger: check the final state of the run and return its ids."""
        from airflow.providers.amazon.aws.utils import validate_execute_complete_event

        event = validate_execute_complete_event(event)
        self._set_asset_extra(context)
        engine = self._engine
        if run is not None:
            tracked = SparkJobRun.from_xcom(run)
        else:
            # Resumed without the defer kwargs (dag.test() in Airflow 3.0 drops them): the run
            # key finds the run again.
            identity = TaskRunIdentity.from_context(context)
            tracked = engine.find(identity)
            if tracked is None:
                raise AirflowException(
                    f"no {engine.name} run of {self.job} with run key {identity.run_key}; "
                    f"trigger event: {event}"
                )
        final = engine.describe(tracked)
        self._spark_run = final
        if final.state in engine.success_states:
            return final.as_xcom()
        if final.state in engine.reusable_states:
            # The trigger gave up while the run goes on (its attempts cover the run's wait):
            # stop it, as the polling path does at its deadline.
            engine.stop(final)
            raise AirflowException(
                f"{engine.name} run {final.run_id} of {self.job} still {final.state} after its "
                f"wait ({event.get('message', 'the trigger ended')}); stopped it"
            )
        raise AirflowException(self._failure_message(final))

    def resume_execution(
        self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context
    ) -> Any:
        """Fail with the run's own failure reason when the provider's trigger failed.

        The provider's triggers raise on a failed run, and Airflow then fails the task with the
        trigger's traceback — for Glue, only the state. This looks the run up again by its run
        key, raises with its error message, stops it if the trigger gave up while it still ran,
        and succeeds if the run in fact succeeded.
        """
        if next_method == TRIGGER_FAIL_REPR and self.engine_name != "local":
            engine = self._engine
            found = engine.find(TaskRunIdentity.from_context(context))
            if found is not None:
                run = engine.describe(found)
                self._spark_run = run
                if run.state in engine.success_states:
                    self._set_asset_extra(context)
                    return run.as_xcom()
                if run.state in engine.reusable_states:
                    engine.stop(run)
                    error = (next_kwargs or {}).get("error", "trigger failure")
                    raise AirflowException(
                        f"the trigger gave up on {engine.name} run {run.run_id} of {self.job} "
                        f"({error}) while it was still {run.state}; stopped it"
                    )
                raise AirflowException(self._failure_message(run))
        return super().resume_execution(next_method, next_kwargs, context)

    def get_openlineage_facets_on_complete(self, task_instance):
        """OpenLineage (the provider calls it after the task succeeded): the partitions the job
        committed, read from their manifests (:mod:`include.lineage`), and the engine's run.
        None for a job without such lineage: the provider then reports the task's outlets."""
        from include.lineage import SPARK_JOB_LINEAGE, external_job_facet

        args = self._checked_args()
        ds = args[args.index("--ds") + 1] if "--ds" in args[:-1] else None
        lineage_of = SPARK_JOB_LINEAGE.get(self.job)
        if lineage_of is None or not self.dataset or not ds:
            return None
        lineage = lineage_of(get_settings(), self.dataset, ds)
        run = self._spark_run
        if run is not None or self._local_run_key is not None:
            engine, run_id = (run.engine, run.run_id) if run else ("local", self._local_run_key)
            lineage.run_facets["externalQuery"] = external_job_facet(run_id, f"spark-{engine}")
        return lineage

    def on_kill(self) -> None:
        """Stop the run this task started or re-attached to: the remote run or the local group."""
        if self._local_run_key is not None:
            self.log.info("Stopping local Spark run %s", self._local_run_key)
            self.local_runner.kill(self._local_run_key)
        elif self._spark_run is not None:
            self.log.info("Stopping %s run %s", self._spark_run.engine, self._spark_run.run_id)
            self._engine.stop(self._spark_run)

    # --- local ---------------------------------------------------------------------------

    def _execute_local(self, identity: TaskRunIdentity, job_args: list[str]) -> dict[str, str]:
        from headrace_operators.local_job_loop import run_local_job

        run_key = identity.run_key
        self._local_run_key = run_key
        runner = self.local_runner
        module = f"{self.jobs_package}.{self.job}"

        def start() -> tuple[str, bool, str]:
            status, started = runner.start_or_attach(
                module, job_args, run_key, max_runtime_s=self.run_timeout.total_seconds()
            )
            return status.state, started, status.log_path

        final = run_local_job(
            self.log,
            f"local Spark job {module} (run key {run_key})",
            start=start,
            wait=lambda timeout: runner.wait(
                run_key, timeout=timeout, poll_interval=LOCAL_POLL_INTERVAL
            ),
            stop=lambda: runner.kill(run_key),
            timeout=self.run_timeout,
            job_error=LocalSparkJobError,
        )
        return {
            "engine": "local",
            "job": self.job,
            "run_key": run_key,
            "run_id": run_key,
            "state": final.state,
            "log_path": final.log_path,
        }

    # --- code upload ---------------------------------------------------------------------

    def _upload_artifacts(self) -> None:
        """Put the entry point and package zip in S3 where they are absent or changed."""
        settings = get_settings()
        artifacts = spark_job_requests.spark_job_artifacts(
            settings, self.job, package=self.jobs_package
        )
        for uri, data in artifacts.items():
            upload_if_changed(self.s3_client, uri, data, kms_key_arn=settings.aws.kms_key_arn)
