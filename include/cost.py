"""Worst-case cost of an AWS job, computed from its request body, and the budgets that cap it.

An estimate prices the most a request allows: instance price x count x maximum runtime for
SageMaker jobs (tuning: x its maximum number of training jobs), DPU-hours for Glue and Glue Data
Quality, vCPU- and GB-hours at the application's maximum capacity for EMR Serverless. Prices
come from :data:`PRICES_PATH` (dated, one region; ``scripts/refresh_prices.py`` refreshes it).
Only compute is priced: storage, S3 requests, data transfer and logs are left out.

:func:`check_budget` refuses estimates over a dataset's budgets (its spec's ``cost:`` block):
the operators call :func:`enforce_job_budget` with each request just before they submit it, and
:func:`check_stage_run` prices a whole stage DAG run from the dataset spec before it starts.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from include.config import DATASETS_DIR, ConfigError, Settings, with_training_capacity

PRICES_PATH = Path(__file__).with_name("aws_prices.json")
# DPUs of one Glue worker (AWS Glue's worker types; G.1X: 4 vCPU, 16 GB = 1 DPU).
GLUE_WORKER_DPU = {"G.1X": 1, "G.2X": 2, "G.4X": 4, "G.8X": 8}
# SageMaker prices a job by the use it makes of an instance.
SAGEMAKER_USES = ("training", "processing", "transform")
# SageMaker has no runtime limit for a transform job: the operator stops it after its wait
# (capacity.transform.max_runtime_minutes, else HEADRACE_TRAINING_MAX_WAIT_S) plus this
# allowance (headrace_operators.sagemaker_jobs.WAIT_ALLOWANCE, which a test keeps equal).
TRANSFORM_STOP_ALLOWANCE = 0.25
STAGES = ("ingestion", "validation", "training", "scoring", "monitoring")
# Stands in for the run's names and day in a stage estimate: they do not change its cost.
ESTIMATE_RUN_ID = "cost-estimate"
ESTIMATE_DS = "2000-01-01"

_CPU = re.compile(r"^\s*(\d+)\s*(vcpu)?\s*$", re.IGNORECASE)
_MEMORY = re.compile(r"^\s*(\d+)\s*(gb)?\s*$", re.IGNORECASE)


class CostError(ValueError):
    """A request or the price table lacks what an estimate needs; the message names it."""


class BudgetExceeded(CostError):
    """A job's or a run's worst case is over its budget; the message names job, estimate and budget."""


# --- prices ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceTable:
    """On-demand prices of one region (:data:`PRICES_PATH`)."""

    as_of: str
    region: str
    currency: str
    source: str
    sagemaker_instance_hour: Mapping[str, Mapping[str, float]]
    glue_dpu_hour: float
    glue_data_quality_dpu_hour: float
    emr_serverless_vcpu_hour: float
    emr_serverless_gb_hour: float
    sagemaker_spot_discount: float
    path: str = ""

    def instance_hour(self, use: str, instance_type: str) -> float:
        """The price of one hour of ``instance_type`` for SageMaker ``use``."""
        prices = self.sagemaker_instance_hour.get(use, {})
        if instance_type not in prices:
            raise CostError(
                f"no {use} price for SageMaker instance type {instance_type!r} in {self.path} "
                f"({self.region}, as of {self.as_of}); it has {', '.join(sorted(prices))}. "
                f"Add it: scripts/refresh_prices.py --instance-type {use}={instance_type}"
            )
        return prices[instance_type]


def _price(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CostError(f"{where} must be a number, got {value!r}")
    if value < 0:
        raise CostError(f"{where} must not be negative, got {value!r}")
    return float(value)


def price_table_from_mapping(raw: Any, source: str = "<prices>") -> PriceTable:
    """A :class:`PriceTable` from the table's JSON; :class:`CostError` names the bad field."""
    if not isinstance(raw, Mapping):
        raise CostError(f"{source}: must be a JSON object, got {type(raw).__name__}")

    def field(name: str) -> Any:
        if name not in raw:
            raise CostError(f"{source}: {name} is missing")
        return raw[name]

    texts = {}
    for name in ("as_of", "region", "currency", "source"):
        value = field(name)
        if not isinstance(value, str) or not value:
            raise CostError(f"{source}: {name} must be a non-empty string, got {value!r}")
        texts[name] = value
    if texts["currency"] != "USD":
        raise CostError(f"{source}: currency must be USD (budgets are in US dollars)")
    instances = field("sagemaker_instance_hour")
    if not isinstance(instances, Mapping) or set(instances) != set(SAGEMAKER_USES):
        raise CostError(
            f"{source}: sagemaker_instance_hour must hold exactly {', '.join(SAGEMAKER_USES)}"
        )
    sagemaker = {
        use: {
            str(name): _price(f"{source}: sagemaker_instance_hour.{use}.{name}", value)
            for name, value in dict(instances[use]).items()
        }
        for use in SAGEMAKER_USES
    }
    prices = {
        name: _price(f"{source}: {name}", field(name))
        for name in (
            "glue_dpu_hour",
            "glue_data_quality_dpu_hour",
            "emr_serverless_vcpu_hour",
            "emr_serverless_gb_hour",
        )
    }
    discount = _price(f"{source}: sagemaker_spot_discount", field("sagemaker_spot_discount"))
    if discount >= 1:
        raise CostError(f"{source}: sagemaker_spot_discount must be below 1, got {discount}")
    return PriceTable(
        **texts,
        sagemaker_instance_hour=sagemaker,
        **prices,
        sagemaker_spot_discount=discount,
        path=source,
    )


