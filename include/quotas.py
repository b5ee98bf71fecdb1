"""Check the instances a stage run will ask for against the account's Service Quotas before its
first job starts.

A SageMaker job over its instance type's quota does not start (a tuning job's trials wait or
fail one by one), so :func:`check_stage_quotas` reads the quota of every instance type and job
kind of the run's requests (:func:`include.cost.stage_run_jobs`, the requests the operators
send), and refuses the run naming each quota, its value and what the run needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from include.config import DATASETS_DIR, Settings
from include.cost import StageJob, maximum_capacity_vcpus, stage_run_jobs

SAGEMAKER = "sagemaker"
EMR_SERVERLESS = "emr-serverless"
# EMR Serverless caps the vCPUs of all of an account's applications at once.
EMR_SERVERLESS_VCPU_QUOTA = "Max concurrent vCPUs per account"
PAGE_SIZE = 100  # ListServiceQuotas' largest MaxResults
# The Service Quotas operations called here (the MWAA role's policy allows each), by client method.
LIST_OPERATIONS = {
    "ListServiceQuotas": "list_service_quotas",
    "ListAWSDefaultServiceQuotas": "list_aws_default_service_quotas",
}


class QuotaError(ValueError):
    """A run needs more than a quota allows, or a quota it needs is not listed; the message
    names each quota, its value and the need."""


@dataclass(frozen=True)
class QuotaNeed:
    """What a run needs of one quota: the largest need of its jobs (a stage's jobs run one after
    another), and the jobs that need it."""

    service_code: str
    quota_name: str
    amount: float
    unit: str
    jobs: tuple[str, ...]
    instance_type: str | None = None
    kind: str | None = None


def _member(mapping: Any, path: str, where: str) -> Any:
    value = mapping
    for key in path.split("."):
        if not isinstance(value, Mapping) or value.get(key) is None:
            raise QuotaError(f"{where}.{path} is missing: no instance count to check")
        value = value[key]
    return value


def sagemaker_quota_name(instance_type: str, kind: str) -> str:
    """The name Service Quotas gives the quota: ``ml.g5.xlarge for spot training job usage``."""
    return f"{instance_type} for {kind} job usage"


def _instances(job: StageJob, resources: Mapping, where: str, kind: str, parallel: int = 1):
    instance_type = _member(resources, "InstanceType", where)
    count = _member(resources, "InstanceCount", where)
    trials = f"{parallel} trials at once x " if parallel > 1 else ""
    plural = "s" if count != 1 else ""
    return QuotaNeed(
        SAGEMAKER,
        sagemaker_quota_name(instance_type, kind),
        parallel * count,
        "instances",
        (f"task {job.task_id}: {trials}{count} {instance_type} instance{plural}",),
        instance_type,
        kind,
    )


def job_need(job: StageJob) -> QuotaNeed | None:
    """The quota one job needs; ``None`` for a job no quota here covers (Glue)."""
    request = job.request
    where = f"{job.service} {job.operation}"
    if (job.service, job.operation) == (SAGEMAKER, "CreateTrainingJob"):
        kind = "spot training" if request.get("EnableManagedSpotTraining") is True else "training"
        return _instances(job, _member(request, "ResourceConfig", where), where, kind)
    if (job.service, job.operation) == (SAGEMAKER, "CreateHyperParameterTuningJob"):
        definition = _member(request, "TrainingJobDefinition", where)
        spot = definition.get("EnableManagedSpotTraining") is True
        parallel = _member(
            request, "HyperParameterTuningJobConfig.ResourceLimits.MaxParallelTrainingJobs", where
        )
        resources = _member(definition, "ResourceConfig", f"{where}.TrainingJobDefinition")
        return _instances(job, resources, where, "spot training" if spot else "training", parallel)
    if (job.service, job.operation) == (SAGEMAKER, "CreateTransformJob"):
        return _instances(job, _member(request, "TransformResources", where), where, "transform")
    if (job.service, job.operation) == (SAGEMAKER, "CreateProcessingJob"):
        cluster = _member(request, "ProcessingResources.ClusterConfig", where)
        return _instances(job, cluster, where, "processing")
    if (job.service, job.operation) == (EMR_SERVERLESS, "StartJobRun"):
        capacity = job.bounds.get("maximum_capacity")
        if not capacity:  # unbounded: include.cost refuses such a run
            return None
        vcpu = maximum_capacity_vcpus(capacity, "the application's maximumCapacity")
        return QuotaNeed(
            EMR_SERVERLESS,
            EMR_SERVERLESS_VCPU_QUOTA,
            vcpu,
            "vCPUs",
            (f"task {job.task_id}: the application's maximum capacity of {vcpu} vCPUs",),
        )
    return None


def quota_needs(jobs: Iterable[StageJob]) -> list[QuotaNeed]:
    """The quotas ``jobs`` need, one entry each: the jobs of a stage run one after another, so a
    quota must hold the largest of them (other runs' use is not counted)."""
    needs: dict[tuple[str, str], QuotaNeed] = {}
    for job in jobs:
        need = job_need(job)
        if need is None:
            continue
        key = (need.service_code, need.quota_name)
        if key in needs:
            prior = needs[key]
            need = replace(
                prior, amount=max(prior.amount, need.amount), jobs=prior.jobs + need.jobs
            )
        needs[key] = need
    return list(needs.values())


def list_quotas(client: Any, operation: str, service_code: str) -> dict[str, Mapping]:
    """Every quota of ``service_code`` by name, following ``NextToken`` through every page.

    :param operation: ``ListServiceQuotas`` (the account's applied values) or
        ``ListAWSDefaultServiceQuotas`` (AWS's defaults).
    """
    from botocore.exceptions import ClientError

    from include.aws_validation import validate_request

    method = getattr(client, LIST_OPERATIONS[operation])
    quotas: dict[str, Mapping] = {}
    body: dict[str, Any] = {"ServiceCode": service_code, "MaxResults": PAGE_SIZE}
    while True:
        validate_request("service-quotas", operation, body)
        try:
            page = method(**body)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "AccessDeniedException":
                raise
            raise QuotaError(
                f"cannot read the {service_code} quotas: the role may not call "
                f"servicequotas:{operation} ({error}). It needs servicequotas:ListServiceQuotas "
                "and servicequotas:ListAWSDefaultServiceQuotas (infra/headrace.yaml)"
            ) from None
        for quota in page.get("Quotas", []):
            quotas.setdefault(quota["QuotaName"], quota)
        if not page.get("NextToken"):
            return quotas
        body["NextToken"] = page["NextToken"]


def _amount(value: float) -> str:
    return f"{value:g}"


def check_quotas(needs: Iterable[QuotaNeed], client: Any, *, region: str) -> list[str]:
    """A line per quota that holds the need; :class:`QuotaError` naming every quota whose value
    is below its need (name, code, value, need and the jobs that need it) and every quota
    Service Quotas does not list.

    The account's applied value wins; a quota it has none of takes AWS's default. ``client``:
    a ``service-quotas`` client of the run's region.
    """
    by_service: dict[str, list[QuotaNeed]] = {}
    for need in needs:
        by_service.setdefault(need.service_code, []).append(need)
    lines: list[str] = []
    problems: list[str] = []
    for service_code, service_needs in by_service.items():
        applied = list_quotas(client, "ListServiceQuotas", service_code)
        defaults = (
            list_quotas(client, "ListAWSDefaultServiceQuotas", service_code)
            if any(need.quota_name not in applied for need in service_needs)
            else {}
        )
        for need in service_needs:
            jobs = "; ".join(need.jobs)
            quota, source = applied.get(need.quota_name), "applied value"
            if quota is None:
                quota, source = defaults.get(need.quota_name), "AWS default value"
            if quota is None:
                hint = (
                    f": {need.instance_type} is probably not an instance type SageMaker offers "
                    f"for {need.kind} jobs in {region} (the dataset spec's capacity: block or "
                    "HEADRACE_TRAINING_INSTANCE_TYPE)"
                    if need.instance_type
                    else ""
                )
                problems.append(
                    f"Service Quotas lists no {service_code} quota {need.quota_name!r} in "
                    f"{region}, applied or default ({jobs}){hint}"
                )
                continue
            value = quota.get("Value")
            unit = need.unit.removesuffix("s") if need.amount == 1 else need.unit
            line = (
                f"{service_code} quota {need.quota_name!r} ({quota['QuotaCode']}) in {region}: "
                f"{source} {_amount(value) if value is not None else 'none'}, the run needs "
                f"{_amount(need.amount)} {unit} ({jobs})"
            )
            if value is None or need.amount > value:
                problems.append(line)
            else:
                lines.append(line)
    if problems:
        raise QuotaError(
            "refused before starting, over the account's Service Quotas: "
            + "; ".join(problems)
            + ". Request an increase of the quota (Service Quotas, by its code) or lower the "
            "run's instances, trials at once or instance type"
        )
    return lines


def check_stage_quotas(
    settings: Settings,
    dataset: str,
    stage: str,
    *,
    datasets_dir: Path = DATASETS_DIR,
    log: logging.Logger | None = None,
    client: Any = None,
    **run: Any,
) -> list[str]:
    """:func:`check_quotas` of the jobs one run of ``<dataset>_<stage>`` starts on aws
    (``run``: :func:`include.cost.stage_run_jobs`' keywords, as :func:`include.cost.check_stage_run`
    takes them); each quota that holds is logged."""
    needs = quota_needs(stage_run_jobs(settings, dataset, stage, datasets_dir=datasets_dir, **run))
    if not needs:
        return []
    if client is None:
        import boto3

        client = boto3.client("service-quotas", region_name=settings.aws.region)
    lines = check_quotas(needs, client, region=settings.aws.region)
    if log is not None:
        for line in lines:
            log.info("Service quota: %s", line)
    return lines
