"""The check a stage run makes before its first AWS job (include/run_limits.py): its worst-case
cost against the dataset's budgets, then its instances against the account's Service Quotas, and
one task failure, not retried, naming what is over. Service Quotas is answered by botocore's
Stubber, as in test_quotas.py (moto implements no ListServiceQuotas)."""

from __future__ import annotations

import pytest
import yaml

from include.config import DATASETS_DIR, load_settings
from include.run_limits import refuse_stage_run_over_limits
from tests.include.test_quotas import (
    FIRST_PAGE,
    PROCESSING_M5,
    REGION,
    SETTINGS,
    TRANSFORM_M5,
    quota,
)


def test_the_local_target_checks_nothing(service_quotas):
    client, _ = service_quotas  # nothing queued: any request would fail the test
    local = load_settings({"PIPELINE_TARGET": "local"})
    refuse_stage_run_over_limits(local, "churn", "monitoring", client=client)


def test_a_stage_run_within_its_limits_passes(service_quotas):
    """The scoring run at the default budgets and a quota of one instance of each kind."""
    client, stubber = service_quotas
    stubber.add_response(
        "list_service_quotas",
        {"Quotas": [quota(PROCESSING_M5, 1, "L-PROCM5X"), quota(TRANSFORM_M5, 1, "L-TRANM5X")]},
        FIRST_PAGE,
    )
    refuse_stage_run_over_limits(SETTINGS, "churn", "scoring", client=client)


def test_a_stage_run_over_a_quota_fails_its_task(service_quotas):
    from airflow.sdk.exceptions import AirflowFailException

    client, stubber = service_quotas
    stubber.add_response(
        "list_service_quotas", {"Quotas": [quota(PROCESSING_M5, 0, "L-PROCM5X")]}, FIRST_PAGE
    )
    with pytest.raises(AirflowFailException) as refused:
        refuse_stage_run_over_limits(SETTINGS, "churn", "monitoring", client=client)
    assert str(refused.value).startswith(
        "refused before starting, over the account's Service Quotas: sagemaker quota "
        f"'{PROCESSING_M5}' (L-PROCM5X) in {REGION}: applied value 0, the run needs 1 instance"
    ), refused.value


def test_a_scoring_run_over_its_run_budget_fails_before_any_quota_is_read(service_quotas, tmp_path):
    """Each of the scoring run's three jobs fits the per-job budget; together they are over the
    per-run one (both set from the run's own estimate: test_cost.py checks the prices)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.cost import estimate_stage_run, format_usd

    client, _ = service_quotas  # nothing queued: the quotas are not read
    estimates = estimate_stage_run(SETTINGS, "churn", "scoring")
    total = sum(estimate.usd for estimate in estimates)
    per_job = round(max(estimate.usd for estimate in estimates) + 0.01, 2)
    per_run = round(total - 0.02, 2)
    assert len(estimates) == 3 and per_job < per_run < total
    spec = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    spec["cost"] = {"budget_per_job_usd": per_job, "budget_per_run_usd": per_run}
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(AirflowFailException) as refused:
        refuse_stage_run_over_limits(
            SETTINGS, "churn", "scoring", datasets_dir=tmp_path, client=client
        )
    message = str(refused.value)
    assert message.startswith(f"refused before starting: the run's worst case {format_usd(total)}")
    assert f"exceeds the per-run budget {format_usd(per_run)}" in message, message
    assert "per-job budget" not in message, message


def test_an_ingestion_run_of_a_month_is_over_the_default_run_budget(service_quotas):
    """One Glue job a day: 30 days are over the default $50 per run, though each job fits."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.cost import estimate_stage_run, format_usd

    client, _ = service_quotas  # Glue jobs need no quota: nothing is read
    refuse_stage_run_over_limits(SETTINGS, "churn", "ingestion", client=client, days=1)
    month = estimate_stage_run(SETTINGS, "churn", "ingestion", days=30)
    assert len(month) == 30 and sum(e.usd for e in month) > 50
    with pytest.raises(AirflowFailException) as refused:
        refuse_stage_run_over_limits(SETTINGS, "churn", "ingestion", client=client, days=30)
    total = format_usd(sum(e.usd for e in month))
    assert str(refused.value).startswith(f"refused before starting: the run's worst case {total}")
    assert "exceeds the per-run budget $50.00" in str(refused.value)