@functools.cache
def load_prices(path: Path = PRICES_PATH) -> PriceTable:
    """The price table at ``path`` (read once per process)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CostError(f"cannot read the price table {path}: {error}") from None
    return price_table_from_mapping(raw, str(path))


# --- estimates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostEstimate:
    """The worst case of one job: what it is, its name, US dollars, and the arithmetic as text."""

    kind: str
    job_name: str
    usd: float
    arithmetic: str

    @property
    def line(self) -> str:
        """One line for a task log: ``tuning <name>: ml.g5.xlarge $1.408/h x … = $11.26``."""
        return f"{self.kind} {self.job_name}: {self.arithmetic}"


def _number(value: float) -> str:
    """A quantity as the arithmetic shows it: ``2.0``, ``1.25``, ``0.3333``."""
    text = f"{value:.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def format_usd(value: float) -> str:
    """US dollars as every estimate and refusal shows them: ``$1,234.50``."""
    return f"${value:,.2f}"


def _rate(value: float) -> str:
    return f"${value:g}"


def _get(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or mapping.get(key) is None:
        raise CostError(f"{where}.{key} is missing: the request does not bound this job's cost")
    return mapping[key]


def _positive(mapping: Any, key: str, where: str) -> int:
    value = _get(mapping, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CostError(f"{where}.{key} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class _InstanceTerms:
    """What one SageMaker job's worst case multiplies: price, count, hours, spot factor."""

    instance_type: str
    price: float
    count: int
    hours: float
    spot_factor: float

    @property
    def usd(self) -> float:
        return self.price * self.count * self.hours * self.spot_factor

    def text(self) -> str:
        spot = f" x {_number(self.spot_factor)} (spot)" if self.spot_factor != 1 else ""
        return (
            f"{self.instance_type} {_rate(self.price)}/h x {self.count} x "
            f"{_number(self.hours)} h{spot}"
        )

    def estimate(self, kind: str, name: str) -> CostEstimate:
        """The estimate of one job of ``kind`` priced by these terms alone."""
        return CostEstimate(kind, name, self.usd, f"{self.text()} = {format_usd(self.usd)}")


