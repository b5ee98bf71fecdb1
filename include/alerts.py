"""The one way headrace tells people something needs them: a JSON file in the lake on both
targets (the audit trail), plus an SNS message on aws when a topic is configured, or a warning
log line locally.

Drift (:func:`include.scoring_pipeline.raise_drift_alert`) and stuck days
(:func:`include.reconciliation.raise_stuck_days_alert`) both go through :func:`send_alert`, under
``monitoring/<dataset>/alerts/``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from include.config import Settings

log = logging.getLogger("headrace.alerts")

# SNS refuses a subject over 100 characters.
MAX_SUBJECT = 100


def alert_uri(settings: Settings, dataset: str, name: str) -> str:
    """``monitoring/<dataset>/alerts/<name>.json``; ``name`` may hold a folder."""
    return f"{settings.zone_uri('monitoring')}/{dataset}/alerts/{name}.json"


def send_alert(
    settings: Settings,
    *,
    uri: str,
    subject: str,
    body: Mapping[str, Any],
    summary: str,
    topic_arn: str | None = None,
) -> dict[str, Any]:
    """Write ``body`` as JSON at ``uri``, then publish it to ``topic_arn`` on aws (a warning is
    logged when none is configured) or log ``subject: summary`` as a warning locally.

    Returns ``{"alert_uri", "sns_message_id"}`` (the id is None unless published).
    """
    from include.storage import storage_for

    subject = subject[:MAX_SUBJECT]
    storage_for(uri).write_bytes(uri, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())
    published = None
    if settings.is_local:
        log.warning("ALERT %s: %s (%s)", subject, summary, uri)
    elif topic_arn:
        import boto3

        client = boto3.client("sns", region_name=settings.aws.region)
        published = client.publish(
            TopicArn=topic_arn, Subject=subject, Message=json.dumps(body, indent=2)
        )["MessageId"]
        log.warning("ALERT %s: published to %s as %s", subject, topic_arn, published)
    else:
        log.warning("ALERT %s: %s (no SNS topic configured; written to %s)", subject, summary, uri)
    return {"alert_uri": uri, "sns_message_id": published}
