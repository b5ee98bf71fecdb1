"""DataQualityGateOperator: local Great Expectations runs on real partitions, and the Glue Data
Quality path on the aws target against a moto server.

moto implements the Glue Data Catalog (database, table, partition) and S3, which the gate uses
as on AWS. It implements none of Glue Data Quality's APIs nor CreateSecurityConfiguration: those
calls are answered by stubs on botocore's ``before-call`` event (tests/aws_fakes.py), after botocore
has validated and serialized the request, and the tests assert the requests the operator sent.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from airflow.exceptions import AirflowException, AirflowFailException, TaskDeferred
from airflow.sdk.execution_time.context import OutletEventAccessors

# Slow (runs the gate against a moto server and local jobs): left out of `make test-fast`.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "include" / "dq"))

from dq_partitions import (  # noqa: E402
    DS,
    arrow_table,
    clean_frame,
    write_partition,
    write_previous_manifest,
)

from headrace_operators.quality_gate import DataQualityGateOperator  # noqa: E402
from include.assets import validated_asset  # noqa: E402
from include.dq.gate import load_dataset_rules  # noqa: E402
from include.job_names import TaskRunIdentity  # noqa: E402


@pytest.fixture(scope="module")
def curated_types() -> dict[str, str]:
    return load_dataset_rules("churn").curated_types()


@pytest.fixture
def local_lake(tmp_path, monkeypatch, fresh_settings) -> str:
    from include.config import get_settings

    lake = (tmp_path / "lake").as_uri()
    monkeypatch.setenv("PIPELINE_TARGET", "local")
    monkeypatch.setenv("HEADRACE_LAKE_ROOT", lake)
    # The local checks' job folders: each test's own (every test's task has the same run key).
    monkeypatch.setenv("HEADRACE_LOCAL_RUNS_DIR", str(tmp_path / "runs"))
    get_settings.cache_clear()
    return lake


def gate_context(task_context, partition_key=None):
    context = task_context(dag_id="churn_validation", task_id="quality_gate")
    context["outlet_events"] = OutletEventAccessors()
    context["dag_run"] = SimpleNamespace(partition_key=partition_key)
    return context


def make_gate(**overrides) -> DataQualityGateOperator:
    arguments = {
        "task_id": "quality_gate",
        "dataset": "churn",
        "ds": DS,
        "outlets": [validated_asset("churn")],
        "aws_conn_id": None,
        "poll_interval": 0,
    }
    arguments.update(overrides)
    return DataQualityGateOperator(**arguments)


def read_json(uri: str) -> dict:
    return json.loads(Path(uri.removeprefix("file://")).read_text())


# --- local: Great Expectations ----------------------------------------------------------


def test_clean_partition_passes_and_marks_the_validated_asset(
    local_lake, curated_types, task_context
):
    write_partition(local_lake, clean_frame(curated_types), curated_types)
    write_previous_manifest(local_lake, rows=42)
    context = gate_context(task_context)
    gate = make_gate()

    summary = gate.execute(context)

    assert summary["passed"] is True
    assert summary["engine"] == "great_expectations"
    assert summary["counts"] == {
        "rules": 30,  # 25 on the curated rows, 5 over ingestion (from the manifest)
        "passed": 30,
        "failed_error": 0,
        "failed_warn": 0,
        "skipped": 0,
    }
    assert summary["result_uri"] == f"{local_lake}/reports/churn/quality/ds={DS}/result.json"
    result = read_json(summary["result_uri"])
    assert result["passed"] is True and result["format"] == "headrace-quality-result/1"
    # The stray file beside the listed ones was not read: 40 rows, not 41.
    assert result["partition"]["rows_checked"] == 40
    assert context["outlet_events"][validated_asset("churn")].extra == {
        "ds": DS,
        "result_uri": summary["result_uri"],
    }
    # The validated day is the event's partition key: features and scoring run once for it.
    assert context["outlet_events"][validated_asset("churn")].partition_keys == {DS}
    assert Path(summary["report_uri"].removeprefix("file://")).read_text().count("<tr") == 31
    # OpenLineage: the curated day checked, with every rule an assertion that held.
    lineage = gate.get_openlineage_facets_on_complete(None)
    (checked,) = lineage.inputs
    assert checked.name == f"{local_lake.removeprefix('file://')}/curated/churn/ds={DS}"
    assertions = checked.facets["dataQualityAssertions"].assertions
    assert len(assertions) == 30 and all(a.success for a in assertions)
    assert [o.name for o in lineage.outputs] == [summary["result_uri"].removeprefix("file://")]


def test_the_worker_reads_no_data_file_the_check_runs_in_a_job_of_its_own(
    local_lake, curated_types, task_context, monkeypatch
):
    """Great Expectations runs in a local job: in this (the worker's) process, reading the
    partition or validating it would raise, and the gate still passes the clean day."""
    import include.dq.gate as gate_module
    import include.dq.great_expectations_suite as suite_module
    from include import local_quality

    def must_not_run(*args, **kwargs):
        raise AssertionError("the worker read the partition")

    monkeypatch.setattr(gate_module, "read_partition_frame", must_not_run)
    monkeypatch.setattr(suite_module, "validate_dataframe", must_not_run)
    write_partition(local_lake, clean_frame(curated_types), curated_types)
    write_previous_manifest(local_lake, rows=42)
    context = gate_context(task_context)

    summary = make_gate().execute(context)

    assert summary["passed"] is True and summary["counts"]["rules"] == 30
    folder = local_quality.job_folder(TaskRunIdentity.from_context(context).run_key)
    assert folder.parent.parent == Path(os.environ["HEADRACE_LOCAL_RUNS_DIR"])
    # The job's own record holds the document the gate published (40 rows checked).
    recorded = json.loads((folder / "result.json").read_text())[local_quality.RESULT_KEY]
    assert recorded == read_json(summary["result_uri"])
    assert recorded["partition"]["rows_checked"] == 40
    # A retry of the task re-attaches to the finished check: no second job, the same result.
    assert make_gate().execute(gate_context(task_context))["counts"] == summary["counts"]
    assert not (folder / "history").exists()


def test_killing_the_task_stops_its_local_check(local_lake, curated_types, task_context):
    import threading

    from include import local_jobs, local_quality

    write_partition(local_lake, clean_frame(curated_types), curated_types)
    write_previous_manifest(local_lake, rows=42)
    context = gate_context(task_context)
    folder = local_quality.job_folder(TaskRunIdentity.from_context(context).run_key)
    gate = make_gate()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            gate.execute(context)
        except BaseException as error:  # asserted below
            raised.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    # Stopped while it still imports Great Expectations (seconds), before it checks anything.
    deadline = time.monotonic() + 60
    while (local_jobs.describe(folder) or {}).get("Status") != local_jobs.IN_PROGRESS:
        assert time.monotonic() < deadline, "the check never started"
        time.sleep(0.05)
    gate.on_kill()
    worker.join(timeout=120)

    assert local_jobs.describe(folder)["Status"] == local_jobs.STOPPED
    (error,) = raised
    assert isinstance(error, AirflowException) and "Stopped" in str(error)
    assert not Path(
        f"{local_lake.removeprefix('file://')}/reports/churn/quality/ds={DS}/result.json"
    ).exists()


@pytest.fixture
def strict_rules_dir(tmp_path) -> Path:
    """churn's rules with every rule an error and a row-count ceiling 40 rows exceed."""
    folder = tmp_path / "datasets"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "include" / "datasets" / "churn.yaml", folder / "churn.yaml")
    raw = yaml.safe_load((REPO_ROOT / "include" / "datasets" / "churn.quality.yaml").read_text())
    for rule in raw["rules"]:
        rule["severity"] = "error"
        if rule["kind"] == "row_count":
            rule["max"] = 30
    (folder / "churn.quality.yaml").write_text(yaml.safe_dump(raw))
    return folder