def _training_terms(definition: Mapping, prices: PriceTable, where: str) -> _InstanceTerms:
    """A training job's (or a tuning job's training job definition's) worst case.

    Without spot: the instances for ``MaxRuntimeInSeconds``. With managed spot training:
    ``MaxWaitTimeInSeconds`` bounds the job's whole life (waiting for capacity and running,
    across interruptions), so it bounds the billed time however interruptions are counted, at
    the table's spot discount. SageMaker bills only training time, so this may be up to
    MaxWait / MaxRuntime (twice, by default) above what the job can really cost.
    """
    resources = _get(definition, "ResourceConfig", where)
    instance_type = _get(resources, "InstanceType", f"{where}.ResourceConfig")
    count = _positive(resources, "InstanceCount", f"{where}.ResourceConfig")
    stopping = _get(definition, "StoppingCondition", where)
    spot = definition.get("EnableManagedSpotTraining") is True
    limit = "MaxWaitTimeInSeconds" if spot else "MaxRuntimeInSeconds"
    seconds = _positive(stopping, limit, f"{where}.StoppingCondition")
    return _InstanceTerms(
        instance_type=instance_type,
        price=prices.instance_hour("training", instance_type),
        count=count,
        hours=seconds / 3600,
        spot_factor=1 - prices.sagemaker_spot_discount if spot else 1.0,
    )


def estimate_training(request: Mapping, prices: PriceTable) -> CostEstimate:
    """CreateTrainingJob: instance price x InstanceCount x max runtime (spot: x discount)."""
    name = _get(request, "TrainingJobName", "CreateTrainingJob")
    terms = _training_terms(request, prices, "CreateTrainingJob")
    return terms.estimate("training", name)


def estimate_tuning(request: Mapping, prices: PriceTable) -> CostEstimate:
    """CreateHyperParameterTuningJob: the training job definition's worst case x
    ``MaxNumberOfTrainingJobs``.

    ``MaxParallelTrainingJobs`` changes how long the tuning takes, not how many training jobs it
    pays for, so it does not change the worst case. Early stopping may end trials sooner; the
    worst case is that it stops none.
    """
    where = "CreateHyperParameterTuningJob"
    name = _get(request, "HyperParameterTuningJobName", where)
    config = _get(request, "HyperParameterTuningJobConfig", where)
    limits = _get(config, "ResourceLimits", f"{where}.HyperParameterTuningJobConfig")
    jobs = _positive(
        limits, "MaxNumberOfTrainingJobs", f"{where}.HyperParameterTuningJobConfig.ResourceLimits"
    )
    definition = _get(request, "TrainingJobDefinition", where)
    terms = _training_terms(definition, prices, f"{where}.TrainingJobDefinition")
    usd = terms.usd * jobs
    return CostEstimate("tuning", name, usd, f"{terms.text()} x {jobs} jobs = {format_usd(usd)}")


def estimate_transform(
    request: Mapping, prices: PriceTable, *, max_runtime_s: float
) -> CostEstimate:
    """CreateTransformJob: instance price x InstanceCount x ``max_runtime_s``.

    SageMaker puts no runtime limit on a transform job, so the request holds none: the bound is
    when the operator stops the job (:func:`transform_max_runtime_s`).
    """
    where = "CreateTransformJob"
    name = _get(request, "TransformJobName", where)
    resources = _get(request, "TransformResources", where)
    instance_type = _get(resources, "InstanceType", f"{where}.TransformResources")
    count = _positive(resources, "InstanceCount", f"{where}.TransformResources")
    if not max_runtime_s or max_runtime_s <= 0:
        raise CostError(f"{where} {name}: max_runtime_s (when the job is stopped) is required")
    terms = _InstanceTerms(
        instance_type,
        prices.instance_hour("transform", instance_type),
        count,
        max_runtime_s / 3600,
        1.0,
    )
    return terms.estimate("transform", name)


def estimate_processing(request: Mapping, prices: PriceTable) -> CostEstimate:
    """CreateProcessingJob: instance price x InstanceCount x ``MaxRuntimeInSeconds``."""
    where = "CreateProcessingJob"
    name = _get(request, "ProcessingJobName", where)
    cluster = _get(
        _get(request, "ProcessingResources", where),
        "ClusterConfig",
        f"{where}.ProcessingResources",
    )
    cluster_where = f"{where}.ProcessingResources.ClusterConfig"
    instance_type = _get(cluster, "InstanceType", cluster_where)
    count = _positive(cluster, "InstanceCount", cluster_where)
    seconds = _positive(
        _get(request, "StoppingCondition", where),
        "MaxRuntimeInSeconds",
        f"{where}.StoppingCondition",
    )
    terms = _InstanceTerms(
        instance_type,
        prices.instance_hour("processing", instance_type),
        count,
        seconds / 3600,
        1.0,
    )
    return terms.estimate("processing", name)


