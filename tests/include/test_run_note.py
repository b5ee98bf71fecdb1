"""The DAG run's cost note: merging lines, and the requests MWAA's InvokeRestApi carries.

The requests go through botocore's Stubber, which validates each against MWAA's service model;
their bodies are checked with Airflow's own request models. That Airflow accepts them on a real
API server is tested in tests/e2e/test_local_stack.py.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from include.aws_validation import RequestValidationError, validate_request
from include.run_note import (
    COST_HEADING,
    NOTE_LIMIT,
    RunNoteError,
    RunNotes,
    merge_note,
    mwaa_api_call,
)

DAG = "churn_training"
RUN = "manual__2026-01-05T06:00:00.123456+00:00"
ENV = "headrace-prod"


def test_a_line_is_added_under_the_heading_and_a_persons_text_is_kept():
    note = merge_note("Approved by the data owner.", "run", "$23.22 of the $50.00 run budget")
    assert note == (
        f"Approved by the data owner.\n\n{COST_HEADING}\n- run: $23.22 of the $50.00 run budget"
    )
    note = merge_note(note, "tuning job-a", "$22.99 of the $25.00 job budget")
    assert note.splitlines()[-2:] == [
        "- run: $23.22 of the $50.00 run budget",
        "- tuning job-a: $22.99 of the $25.00 job budget",
    ]


def test_a_retry_replaces_its_own_line_in_place():
    note = merge_note(None, "run", "$1.00")
    note = merge_note(note, "tuning job-a", "$2.00")
    note = merge_note(note, "run", "$3.00")
    assert note == f"{COST_HEADING}\n- run: $3.00\n- tuning job-a: $2.00"


def test_text_a_person_wrote_below_the_section_stays_below_it():
    note = merge_note("Above.", "run", "$1.00") + "\n\nBelow, by the reviewer."
    note = merge_note(note, "tuning job-a", "$2.00")
    assert (
        note
        == f"Above.\n\n{COST_HEADING}\n- run: $1.00\n- tuning job-a: $2.00\n\nBelow, by the reviewer."
    )


def test_the_note_stays_within_airflows_limit_by_dropping_the_oldest_lines():
    note = None
    for number in range(40):
        note = merge_note(note, f"job {number}", "x" * 60)
    assert len(note) <= NOTE_LIMIT
    lines = note.splitlines()
    assert lines[0] == COST_HEADING
    assert lines[-1].startswith("- job 39: ")
    kept = [int(line.split()[2].rstrip(":")) for line in lines[1:]]
    assert kept == list(range(40 - len(kept), 40)) and len(kept) > 5


def test_a_long_line_is_cut_and_a_bad_key_refused():
    note = merge_note(None, "refused", "over budget " * 100)
    (line,) = note.splitlines()[1:]
    assert len(line) == len("- refused: ") + 300 and line.endswith("…")
    with pytest.raises(ValueError, match="key"):
        merge_note(None, "a: b", "x")
    with pytest.raises(RunNoteError, match="no room"):
        merge_note("p" * NOTE_LIMIT, "run", "x")


@pytest.fixture
def mwaa():
    client = boto3.client(
        "mwaa",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # pragma: allowlist secret (dummy credential)
    )
    with Stubber(client) as stubber:
        yield client, stubber


def _patch_body_is_airflows(body: dict) -> None:
    """Airflow 3.3's own model of the bulk dag-run PATCH body (strict: no unknown member)."""
    from airflow.api_fastapi.core_api.datamodels.common import BulkBody
    from airflow.api_fastapi.core_api.datamodels.dag_run import BulkDAGRunBody

    BulkBody[BulkDAGRunBody].model_validate(body)


def test_set_line_reads_then_writes_the_run_through_invoke_rest_api(mwaa):
    client, stubber = mwaa
    listed = {
        "dag_runs": [
            # A LIKE match of the patterns that is another run: never the one written.
            {"dag_id": DAG, "dag_run_id": RUN + "x", "note": "other"},
            {"dag_id": DAG, "dag_run_id": RUN, "note": "Checked by A."},
        ],
        "total_entries": 2,
    }
    query = {"dag_id_pattern": DAG, "run_id_pattern": RUN, "limit": 100}
    stubber.add_response(
        "invoke_rest_api",
        {"RestApiStatusCode": 200, "RestApiResponse": listed},
        {"Name": ENV, "Path": "/dags/~/dagRuns", "Method": "GET", "QueryParameters": query},
    )
    expected_note = f"Checked by A.\n\n{COST_HEADING}\n- run: $5.00"
    body = {
        "actions": [
            {
                "action": "update",
                "entities": [{"dag_id": DAG, "dag_run_id": RUN, "note": expected_note}],
            }
        ]
    }
    _patch_body_is_airflows(body)
    stubber.add_response(
        "invoke_rest_api",
        {"RestApiStatusCode": 200, "RestApiResponse": {"update": {"success": [f"{DAG}.{RUN}"]}}},
        {"Name": ENV, "Path": "/dags/~/dagRuns", "Method": "PATCH", "Body": body},
    )
    assert RunNotes(mwaa_api_call(ENV, client)).set_line(DAG, RUN, "run", "$5.00") == expected_note
    stubber.assert_no_pending_responses()


def test_the_run_path_is_too_long_for_invoke_rest_api():
    """Why the note goes through /dags/~/dagRuns: MWAA takes paths of at most 64 characters."""
    request = {"Name": ENV, "Method": "PATCH", "Path": f"/dags/{DAG}/dagRuns/{RUN}"}
    with pytest.raises(RequestValidationError, match="Path"):
        validate_request("mwaa", "InvokeRestApi", request)
    validate_request("mwaa", "InvokeRestApi", {**request, "Path": "/dags/~/dagRuns"})


def test_an_error_inside_airflows_answer_is_raised(mwaa):
    client, stubber = mwaa
    refused = {"update": {"success": [], "errors": [{"error": "not found", "status_code": 404}]}}
    stubber.add_response("invoke_rest_api", {"RestApiStatusCode": 200, "RestApiResponse": refused})
    with pytest.raises(RunNoteError, match="not found"):
        RunNotes(mwaa_api_call(ENV, client)).write(DAG, RUN, "x")
    stubber.add_response(
        "invoke_rest_api", {"RestApiStatusCode": 200, "RestApiResponse": {"dag_runs": []}}
    )
    with pytest.raises(RunNoteError, match="no run"):
        RunNotes(mwaa_api_call(ENV, client)).read(DAG, RUN)
