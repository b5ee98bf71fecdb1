"""Check an AWS request body against botocore's own service model before it is sent.

Builders call :func:`validate_request` so a bad body fails in our code, naming the parameter,
instead of as a remote ``ValidationException`` minutes into a DAG run. The same call is how the
tests prove every body without AWS.

botocore's ``ParamValidator`` checks types, required and unknown members and minimum lengths.
It leaves maximum lengths, enums and patterns to the service, and those are exactly the rules a
generated name or token breaks (a 70-character ``clientToken``, a ``/`` in a step name), so this
module checks them too, from the same model.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any


class RequestValidationError(ValueError):
    """A request body does not fit the service model; ``problems`` name each bad parameter."""

    def __init__(self, service: str, operation: str, problems: list[str]):
        self.service = service
        self.operation = operation
        self.problems = problems
        super().__init__(f"invalid {service} {operation} request:\n  - " + "\n  - ".join(problems))


@functools.cache
def _service_model(service: str):
    import botocore.session  # kept out of import time: DAG files import builders that import us

    return botocore.session.get_session().get_service_model(service)


def validate_request(service: str, operation: str, body: Mapping[str, Any]) -> None:
    """Raise :class:`RequestValidationError` unless ``body`` is a valid ``operation`` input.

    :param service: the botocore service name, e.g. ``glue``, ``emr-serverless``, ``emr``.
    :param operation: the API operation, e.g. ``StartJobRun``.
    :param body: the request parameters, with AWS's own key spelling.
    """
    from botocore.validate import ParamValidator

    shape = _service_model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(body, shape)
    problems = report.generate_report().splitlines() if report.has_errors() else []
    _check_constraints(body, shape, "", problems)
    if problems:
        raise RequestValidationError(service, operation, problems)


def _check_constraints(value: Any, shape, name: str, problems: list[str]) -> None:
    """Max lengths, enums and patterns: what the service checks and botocore does not."""
    type_name = shape.type_name
    if type_name == "structure" and isinstance(value, Mapping):
        for key, member_value in value.items():
            if key in shape.members:
                _check_constraints(
                    member_value, shape.members[key], f"{name}.{key}".lstrip("."), problems
                )
    elif type_name == "list" and isinstance(value, list | tuple):
        _check_max(len(value), shape, name, "length", problems)
        for index, item in enumerate(value):
            _check_constraints(item, shape.member, f"{name}[{index}]", problems)
    elif type_name == "map" and isinstance(value, Mapping):
        _check_max(len(value), shape, name, "entries", problems)
        for key, item in value.items():
            _check_constraints(key, shape.key, f"{name} key {key!r}", problems)
            _check_constraints(item, shape.value, f"{name}[{key!r}]", problems)
    elif type_name == "string" and isinstance(value, str):
        _check_max(len(value), shape, name, "length", problems)
        enum = shape.metadata.get("enum")
        if enum and value not in enum:
            problems.append(
                f"Invalid value for parameter {name}, value: {value!r}, "
                f"valid values: {', '.join(enum)}"
            )
        pattern = _compiled_pattern(shape.metadata.get("pattern"))
        if pattern is not None and not pattern.fullmatch(value):
            problems.append(
                f"Invalid value for parameter {name}, value: {value!r}, "
                f"does not match pattern {shape.metadata['pattern']}"
            )
    elif type_name in ("integer", "long", "double", "float") and isinstance(value, int | float):
        _check_max(value, shape, name, "value", problems)


def _check_max(amount: float, shape, name: str, what: str, problems: list[str]) -> None:
    maximum = shape.metadata.get("max")
    if maximum is not None and amount > maximum:
        problems.append(
            f"Invalid {what} for parameter {name}, {what}: {amount}, valid max {what}: {maximum}"
        )


# AWS models write "any code point above U+FFFF" as the UTF-16 surrogate pair ranges Java reads,
# which Python's re rejects as a bad range; these are the spellings the models use.
_SURROGATE_RANGES = (r"\uD800\uDC00-\uDBFF\uDFFF", r"\uD800\uDBFF-\uDC00\uDFFF")


@functools.cache
def _compiled_pattern(pattern: str | None) -> re.Pattern[str] | None:
    if not pattern:
        return None
    for spelling in _SURROGATE_RANGES:
        pattern = pattern.replace(spelling, r"\U00010000-\U0010FFFF")
    try:
        return re.compile(pattern)
    except re.error:
        # A Java-only construct: leave this one check to the service rather than guess.
        return None