def estimate_glue_job_run(request: Mapping, prices: PriceTable) -> CostEstimate:
    """Glue StartJobRun: DPU per worker x NumberOfWorkers x Timeout x DPU-hour price."""
    where = "glue StartJobRun"
    job = _get(request, "JobName", where)
    worker_type = _get(request, "WorkerType", where)
    if worker_type not in GLUE_WORKER_DPU:
        raise CostError(
            f"{where}.WorkerType {worker_type!r} has no DPU count here; known: "
            f"{', '.join(GLUE_WORKER_DPU)}"
        )
    workers = _positive(request, "NumberOfWorkers", where)
    minutes = _positive(request, "Timeout", where)
    dpu = GLUE_WORKER_DPU[worker_type]
    hours = minutes / 60
    usd = dpu * workers * hours * prices.glue_dpu_hour
    run_key = (request.get("Arguments") or {}).get("--headrace-run-key")
    name = f"{job} ({run_key})" if run_key else job
    return CostEstimate(
        "glue",
        name,
        usd,
        f"{worker_type} {dpu} DPU x {workers} workers x {_number(hours)} h "
        f"x {_rate(prices.glue_dpu_hour)}/DPU-h = {format_usd(usd)}",
    )


def estimate_glue_data_quality(request: Mapping, prices: PriceTable) -> CostEstimate:
    """StartDataQualityRulesetEvaluationRun: NumberOfWorkers (G.1X, 1 DPU each) x Timeout x
    DPU-hour price."""
    where = "StartDataQualityRulesetEvaluationRun"
    rulesets = _get(request, "RulesetNames", where)
    workers = _positive(request, "NumberOfWorkers", where)
    minutes = _positive(request, "Timeout", where)
    hours = minutes / 60
    usd = workers * hours * prices.glue_data_quality_dpu_hour
    return CostEstimate(
        "glue_data_quality",
        "+".join(rulesets),
        usd,
        f"G.1X 1 DPU x {workers} workers x {_number(hours)} h "
        f"x {_rate(prices.glue_data_quality_dpu_hour)}/DPU-h = {format_usd(usd)}",
    )


def _capacity_amount(value: Any, pattern: re.Pattern[str], where: str) -> int:
    match = pattern.match(str(value)) if isinstance(value, str | int) else None
    if match is None:
        raise CostError(f"{where} {value!r} is not an amount like '400 vCPU' or '3000 GB'")
    return int(match.group(1))


def maximum_capacity_vcpus(maximum_capacity: Mapping[str, Any], where: str) -> int:
    """The vCPUs of an EMR Serverless application's maximum capacity (``{"cpu": "400 vCPU"}``)."""
    return _capacity_amount(_get(maximum_capacity, "cpu", where), _CPU, f"{where}.cpu")


def estimate_emr_serverless(
    request: Mapping, prices: PriceTable, *, maximum_capacity: Mapping[str, Any] | None
) -> CostEstimate:
    """EMR Serverless StartJobRun: the application's maximum capacity (vCPU and memory, the
    application's ``maximumCapacity`` from GetApplication) x ``executionTimeoutMinutes`` x
    vCPU-hour and GB-hour prices.

    A run has no capacity of its own: all of the application's capacity is its worst case. x86
    prices (ARM's are lower); disk beyond each worker's free 20 GB is not counted.
    """
    where = "emr-serverless StartJobRun"
    name = _get(request, "name", where)
    application = _get(request, "applicationId", where)
    minutes = _positive(request, "executionTimeoutMinutes", where)
    if not maximum_capacity:
        raise CostError(
            f"EMR Serverless application {application} has no maximumCapacity: a run on it has "
            "no upper bound. Set the application's maximum capacity (UpdateApplication "
            "maximumCapacity cpu and memory)"
        )
    capacity_where = f"application {application} maximumCapacity"
    vcpu = maximum_capacity_vcpus(maximum_capacity, capacity_where)
    memory_gb = _capacity_amount(
        _get(maximum_capacity, "memory", capacity_where), _MEMORY, f"{capacity_where}.memory"
    )
    hours = minutes / 60
    compute = vcpu * hours * prices.emr_serverless_vcpu_hour
    memory = memory_gb * hours * prices.emr_serverless_gb_hour
    usd = compute + memory
    return CostEstimate(
        "emr_serverless",
        name,
        usd,
        f"({vcpu} vCPU x {_rate(prices.emr_serverless_vcpu_hour)}/vCPU-h + {memory_gb} GB x "
        f"{_rate(prices.emr_serverless_gb_hour)}/GB-h) x {_number(hours)} h = {format_usd(usd)}",
    )