def test_planted_violation_of_every_kind_fails_naming_each(
    local_lake, curated_types, task_context, strict_rules_dir
):
    frame = clean_frame(curated_types)
    frame.loc[3, "plan"] = None  # completeness
    frame.loc[5, "customer_id"] = frame.loc[4, "customer_id"]  # uniqueness
    frame.loc[6, "tenure_months"] = 700  # range
    frame.loc[8, "region"] = "mars"  # allowed_values
    frame.loc[10, "customer_id"] = "X123"  # regex
    frame["event_ts"] = [
        datetime(2026, 1, 10, 8, 0, tzinfo=UTC) + timedelta(minutes=i) for i in range(40)
    ]  # freshness
    frame["monthly_charge"] = [94.0 if i % 2 else 96.0 for i in range(40)]  # mean and stdev
    frame["promo_code"] = "WINTER"  # schema
    write_partition(local_lake, frame, curated_types, table=arrow_table(frame, curated_types))
    write_previous_manifest(local_lake, rows=200)  # row_count_change: 40 < 0.5 x 200
    context = gate_context(task_context)

    gate = make_gate(rules_dir=strict_rules_dir)
    with pytest.raises(AirflowFailException) as failed:
        gate.execute(context)

    message = str(failed.value)
    assert message.startswith(
        f"quality gate failed for churn ds={DS} (great_expectations): 11 error rule(s) failed"
    )
    expected_lines = {
        "schema": 'schema (schema) on (table): observed {"missing_columns": [], "unexpected_columns": ["promo_code"]',
        "uniqueness": 'primary_key_unique (uniqueness) on customer_id,snapshot_date: observed {"rows_with_duplicate_key": 2}',
        "completeness": 'completeness_plan (completeness) on plan: observed {"non_null_fraction": 0.975, "null_rows": 1}',
        "regex": 'regex_customer_id (regex) on customer_id: observed {"unexpected_rows": 1}',
        "allowed_values": 'allowed_values_region (allowed_values) on region: observed {"unexpected_rows": 1}',
        "range": 'range_tenure_months (range) on tenure_months: observed {"unexpected_rows": 1}',
        "row_count": "row_count (row_count) on (table): observed 40",
        "row_count_change": "row_count_change (row_count_change) on (table): observed 40",
        "freshness": 'freshness_event_ts (freshness) on event_ts: observed "2026-01-10T08:39:00"',
        "mean": "mean_monthly_charge (mean) on monthly_charge: observed 95.0",
        "stdev": "stdev_monthly_charge (stdev) on monthly_charge: observed 1.01",
    }
    for kind, line in expected_lines.items():
        assert f"  - {line}" in message, f"{kind} missing from:\n{message}"
    assert 'e.g. values ["mars"]' in message
    assert '"customer_id": "X123"' in message
    assert "result: " in message and "report: " in message

    result = read_json(f"{local_lake}/reports/churn/quality/ds={DS}/result.json")
    assert result["passed"] is False
    assert result["counts"]["failed_error"] == 11
    assert context["outlet_events"] == {}
    # OpenLineage's FAIL event names the rules that failed the gate.
    (checked,) = gate.get_openlineage_facets_on_failure(None).inputs
    failed_rules = {
        a.assertion.split(" ", 1)[0]
        for a in checked.facets["dataQualityAssertions"].assertions
        if not a.success
    }
    assert failed_rules == {line.split(" ", 1)[0] for line in expected_lines.values()}


