"""The argv the DAGs hand to the Spark ingest and features jobs, built from settings.

The DAG file stays declarative: it names a dataset; this module knows where the dataset spec,
the landing zone and the lake are on the current target, and how the job gets its PII salt
(an environment variable locally, a Secrets Manager secret on AWS — never a job argument).
"""

from __future__ import annotations

from include.config import REPO_ROOT, Settings
from include.spark_job_requests import ARTIFACTS_PREFIX

DATASETS_DIR = REPO_ROOT / "include" / "datasets"
# The partition a run ingests: the date picked in the trigger form, else the day before the run's
# logical date. Airflow 3's cron schedules stamp a daily run with the moment it fires (00:00
# UTC), so the scheduled run of day D ingests day D-1, the day that has just ended.
PARTITION_DATE = "{{ params.ds or macros.ds_add(ds, -1) }}"
LOCAL_PII_SALT_ENV = "HEADRACE_PII_SALT"


def dataset_spec_uri(settings: Settings, dataset: str) -> str:
    """The spec YAML: the repo file locally; next to the job code in the lake bucket on AWS."""
    if not (DATASETS_DIR / f"{dataset}.yaml").exists():
        raise ValueError(f"no dataset spec include/datasets/{dataset}.yaml")
    if settings.is_local:
        return (DATASETS_DIR / f"{dataset}.yaml").as_uri()
    return (
        f"s3://{settings.aws.bucket}/{ARTIFACTS_PREFIX.rsplit('/', 1)[0]}/datasets/{dataset}.yaml"
    )


def ingest_job_args(settings: Settings, dataset: str) -> list[str]:
    """argv of ``spark_jobs.ingest`` for one dataset; ``--ds`` is a template rendered per run."""
    args = [
        "--spec", dataset_spec_uri(settings, dataset),
        "--landing-uri", settings.zone_uri("landing"),
        "--ds", PARTITION_DATE,
        "--lake-root", settings.lake_root,
    ]  # fmt: skip
    if settings.is_local:
        return [*args, "--pii-salt-env", LOCAL_PII_SALT_ENV]
    return [*args, "--pii-salt-secret-id", settings.aws.pii_salt_secret_arn]


def features_job_args(settings: Settings, dataset: str, ds: str) -> list[str]:
    """argv of ``spark_jobs.features`` for one dataset; ``ds`` may be a template.

    Missing days in the lookback window are allowed: a new dataset has no history yet, and a
    day lost upstream shows in the manifest's inputs rather than stopping training.
    """
    return [
        "--spec", dataset_spec_uri(settings, dataset),
        "--lake-root", settings.lake_root,
        "--ds", ds,
        "--allow-missing-days", "true",
    ]  # fmt: skip