_ESTIMATORS = {
    ("sagemaker", "CreateTrainingJob"): estimate_training,
    ("sagemaker", "CreateHyperParameterTuningJob"): estimate_tuning,
    ("sagemaker", "CreateTransformJob"): estimate_transform,
    ("sagemaker", "CreateProcessingJob"): estimate_processing,
    ("glue", "StartJobRun"): estimate_glue_job_run,
    ("glue", "StartDataQualityRulesetEvaluationRun"): estimate_glue_data_quality,
    ("emr-serverless", "StartJobRun"): estimate_emr_serverless,
}


def estimate_request(
    service: str, operation: str, request: Mapping, prices: PriceTable, **bounds: Any
) -> CostEstimate:
    """The worst case of the ``service`` ``operation`` request (botocore's names, as
    :func:`include.aws_validation.validate_request` takes them). ``bounds``: what the request
    cannot say (``max_runtime_s`` of a transform, ``maximum_capacity`` of EMR Serverless)."""
    try:
        estimator = _ESTIMATORS[(service, operation)]
    except KeyError:
        raise CostError(
            f"no cost estimate for {service} {operation}; estimated: "
            + ", ".join(f"{s} {o}" for s, o in _ESTIMATORS)
        ) from None
    return estimator(request, prices, **bounds)


def transform_max_runtime_s(settings: Settings, max_runtime_minutes: int | None) -> float:
    """When the operator stops a transform job: its wait (``capacity.transform``'s runtime,
    else ``HEADRACE_TRAINING_MAX_WAIT_S``) plus the operator's allowance."""
    wait = settings.training.max_wait_s if max_runtime_minutes is None else max_runtime_minutes * 60
    return wait * (1 + TRANSFORM_STOP_ALLOWANCE)


# --- budgets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """A dataset's budgets and where they were set, for the refusal's message."""

    per_job_usd: float
    per_run_usd: float
    source: str


def dataset_budget(dataset: str | None, datasets_dir: Path = DATASETS_DIR) -> Budget:
    """The ``cost:`` block of ``<datasets_dir>/<dataset>.yaml`` (its defaults where silent);
    ``None``: the defaults."""
    from spark_jobs.dataset_spec import CostBudget, load_spec

    if dataset is None:
        default = CostBudget()
        return Budget(default.budget_per_job_usd, default.budget_per_run_usd, "the default budget")
    spec = load_spec(Path(datasets_dir) / f"{dataset}.yaml")
    return Budget(
        spec.cost.budget_per_job_usd, spec.cost.budget_per_run_usd, f"{spec.source} cost:"
    )


def check_budget(
    estimates: Sequence[CostEstimate], per_job: float, per_run: float, *, source: str = ""
) -> float:
    """The estimates' total; :class:`BudgetExceeded` when a job is over ``per_job`` or all of
    them together over ``per_run``, naming each such job, its estimate and the budget."""
    for name, budget in (("per_job", per_job), ("per_run", per_run)):
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
            raise ValueError(f"{name} must be a positive number of US dollars, got {budget!r}")
    where = f" ({source})" if source else ""
    problems = [
        f"{estimate.kind} job {estimate.job_name}: worst case {format_usd(estimate.usd)} "
        f"({estimate.arithmetic}) exceeds the per-job budget {format_usd(per_job)}{where}"
        for estimate in estimates
        if estimate.usd > per_job
    ]
    total = sum(estimate.usd for estimate in estimates)
    if total > per_run:
        jobs = ", ".join(f"{e.kind} {e.job_name} {format_usd(e.usd)}" for e in estimates)
        problems.append(
            f"the run's worst case {format_usd(total)} ({jobs}) exceeds the per-run budget "
            f"{format_usd(per_run)}{where}"
        )
    if problems:
        raise BudgetExceeded(
            "refused before starting: " + "; ".join(problems) + ". Lower the job's size or "
            "limits, or raise the budget in the dataset spec's cost: block"
        )
    return total


