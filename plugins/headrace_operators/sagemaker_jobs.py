"""SageMaker training, tuning and processing jobs with one interface on both targets, durable on
retry.

The task names a dataset, the features partition (``ds``) and hyperparameters;
:mod:`include.training_jobs` builds the CreateTrainingJob / CreateHyperParameterTuningJob body.
On aws the body goes to SageMaker through the Amazon provider's hook and the wait is deferred
to the triggerer (the provider's ``SageMakerTrigger``, which our ``SageMakerJobTrigger`` extends
to stop the job when the deferred task is killed); locally :mod:`include.local_sagemaker`
runs the very same body on this machine.

Durable: the job name is derived from the task instance (:mod:`include.job_names`), never from
the try number or the clock, so a retried task finds the job the earlier try started — running,
so it waits on it, or finished, so it returns it — instead of starting a duplicate (the stock
operators' ``action_if_job_exists="timestamp"`` starts a second one). SageMaker never reuses a
job name, so after a failed or stopped job a retry starts the next generation (``-r2``,
``-r3``…), found again the same way. ``on_kill`` stops the job. XCom gets names and URIs, never
data.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from headrace_operators.job_budget import enforce_budget_or_fail
from include import training_jobs
from include.config import (
    DATASETS_DIR,
    Settings,
    dataset_capacity,
    get_settings,
    with_training_capacity,
)
from include.job_names import TaskRunIdentity
from include.job_tags import job_tags

if TYPE_CHECKING:
    from airflow.sdk import Context

    from spark_jobs.dataset_spec import Capacity

# The most generations a task may start: a job that fails this often needs a person, not a retry.
MAX_GENERATIONS = 10
WAIT_ALLOWANCE = 0.25
LOCAL_POLL_INTERVAL = 1.0


def training_job_result(description: dict, ds: str) -> dict[str, Any]:
    """What a finished training job hands downstream through XCom: names, URIs, metrics."""
    return {
        "job_name": description["TrainingJobName"],
        "model_uri": description.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        "final_metrics": {
            metric["MetricName"]: metric["Value"]
            for metric in description.get("FinalMetricDataList", [])
        },
        # The entry point's own flags; script mode's keys are the container's business.
        "hyperparameters": {
            key: value
            for key, value in description.get("HyperParameters", {}).items()
            if not key.startswith(("sagemaker_", "_"))
        },
        "ds": ds,
        # The content-addressed training code tarball (aws): the code version of the model.
        "code_uri": next(
            (
                channel["DataSource"]["S3DataSource"]["S3Uri"]
                for channel in description.get("InputDataConfig", [])
                if channel.get("ChannelName") == "code"
            ),
            None,
        ),
    }


class _SageMakerJobOperator(BaseOperator):
    """What training and tuning share: naming, re-attach, deferral, stop. One subclass each."""

    job_type: ClassVar[str]
    naming_rule: ClassVar[str]
    # The SageMaker call that starts the job: its request is what the cost estimate prices.
    create_operation: ClassVar[str]
    # SageMaker's status member, Describe/Create/Stop verbs of the job type.
    status_key: ClassVar[str]
    running_states: ClassVar[frozenset[str]] = frozenset({"InProgress", "Stopping"})
    # Where the dataset specs are; tests point it at their own.
    datasets_dir: ClassVar[Path] = DATASETS_DIR

    template_fields: Sequence[str] = ("dataset", "ds", "hyperparameters")
    template_fields_renderers: ClassVar[dict[str, str]] = {"hyperparameters": "json"}
    ui_color = "#d5e8d4"

    def __init__(
        self,
        *,
        dataset: str,
        ds: str,
        hyperparameters: dict[str, Any] | None = None,
        aws_conn_id: str | None = "aws_default",
        poll_interval: int = 30,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        """
        :param dataset: the dataset whose features the job trains on (``include/datasets/``);
            its spec's ``capacity:`` block sizes the job (:meth:`job_settings`).
        :param ds: the features partition, YYYY-MM-DD. (templated)
        :param hyperparameters: overrides of :data:`include.training_jobs.DEFAULT_HYPERPARAMETERS`,
            as training/train.py flags without dashes. (templated)
        :param aws_conn_id: the Airflow connection of the aws target.
        :param poll_interval: seconds between status checks on aws.
        :param deferrable: wait on aws in the triggerer rather than in a worker slot.
        """
        super().__init__(**kwargs)
        self.dataset = dataset
        self.ds = ds
        self.hyperparameters = hyperparameters or {}
        self.aws_conn_id = aws_conn_id
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        # State kept for on_kill, set by execute.
        self._job_name: str | None = None
        # The task instance whose job this is (its tags name the DAG and run), set by execute.
        self._identity: TaskRunIdentity | None = None
        # The finished job's description, kept for the OpenLineage facets.
        self._description: dict | None = None

    # --- the verbs one job type needs ----------------------------------------------------

    def build_request(self, settings: Settings, name: str, source_uri: str | None) -> dict:
        raise NotImplementedError

    def job_settings(self, settings: Settings) -> Settings:
        """The settings this job is built and waited on with: the process settings with the
        dataset's ``capacity.training`` (instance type, count, runtime), which wins over
        ``HEADRACE_TRAINING_*`` where the spec sets it."""
        return with_training_capacity(settings, self.capacity.training)

    # The local runtime's verbs; local_job_loop.run_local_job runs them, as it does the Spark
    # operator's and the quality gate's local jobs.
    @property
    def local_job_error(self) -> type[Exception]:
        """What :meth:`wait_local` raises for a job that failed or was stopped."""
        from include.local_jobs import LocalJobError

        return LocalJobError

    def start_local(self, request: dict, work_root: Path) -> tuple[dict, bool]:
        """Start the local job ``request`` names, or find the one an earlier try started: its
        description and whether this call started it."""
        raise NotImplementedError

    def wait_local(self, name: str, work_root: Path, timeout: float) -> dict:
        """The finished job's description; ``TimeoutError`` while it still runs after
        ``timeout`` seconds, ``local_job_error`` when it failed or was stopped."""
        raise NotImplementedError

    def stop_local(self, name: str, work_root: Path) -> None:
        raise NotImplementedError

    def run_local(self, settings: Settings, name: str, request: dict) -> dict:
        """Run the local job to its end: started or re-attached to, waited on as long as the job
        may take on aws, stopped when that passes; the task fails with the job's own message."""
        from datetime import timedelta

        from headrace_operators.local_job_loop import run_local_job

        work_root = settings.local_runs_root

        def start() -> tuple[str, bool, str]:
            description, started = self.start_local(request, work_root)
            return description[self.status_key], started, description["LogPath"]

        return run_local_job(
            self.log,
            f"local {self.job_type} job {name}",
            start=start,
            wait=lambda timeout: self.wait_local(name, work_root, timeout),
            stop=lambda: self.stop_local(name, work_root),
            timeout=timedelta(seconds=self.max_wait_s(settings) * (1 + WAIT_ALLOWANCE)),
            job_error=self.local_job_error,
        )

    def describe(self, name: str) -> dict | None:
        raise NotImplementedError

    def create(self, request: dict) -> None:
        raise NotImplementedError

    def stop(self, name: str) -> None:
        raise NotImplementedError

    def result(self, description: dict) -> dict[str, Any]:
        raise NotImplementedError

    def source_artifact(self, settings: Settings) -> tuple[str | None, bytes | None]:
        """The code tarball to upload on aws (``(None, None)``: none)."""
        return training_jobs.source_artifact(settings)

    # --- shared --------------------------------------------------------------------------

    def job_tags(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The job's cost allocation tags (:func:`include.job_tags.job_tags`): project, dataset,
        the DAG and run of the task :meth:`execute` runs, the spec's ``tags:`` and ``extra``."""
        if self._identity is None:
            raise AirflowException("a job's tags name its DAG run: build requests in execute")
        return job_tags(
            self.dataset,
            dag_id=self._identity.dag_id,
            run_id=self._identity.run_id,
            extra=extra,
            datasets_dir=self.datasets_dir,
        )

    @cached_property
    def capacity(self) -> Capacity:
        """The dataset spec's ``capacity:`` block."""
        return dataset_capacity(self.dataset, self.datasets_dir)

    @cached_property
    def hook(self):
        # Imported here: the provider pulls in boto3, and DAG files import this module.
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

        return SageMakerHook(aws_conn_id=self.aws_conn_id, region_name=get_settings().aws.region)

    def max_wait_s(self, settings: Settings) -> float:
        """How long one job of this kind may take on aws, queueing for spot capacity included."""
        return settings.training.max_wait_s

    def cost_bounds(self, settings: Settings) -> dict[str, Any]:
        """What bounds the job's cost that its request does not say (none: it says it all)."""
        return {}

    def _enforce_budget(self, settings: Settings, request: dict) -> None:
        """Log the request's worst-case cost; fail the task, starting nothing, when it is over
        the dataset's budget (its spec's ``cost:`` block) or cannot be priced."""
        enforce_budget_or_fail(
            "sagemaker",
            self.create_operation,
            request,
            dataset=self.dataset,
            datasets_dir=self.datasets_dir,
            region=settings.aws.region,
            log=self.log,
            **self.cost_bounds(settings),
        )

    def _check_ds(self) -> str:
        from datetime import date

        try:
            return date.fromisoformat(str(self.ds)).isoformat()
        except ValueError:
            raise AirflowException(
                f"ds={self.ds!r} is not a date (YYYY-MM-DD): which features partition to train on"
            ) from None

    def _name(self, identity: TaskRunIdentity, generation: int) -> str:
        suffix = "" if generation == 1 else f"r{generation}"
        return identity.name_for(self.naming_rule, suffix=suffix)

    def execute(self, context: Context) -> dict[str, Any]:
        settings = self.job_settings(get_settings())
        self.ds = self._check_ds()
        identity = TaskRunIdentity.from_context(context)
        self._identity = identity
        if settings.is_local:
            # The local runtime re-attaches by name and restarts failed jobs under it.
            name = self._name(identity, 1)
            self._job_name = name
            request = self.build_request(settings, name, None)
            return self._finished(self.run_local(settings, name, request))

        name, description = self._find_or_start(settings, identity)
        self._job_name = name
        if description[self.status_key] == "Completed":
            return self._finished(description)
        max_wait = self.max_wait_s(settings) * (1 + WAIT_ALLOWANCE)
        if self.deferrable:
            from headrace_operators.job_triggers import SageMakerJobTrigger

            delay = max(1, int(self.poll_interval))
            self.defer(
                trigger=SageMakerJobTrigger(
                    job_name=name,
                    job_type=self.job_type,
                    waiter_delay=delay,
                    waiter_max_attempts=max(1, math.ceil(max_wait / delay)),
                    aws_conn_id=self.aws_conn_id,
                    region_name=settings.aws.region,
                ),
                method_name="execute_complete",
                kwargs={"job_name": name},
            )
        deadline = time.monotonic() + max_wait
        while description[self.status_key] in self.running_states:
            if time.monotonic() >= deadline:
                self.stop(name)
                raise AirflowException(f"{self.job_type} job {name} still running; stopped it")
            time.sleep(self.poll_interval)
            description = self.describe(name)
        return self._checked(name, description)

    def _find_or_start(self, settings: Settings, identity: TaskRunIdentity) -> tuple[str, dict]:
        """The job of this task instance: the newest generation if it is running or done, else
        a new generation started now."""
        for generation in range(1, MAX_GENERATIONS + 1):
            name = self._name(identity, generation)
            description = self.describe(name)
            if description is None:
                source_uri, source = self.source_artifact(settings)
                request = self.build_request(settings, name, source_uri)
                self._enforce_budget(settings, request)
                if source_uri is not None:
                    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

                    from include.artifact_upload import upload_if_changed

                    s3 = S3Hook(aws_conn_id=self.aws_conn_id, region_name=settings.aws.region)
                    upload_if_changed(
                        s3.conn, source_uri, source, kms_key_arn=settings.aws.kms_key_arn
                    )
                self.create(request)
                self.log.info("Started SageMaker %s job %s", self.job_type, name)
                return name, self.describe(name) or {self.status_key: "InProgress"}
            state = description[self.status_key]
            if state in self.running_states or state == "Completed":
                self.log.info(
                    "Re-attaching to SageMaker %s job %s (%s), started by an earlier try",
                    self.job_type,
                    name,
                    state,
                )
                return name, description
            self.log.info(
                "SageMaker %s job %s ended %s; trying the next generation",
                self.job_type,
                name,
                state,
            )
        raise AirflowException(
            f"{MAX_GENERATIONS} {self.job_type} jobs of this task ended without success; "
            "look at the last one's FailureReason before clearing the task"
        )

    def _finished(self, description: dict) -> dict[str, Any]:
        """The completed job's result; its description is kept for OpenLineage."""
        self._description = description
        return self.result(description)

    def lineage_inputs(self) -> list[str]:
        """Lake URIs the job reads that its description does not name (none)."""
        return []

    def get_openlineage_facets_on_complete(self, task_instance):
        """OpenLineage (the provider calls it after the task succeeded): the lake data the job
        read and wrote, and its name, from its description (:mod:`include.lineage`)."""
        if self._description is None:
            return None
        from include.lineage import sagemaker_job_lineage

        return sagemaker_job_lineage(
            self.job_type, self._description, extra_inputs=self.lineage_inputs()
        )

    def _checked(self, name: str, description: dict | None) -> dict[str, Any]:
        if description is None:
            raise AirflowException(f"SageMaker {self.job_type} job {name} not found")
        state = description[self.status_key]
        if state != "Completed":
            raise AirflowException(
                f"SageMaker {self.job_type} job {name} ended {state}: "
                f"{description.get('FailureReason', 'no reason given')}"
            )
        return self._finished(description)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, job_name: str | None = None
    ) -> dict[str, Any]:
        """Resume after the trigger: check the job's final state and return its names and URIs."""
        from airflow.providers.amazon.aws.utils import validate_execute_complete_event

        event = validate_execute_complete_event(event)
        name = job_name or event.get("job_name")
        self._job_name = name
        description = self.describe(name)
        if description is not None and description[self.status_key] in self.running_states:
            # The trigger gave up (its attempts cover the job's wait): stop the job, as the
            # polling path does at its deadline, rather than leave it running unwatched.
            self.stop(name)
            raise AirflowException(
                f"{self.job_type} job {name} still running after its wait "
                f"({event.get('message', 'the trigger ended')}); stopped it"
            )
        return self._checked(name, description)

    def on_kill(self) -> None:
        """Stop the job this task started or re-attached to."""
        if self._job_name is None:
            return
        settings = get_settings()
        self.log.info("Stopping %s job %s", self.job_type, self._job_name)
        if settings.is_local:
            self.stop_local(self._job_name, settings.local_runs_root)
        else:
            self.stop(self._job_name)