def test_warn_only_violations_pass_and_appear_in_the_report(
    local_lake, curated_types, task_context
):
    frame = clean_frame(curated_types)
    frame["data_gb"] = [None if i % 2 else 1.0 for i in range(40)]  # completeness 0.5 < 0.9 (warn)
    frame["minutes_used"] = 900.0  # mean 900 > 200 (warn)
    write_partition(local_lake, frame, curated_types)
    context = gate_context(task_context)

    summary = make_gate().execute(context)

    assert summary["passed"] is True
    counts = summary["counts"]
    assert (counts["failed_error"], counts["failed_warn"], counts["skipped"]) == (0, 2, 1)
    result = read_json(summary["result_uri"])
    warned = {item["rule"]: item for item in result["results"] if item["status"] == "fail"}
    assert set(warned) == {"completeness_data_gb", "mean_minutes_used"}
    assert warned["mean_minutes_used"]["observed"] == 900.0
    assert warned["completeness_data_gb"]["observed"] == {"non_null_fraction": 0.5, "null_rows": 20}
    skipped = next(item for item in result["results"] if item["status"] == "skipped")
    assert skipped["detail"] == "no previous partition ds=2026-01-09 to compare with"
    report = Path(summary["report_uri"].removeprefix("file://")).read_text()
    assert "mean_minutes_used" in report and "completeness_data_gb" in report
    assert "2 warn rule(s) failed" in report
    assert context["outlet_events"][validated_asset("churn")].extra["ds"] == DS


def test_a_partition_never_committed_fails_naming_its_manifest(local_lake, task_context):
    with pytest.raises(
        AirflowException, match=r"curated/churn/ds=2026-01-10/_manifest.json does not exist"
    ):
        make_gate().execute(gate_context(task_context))