def enforce_job_budget(
    service: str,
    operation: str,
    request: Mapping,
    *,
    budget: Budget,
    region: str,
    log: logging.Logger,
    prices: PriceTable | None = None,
    **bounds: Any,
) -> CostEstimate:
    """Estimate a request about to be submitted, log the estimate, and raise
    :class:`BudgetExceeded` when it is over the job's budget.

    One job at a time: a run's jobs together are :func:`check_stage_run`'s to check. A job
    alone within the per-job budget is within the per-run one (the spec keeps per-job <= per-run).
    """
    prices = prices or load_prices()
    estimate = estimate_request(service, operation, request, prices, **bounds)
    log.info(
        "Worst-case cost: %s (%s, %s prices as of %s)",
        estimate.line,
        prices.currency,
        prices.region,
        prices.as_of,
    )
    if region != prices.region:
        log.warning(
            "The price table holds %s prices; this job runs in %s, where prices differ. "
            "Refresh it: scripts/refresh_prices.py --region %s",
            prices.region,
            region,
            region,
        )
    check_budget([estimate], budget.per_job_usd, math.inf, source=budget.source)
    return estimate


# --- a stage DAG run -------------------------------------------------------------------------


@dataclass(frozen=True)
class StageJob:
    """One AWS job a stage run starts: its task, the request the operator would send (botocore's
    service and operation names), and what bounds it that the request cannot say."""

    task_id: str
    service: str
    operation: str
    request: Mapping[str, Any]
    bounds: Mapping[str, Any]


def estimate_stage_run(
    settings: Settings,
    dataset: str,
    stage: str,
    *,
    datasets_dir: Path = DATASETS_DIR,
    prices: PriceTable | None = None,
    **run: Any,
) -> list[CostEstimate]:
    """The worst case of every AWS job one run of ``<dataset>_<stage>`` starts
    (:func:`stage_run_jobs`; ``run``: its keywords).

    Call it (through :func:`check_stage_run`) at the start of a run, before its first job: the
    training DAG is where it counts (its tuning job is the dearest job).
    """
    prices = prices or load_prices()
    return [
        estimate_request(job.service, job.operation, job.request, prices, **job.bounds)
        for job in stage_run_jobs(settings, dataset, stage, datasets_dir=datasets_dir, **run)
    ]


