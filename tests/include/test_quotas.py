"""The Service Quotas pre-check of a stage run: the quotas its requests need, read from Service
Quotas (applied values, AWS's defaults where the account has none, every page) and the refusal
that names each quota, its value and the need.

Service Quotas is answered by botocore's Stubber, which checks every request and response against
the service model: moto 5.2 implements neither ListServiceQuotas nor any SageMaker or EMR
Serverless quota (its ListAWSDefaultServiceQuotas knows the ``vpc`` service code only).
"""

from __future__ import annotations

import logging

import pytest
from aws_test_env import AWS_ENV

from include import quotas
from include.config import load_settings
from include.cost import stage_run_jobs

REGION = AWS_ENV["AWS_REGION"]
SETTINGS = load_settings(AWS_ENV)
SPOT_G5 = "ml.g5.xlarge for spot training job usage"
PROCESSING_M5 = "ml.m5.xlarge for processing job usage"
TRANSFORM_M5 = "ml.m5.xlarge for transform job usage"
FIRST_PAGE = {"ServiceCode": "sagemaker", "MaxResults": 100}


def quota(name: str, value: float, code: str, service_code: str = "sagemaker") -> dict:
    return {
        "ServiceCode": service_code,
        "ServiceName": service_code,
        "QuotaArn": f"arn:aws:servicequotas:{REGION}:123456789012:{service_code}/{code}",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": float(value),
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
    }


def test_a_training_run_needs_its_parallel_trials_and_the_baselines_instances():
    needs = quotas.quota_needs(
        stage_run_jobs(SETTINGS, "churn", "training", tuning_max_jobs=4, tuning_max_parallel_jobs=3)
    )
    assert [(n.service_code, n.quota_name, n.amount, n.jobs) for n in needs] == [
        ("sagemaker", SPOT_G5, 3, ("task tune: 3 trials at once x 1 ml.g5.xlarge instance",)),
        ("sagemaker", PROCESSING_M5, 1, ("task monitoring_baseline: 1 ml.m5.xlarge instance",)),
    ]


def test_a_scoring_runs_jobs_run_one_after_another_so_a_quota_holds_the_largest():
    needs = quotas.quota_needs(stage_run_jobs(SETTINGS, "churn", "scoring"))
    assert [(n.quota_name, n.amount, len(n.jobs)) for n in needs] == [
        (PROCESSING_M5, 1, 2),  # scoring_input, then predictions
        (TRANSFORM_M5, 1, 1),
    ]
    on_demand = load_settings({**AWS_ENV, "HEADRACE_TRAINING_USE_SPOT": "false"})
    (tuning, _) = quotas.quota_needs(stage_run_jobs(on_demand, "churn", "training"))
    assert tuning.quota_name == "ml.g5.xlarge for training job usage"


def test_a_run_within_its_quotas_passes_and_logs_each(service_quotas, caplog):
    client, stubber = service_quotas
    stubber.add_response(
        "list_service_quotas",
        {"Quotas": [quota(SPOT_G5, 4, "L-SPOTG5X"), quota(PROCESSING_M5, 1, "L-PROCM5X")]},
        FIRST_PAGE,
    )
    with caplog.at_level(logging.INFO):
        lines = quotas.check_stage_quotas(
            SETTINGS,
            "churn",
            "training",
            client=client,
            log=logging.getLogger("test"),
            tuning_max_jobs=4,
            tuning_max_parallel_jobs=4,
        )
    assert lines == [
        f"sagemaker quota '{SPOT_G5}' (L-SPOTG5X) in {REGION}: applied value 4, the run needs "
        "4 instances (task tune: 4 trials at once x 1 ml.g5.xlarge instance)",
        f"sagemaker quota '{PROCESSING_M5}' (L-PROCM5X) in {REGION}: applied value 1, the run "
        "needs 1 instance (task monitoring_baseline: 1 ml.m5.xlarge instance)",
    ]
    assert [r.getMessage() for r in caplog.records] == [f"Service quota: {line}" for line in lines]


def test_a_quota_below_the_need_refuses_naming_its_name_code_value_and_need(service_quotas):
    client, stubber = service_quotas
    stubber.add_response(
        "list_service_quotas",
        {"Quotas": [quota(SPOT_G5, 2, "L-SPOTG5X"), quota(PROCESSING_M5, 1, "L-PROCM5X")]},
        FIRST_PAGE,
    )
    with pytest.raises(quotas.QuotaError) as refused:
        quotas.check_stage_quotas(
            SETTINGS, "churn", "training", client=client, tuning_max_parallel_jobs=3
        )
    assert str(refused.value) == (
        "refused before starting, over the account's Service Quotas: sagemaker quota "
        f"'{SPOT_G5}' (L-SPOTG5X) in {REGION}: applied value 2, the run needs 3 instances "
        "(task tune: 3 trials at once x 1 ml.g5.xlarge instance). Request an increase of the "
        "quota (Service Quotas, by its code) or lower the run's instances, trials at once or "
        "instance type"
    )


def test_the_pages_are_followed_to_the_last(service_quotas):
    # Tokens as the model's pattern wants them (base64): validate_request checks each page's body.
    client, stubber = service_quotas
    filler = [quota(f"ml.c5.{n}xlarge for training job usage", 8, f"L-FILL{n}") for n in (2, 4)]
    stubber.add_response(
        "list_service_quotas", {"Quotas": filler, "NextToken": "cGFnZS0y"}, FIRST_PAGE
    )
    stubber.add_response(
        "list_service_quotas",
        {"Quotas": [quota(PROCESSING_M5, 2, "L-PROCM5X")], "NextToken": "cGFnZS0z"},
        {**FIRST_PAGE, "NextToken": "cGFnZS0y"},
    )
    stubber.add_response(
        "list_service_quotas",
        {"Quotas": [quota(SPOT_G5, 1, "L-SPOTG5X")]},
        {**FIRST_PAGE, "NextToken": "cGFnZS0z"},
    )
    # The spot quota is on the last page: its value 1 is below the 2 trials at once.
    with pytest.raises(
        quotas.QuotaError, match=r"\(L-SPOTG5X\) .*applied value 1, the run needs 2"
    ):
        quotas.check_stage_quotas(SETTINGS, "churn", "training", client=client, tuning_max_jobs=4)


