"""Deterministic job names: stable across tries, distinct across task instances, valid per service."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from include.aws_validation import validate_request
from include.job_names import NAMING_RULES, TaskRunIdentity

SCHEDULED = TaskRunIdentity(
    dag_id="ingest_daily",
    run_id="scheduled__2026-01-02T00:00:00+00:00",
    task_id="ingest.orders",
)
# Long and full of characters no service accepts.
AWKWARD = TaskRunIdentity(
    dag_id="Ingest Daily/" + "x" * 240,
    run_id="manual__2026-01-02T10:11:12.123456+00:00",
    task_id="group.task with spaces & ünïcode",
    map_index=12,
)

# The services' own rules, from their API references.
SERVICE_PATTERNS = {
    "run_key": re.compile(r"[a-z0-9](-*[a-z0-9]){0,62}"),
    "glue_job": re.compile(r"[A-Za-z0-9_.-]{1,255}"),
    "emr_serverless_client_token": re.compile(r"[A-Za-z0-9._-]{1,64}"),
    "emr_serverless_name": re.compile(r"[A-Za-z0-9._-]{1,256}"),
    "emr_step": re.compile(r"[A-Za-z0-9._-]{1,256}"),
    "sagemaker": re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"),
    "sagemaker_tuning": re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}"),
}


def test_the_run_key_is_readable_and_ends_in_the_digest():
    assert SCHEDULED.run_key == f"ingest-daily-ingest-orders-{SCHEDULED.digest}"
    assert re.fullmatch(r"[0-9a-f]{16}", SCHEDULED.digest)


def test_the_same_task_instance_always_gets_the_same_names():
    again = TaskRunIdentity(
        dag_id="ingest_daily",
        run_id="scheduled__2026-01-02T00:00:00+00:00",
        task_id="ingest.orders",
    )
    for service in NAMING_RULES:
        assert again.name_for(service) == SCHEDULED.name_for(service)


@pytest.mark.parametrize(
    "other",
    [
        TaskRunIdentity("ingest_daily", "scheduled__2026-01-03T00:00:00+00:00", "ingest.orders"),
        TaskRunIdentity("ingest_daily", "scheduled__2026-01-02T00:00:00+00:00", "ingest.other"),
        TaskRunIdentity("ingest_hourly", "scheduled__2026-01-02T00:00:00+00:00", "ingest.orders"),
        TaskRunIdentity("ingest_daily", "scheduled__2026-01-02T00:00:00+00:00", "ingest.orders", 0),
    ],
)
def test_another_task_instance_gets_another_name(other):
    for service in NAMING_RULES:
        assert other.name_for(service) != SCHEDULED.name_for(service)


@pytest.mark.parametrize("service", sorted(NAMING_RULES))
@pytest.mark.parametrize("identity", [SCHEDULED, AWKWARD], ids=["scheduled", "awkward"])
def test_names_fit_each_services_rule(service, identity):
    name = identity.name_for(service)
    assert SERVICE_PATTERNS[service].fullmatch(name), name
    assert len(name) <= NAMING_RULES[service].max_length
    # Truncation shortens the readable part, never the digest.
    assert name.endswith(identity.digest)


def test_a_suffix_is_kept_within_the_limit():
    token = AWKWARD.name_for("emr_serverless_client_token", suffix="12")
    assert len(token) == 64
    assert token.endswith(f"-{AWKWARD.digest}-12")
    assert token.startswith("headrace-Ingest-Daily-x")


def test_the_tightest_rule_still_gets_a_readable_part():
    assert SCHEDULED.name_for("sagemaker_tuning") == f"headrace-ingest-{SCHEDULED.digest}"


def test_names_pass_the_services_own_validation():
    # The generated names in the request fields they are made for.
    validate_request(
        "emr-serverless",
        "StartJobRun",
        {
            "applicationId": "00f0abcdefgh1234",
            "clientToken": AWKWARD.name_for("emr_serverless_client_token", suffix="3"),
            "executionRoleArn": "arn:aws:iam::123456789012:role/headrace-emr",
            "name": AWKWARD.name_for("emr_serverless_name"),
        },
    )
    validate_request(
        "sagemaker",
        "DescribeHyperParameterTuningJob",
        {"HyperParameterTuningJobName": AWKWARD.name_for("sagemaker_tuning")},
    )


def test_unknown_service_and_a_prefix_that_leaves_no_room_are_refused():
    with pytest.raises(ValueError, match="no naming rule for service 'lambda'"):
        SCHEDULED.name_for("lambda")
    with pytest.raises(ValueError, match="leave no room"):
        SCHEDULED.name_for("sagemaker_tuning", prefix="p" * 20)


def test_identity_from_an_airflow_context():
    ti = SimpleNamespace(
        dag_id="ingest_daily", run_id="manual__x", task_id="ingest", map_index=4, try_number=3
    )
    assert TaskRunIdentity.from_context({"ti": ti}) == TaskRunIdentity(
        "ingest_daily", "manual__x", "ingest", 4
    )
    ti.try_number = 1  # the try number is not part of the identity
    assert TaskRunIdentity.from_context({"ti": ti}).run_key == (
        TaskRunIdentity("ingest_daily", "manual__x", "ingest", 4).run_key
    )