def stage_run_jobs(
    settings: Settings,
    dataset: str,
    stage: str,
    *,
    datasets_dir: Path = DATASETS_DIR,
    days: int = 1,
    tuning_max_jobs: int | None = None,
    tuning_max_parallel_jobs: int | None = None,
    emr_serverless_maximum_capacity: Mapping[str, Any] | None = None,
) -> list[StageJob]:
    """Every AWS job one run of ``<dataset>_<stage>`` starts, in order, its request built from
    the dataset spec and ``settings`` through the request builders the operators use (the run's
    names and day are stand-ins: they change neither cost nor capacity).

    :param stage: one of :data:`STAGES`; the approval and reconciliation DAGs start no jobs.
    :param days: the days an ingestion run ingests (one ``ingest`` job each).
    :param tuning_max_jobs: the tuning job's trials (the training DAG's ``max_trials``
        param); ``None``: ``HEADRACE_TUNING_MAX_JOBS``, as the operator does.
    :param emr_serverless_maximum_capacity: the application's ``maximumCapacity``
        (GetApplication), required when the Spark engine is EMR Serverless.

    Spark jobs on an EMR cluster (``emr_ec2``) run on capacity paid for by the cluster, not by
    the run, and are left out.
    """
    from spark_jobs.dataset_spec import load_spec

    if settings.aws is None:
        raise ConfigError(
            f"a cost estimate prices the aws target's requests; this process runs {settings.target!r}"
        )
    if stage not in STAGES:
        raise ValueError(
            f"stage {stage!r} starts no AWS jobs; stages with jobs: {', '.join(STAGES)}"
        )
    if days < 1:
        raise ValueError(f"days={days} must be at least 1")
    capacity = load_spec(Path(datasets_dir) / f"{dataset}.yaml").capacity
    dag_id = f"{dataset}_{stage}"

    def identity(task_id: str, map_index: int = -1):
        from include.job_names import TaskRunIdentity

        return TaskRunIdentity(dag_id, ESTIMATE_RUN_ID, task_id, map_index)

    def spark(task_id: str, job: str, timeout: timedelta, map_index: int = -1) -> StageJob:
        from include import spark_job_requests as spark_requests

        run = identity(task_id, map_index)
        engine = settings.aws.spark_engine
        if engine == "glue":
            request = spark_requests.build_glue_start_job_run_request(
                settings,
                job,
                ["--ds", ESTIMATE_DS],
                run.run_key,
                timeout=timeout,
                capacity=capacity.spark.glue,
            )
            return StageJob(task_id, "glue", "StartJobRun", request, {})
        request = spark_requests.build_emr_serverless_start_job_run_request(
            settings,
            job,
            ["--ds", ESTIMATE_DS],
            name=run.name_for("emr_serverless_name"),
            client_token=run.name_for("emr_serverless_client_token", suffix="0"),
            timeout=timeout,
            executors=capacity.spark.emr_serverless,
        )
        return StageJob(
            task_id,
            "emr-serverless",
            "StartJobRun",
            request,
            {"maximum_capacity": emr_serverless_maximum_capacity},
        )

    def processing(task_id: str) -> StageJob:
        from include.sagemaker_requests import build_processing_job_request

        lake = f"s3://{settings.aws.bucket}/{ESTIMATE_RUN_ID}"
        request = build_processing_job_request(
            settings,
            job_name=identity(task_id).name_for("sagemaker"),
            entry_point="process.py",
            source_uri=f"{lake}/code/sourcedir.tar.gz",
            inputs={"plan": f"{lake}/plan"},
            outputs={"out": f"{lake}/out"},
            instance_type=capacity.processing.instance_type,
            instance_count=capacity.processing.instance_count,
            max_runtime_s=capacity.processing.max_runtime_minutes * 60,
        )
        return StageJob(task_id, "sagemaker", "CreateProcessingJob", request, {})

    spark_timeout = timedelta(minutes=capacity.spark.max_runtime_minutes)
    engine = settings.aws.spark_engine
    jobs: list[StageJob] = []
    if stage == "ingestion":
        if engine != "emr_ec2":
            jobs += [spark("ingest", "ingest", spark_timeout, day) for day in range(days)]
    elif stage == "validation":
        quality_timeout = timedelta(minutes=capacity.quality.max_runtime_minutes)
        if engine == "glue":
            from include.dq.glue_data_quality import (
                build_start_evaluation_run_request,
                ruleset_name,
            )

            request = build_start_evaluation_run_request(
                settings,
                dataset,
                ESTIMATE_DS,
                [ruleset_name(dataset, ESTIMATE_DS, severity) for severity in ("error", "warn")],
                client_token=identity("quality_gate").run_key,
                results_prefix=f"s3://{settings.aws.bucket}/{ESTIMATE_RUN_ID}/",
                timeout=quality_timeout,
                number_of_workers=capacity.quality.glue_data_quality_workers,
            )
            jobs.append(
                StageJob(
                    "quality_gate", "glue", "StartDataQualityRulesetEvaluationRun", request, {}
                )
            )
        elif engine == "emr_serverless":
            jobs.append(spark("quality_gate", "quality_deequ", quality_timeout))
        if engine != "emr_ec2":
            jobs.append(spark("features", "features", spark_timeout))
    elif stage == "training":
        request = _tuning_request(
            with_training_capacity(settings, capacity.training),
            dataset,
            identity("tune").name_for("sagemaker_tuning"),
            tuning_max_jobs,
            tuning_max_parallel_jobs,
        )
        jobs.append(StageJob("tune", "sagemaker", "CreateHyperParameterTuningJob", request, {}))
        jobs.append(processing("monitoring_baseline"))
    elif stage == "scoring":
        from include.sagemaker_requests import build_transform_job_request

        jobs.append(processing("scoring_input"))
        lake = f"s3://{settings.aws.bucket}/{ESTIMATE_RUN_ID}"
        request = build_transform_job_request(
            settings,
            job_name=identity("transform").name_for("sagemaker"),
            model_name=f"headrace-{dataset}-{ESTIMATE_RUN_ID}",
            input_uri=f"{lake}/input",
            output_uri=f"{lake}/output",
            id_columns=["id"],
            instance_type=capacity.transform.instance_type,
            instance_count=capacity.transform.instance_count,
        )
        max_runtime_s = transform_max_runtime_s(settings, capacity.transform.max_runtime_minutes)
        jobs.append(
            StageJob(
                "transform",
                "sagemaker",
                "CreateTransformJob",
                request,
                {"max_runtime_s": max_runtime_s},
            )
        )
        jobs.append(processing("predictions"))
    else:
        jobs.append(processing("drift_job"))
    return jobs


