"""Which days a landing event names: S3 event notifications (as S3 sends them to SQS, and
wrapped by SNS), the local watcher's payload, REST-posted events; and the days an ingestion run
ingests from its param, its events or its date."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from include.config import load_settings
from include.ingestion import ingest_runs, ingestion_days
from include.partitions import (
    PartitionError,
    landing_partition_of_key,
    landing_partitions_from_asset_events,
    s3_notification_keys,
)


def s3_notification(*keys: str, event_name: str = "ObjectCreated:Put") -> str:
    """An S3 event notification body as S3 puts it on an SQS queue (event structure 2.1)."""
    records = [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "eu-west-1",
            "eventTime": "2026-01-08T00:03:12.345Z",
            "eventName": event_name,
            "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "203.0.113.7"},
            "responseElements": {
                "x-amz-request-id": "C3D13FE58DE4C810",  # pragma: allowlist secret
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "headrace-landing",
                "bucket": {
                    "name": "headrace-lake",
                    "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                    "arn": "arn:aws:s3:::headrace-lake",
                },
                "object": {
                    "key": key,
                    "size": 1024,
                    "eTag": "d41d8cd98f00b204e9800998ecf8427e",  # pragma: allowlist secret
                    "sequencer": "0055AED6DCD90281E5",  # pragma: allowlist secret
                },
            },
        }
        for key in keys
    ]
    return json.dumps({"Records": records})


def sqs_message(body: str, number: int = 1) -> dict:
    """A message of the SqsSensorTrigger's ``message_batch`` (what ReceiveMessage returns)."""
    return {
        "MessageId": f"9c4e2a4e-0000-4000-8000-00000000000{number}",
        "ReceiptHandle": f"receipt-{number}",
        "MD5OfBody": "0" * 32,
        "Body": body,
    }


def asset_event(extra: dict, minute: int = 0):
    return SimpleNamespace(
        id=minute, extra=extra, timestamp=datetime(2026, 1, 8, 0, minute, tzinfo=UTC)
    )


def from_watcher(payload: dict, minute: int = 0):
    """How Airflow 3.0 stores a watcher's trigger event: ``Trigger.submit_event``'s extra."""
    return asset_event({"from_trigger": True, "payload": payload}, minute)


def test_keys_of_an_s3_notification_are_url_decoded():
    body = s3_notification("lake/landing/churn/ds%3D2026-01-07/crm+export+1.csv.gz")
    assert s3_notification_keys(body) == [
        ("headrace-lake", "lake/landing/churn/ds=2026-01-07/crm export 1.csv.gz")
    ]


def test_an_sns_envelope_is_opened_and_test_and_removal_events_name_nothing():
    wrapped = json.dumps(
        {
            "Type": "Notification",
            "MessageId": "b1a8f7a2-0000-4000-8000-000000000000",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:headrace-landing",
            "Message": s3_notification("lake/landing/churn/ds=2026-01-07/a.csv"),
        }
    )
    assert s3_notification_keys(wrapped) == [
        ("headrace-lake", "lake/landing/churn/ds=2026-01-07/a.csv")
    ]
    test_event = json.dumps(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "headrace-lake"}
    )
    assert s3_notification_keys(test_event) == []
    removed = s3_notification(
        "lake/landing/churn/ds=2026-01-07/a.csv", event_name="ObjectRemoved:Delete"
    )
    assert s3_notification_keys(removed) == []
    with pytest.raises(PartitionError, match="an SQS message body is not JSON"):
        s3_notification_keys("hello")


def test_the_day_of_a_landing_key_belongs_to_its_dataset():
    assert landing_partition_of_key("lake/landing/churn/ds=2026-01-07/a.csv", "churn") == (
        "2026-01-07"
    )
    assert landing_partition_of_key("landing/churn/ds=2026-01-07/a.csv", "churn") == "2026-01-07"
    assert landing_partition_of_key("lake/landing/orders/ds=2026-01-07/a.csv", "churn") is None
    assert landing_partition_of_key("lake/curated/churn/ds=2026-01-07/a.parquet", "churn") is None
    assert landing_partition_of_key("lake/landing/churn_eu/ds=2026-01-07/a.csv", "churn") is None
    with pytest.raises(PartitionError, match=r"landing object lake/landing/churn/ds=2026-13-01/a"):
        landing_partition_of_key("lake/landing/churn/ds=2026-13-01/a.csv", "churn")


