"""validate_request: botocore's checks plus the max/enum/pattern rules it leaves to AWS."""

from __future__ import annotations

import pytest

from include.aws_validation import RequestValidationError, validate_request

STEP = {
    "Name": "headrace-ingest-0123456789abcdef",
    "ActionOnFailure": "CONTINUE",
    "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", "s3://b/x.py"]},
}


def test_a_valid_body_passes():
    validate_request("emr", "AddJobFlowSteps", {"JobFlowId": "j-ABCDEFGHIJKL", "Steps": [STEP]})


@pytest.mark.parametrize(
    ("body", "named"),
    [
        # botocore's own checks
        ({"Steps": [STEP]}, 'Missing required parameter in input: "JobFlowId"'),
        (
            {"JobFlowId": "j-A", "Steps": [STEP], "Region": "x"},
            'Unknown parameter in input: "Region"',
        ),
        (
            {"JobFlowId": "j-A", "Steps": [{**STEP, "HadoopJarStep": {"Args": []}}]},
            'Missing required parameter in Steps[0].HadoopJarStep: "Jar"',
        ),
        ({"JobFlowId": "j-A", "Steps": STEP}, "Invalid type for parameter Steps"),
        # what botocore leaves to the service
        (
            {"JobFlowId": "j-A", "Steps": [{**STEP, "ActionOnFailure": "EXPLODE"}]},
            "Invalid value for parameter Steps[0].ActionOnFailure, value: 'EXPLODE'",
        ),
        (
            {"JobFlowId": "j-A", "Steps": [{**STEP, "Name": "n" * 257}]},
            "Invalid length for parameter Steps[0].Name, length: 257, valid max length: 256",
        ),
    ],
)
def test_a_bad_body_is_refused_naming_the_parameter(body, named):
    with pytest.raises(RequestValidationError) as raised:
        validate_request("emr", "AddJobFlowSteps", body)
    assert named in str(raised.value)
    assert str(raised.value).startswith("invalid emr AddJobFlowSteps request:")


def test_patterns_are_checked_including_astral_plane_ranges():
    base = {
        "applicationId": "00f0abcdefgh1234",
        "executionRoleArn": "arn:aws:iam::123456789012:role/headrace-emr",
    }
    with pytest.raises(RequestValidationError) as raised:
        validate_request("emr-serverless", "StartJobRun", {**base, "clientToken": "run/key"})
    assert raised.value.problems == [
        "Invalid value for parameter clientToken, value: 'run/key', "
        "does not match pattern [A-Za-z0-9._-]+"
    ]
    # Glue's name pattern is written with UTF-16 surrogate ranges: an emoji is allowed by it.
    validate_request("glue", "GetJob", {"JobName": "headrace-\U0001f680"})
    with pytest.raises(RequestValidationError, match="parameter JobName"):
        validate_request("glue", "GetJob", {"JobName": "two\nlines"})


def test_every_problem_is_reported_at_once():
    with pytest.raises(RequestValidationError) as raised:
        validate_request(
            "emr-serverless",
            "StartJobRun",
            {"applicationId": "Not-Valid", "clientToken": "t" * 65, "executionTimeoutMinutes": -1},
        )
    problems = "\n".join(raised.value.problems)
    assert 'Missing required parameter in input: "executionRoleArn"' in problems
    assert "parameter executionTimeoutMinutes" in problems
    assert "parameter applicationId, value: 'Not-Valid'" in problems
    assert "parameter clientToken, length: 65, valid max length: 64" in problems