def test_partition_comes_from_the_param_then_the_run_partition_key(
    local_lake, curated_types, task_context
):
    gate = make_gate(ds="")
    keyed = gate_context(task_context, partition_key="2026-01-05")

    assert make_gate(ds="2026-01-01").resolve_partition(keyed) == "2026-01-01"
    assert gate.resolve_partition(keyed) == "2026-01-05"
    # No day named: the gate fails rather than checking "the newest" partition.
    write_partition(local_lake, clean_frame(curated_types), curated_types)
    with pytest.raises(AirflowException, match="names no day"):
        gate.resolve_partition(gate_context(task_context))
    with pytest.raises(AirflowException, match="'2026-1-5' is not a date"):
        make_gate(ds="2026-1-5").execute(gate_context(task_context))


# --- aws: Glue Data Quality ---------------------------------------------------------------


class _Queue(dict):
    """Stubs where one operation answers from a queue, one answer per call."""

    def __init__(self, queued: dict):
        super().__init__()
        self.queued = {key: list(values) for key, values in queued.items()}

    def get(self, key, default=None):
        if self.queued.get(key):
            return self.queued[key].pop(0)
        return super().get(key, default)


def _put_s3_partition(
    aws_target, rows: int = 40, quarantined_by_reason: dict[str, int] | None = None
) -> None:
    s3 = aws_target.client("s3")
    uri = f"s3://{aws_target.bucket}/lake/curated/churn/ds={DS}"
    quarantined = sum((quarantined_by_reason or {}).values())
    manifest = {
        "spec_fingerprint": "test",
        # What the ingest job records, and the gate's rules over ingestion read.
        "totals": {
            "rows_accepted": rows,
            "rows_read": rows + quarantined,
            "rows_quarantined": quarantined,
            "quarantined_by_reason": quarantined_by_reason or {},
        },
        "quarantine_examples": {
            reason: [{"source_file": "day.csv", "record_key": f"C900000001|{DS}", "value": None}]
            for reason in quarantined_by_reason or {}
        },
        "outputs": {"curated": {"uri": uri, "files": [{"path": "part-00000.snappy.parquet"}]}},
    }
    # The data file itself: the gate copies exactly the listed files for Glue to read.
    s3.put_object(
        Bucket=aws_target.bucket,
        Key=f"lake/curated/churn/ds={DS}/part-00000.snappy.parquet",
        Body=b"PAR1 stand-in: Glue Data Quality is answered by the stub, not run",
    )
    s3.put_object(
        Bucket=aws_target.bucket,
        Key=f"lake/curated/churn/ds={DS}/_manifest.json",
        Body=json.dumps(manifest),
    )


def _glue_results(passing: bool) -> list[tuple[int, dict]]:
    from include.dq.dqdl import compile_rulesets
    from include.dq.rules import resolve_rules

    rules = resolve_rules(load_dataset_rules("churn").rules, DS, None)
    answers = []
    for severity, ruleset in compile_rulesets(rules).items():
        rule_results = []
        for number, (line, rule_id) in enumerate(ruleset.lines, start=1):
            failed = not passing and rule_id == "completeness_plan"
            rule_results.append(
                {
                    "Name": f"Rule_{number}",
                    "Description": line,
                    "Result": "FAIL" if failed else "PASS",
                    "EvaluationMessage": "Value: 0.975 does not meet the constraint requirement!"
                    if failed
                    else "",
                    "EvaluatedMetrics": {"Column.plan.Completeness": 0.975 if failed else 1.0}
                    if rule_id == "completeness_plan"
                    else {},
                }
            )
        answers.append(
            (
                200,
                {
                    "ResultId": f"dqresult-{severity}",
                    "RulesetName": f"headrace-churn-ds-{DS}-{severity}",
                    "RuleResults": rule_results,
                },
            )
        )
    return answers


def _stub_glue_data_quality(aws_calls, passing: bool) -> None:
    not_found = (400, {"Error": {"Code": "EntityNotFoundException", "Message": "no such ruleset"}})
    stubs = _Queue({("glue", "GetDataQualityResult"): _glue_results(passing)})
    stubs.update(aws_calls.stubs)  # the account's (its Service Quotas)
    aws_calls.stubs = stubs
    aws_calls.stubs.update(
        {
            ("glue", "CreateSecurityConfiguration"): (200, {"Name": "stubbed"}),
            ("glue", "GetDataQualityRuleset"): not_found,
            ("glue", "CreateDataQualityRuleset"): (200, {"Name": "stubbed"}),
            ("glue", "StartDataQualityRulesetEvaluationRun"): (200, {"RunId": "dqrun-0123"}),
            ("glue", "GetDataQualityRulesetEvaluationRun"): (
                200,
                {
                    "RunId": "dqrun-0123",
                    "Status": "SUCCEEDED",
                    "ResultIds": ["dqresult-error", "dqresult-warn"],
                },
            ),
        }
    )