def test_every_day_of_every_event_is_kept_once_and_sorted():
    batch = {
        "status": "success",
        "message_batch": [
            sqs_message(
                s3_notification(
                    "lake/landing/churn/ds%3D2026-01-06/part-0.csv",
                    "lake/landing/churn/ds%3D2026-01-06/part-1.csv",
                    "lake/landing/orders/ds%3D2026-01-01/part-0.csv",
                ),
                1,
            ),
            sqs_message(s3_notification("lake/landing/churn/ds=2026-01-05/part-0.csv"), 2),
        ],
    }
    events = {
        "churn_landing": [
            from_watcher(batch, 1),
            from_watcher({"dataset": "churn", "ds": "2026-01-07", "files": []}, 2),
            from_watcher({"dataset": "orders", "ds": "2026-01-02", "files": []}, 3),
            asset_event({"ds": "2026-01-07"}, 4),  # posted through the REST API
        ]
    }
    landing = landing_partitions_from_asset_events(events, "churn")
    assert landing.days == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert landing.rejected == []
    # Each day with its newest event's time: 2026-01-07 was named at minutes 2 and 4.
    assert {day: at.minute for day, at in landing.named_at.items()} == {
        "2026-01-05": 1,
        "2026-01-06": 1,
        "2026-01-07": 4,
    }
    assert landing_partitions_from_asset_events({}, "churn").days == []


def test_a_malformed_event_is_refused_alone_and_the_good_days_go_through():
    good = from_watcher({"dataset": "churn", "ds": "2026-01-07"}, 1)
    bad_day = from_watcher({"dataset": "churn", "ds": "2026-02-30"}, 2)
    # An SQS batch with one good day and one message that is not JSON: the event is refused
    # whole (its good key included), as one unit of delivery.
    bad_body = from_watcher(
        {"message_batch": [sqs_message(s3_notification("lake/landing/churn/ds=2026-01-08/a.csv"), 3),
                           {"MessageId": "m4", "Body": "{not json"}]},
        3,
    )  # fmt: skip
    landing = landing_partitions_from_asset_events(
        {"churn_landing": [good, bad_day, bad_body]}, "churn"
    )
    assert landing.days == ["2026-01-07"]
    assert [(r["asset"], r["event"]["id"]) for r in landing.rejected] == [
        ("churn_landing", 2),
        ("churn_landing", 3),
    ]
    assert "the landing watcher's ds='2026-02-30'" in landing.rejected[0]["reason"]
    assert "not JSON" in landing.rejected[1]["reason"]


def test_refused_events_are_kept_in_the_quarantine_zone(tmp_path):
    from include.ingestion import quarantine_rejected_events

    settings = load_settings({"HEADRACE_LAKE_ROOT": tmp_path.as_uri()})
    bad_day = from_watcher({"dataset": "churn", "ds": "2026-02-30"}, 7)
    landing = ingestion_days("churn", None, {"churn_landing": [bad_day]}, None)
    assert landing.days == []
    uri = quarantine_rejected_events(
        settings, "churn", "asset_triggered__2026-01-09T00:00", landing.rejected
    )
    path = (
        tmp_path
        / "quarantine"
        / "churn"
        / "_rejected_events"
        / "asset_triggered__2026-01-09T00_00.json"
    )
    assert uri == path.as_uri()
    kept = json.loads(path.read_text())
    assert kept["run_id"] == "asset_triggered__2026-01-09T00:00"
    assert kept["rejected_events"] == landing.rejected
    assert kept["rejected_events"][0]["event"]["id"] == 7


def test_the_days_of_a_run_come_from_param_then_events_then_the_day_before_the_run():
    events = {"churn_landing": [from_watcher({"dataset": "churn", "ds": "2026-01-07"})]}
    scheduled_at = datetime(2026, 1, 9, 0, 0, tzinfo=UTC)
    assert ingestion_days("churn", "2026-01-03", events, scheduled_at).days == ["2026-01-03"]
    assert ingestion_days("churn", None, events, scheduled_at).days == ["2026-01-07"]
    assert ingestion_days("churn", "", {}, scheduled_at).days == ["2026-01-08"]
    with pytest.raises(PartitionError, match=r"params\.ds='yesterday'"):
        ingestion_days("churn", "yesterday", events, scheduled_at)