def test_a_quota_without_an_applied_value_takes_awss_default(service_quotas):
    client, stubber = service_quotas
    stubber.add_response(
        "list_service_quotas", {"Quotas": [quota(SPOT_G5, 4, "L-SPOTG5X")]}, FIRST_PAGE
    )
    stubber.add_response(
        "list_aws_default_service_quotas",
        {"Quotas": [quota(PROCESSING_M5, 0, "L-PROCM5X"), quota(SPOT_G5, 0, "L-SPOTG5X")]},
        FIRST_PAGE,
    )
    with pytest.raises(quotas.QuotaError) as refused:
        quotas.check_stage_quotas(SETTINGS, "churn", "training", client=client, tuning_max_jobs=4)
    message = str(refused.value)
    # The default answers for the processing quota only: the spot quota's applied 4 holds.
    assert (
        f"sagemaker quota '{PROCESSING_M5}' (L-PROCM5X) in {REGION}: AWS default value 0, the run "
        "needs 1 instance (task monitoring_baseline: 1 ml.m5.xlarge instance)"
    ) in message
    assert SPOT_G5 not in message


def test_a_default_quota_that_holds_passes(service_quotas):
    client, stubber = service_quotas
    stubber.add_response("list_service_quotas", {"Quotas": []}, FIRST_PAGE)
    stubber.add_response(
        "list_aws_default_service_quotas",
        {"Quotas": [quota(PROCESSING_M5, 4, "L-PROCM5X"), quota(TRANSFORM_M5, 1, "L-TRANM5X")]},
        FIRST_PAGE,
    )
    lines = quotas.check_stage_quotas(SETTINGS, "churn", "scoring", client=client)
    assert [line.split(": ", 1)[1].split(",")[0] for line in lines] == [
        "AWS default value 4",
        "AWS default value 1",
    ]


def test_an_instance_type_with_no_quota_is_refused_by_name(service_quotas):
    client, stubber = service_quotas
    settings = load_settings({**AWS_ENV, "HEADRACE_TRAINING_INSTANCE_TYPE": "ml.p4d.24xlarge"})
    listed = {"Quotas": [quota(SPOT_G5, 4, "L-SPOTG5X"), quota(PROCESSING_M5, 1, "L-PROCM5X")]}
    stubber.add_response("list_service_quotas", listed, FIRST_PAGE)
    stubber.add_response("list_aws_default_service_quotas", listed, FIRST_PAGE)
    with pytest.raises(quotas.QuotaError) as refused:
        quotas.check_stage_quotas(settings, "churn", "training", client=client, tuning_max_jobs=1)
    assert (
        "Service Quotas lists no sagemaker quota 'ml.p4d.24xlarge for spot training job usage' "
        f"in {REGION}, applied or default (task tune: 1 ml.p4d.24xlarge instance): "
        "ml.p4d.24xlarge is probably not an instance type SageMaker offers for spot training "
        f"jobs in {REGION}"
    ) in str(refused.value)


def test_a_role_that_may_not_read_quotas_is_told_which_actions_it_needs(service_quotas):
    client, stubber = service_quotas
    stubber.add_client_error(
        "list_service_quotas", "AccessDeniedException", "not authorized", 400, FIRST_PAGE
    )
    with pytest.raises(
        quotas.QuotaError,
        match="servicequotas:ListServiceQuotas and servicequotas:ListAWSDefaultServiceQuotas",
    ):
        quotas.check_stage_quotas(SETTINGS, "churn", "monitoring", client=client)


def test_emr_serverless_capacity_is_checked_against_the_accounts_vcpus(service_quotas):
    client, stubber = service_quotas
    settings = load_settings(
        {
            **AWS_ENV,
            "HEADRACE_SPARK_ENGINE": "emr_serverless",
            "HEADRACE_EMR_SERVERLESS_APPLICATION_ID": "00f0abcdefgh1234",
        }
    )
    vcpus = quota(quotas.EMR_SERVERLESS_VCPU_QUOTA, 16, "L-D05C8A75", "emr-serverless")
    stubber.add_response(
        "list_service_quotas",
        {"Quotas": [vcpus]},
        {"ServiceCode": "emr-serverless", "MaxResults": 100},
    )
    with pytest.raises(quotas.QuotaError) as refused:
        quotas.check_stage_quotas(
            settings,
            "churn",
            "ingestion",
            client=client,
            days=2,
            emr_serverless_maximum_capacity={"cpu": "400 vCPU", "memory": "3000 GB"},
        )
    assert (
        "emr-serverless quota 'Max concurrent vCPUs per account' (L-D05C8A75) in "
        f"{REGION}: applied value 16, the run needs 400 vCPUs"
    ) in str(refused.value)


def test_a_run_of_glue_jobs_only_reads_no_quota(service_quotas):
    client, _ = service_quotas  # nothing queued: any request would fail the test
    assert SETTINGS.aws.spark_engine == "glue"
    assert quotas.check_stage_quotas(SETTINGS, "churn", "validation", client=client) == []