def run_gate(gate, context):
    """``execute``; a Glue Data Quality run defers to the triggerer, so resume the task as the
    triggerer does once the run has ended (the stubbed run is already SUCCEEDED)."""
    try:
        return gate.execute(context)
    except TaskDeferred as deferred:
        trigger = deferred.trigger
        assert type(trigger).__name__ == "GlueDataQualityRunTrigger"
        assert trigger.evaluation_run_id == "dqrun-0123"
        event = {"status": "success", "evaluation_run_id": trigger.evaluation_run_id}
        return getattr(gate, deferred.method_name)(context, event=event, **deferred.kwargs)


def test_a_validation_run_over_its_run_budget_is_refused_before_any_glue_call(
    aws_target, aws_calls, task_context, tmp_path
):
    """The gate starts its run's first job, so it prices the whole run first: the quality run and
    the features job, each within the per-job budget, are over the per-run one together."""
    from include.config import DATASETS_DIR, get_settings
    from include.cost import estimate_stage_run, format_usd

    estimates = estimate_stage_run(get_settings(), "churn", "validation")
    total = sum(estimate.usd for estimate in estimates)
    assert [e.kind for e in estimates] == ["glue_data_quality", "glue"], estimates
    spec = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    spec["cost"] = {
        "budget_per_job_usd": round(max(e.usd for e in estimates) + 0.01, 2),
        "budget_per_run_usd": round(total - 0.01, 2),
    }
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(DATASETS_DIR / "churn.quality.yaml", tmp_path)
    _put_s3_partition(aws_target)
    _stub_glue_data_quality(aws_calls, passing=True)

    with pytest.raises(AirflowFailException) as refused:
        run_gate(make_gate(rules_dir=tmp_path), gate_context(task_context))

    assert str(refused.value).startswith(
        f"refused before starting: the run's worst case {format_usd(total)}"
    ), refused.value
    assert not [r for r in aws_calls.requests if r["service"] == "glue"], "a Glue call was made"


def test_glue_data_quality_run_passes_and_writes_the_result_to_s3(
    aws_target, aws_calls, task_context
):
    _put_s3_partition(aws_target)
    _stub_glue_data_quality(aws_calls, passing=True)
    context = gate_context(task_context)

    summary = run_gate(make_gate(), context)

    assert summary["engine"] == "glue_data_quality" and summary["passed"] is True
    assert (
        summary["counts"]["rules"],
        summary["counts"]["failed_error"],
        summary["counts"]["skipped"],
    ) == (30, 0, 1)
    # The catalog table and partition the run reads exist in moto's Data Catalog.
    glue = aws_target.client("glue")
    table = glue.get_table(DatabaseName="headrace", Name="churn_curated")["Table"]
    assert table["StorageDescriptor"]["Location"] == f"s3://{aws_target.bucket}/lake/curated/churn/"
    partition = glue.get_partition(
        DatabaseName="headrace", TableName="churn_curated", PartitionValues=[DS]
    )
    location = partition["Partition"]["StorageDescriptor"]["Location"]
    assert f"/reports/churn/quality/ds={DS}/glue-input/" in location
    staged = aws_target.client("s3").list_objects_v2(
        Bucket=aws_target.bucket, Prefix=location.split(f"{aws_target.bucket}/", 1)[1]
    )
    assert [obj["Key"].rsplit("/", 1)[1] for obj in staged["Contents"]] == [
        "part-00000.snappy.parquet"
    ]

    created = {body["Name"]: body for body in aws_calls.of("glue", "CreateDataQualityRuleset")}
    assert set(created) == {f"headrace-churn-ds-{DS}-error", f"headrace-churn-ds-{DS}-warn"}
    assert 'IsComplete "plan"' in created[f"headrace-churn-ds-{DS}-error"]["Ruleset"]
    assert created[f"headrace-churn-ds-{DS}-error"]["DataQualitySecurityConfiguration"].startswith(
        "headrace-kms-"
    )
    # The evaluation run takes no tags: the rulesets carry the run's cost allocation tags.
    assert created[f"headrace-churn-ds-{DS}-warn"]["Tags"] == {
        "project": "headrace",
        "dataset": "churn",
        "dag": "churn_validation",
        "run": context["run_id"],
        "severity": "warn",
    }
    (start,) = aws_calls.of("glue", "StartDataQualityRulesetEvaluationRun")
    assert start["DataSource"]["GlueTable"]["AdditionalOptions"] == {
        "pushDownPredicate": f"ds='{DS}'"
    }
    assert start["RulesetNames"] == [
        f"headrace-churn-ds-{DS}-error",
        f"headrace-churn-ds-{DS}-warn",
    ]
    # Deterministic: a retried task sends the same token and gets the first try's run back.
    assert start["ClientToken"] == TaskRunIdentity.from_context(context).run_key
    assert [call["ResultId"] for call in aws_calls.of("glue", "GetDataQualityResult")] == [
        "dqresult-error",
        "dqresult-warn",
    ]

    body = (
        aws_target.client("s3")
        .get_object(
            Bucket=aws_target.bucket, Key=f"lake/reports/churn/quality/ds={DS}/result.json"
        )["Body"]
        .read()
    )
    result = json.loads(body)
    assert result["engine"] == "glue_data_quality" and result["passed"] is True
    assert result["partition"]["glue_run_id"] == "dqrun-0123"


