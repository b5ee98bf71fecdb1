"""Checks over the resolved policy documents of infra/headrace.yaml, shared by the infra tests.

Each check returns a list of problems (empty when the documents are right), so a test asserts
the real template passes and a deliberately wrong copy does not. ``allows`` is a small IAM
evaluator (Allow statements, the condition operators the template uses) for asking whether a
role may make one concrete request the pipeline code builds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping
from fnmatch import fnmatchcase
from typing import Any

# The services each passed role may go to, and nothing else.
PASS_ROLE_SERVICES = {
    "SageMakerExecutionRole": "sagemaker.amazonaws.com",
    "GlueJobRole": "glue.amazonaws.com",
    "EmrServerlessJobRole": "emr-serverless.amazonaws.com",
}


def as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def statements(document: Mapping) -> list[dict]:
    return as_list(document.get("Statement"))


def iter_statements(documents: Mapping[str, Mapping]) -> Iterator[tuple[str, dict]]:
    for name, document in sorted(documents.items()):
        for statement in statements(document):
            yield name, statement


def is_identity_policy(name: str, document: Mapping) -> bool:
    """Permission policies attached to roles: no Principal, not a trust policy."""
    return not name.endswith(".trust") and not any(
        "Principal" in statement for statement in statements(document)
    )


# --- structural checks -----------------------------------------------------------------------


def pass_role_problems(documents: Mapping[str, Mapping], role_arns: Mapping[str, str]) -> list[str]:
    """Every iam:PassRole grant names specific roles and the one service each may be passed to."""
    service_of_arn = {role_arns[role]: service for role, service in PASS_ROLE_SERVICES.items()}
    problems = []
    for name, statement in iter_statements(documents):
        actions = [action.lower() for action in as_list(statement.get("Action"))]
        if statement.get("Effect") != "Allow" or not any(
            fnmatchcase("iam:passrole", action) for action in actions
        ):
            continue
        where = f"{name}/{statement.get('Sid', '?')}"
        if any(action != "iam:passrole" for action in actions):
            problems.append(f"{where}: iam:PassRole shares a statement with {actions}")
        passed_to = (
            statement.get("Condition", {}).get("StringEquals", {}).get("iam:PassedToService")
        )
        if not passed_to:
            problems.append(f"{where}: iam:PassRole without an iam:PassedToService condition")
            continue
        for resource in as_list(statement.get("Resource")):
            if resource not in service_of_arn:
                problems.append(f"{where}: iam:PassRole on {resource!r}, not one headrace job role")
            elif as_list(passed_to) != [service_of_arn[resource]]:
                problems.append(
                    f"{where}: {resource} may be passed to {passed_to}, "
                    f"not only {service_of_arn[resource]}"
                )
    return problems


def wildcard_problems(
    documents: Mapping[str, Mapping], allowed: Iterable[tuple[str, str]]
) -> list[tuple[str, str, str]]:
    """``(policy, sid, what)`` for each Allow in a permission policy with Action ``*`` (or
    ``service:*``), Resource ``*``, or an ARN whose account or region is a wildcard, unless
    ``(policy, sid)`` is an allowed exception."""
    allowed = set(allowed)
    problems = []
    for name, document in sorted(documents.items()):
        if not is_identity_policy(name, document):
            continue
        for statement in statements(document):
            if statement.get("Effect") != "Allow":
                continue
            key = (name, statement.get("Sid", "?"))
            for action in as_list(statement.get("Action")):
                if action == "*" or action.endswith(":*"):
                    problems.append((*key, f"Action {action}"))
            if "NotAction" in statement or "NotResource" in statement:
                problems.append((*key, "NotAction/NotResource"))
            for resource in as_list(statement.get("Resource")):
                if resource == "*":
                    what = "Resource *"
                else:
                    parts = resource.split(":", 5)
                    wild = [part for part in parts[3:5] if "*" in part]
                    what = f"wildcard account/region in {resource}" if wild else ""
                if what and key not in allowed:
                    problems.append((*key, what))
    return problems


def s3_resource_problems(documents: Mapping[str, Mapping], bucket: str) -> list[str]:
    """Every S3 ARN in every policy lies in the lake bucket."""
    problems = []
    for name, statement in iter_statements(documents):
        for resource in as_list(statement.get("Resource")):
            if ":s3:::" in resource:
                path = resource.split(":s3:::", 1)[1]
                if path != bucket and not path.startswith(f"{bucket}/"):
                    problems.append(f"{name}/{statement.get('Sid', '?')}: {resource}")
    return problems


# --- a small evaluator -----------------------------------------------------------------------


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, Any]) -> bool:
    wanted = [str(value) for value in as_list(expected)]
    if operator == "Null":
        return (key not in context) == (wanted == ["true"])
    if operator.startswith("ForAllValues:"):
        inner = operator.split(":", 1)[1]
        return all(
            _condition_holds(inner, key, expected, {key: value})
            for value in as_list(context.get(key))
        )
    if key not in context:
        return False
    actual = context[key]
    if operator == "Bool":
        return str(actual).lower() in wanted
    if operator in ("StringEquals", "ArnEquals"):
        return str(actual) in wanted
    if operator in ("StringLike", "ArnLike"):
        return any(fnmatchcase(str(actual), pattern) for pattern in wanted)
    raise NotImplementedError(f"condition operator {operator} is not evaluated here")


def statement_allows(
    statement: Mapping, action: str, resource: str, context: Mapping[str, Any]
) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    if not any(fnmatchcase(action.lower(), a.lower()) for a in as_list(statement.get("Action"))):
        return False
    if not any(fnmatchcase(resource, r) for r in as_list(statement.get("Resource"))):
        return False
    return all(
        _condition_holds(operator, key, expected, context)
        for operator, block in statement.get("Condition", {}).items()
        for key, expected in block.items()
    )


def allows(
    documents: Iterable[Mapping],
    action: str,
    resource: str,
    context: Mapping[str, Any] | None = None,
) -> bool:
    """Whether any Allow statement of ``documents`` grants ``action`` on ``resource``."""
    return any(
        statement_allows(statement, action, resource, context or {})
        for document in documents
        for statement in statements(document)
    )


def s3_object_arn(uri: str) -> str:
    """``s3://bucket/key`` → ``arn:aws:s3:::bucket/key``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return "arn:aws:s3:::" + uri[len("s3://") :]


def with_statement(
    documents: Mapping[str, Mapping], policy: str, sid: str, change
) -> dict[str, dict]:
    """A deep copy of ``documents`` with ``change(statement)`` applied to one statement."""
    mutated = copy.deepcopy(dict(documents))
    for statement in statements(mutated[policy]):
        if statement.get("Sid") == sid:
            change(statement)
            return mutated
    raise KeyError(f"{policy} has no statement {sid}")


def minified_size(document: Mapping) -> int:
    """Characters IAM counts against a policy's size quota (whitespace is not counted)."""
    return len(json.dumps(document, separators=(",", ":")))