class SageMakerTrainingJobOperator(_SageMakerJobOperator):
    """Train one model of ``dataset`` on a features partition: a SageMaker training job on aws,
    the local runtime locally. Returns ``{job_name, model_uri, final_metrics, hyperparameters}``.
    """

    job_type = "training"
    naming_rule = "sagemaker"
    status_key = "TrainingJobStatus"
    create_operation = "CreateTrainingJob"

    def build_request(self, settings: Settings, name: str, source_uri: str | None) -> dict:
        return training_jobs.training_job_request(
            settings,
            dataset=self.dataset,
            ds=self.ds,
            job_name=name,
            hyperparameters=self.hyperparameters,
            source_uri=source_uri,
            tags=self.job_tags(),
        )

    @property
    def local_job_error(self) -> type[Exception]:
        from include.local_sagemaker import LocalTrainingJobError

        return LocalTrainingJobError

    def start_local(self, request: dict, work_root: Path) -> tuple[dict, bool]:
        from include.local_sagemaker import start_training_job

        return start_training_job(request, work_root=work_root)

    def wait_local(self, name: str, work_root: Path, timeout: float) -> dict:
        from include.local_sagemaker import wait_for_training_job

        return wait_for_training_job(
            name, work_root=work_root, timeout=timeout, poll_interval=LOCAL_POLL_INTERVAL
        )

    def stop_local(self, name: str, work_root: Path) -> None:
        from include.local_sagemaker import stop_training_job

        stop_training_job(name, work_root=work_root)

    def describe(self, name: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.hook.conn.describe_training_job(TrainingJobName=name)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                return None
            raise

    def create(self, request: dict) -> None:
        self.hook.conn.create_training_job(**request)

    def stop(self, name: str) -> None:
        self.hook.conn.stop_training_job(TrainingJobName=name)

    def result(self, description: dict) -> dict[str, Any]:
        return training_job_result(description, self.ds)


class SageMakerTuningJobOperator(_SageMakerJobOperator):
    """Search hyperparameters for ``dataset``'s model: a SageMaker tuning job (Bayesian) on aws,
    Optuna over local training jobs locally. Returns the best training job's
    ``{job_name, model_uri, objective, hyperparameters}`` plus the trial counts.

    :param max_jobs: training jobs in all (default ``HEADRACE_TUNING_MAX_JOBS``). (templated)
    :param max_parallel_jobs: at once (default ``HEADRACE_TUNING_MAX_PARALLEL_JOBS``; locally
        also at most the machine's cores). (templated)
    """

    job_type = "tuning"
    naming_rule = "sagemaker_tuning"
    status_key = "HyperParameterTuningJobStatus"
    create_operation = "CreateHyperParameterTuningJob"
    template_fields: Sequence[str] = (
        *_SageMakerJobOperator.template_fields,
        "max_jobs",
        "max_parallel_jobs",
    )

    def __init__(
        self,
        *,
        max_jobs: int | str | None = None,
        max_parallel_jobs: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_jobs = max_jobs
        self.max_parallel_jobs = max_parallel_jobs

    def max_wait_s(self, settings: Settings) -> float:
        # The training jobs run in waves of max_parallel_jobs.
        jobs = int(self.max_jobs or settings.training.tuning_max_jobs)
        parallel = int(self.max_parallel_jobs or settings.training.tuning_max_parallel_jobs)
        if settings.is_local:
            # The local search runs no more trials at once than the machine has cores.
            parallel = min(parallel, os.cpu_count() or 1)
        return settings.training.max_wait_s * math.ceil(jobs / max(1, parallel))

    def build_request(self, settings: Settings, name: str, source_uri: str | None) -> dict:
        return training_jobs.tuning_job_request(
            settings,
            dataset=self.dataset,
            ds=self.ds,
            tuning_job_name=name,
            hyperparameters=self.hyperparameters,
            source_uri=source_uri,
            max_jobs=None if self.max_jobs in (None, "") else int(self.max_jobs),
            max_parallel_jobs=(
                None if self.max_parallel_jobs in (None, "") else int(self.max_parallel_jobs)
            ),
            tags=self.job_tags(),
        )

    def start_local(self, request: dict, work_root: Path) -> tuple[dict, bool]:
        from include.local_sagemaker import start_tuning_job

        return start_tuning_job(request, work_root=work_root, poll_interval=LOCAL_POLL_INTERVAL)

    def wait_local(self, name: str, work_root: Path, timeout: float) -> dict:
        from include.local_sagemaker import describe_training_job, wait_for_tuning_job

        description = wait_for_tuning_job(
            name, work_root=work_root, timeout=timeout, poll_interval=LOCAL_POLL_INTERVAL
        )
        best = description.get("BestTrainingJob")
        if best:
            description["_best_description"] = describe_training_job(
                best["TrainingJobName"], work_root=work_root
            )
        return description

    def stop_local(self, name: str, work_root: Path) -> None:
        from include.local_sagemaker import stop_tuning_job

        stop_tuning_job(name, work_root=work_root)

    def describe(self, name: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            description = self.hook.conn.describe_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=name
            )
        except ClientError as error:
            if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                return None
            raise
        best = description.get("BestTrainingJob")
        if description[self.status_key] == "Completed" and best:
            try:
                description["_best_description"] = self.hook.conn.describe_training_job(
                    TrainingJobName=best["TrainingJobName"]
                )
            except ClientError as error:
                raise AirflowException(
                    f"tuning job {name} reports best training job {best['TrainingJobName']!r}, "
                    f"which SageMaker cannot describe: {error}"
                ) from None
        return description

    def create(self, request: dict) -> None:
        self.hook.conn.create_hyper_parameter_tuning_job(**request)

    def stop(self, name: str) -> None:
        self.hook.conn.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

    def result(self, description: dict) -> dict[str, Any]:
        if description.get(self.status_key) != "Completed" or not description.get(
            "BestTrainingJob"
        ):
            raise AirflowException(
                f"tuning job {description.get('HyperParameterTuningJobName')} ended "
                f"{description.get(self.status_key)} without a best training job: "
                f"{description.get('FailureReason', 'no reason given')}"
            )
        best = description["BestTrainingJob"]
        training = training_job_result(description["_best_description"], self.ds)
        return {
            **training,
            "tuning_job_name": description["HyperParameterTuningJobName"],
            "objective": best.get("FinalHyperParameterTuningJobObjectiveMetric", {}),
            "trials": description.get("TrainingJobStatusCounters", {}),
        }


class SageMakerProcessingJobOperator(_SageMakerJobOperator):
    """Run one entry point of the training source tarball over lake data: a SageMaker Processing
    job on aws (network-isolated, in the training image, KMS and VPC as training), the local
    runtime (:mod:`include.local_processing`) locally. Durable like training: the job name comes
    from the task instance, a retry re-attaches, ``on_kill`` stops it. Returns ``{job_name, ds,
    outputs: {name: uri}}``.

    :param entry_point: the script in the tarball, e.g. ``process.py``. (templated)
    :param outputs: output name → lake folder the job's ``/opt/ml/processing/output/<name>`` is
        uploaded to when it completes. (templated)
    :param inputs: input name → lake folder, seen under ``/opt/ml/processing/input/<name>``.
        (templated)
    :param manifest_inputs: input name → manifest file: the input holds exactly the objects it
        lists. (templated)
    :param arguments: the entry point's arguments. (templated)
    """

    job_type = "processing"
    naming_rule = "sagemaker"
    status_key = "ProcessingJobStatus"
    create_operation = "CreateProcessingJob"
    # The folder (under the repository) whose tarball the job runs from; tests point it at a
    # fixture package.
    source_package: ClassVar[str] = "training"
    template_fields: Sequence[str] = (
        *_SageMakerJobOperator.template_fields,
        "entry_point",
        "inputs",
        "manifest_inputs",
        "outputs",
        "arguments",
    )

    def __init__(
        self,
        *,
        entry_point: str,
        outputs: dict[str, str],
        inputs: dict[str, str] | None = None,
        manifest_inputs: dict[str, str] | None = None,
        arguments: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.entry_point = entry_point
        self.outputs = outputs
        self.inputs = inputs or {}
        self.manifest_inputs = manifest_inputs or {}
        self.arguments = list(arguments)

    def job_settings(self, settings: Settings) -> Settings:
        """The process settings: a processing job's size is in its request
        (``capacity.processing``), not in settings."""
        return settings

    def max_wait_s(self, settings: Settings) -> float:
        return self.capacity.processing.max_runtime_minutes * 60

    def build_request(self, settings: Settings, name: str, source_uri: str | None) -> dict:
        from include.config import REPO_ROOT
        from include.sagemaker_requests import build_processing_job_request

        if not (REPO_ROOT / self.source_package / self.entry_point).is_file():
            raise AirflowException(
                f"entry_point={self.entry_point!r} is not a file of {self.source_package}/, "
                "the package the processing job runs from"
            )
        if source_uri is None:
            # Locally too the job runs from the tarball (the runtime unpacks it as the container
            # does): it is put in the local lake, at its content-addressed key, once.
            from include.storage import storage_for

            source_uri, tarball = self.source_artifact(settings)
            storage = storage_for(source_uri)
            if not storage.exists(source_uri):
                storage.write_bytes(source_uri, tarball)
        return build_processing_job_request(
            settings,
            job_name=name,
            entry_point=self.entry_point,
            source_uri=source_uri,
            inputs=self.inputs,
            manifest_inputs=self.manifest_inputs,
            outputs=self.outputs,
            arguments=self.arguments,
            instance_type=self.capacity.processing.instance_type,
            instance_count=self.capacity.processing.instance_count,
            max_runtime_s=self.capacity.processing.max_runtime_minutes * 60,
            tags=self.job_tags(),
        )

    def source_artifact(self, settings: Settings) -> tuple[str, bytes]:
        # On both targets: the local runtime unpacks the tarball as the container does.
        from include.sagemaker_requests import training_source_artifact

        return training_source_artifact(settings, self.source_package)

    def start_local(self, request: dict, work_root: Path) -> tuple[dict, bool]:
        from include.local_processing import start_processing_job

        return start_processing_job(request, work_root=work_root)

    def wait_local(self, name: str, work_root: Path, timeout: float) -> dict:
        from include.local_processing import wait_for_processing_job

        return wait_for_processing_job(
            name, work_root=work_root, timeout=timeout, poll_interval=LOCAL_POLL_INTERVAL
        )

    def stop_local(self, name: str, work_root: Path) -> None:
        from include.local_processing import stop_processing_job

        stop_processing_job(name, work_root=work_root)

    def describe(self, name: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.hook.conn.describe_processing_job(ProcessingJobName=name)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                return None
            raise

    def create(self, request: dict) -> None:
        self.hook.conn.create_processing_job(**request)

    def stop(self, name: str) -> None:
        self.hook.conn.stop_processing_job(ProcessingJobName=name)

    def result(self, description: dict) -> dict[str, Any]:
        return {
            "job_name": description["ProcessingJobName"],
            "ds": self.ds,
            "outputs": {
                output["OutputName"]: output["S3Output"]["S3Uri"]
                for output in description["ProcessingOutputConfig"]["Outputs"]
            },
        }