def test_glue_data_quality_resumes_without_the_defer_kwargs_as_dag_test_does(
    aws_target, aws_calls, task_context
):
    _put_s3_partition(aws_target)
    _stub_glue_data_quality(aws_calls, passing=True)
    context = gate_context(task_context)
    gate = make_gate()
    with pytest.raises(TaskDeferred) as deferred:
        gate.execute(context)
    event = {"status": "success", "evaluation_run_id": "dqrun-0123"}

    # dag.test() resumes with the event alone: the run and the staged copy are found again.
    summary = make_gate().execute_complete(context, event=event)

    assert summary["passed"] is True
    body = aws_target.client("s3").get_object(
        Bucket=aws_target.bucket, Key=f"lake/reports/churn/quality/ds={DS}/result.json"
    )["Body"]
    partition = json.loads(body.read())["partition"]
    sent = deferred.value.kwargs["partition"]
    assert partition == {**sent, "glue_run_id": "dqrun-0123"}


def test_glue_data_quality_failure_names_the_rule_and_metric(aws_target, aws_calls, task_context):
    _put_s3_partition(aws_target)
    _stub_glue_data_quality(aws_calls, passing=False)

    with pytest.raises(AirflowException) as failed:
        run_gate(make_gate(), gate_context(task_context))

    message = str(failed.value)
    assert "1 error rule(s) failed" in message
    assert (
        '  - completeness_plan (completeness) on plan: observed {"Column.plan.Completeness": 0.975}'
        in message
    )
    assert "FAIL: Value: 0.975 does not meet the constraint requirement!" in message


def test_glue_data_quality_run_is_sized_by_the_datasets_capacity(
    tmp_path, aws_target, aws_calls, task_context
):
    _put_s3_partition(aws_target)
    _stub_glue_data_quality(aws_calls, passing=True)
    run_gate(make_gate(), gate_context(task_context))
    # Nothing in the spec: today's two workers and one hour.
    (default,) = aws_calls.of("glue", "StartDataQualityRulesetEvaluationRun")
    assert (default["NumberOfWorkers"], default["Timeout"]) == (2, 60)

    folder = tmp_path / "datasets"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "include" / "datasets" / "churn.quality.yaml", folder)
    raw = yaml.safe_load((REPO_ROOT / "include" / "datasets" / "churn.yaml").read_text())
    raw["capacity"] = {
        "quality": {"max_runtime_minutes": 30, "glue_data_quality": {"number_of_workers": 12}}
    }
    (folder / "churn.yaml").write_text(yaml.safe_dump(raw))
    aws_calls.requests.clear()
    _stub_glue_data_quality(aws_calls, passing=True)
    run_gate(make_gate(rules_dir=folder), gate_context(task_context))
    (sized,) = aws_calls.of("glue", "StartDataQualityRulesetEvaluationRun")
    assert (sized["NumberOfWorkers"], sized["Timeout"]) == (12, 30)


# --- aws: Deequ on EMR Serverless -----------------------------------------------------------


