"""The drift alert on the aws target: published to the configured SNS topic (moto server) and
written to the lake, with the drifted features a person needs to act on."""

from __future__ import annotations

import json

import pytest

from include.config import ConfigError, get_settings, load_settings
from include.scoring_pipeline import raise_drift_alert


def test_a_drift_alert_reaches_the_configured_topic_and_the_lake(aws_target, monkeypatch):
    sns, sqs = aws_target.client("sns"), aws_target.client("sqs")
    topic_arn = sns.create_topic(Name="headrace-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alert-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("HEADRACE_ALERTS_TOPIC_ARN", topic_arn)
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.aws.alerts_topic_arn == topic_arn

    result = {
        "dataset": "churn",
        "ds": "2026-01-08",
        "model_version": "3",
        "drifted_features": ["sessions", "region"],
        "verdict": "drift: 2 of 13 features over threshold (sessions psi=4.13>0.2, region psi=0.39>0.2)",
        "uris": {"html": f"s3://{aws_target.bucket}/lake/reports/churn/drift/ds=2026-01-08/drift_report.html"},
    }  # fmt: skip
    outcome = raise_drift_alert(settings, result, topic_arn=settings.aws.alerts_topic_arn)

    (message,) = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["MessageId"] == outcome["sns_message_id"]
    assert envelope["Subject"] == "headrace: churn drift on 2026-01-08"
    published = json.loads(envelope["Message"])
    assert published["drifted_features"] == ["sessions", "region"]
    assert published["verdict"] == result["verdict"]
    # The same alert is kept in the lake as the audit trail.
    key = "lake/monitoring/churn/alerts/ds=2026-01-08.json"
    assert outcome["alert_uri"] == f"s3://{aws_target.bucket}/{key}"
    stored = aws_target.client("s3").get_object(Bucket=aws_target.bucket, Key=key)["Body"].read()
    assert json.loads(stored) == published


def test_a_malformed_topic_arn_is_refused_by_name():
    env = {
        "PIPELINE_TARGET": "aws",
        "AWS_REGION": "eu-west-1",
        "HEADRACE_ALERTS_TOPIC_ARN": "headrace-alerts",
    }
    with pytest.raises(
        ConfigError,
        match="HEADRACE_ALERTS_TOPIC_ARN='headrace-alerts' is not a valid SNS topic ARN",
    ):
        load_settings(env)