def test_a_run_whose_events_name_no_day_fails_rather_than_guessing():
    events = {"churn_landing": [from_watcher({"status": "success", "message_batch": []})]}
    with pytest.raises(PartitionError, match="none names a landing day of churn"):
        ingestion_days("churn", None, events, datetime(2026, 1, 9, tzinfo=UTC))


def test_each_day_gets_its_own_ingest_arguments_and_event_extra():
    settings = load_settings({"HEADRACE_LAKE_ROOT": "file:///lake"})
    runs = ingest_runs(settings, "churn", ["2026-01-06", "2026-01-07"])
    assert [run["asset_extra"] for run in runs] == [{"ds": "2026-01-06"}, {"ds": "2026-01-07"}]
    assert [run["partition_key"] for run in runs] == ["2026-01-06", "2026-01-07"]
    argv = dict(zip(runs[1]["job_args"][::2], runs[1]["job_args"][1::2], strict=True))
    assert argv["--ds"] == "2026-01-07"
    assert argv["--landing-uri"] == "file:///lake/landing"
    assert argv["--lake-root"] == "file:///lake"
    assert argv["--pii-salt-env"] == "HEADRACE_PII_SALT"


@pytest.mark.parametrize(
    "path",
    [
        "landing/redelivered",
        "landing/redelivered/churn/ds=2026-01-07/",
        "landing/churn/ds=2026-01-07",
    ],
)
def test_a_landing_path_param_inside_the_landing_zone_becomes_the_jobs_landing_uri(path):
    from include.ingestion import landing_path_uri

    settings = load_settings({"HEADRACE_LAKE_ROOT": "file:///lake"})
    uri = landing_path_uri(settings, path)
    assert uri == f"file:///lake/{path.rstrip('/')}"
    (run,) = ingest_runs(settings, "churn", ["2026-01-07"], landing_uri=uri)
    argv = dict(zip(run["job_args"][::2], run["job_args"][1::2], strict=True))
    assert argv["--landing-uri"] == uri


@pytest.mark.parametrize(
    "path",
    [
        "landing/churn/../../../etc",
        "landing/..",
        "landing/./churn",
        "landing",
        "curated/churn",
        "s3://someone-elses-bucket/landing/churn/",
        "file:///etc",
        "/etc/passwd",
        "landing/churn/ds=2026-01-07\nx",
        "",
    ],
)
def test_a_landing_path_outside_the_landing_zone_is_refused_naming_the_param(path):
    import re

    from include.ingestion import LANDING_PATH_PATTERN, landing_path_uri

    # The Param's JSON schema (what the REST API and the UI form check) refuses it...
    assert not re.search(LANDING_PATH_PATTERN, path)
    # ...and so does the task, for a run created some other way.
    settings = load_settings({"HEADRACE_LAKE_ROOT": "file:///lake"})
    with pytest.raises(PartitionError, match=r"params\.path="):
        landing_path_uri(settings, path)


def test_the_sqs_filter_keeps_only_the_datasets_landing_notifications():
    """The JSONPath the watcher hands SqsSensorTrigger, run through the provider's own filter."""
    from airflow.providers.amazon.aws.utils.sqs import filter_messages

    from include.pipelines.ingestion import sqs_landing_key_filter

    settings = SimpleNamespace(zone_uri=lambda zone: f"s3://headrace-lake/lake/{zone}")
    expression = sqs_landing_key_filter(settings, "churn")
    messages = [
        sqs_message(s3_notification("lake/landing/churn/ds%3D2026-01-07/a.csv"), 1),
        sqs_message(s3_notification("lake/landing/churn/ds=2026-01-08/a.csv"), 2),
        # moto spells "/" as %2F too (S3 does not): still the watcher's.
        sqs_message(s3_notification("lake%2Flanding%2Fchurn%2Fds%3D2026-01-09%2Fa.csv"), 6),
        sqs_message(s3_notification("lake/landing/churn_eu/ds=2026-01-08/a.csv"), 3),
        sqs_message(s3_notification("lake/curated/churn/ds=2026-01-08/a.parquet"), 4),
        sqs_message(json.dumps({"Event": "s3:TestEvent", "Service": "Amazon S3"}), 5),
    ]
    kept = filter_messages(messages, "jsonpath-ext", None, expression)
    assert [m["ReceiptHandle"] for m in kept] == ["receipt-1", "receipt-2", "receipt-6"]