def test_deequ_path_runs_the_job_through_spark_job_operator(aws_target, aws_calls, task_context):
    """moto runs no Spark: the job's result document is put where the job writes it, and the
    test checks what the gate sent (checks document, StartJobRun) and how it reads the result."""
    from include.dq.results import GateResult, RuleOutcome
    from include.dq.rules import engine_rules

    aws_target.use("emr_serverless")
    _put_s3_partition(aws_target)
    s3 = aws_target.client("s3")
    folder = f"lake/reports/churn/quality/ds={DS}"
    # What the job writes: one outcome per rule it checked (all but the rules over ingestion).
    outcomes = [
        RuleOutcome(
            rule=rule.id,
            kind=rule.kind,
            column=rule.target,
            severity=rule.severity,
            status="pass",
            expected={},
        )
        for rule in engine_rules(load_dataset_rules("churn").rules)
        if rule.id != "allowed_values_region"
    ]
    outcomes.append(
        RuleOutcome(
            rule="allowed_values_region",
            kind="allowed_values",
            column="region",
            severity="error",
            status="fail",
            expected={"values": ["na-east"]},
            observed=0.975,
            unexpected_count=1,
            offending_keys=[{"customer_id": "C100000008", "snapshot_date": DS}],
        )
    )
    failed = GateResult(dataset="churn", ds=DS, engine="deequ", outcomes=outcomes)
    s3.put_object(Bucket=aws_target.bucket, Key=f"{folder}/result.json", Body=failed.to_json())
    context = gate_context(task_context)

    with pytest.raises(AirflowException) as raised:
        make_gate().execute(context)

    assert "quality gate failed for churn ds=2026-01-10 (deequ): 1 error rule(s) failed" in str(
        raised.value
    )
    assert "allowed_values_region (allowed_values) on region: observed 0.975" in str(raised.value)
    (start,) = aws_calls.of("emr-serverless", "StartJobRun")
    submit = start["jobDriver"]["sparkSubmit"]
    assert submit["entryPoint"].endswith("/artifacts/spark_jobs/quality_deequ.py")
    checks_uri = f"s3://{aws_target.bucket}/{folder}/deequ_checks.json"
    assert submit["entryPointArguments"][:2] == ["--checks-uri", checks_uri]
    assert submit["entryPointArguments"][-2:] == [
        "--result-uri",
        f"s3://{aws_target.bucket}/{folder}/result.json",
    ]
    checks = json.loads(
        s3.get_object(Bucket=aws_target.bucket, Key=f"{folder}/deequ_checks.json")["Body"].read()
    )
    assert [check["level"] for check in checks["checks"]] == ["Error", "Warning"]
    # The human report is written beside the job's result.
    report = (
        s3.get_object(Bucket=aws_target.bucket, Key=f"{folder}/report.html")["Body"].read().decode()
    )
    assert "allowed_values_region" in report
    # The gate added the rules over ingestion beside the job's, from the manifest.
    result = json.loads(
        s3.get_object(Bucket=aws_target.bucket, Key=f"{folder}/result.json")["Body"].read()
    )
    ingestion = {r["rule"]: r for r in result["results"] if r["column"].startswith("(ingestion)")}
    assert sorted(ingestion) == [
        "quarantine_rate",
        "quarantine_rate_required_null",
        "quarantine_rate_required_null_churned",
        "quarantine_rate_type_mismatch",
        "rows_in_change",
    ]
    assert ingestion["quarantine_rate"]["observed"]["rows_read"] == 40
    assert {r["status"] for r in ingestion.values()} == {"pass"}


def test_glue_data_quality_fails_a_day_ingest_mostly_quarantined(
    aws_target, aws_calls, task_context
):
    """Glue checks the curated rows and they pass; the gate still fails the day on what ingest
    refused, naming the reasons (35% of the landing rows)."""
    _put_s3_partition(
        aws_target,
        rows=65,
        quarantined_by_reason={"required_null:churned": 30, "out_of_range:tenure_months": 5},
    )
    _stub_glue_data_quality(aws_calls, passing=True)

    with pytest.raises(AirflowFailException) as failed:
        run_gate(make_gate(), gate_context(task_context))

    message = str(failed.value)
    assert "(glue_data_quality): 3 error rule(s) failed" in message
    assert (
        "ingest quarantined 35 of 100 landing rows (35.0%, above 5.0%); "
        "by reason: required_null:churned 30, out_of_range:tenure_months 5" in message
    )
    assert "quarantine_rate_required_null_churned (quarantine_rate)" in message


def test_deequ_job_without_a_result_fails_the_gate(aws_target, aws_calls, task_context):
    aws_target.use("emr_serverless")
    _put_s3_partition(aws_target)

    with pytest.raises(
        AirflowException, match=r"the Deequ job finished but wrote no result at s3://.*/result.json"
    ):
        make_gate().execute(gate_context(task_context))