def check_stage_run(
    settings: Settings,
    dataset: str,
    stage: str,
    *,
    datasets_dir: Path = DATASETS_DIR,
    log: logging.Logger | None = None,
    **run: Any,
) -> list[CostEstimate]:
    """:func:`estimate_stage_run` checked against the dataset's budgets: the estimates, each
    logged, or :class:`BudgetExceeded` naming every job over the per-job budget and the run's
    total over the per-run budget.

    ``run``: the run's configuration (:func:`estimate_stage_run`'s keywords), e.g. in a first
    task of the training DAG: ``check_stage_run(get_settings(), dataset, "training",
    tuning_max_jobs=params["max_trials"], tuning_max_parallel_jobs=params["parallel_trials"])``.
    """
    estimates = estimate_stage_run(settings, dataset, stage, datasets_dir=datasets_dir, **run)
    budget = dataset_budget(dataset, datasets_dir)
    total = check_budget(estimates, budget.per_job_usd, budget.per_run_usd, source=budget.source)
    if log is not None:
        for estimate in estimates:
            log.info("Worst-case cost: %s", estimate.line)
        log.info(
            "Worst-case cost of this %s run: %s of the %s budget (%s)",
            stage,
            format_usd(total),
            format_usd(budget.per_run_usd),
            budget.source,
        )
    return estimates


def run_estimate_line(
    dataset: str, estimates: Sequence[CostEstimate], datasets_dir: Path = DATASETS_DIR
) -> str:
    """A stage run's estimate in one line for its note: ``$23.22 of the $50.00 run budget for
    2 jobs: tuning $22.99, processing $0.23`` (where the budget is set: in the task log)."""
    budget = dataset_budget(dataset, datasets_dir)
    jobs = ", ".join(f"{e.kind} {format_usd(e.usd)}" for e in estimates)
    return (
        f"{format_usd(sum(e.usd for e in estimates))} of the {format_usd(budget.per_run_usd)} "
        f"run budget for {len(estimates)} job{'' if len(estimates) == 1 else 's'}: {jobs}"
    )


def _tuning_request(
    settings: Settings,
    dataset: str,
    name: str,
    max_jobs: int | None,
    max_parallel_jobs: int | None,
) -> dict[str, Any]:
    """The tuning job's body, built as the operator builds it (channels stand in for the
    manifests the operator writes: they change neither cost nor capacity)."""
    from include.sagemaker_requests import build_training_job_request, build_tuning_job_request

    lake = f"s3://{settings.aws.bucket}/{ESTIMATE_RUN_ID}"
    training = build_training_job_request(
        settings,
        job_name=name,
        hyperparameters={},
        channels={split: f"{lake}/{split}" for split in ("train", "validation", "test")},
        output_uri=f"{lake}/jobs",
        checkpoint_uri=f"{lake}/checkpoints",
        source_uri=f"{lake}/code/sourcedir.tar.gz",
        tags={"dataset": dataset},
    )
    jobs = settings.training.tuning_max_jobs if max_jobs is None else max_jobs
    parallel = (
        settings.training.tuning_max_parallel_jobs
        if max_parallel_jobs is None
        else max_parallel_jobs
    )
    return build_tuning_job_request(
        settings,
        tuning_job_name=name,
        training_request=training,
        max_jobs=jobs,
        max_parallel_jobs=min(parallel, jobs),
    )
