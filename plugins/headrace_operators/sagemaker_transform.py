"""Batch scoring with one interface on both targets, durable on retry: SageMakerTransformOperator.

The task names a dataset, the day (``ds``), the model to score with (the registry's approved
version, from :func:`include.scoring_pipeline.champion_model`) and the input folder
(:func:`include.scoring_pipeline.scoring_input_plan`, written by the scoring-input job).
:func:`include.sagemaker_requests.build_transform_job_request` builds the CreateTransformJob body
and :func:`include.sagemaker_requests.build_model_request` the CreateModel body of the model.

- aws: the model is created once per registry version under a deterministic name (found again,
  never duplicated), then the transform job goes to SageMaker through the Amazon provider's hook,
  and the wait is deferred to the triggerer (``SageMakerJobTrigger`` with
  ``job_type="transform"``, which stops the job when the deferred task is killed).
- local: :mod:`include.local_transform` runs the same two bodies on this machine, streaming the
  input through ``training/inference.py``'s handlers in a subprocess.

Durable like the training operators (:mod:`headrace_operators.sagemaker_jobs`, whose base class
this reuses): the job name comes from the task instance, so a retry re-attaches to the running
or finished job instead of scoring twice; after a failed job a retry starts the next generation
(``-r2``…); ``on_kill`` stops the job. XCom gets the job name and the output URI, never data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

from headrace_operators.sagemaker_jobs import (
    MAX_GENERATIONS,
    WAIT_ALLOWANCE,
    _SageMakerJobOperator,
)
from include.config import Settings
from include.job_names import TaskRunIdentity
from include.local_transform import DEFAULT_MAX_RECORDS

if TYPE_CHECKING:
    from airflow.sdk import Context

# What a model dict (XCom of the scoring DAG's first task) must carry.
MODEL_KEYS = ("version", "model_uri", "model_name", "id_columns")


class SageMakerTransformOperator(_SageMakerJobOperator):
    """Score a day's input with a registered model: a SageMaker batch transform job on aws, the
    local transform runtime locally. Returns ``{job_name, model_name, model_version,
    output_uri, ds}``.

    :param dataset: the dataset being scored (``include/datasets/``); its spec's
        ``capacity.transform`` sets the instance type and count, and how long the job may run
        before the operator stops it (default: ``HEADRACE_TRAINING_MAX_WAIT_S``).
    :param ds: the day, YYYY-MM-DD. (templated)
    :param model: the model version to score with: ``{version, model_uri, model_name,
        id_columns}`` (:func:`include.scoring_pipeline.champion_model`). (templated)
    :param input_uri: the folder of input lines (ids, then features). (templated)
    :param content_type: ``text/csv`` or ``application/jsonlines``.
    :param local_max_records: locally, at most this many records per mini-batch (the payload
        size limit applies as well; default :data:`include.local_transform.DEFAULT_MAX_RECORDS`); ``None``: the payload
        size alone.
    :param aws_conn_id: the Airflow connection of the aws target.
    :param poll_interval: seconds between status checks on aws.
    :param deferrable: wait on aws in the triggerer rather than in a worker slot.
    """

    job_type = "transform"
    naming_rule = "sagemaker"
    status_key = "TransformJobStatus"
    create_operation = "CreateTransformJob"
    template_fields: Sequence[str] = ("dataset", "ds", "model", "input_uri")
    template_fields_renderers = {"model": "json"}
    ui_color = "#dae8fc"

    def __init__(
        self,
        *,
        model: dict[str, Any] | str,
        input_uri: str,
        content_type: str = "text/csv",
        local_max_records: int | None = DEFAULT_MAX_RECORDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.input_uri = input_uri
        self.content_type = content_type
        self.local_max_records = local_max_records

    # --- the request bodies ----------------------------------------------------------------

    def job_settings(self, settings: Settings) -> Settings:
        """The process settings: a transform's size is in its request, not in settings."""
        return settings

    def max_wait_s(self, settings: Settings) -> float:
        # A transform job has no runtime limit of its own on SageMaker: the operator stops it.
        runtime = self.capacity.transform.max_runtime_minutes
        return super().max_wait_s(settings) if runtime is None else runtime * 60

    def cost_bounds(self, settings: Settings) -> dict[str, Any]:
        # The job runs until this operator stops it: its wait and the allowance past it.
        return {"max_runtime_s": self.max_wait_s(settings) * (1 + WAIT_ALLOWANCE)}

    def _checked_model(self) -> dict[str, Any]:
        if not isinstance(self.model, dict) or any(k not in self.model for k in MODEL_KEYS):
            raise AirflowException(
                f"model must be a dict with {', '.join(MODEL_KEYS)} (the scoring DAG's champion "
                f"model), got {self.model!r}"
            )
        return self.model

    def output_uri(self, settings: Settings, name: str) -> str:
        from include.scoring_pipeline import transform_output_uri

        return f"{transform_output_uri(settings, self.dataset, self.ds)}/{name}"

    def model_request(self, settings: Settings) -> dict:
        from include.sagemaker_requests import build_model_request

        model = self._checked_model()
        return build_model_request(
            settings,
            model_name=model["model_name"],
            model_uri=model["model_uri"],
            tags=self.job_tags({"model-version": str(model["version"])}),
        )

    def build_request(self, settings: Settings, name: str, source_uri: str | None) -> dict:
        from include.sagemaker_requests import build_transform_job_request

        model = self._checked_model()
        return build_transform_job_request(
            settings,
            job_name=name,
            model_name=model["model_name"],
            input_uri=self.input_uri,
            output_uri=self.output_uri(settings, name),
            id_columns=model["id_columns"],
            content_type=self.content_type,
            instance_type=self.capacity.transform.instance_type,
            instance_count=self.capacity.transform.instance_count,
            tags=self.job_tags({"ds": self.ds, "model-version": str(model["version"])}),
        )

    # --- local -----------------------------------------------------------------------------

    def start_local(self, request: dict, work_root: Path) -> tuple[dict, bool]:
        from include.config import get_settings
        from include.local_transform import start_transform_job

        return start_transform_job(
            request,
            self.model_request(get_settings()),
            work_root=work_root,
            max_records=self.local_max_records,
        )

    def wait_local(self, name: str, work_root: Path, timeout: float) -> dict:
        from include.local_transform import wait_for_transform_job

        return wait_for_transform_job(name, work_root=work_root, timeout=timeout)

    def stop_local(self, name: str, work_root: Path) -> None:
        from include.local_transform import stop_transform_job

        stop_transform_job(name, work_root=work_root)

    # --- aws -------------------------------------------------------------------------------

    def describe(self, name: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.hook.conn.describe_transform_job(TransformJobName=name)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                return None
            raise

    def ensure_model(self, settings: Settings) -> str:
        """Create the registry version's SageMaker model unless it exists; return its name."""
        from botocore.exceptions import ClientError

        request = self.model_request(settings)
        name = request["ModelName"]
        try:
            self.hook.conn.describe_model(ModelName=name)
            self.log.info("SageMaker model %s exists", name)
            return name
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
                raise
        self.hook.conn.create_model(**request)
        self.log.info("Created SageMaker model %s for %s", name, request["PrimaryContainer"])
        return name

    def create(self, request: dict) -> None:
        self.hook.conn.create_transform_job(**request)

    def stop(self, name: str) -> None:
        self.hook.conn.stop_transform_job(TransformJobName=name)

    def _find_or_start(self, settings: Settings, identity: TaskRunIdentity) -> tuple[str, dict]:
        """The base class's generations, with the model created first instead of the training
        code uploaded (the serving code travels inside model.tar.gz)."""
        for generation in range(1, MAX_GENERATIONS + 1):
            name = self._name(identity, generation)
            description = self.describe(name)
            if description is None:
                request = self.build_request(settings, name, None)
                self._enforce_budget(settings, request)
                self.ensure_model(settings)
                self.create(request)
                self.log.info("Started SageMaker transform job %s", name)
                return name, self.describe(name) or {self.status_key: "InProgress"}
            state = description[self.status_key]
            if state in self.running_states or state == "Completed":
                self.log.info(
                    "Re-attaching to SageMaker transform job %s (%s), started by an earlier try",
                    name,
                    state,
                )
                return name, description
            self.log.info(
                "SageMaker transform job %s ended %s; trying the next generation", name, state
            )
        raise AirflowException(
            f"{MAX_GENERATIONS} transform jobs of this task ended without success; look at the "
            "last one's FailureReason before clearing the task"
        )

    def result(self, description: dict) -> dict[str, Any]:
        model = self._checked_model()
        return {
            "job_name": description["TransformJobName"],
            "model_name": description.get("ModelName", model["model_name"]),
            "model_version": str(model["version"]),
            "output_uri": description["TransformOutput"]["S3OutputPath"],
            "ds": self.ds,
        }

    def execute(self, context: Context) -> dict[str, Any]:
        self._checked_model()
        return super().execute(context)

    def lineage_inputs(self) -> list[str]:
        """The model artifact the job scored with (its description names only the model)."""
        return [self._checked_model()["model_uri"]]
