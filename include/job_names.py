"""Deterministic names for the jobs a task starts, so a retried task finds its own job again.

A name depends only on the task instance — ``(dag_id, run_id, task_id, map_index)`` — never on
the try number or the clock: try 2 computes the name try 1 used and re-attaches to that job
instead of starting a duplicate. Each AWS service has its own rule for names (length, allowed
characters), so one identity renders one name per service; every rendering of the same identity
ends in the same digest, which keeps names unique after truncation and easy to correlate.

Why not Airflow 3.3's durable execution (``task_state_store`` and ``ResumableJobMixin``)? It
persists the job id after the submit call returns, so a worker lost between the two starts a
duplicate job (the mixin documents this window); it serves synchronous operators only, while
ours defer; and it lives in the metadata database. A deterministic name closes the window at
the service itself (SageMaker refuses a second job of the same name; Glue, EMR and local runs
are found by it), holds for deferred tasks, and survives a lost metadata database. One
mechanism, so the state store is not used.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NamingRule:
    """One service's rule for a name: its longest length and the characters it forbids."""

    max_length: int
    # Runs of forbidden characters become one separator.
    forbidden: re.Pattern[str]
    lowercase: bool = False


_ALNUM_HYPHEN = re.compile(r"[^A-Za-z0-9-]+")

# The rules of the names headrace generates. Where a service allows more than the portable
# subset (Glue and EMR step names allow spaces, slashes, unicode), the subset is used anyway:
# those names end up in S3 keys, CloudWatch log groups and console URLs.
NAMING_RULES: dict[str, NamingRule] = {
    # The canonical key: a local state folder name, a Glue argument value, a label.
    "run_key": NamingRule(63, re.compile(r"[^a-z0-9-]+"), lowercase=True),
    "glue_job": NamingRule(255, re.compile(r"[^A-Za-z0-9_.-]+")),
    "emr_serverless_client_token": NamingRule(64, re.compile(r"[^A-Za-z0-9._-]+")),
    "emr_serverless_name": NamingRule(256, re.compile(r"[^A-Za-z0-9._-]+")),
    "emr_step": NamingRule(256, re.compile(r"[^A-Za-z0-9._-]+")),
    # Training, processing, transform jobs and models: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
    "sagemaker": NamingRule(63, _ALNUM_HYPHEN),
    # Hyper-parameter tuning jobs: the same alphabet, 32 characters at most.
    "sagemaker_tuning": NamingRule(32, _ALNUM_HYPHEN),
}

# 64 bits of SHA-256: the part of every name that is never truncated away.
DIGEST_LENGTH = 16
SEPARATOR = "-"


def sanitize(text: str, rule: NamingRule) -> str:
    """``text`` in ``rule``'s alphabet, forbidden runs replaced by one separator, ends trimmed."""
    if rule.lowercase:
        text = text.lower()
    return rule.forbidden.sub(SEPARATOR, text).strip(SEPARATOR + "._")


@dataclass(frozen=True)
class TaskRunIdentity:
    """The task instance a job belongs to; the source of every name that job gets."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TaskRunIdentity:
        """The identity of the running task instance, from an Airflow task context."""
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return cls(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=-1 if map_index is None else int(map_index),
        )

    @property
    def digest(self) -> str:
        payload = json.dumps([self.dag_id, self.run_id, self.task_id, self.map_index])
        return hashlib.sha256(payload.encode()).hexdigest()[:DIGEST_LENGTH]

    @property
    def run_key(self) -> str:
        """The canonical key: ``[a-z0-9-]``, at most 63 characters, e.g. ``ingest-dag-load-…``."""
        return self.name_for("run_key", prefix="")

    def name_for(self, service: str, *, prefix: str = "headrace", suffix: str = "") -> str:
        """This identity's name under ``service``'s rule (a key of :data:`NAMING_RULES`).

        The name reads ``<prefix>-<dag_id>-<task_id>[-<map_index>]-<digest>[-<suffix>]``; the
        readable middle is shortened to fit, the digest and suffix never are.

        :param service: which naming rule applies.
        :param prefix: a leading label; empty for none.
        :param suffix: a trailing label, e.g. an attempt number, kept within the length limit.
        """
        try:
            rule = NAMING_RULES[service]
        except KeyError:
            raise ValueError(
                f"no naming rule for service {service!r}; rules: {', '.join(NAMING_RULES)}"
            ) from None
        tail = [self.digest] + ([sanitize(suffix, rule)] if suffix else [])
        head = [sanitize(prefix, rule)] if prefix else []
        fixed = SEPARATOR.join(head + tail)
        # One more separator goes between the readable part and the rest.
        budget = rule.max_length - len(fixed) - 1
        if budget < 0:
            raise ValueError(
                f"prefix {prefix!r} and suffix {suffix!r} leave no room for the digest within "
                f"{service}'s {rule.max_length} characters"
            )
        readable_parts = [self.dag_id, self.task_id]
        if self.map_index >= 0:
            readable_parts.append(str(self.map_index))
        readable = sanitize(SEPARATOR.join(readable_parts), rule)[:budget].strip(SEPARATOR + "._")
        return SEPARATOR.join(head + ([readable] if readable else []) + tail)
