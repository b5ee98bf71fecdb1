"""The aws target's landing watcher against a moto server on 127.0.0.1: an object put under the
landing prefix makes S3 notify an SQS queue, the Amazon provider's SqsSensorTrigger (as the
ingestion DAG configures it) receives the notification, and the ingestion run's days come out of
the event it fires. Another dataset's notifications stay in the queue for their own watcher."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from include.config import get_settings
from include.ingestion import ingestion_days
from include.pipelines.ingestion import landing_watchers

pytestmark = pytest.mark.usefixtures("fresh_settings")


@pytest.fixture
def landing_queue(aws_target, monkeypatch):
    """An SQS queue that S3 notifies of every object created under the lake's landing/."""
    sqs, s3 = aws_target.client("sqs"), aws_target.client("s3")
    queue_url = sqs.create_queue(QueueName="headrace-landing")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=aws_target.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "headrace-landing",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {"FilterRules": [{"Name": "prefix", "Value": "lake/landing/"}]}
                    },
                }
            ]
        },
    )
    monkeypatch.setenv("HEADRACE_LANDING_QUEUE_URL", queue_url)
    # The trigger's hook reads the aws_default connection: moto's endpoint, no real account.
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "extra": {"endpoint_url": aws_target.endpoint, "region_name": "eu-west-1"},
            }
        ),
    )
    get_settings.cache_clear()
    return SimpleNamespace(url=queue_url, sqs=sqs, s3=s3, bucket=aws_target.bucket)


def first_event(trigger, timeout: float = 30.0) -> dict:
    async def run():
        generator = trigger.run()
        try:
            return (await asyncio.wait_for(generator.__anext__(), timeout)).payload
        finally:
            await generator.aclose()

    return asyncio.run(run())


def test_an_s3_landing_notification_starts_ingestion_of_its_day(landing_queue):
    (watcher,) = landing_watchers(get_settings(), "churn")
    trigger = watcher.trigger
    assert type(trigger).__name__ == "SqsSensorTrigger"
    assert watcher.name == "churn_landing_queue"
    assert trigger.sqs_queue == landing_queue.url
    # Another dataset's file and a churn file: only the churn notification is the watcher's.
    landing_queue.s3.put_object(
        Bucket=landing_queue.bucket, Key="lake/landing/orders/ds=2026-01-06/a.csv", Body=b"id\n1\n"
    )
    landing_queue.s3.put_object(
        Bucket=landing_queue.bucket,
        Key="lake/landing/churn/ds=2026-01-07/part-00000.csv.gz",
        Body=b"\x1f\x8b",
    )

    payload = first_event(trigger)

    assert payload["status"] == "success"
    (message,) = payload["message_batch"]
    (record,) = json.loads(message["Body"])["Records"]
    assert record["eventName"].startswith("ObjectCreated")
    # What Airflow stores as the asset event's extra; the ingestion run reads its days from it.
    event = SimpleNamespace(extra={"from_trigger": True, "payload": payload})
    assert ingestion_days("churn", None, {"churn_landing": [event]}, None).days == ["2026-01-07"]

    # The churn message was deleted; the other dataset's (and S3's test event) were left for
    # their own watchers, not consumed.
    attributes = landing_queue.sqs.get_queue_attributes(
        QueueUrl=landing_queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    left = int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )
    assert left >= 1
    received = landing_queue.sqs.receive_message(
        QueueUrl=landing_queue.url, MaxNumberOfMessages=10, VisibilityTimeout=0
    ).get("Messages", [])
    bodies = " ".join(m["Body"] for m in received)
    assert "churn/ds" not in bodies


def test_without_a_queue_the_aws_target_has_no_watcher(aws_target):
    assert landing_watchers(get_settings(), "churn") == []