# --- the DAG in Airflow's own task runner ---------------------------------------------------

_DAG_TEST = r"""
import json, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/plugins", sys.argv[1] + "/tests/include/dq"]
from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
from dq_partitions import DS, clean_frame, write_partition
from include.dq.gate import load_dataset_rules
lake = Path(sys.argv[2].removeprefix("file://"))
result_path = lake / "reports" / "churn" / "quality" / f"ds={DS}" / "result.json"
features_manifest = lake / "features" / "churn" / f"ds={DS}" / "_manifest.json"
types = load_dataset_rules("churn").curated_types()
from airflow.dag_processing.bundles.manager import DagBundlesManager
bag = DagBag(dag_folder=sys.argv[1] + "/dags")
# What the dag-processor does: store the DAG and activate its Assets (outlets must be active).
DagBundlesManager().sync_bundles_to_db()
sync_bag_to_db(bag, "dags-folder", None)
for partition in sys.argv[3:]:
    frame = clean_frame(types)
    if partition == "bad":
        frame.loc[8, "region"] = "mars"
    write_partition(sys.argv[2], frame, types)
    result_path.unlink(missing_ok=True)
    features_manifest.unlink(missing_ok=True)
    print(f"PARTITION {partition}", flush=True)
    run = bag.dags["churn_validation"].test(run_conf={"ds": DS})
    tis = {t.task_id: t for t in run.get_task_instances()}
    ti = tis["quality_gate"]
    print("OUTCOME " + json.dumps({"partition": partition, "dag_run_state": str(run.state), "ti_state": str(ti.state), "features_state": str(tis["features"].state), "xcom": ti.xcom_pull(task_ids="quality_gate"), "result": json.loads(result_path.read_text()) if result_path.exists() else None, "features_manifest": json.loads(features_manifest.read_text()) if features_manifest.exists() else None}), flush=True)
"""


@pytest.fixture(scope="module")
def validation_dag_runs(tmp_path_factory, migrated_airflow_home, repo_root) -> dict:
    """The churn validation DAG through ``dag.test()`` on a good, then a bad partition of one
    day, in one subprocess (Airflow's start-up paid once): per partition the outcome, the gate's
    result and the features manifest as that run left them, and the run's log lines."""
    import os
    import subprocess

    lake = (tmp_path_factory.mktemp("dag_test") / "lake").as_uri()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(migrated_airflow_home),
        "PIPELINE_TARGET": "local",
        "HEADRACE_LAKE_ROOT": lake,
    }
    completed = subprocess.run(
        [sys.executable, "-c", _DAG_TEST, str(repo_root), lake, "good", "bad"],
        cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600,
    )  # fmt: skip
    runs, partition = {}, None
    for line in completed.stdout.splitlines():
        if line.startswith("PARTITION "):
            partition = line.removeprefix("PARTITION ")
            runs[partition] = {"log": []}
        elif line.startswith("OUTCOME "):
            runs[partition].update(json.loads(line.removeprefix("OUTCOME ")))
        elif partition is not None:
            runs[partition]["log"].append(line)
    assert all("dag_run_state" in run for run in runs.values()) and len(runs) == 2, (
        f"no outcome (exit {completed.returncode}):\n{completed.stdout[-4000:]}"
    )
    return runs


@pytest.mark.e2e
@pytest.mark.parametrize("partition", ["good", "bad"])
def test_churn_validation_dag_in_the_task_runner(partition, validation_dag_runs):
    """The real DAG file through ``dag.test()``: the ds param is rendered into the gate, XCom holds
    the summary, and a failed error rule fails the task (no retry: the data would not change)."""
    outcome = validation_dag_runs[partition]
    result = outcome["result"]
    assert result is not None, "\n".join(outcome["log"][-60:])
    if partition == "good":
        assert (outcome["dag_run_state"], outcome["ti_state"]) == ("success", "success")
        # Features are built from the validated day only.
        assert outcome["features_state"] == "success"
        assert outcome["features_manifest"]["ds"] == DS
        assert outcome["xcom"]["ds"] == DS and outcome["xcom"]["passed"] is True
        assert result["passed"] is True
    else:
        assert (outcome["dag_run_state"], outcome["ti_state"]) == ("failed", "failed")
        assert outcome["features_state"] == "upstream_failed"
        assert outcome["features_manifest"] is None
        assert outcome["xcom"] is None
        assert result["counts"]["failed_error"] == 1
        assert "allowed_values_region (allowed_values) on region" in "\n".join(outcome["log"])
