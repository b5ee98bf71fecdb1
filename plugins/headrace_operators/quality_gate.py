"""DataQualityGateOperator: check one curated partition against its dataset's rules, on any target.

One interface everywhere: the task names a dataset and a partition; settings choose the engine.
Locally the suite runs in Great Expectations (pandas) in a local job of its own
(:mod:`include.local_quality`), so the worker reads no data file; on AWS it runs where the data
is — AWS Glue Data Quality when ``HEADRACE_SPARK_ENGINE=glue``, Deequ in
``spark_jobs/quality_deequ.py`` on EMR (Serverless or on EC2) otherwise, started through
:class:`~headrace_operators.spark_job.SparkJobOperator` so it gets the same durable run key,
re-attachment and code upload as every other Spark job.

Whatever the engine, the gate writes ``result.json`` and ``report.html`` under
``<lake>/reports/<dataset>/quality/ds=<D>/``, then either returns a small dict to XCom (and its
outlet Asset — ``<dataset>_validated`` — gets an event whose extra carries the partition) or, when
an ``error`` rule failed, raises ``AirflowFailException`` (a retry would see the same data) with a
message naming each failing rule, its column, the observed value and the rule's description.
The rules over ingestion (quarantine rate, rows in against recent days) are evaluated here from
the ingest manifest whatever the engine (:func:`include.dq.gate.with_ingestion_rules`). A task that raises emits no
outlet event, which is exactly the gate.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from headrace_operators.job_budget import enforce_budget_or_fail
from include.config import get_settings
from include.dq.gate import (
    DATASETS_DIR,
    MANIFEST_NAME,
    RESULT_NAME,
    GateInputError,
    curated_partition_uri,
    load_dataset_rules,
    load_manifest,
    quality_report_uri,
    resolved_rules_for,
    with_ingestion_rules,
    write_gate_outputs,
)
from include.dq.rules import engine_rules
from include.job_names import TaskRunIdentity
from include.job_tags import job_tags
from include.run_limits import refuse_stage_run_over_limits

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.glue import GlueDataQualityHook
    from airflow.sdk import Context

    from include.dq.results import GateResult
    from include.dq.rules import RuleSet
    from spark_jobs.dataset_spec import Capacity

DEEQU_JOB = "quality_deequ"
DEEQU_CHECKS_NAME = "deequ_checks.json"


class DataQualityGateOperator(BaseOperator):
    """Validate one curated partition; mark its validated Asset only when no ``error`` rule fails.

    :param dataset: the dataset whose ``include/datasets/<dataset>.quality.yaml`` applies. (templated)
    :param ds: the partition date, YYYY-MM-DD. Empty: the run's partition key (the scheduler
        runs the validation DAG once per curated day). (templated)
    :param rules_dir: the folder holding the dataset spec and its rules file.
    :param timeout: how long a remote run (Glue Data Quality, the Deequ job) may take; it is
        stopped after that. ``None``: the dataset spec's ``capacity.quality.max_runtime_minutes``
        (which also sizes the run: Glue Data Quality workers, the Deequ job's EMR executors).
    :param poll_interval: seconds between status checks of a remote run.
    :param deferrable: wait on a Glue Data Quality run in the triggerer rather than in a worker
        slot. (The Deequ job is a nested SparkJobOperator, which cannot defer: it waits here.)
    :param aws_conn_id: the Airflow connection for AWS credentials; ``None`` for boto3's
        default chain (MWAA's execution role).
    """

    template_fields: Sequence[str] = ("dataset", "ds")
    ui_color = "#d7ecd9"

    def __init__(
        self,
        *,
        dataset: str,
        ds: str | None = None,
        rules_dir: str | Path = DATASETS_DIR,
        timeout: timedelta | None = None,
        poll_interval: float = 30,
        deferrable: bool = True,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.ds = ds
        self.rules_dir = rules_dir
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self.aws_conn_id = aws_conn_id
        # State kept for on_kill, set by execute.
        self._glue_run_id: str | None = None
        self._local_run_key: str | None = None
        self._deequ_operator: BaseOperator | None = None
        # What the gate checked and found, for OpenLineage; set by _finish.
        self._lineage = None

    @cached_property
    def engine_name(self) -> str:
        """``great_expectations`` (local), ``glue_data_quality`` or ``deequ`` (EMR engines)."""
        settings = get_settings()
        if settings.is_local:
            return "great_expectations"
        return "glue_data_quality" if settings.aws.spark_engine == "glue" else "deequ"

    @cached_property
    def capacity(self) -> Capacity:
        """The dataset's ``capacity:`` block (its spec beside the rules)."""
        from include.config import dataset_capacity

        return dataset_capacity(self.dataset, Path(self.rules_dir))

    @property
    def run_timeout(self) -> timedelta:
        """The remote run's maximum runtime: ``timeout`` if given, else the dataset's."""
        if self.timeout is not None:
            return self.timeout
        return timedelta(minutes=self.capacity.quality.max_runtime_minutes)

    @cached_property
    def hook(self) -> GlueDataQualityHook:
        from airflow.providers.amazon.aws.hooks.glue import GlueDataQualityHook

        return GlueDataQualityHook(
            aws_conn_id=self.aws_conn_id, region_name=get_settings().aws.region
        )

    # --- the partition ---------------------------------------------------------------------

    def resolve_partition(self, context: Context) -> str:
        """The ``ds`` param, else the run's partition key
        (:func:`include.partitions.run_partition`)."""
        from include.partitions import PartitionError, run_partition

        try:
            return run_partition(self.ds, context.get("dag_run"))
        except PartitionError as error:
            raise AirflowException(str(error)) from None

    # --- execution -------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            ds = self.resolve_partition(context)
            rule_set = load_dataset_rules(self.dataset, Path(self.rules_dir))
            self.log.info(
                "Checking %s ds=%s with %d rules on %s",
                self.dataset,
                ds,
                len(rule_set.rules),
                self.engine_name,
            )
            # The gate starts its run's first job: the whole run (this check and the features
            # job) is priced and its instances checked against the account's quotas first.
            refuse_stage_run_over_limits(
                get_settings(), self.dataset, "validation", datasets_dir=Path(self.rules_dir)
            )
            if self.engine_name == "great_expectations":
                result = self._run_great_expectations(context, rule_set, ds)
            elif self.engine_name == "glue_data_quality":
                result = self._run_glue_data_quality(context, rule_set, ds)
            else:
                result = self._run_deequ(context, rule_set, ds)
        except GateInputError as error:
            raise AirflowException(str(error)) from None
        return self._finish(context, result, ds)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        run_id: str | None = None,
        partition: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Resume after the Glue Data Quality run ended: read its results, judge, publish."""
        from airflow.providers.amazon.aws.utils import validate_execute_complete_event

        event = validate_execute_complete_event(event)
        ds = self.resolve_partition(context)
        rule_set = load_dataset_rules(self.dataset, Path(self.rules_dir))
        try:
            if run_id is None or partition is None:
                # Resumed without the defer kwargs (dag.test() drops them): the trigger's event
                # names the run, and the catalog partition names the copy the run read.
                run_id = event["evaluation_run_id"]
                partition = self._partition_facts(rule_set, ds, self._catalog_location(ds))
            self._glue_run_id = run_id
            result = self._glue_gate_result(rule_set, ds, run_id, partition)
        except GateInputError as error:
            raise AirflowException(str(error)) from None
        return self._finish(context, result, ds)

    def _finish(self, context: Context, result: GateResult, ds: str) -> dict[str, Any]:
        """Write the result and report; fail on a failed error rule, else mark the Asset."""
        from include.lineage import quality_gate_lineage

        settings = get_settings()
        uris = write_gate_outputs(result, settings.lake_root)
        # Kept for OpenLineage, which reports a failed gate's assertions too.
        self._lineage = quality_gate_lineage(settings, result, uris["result_uri"])
        counts = result.counts()
        self.log.info("Quality result %s: %s", uris["result_uri"], counts)
        for outcome in result.outcomes:
            if outcome.status == "fail":
                self.log.warning("%s rule failed: %s", outcome.severity, outcome.describe())
        if not result.passed:
            # The data will not change on a retry: fail the task without retrying it.
            raise AirflowFailException(
                f"{result.failure_message()}\nresult: {uris['result_uri']}\nreport: {uris['report_uri']}"
            )
        summary = {
            "dataset": self.dataset,
            "ds": ds,
            "engine": result.engine,
            "passed": True,
            **uris,
            "counts": counts,
        }
        outlet_events = context.get("outlet_events")
        if outlet_events is not None:
            for asset in self.outlets or []:
                outlet_events[asset].extra = {"ds": ds, "result_uri": uris["result_uri"]}
                outlet_events[asset].add_partitions(ds)
        return summary

    def get_openlineage_facets_on_complete(self, task_instance):
        """OpenLineage: the curated day checked, each rule judged as a data-quality assertion,
        and the result written (:func:`include.lineage.quality_gate_lineage`)."""
        return self._lineage

    def get_openlineage_facets_on_failure(self, task_instance):
        """A failed gate's assertions name the rules that failed it."""
        return self._lineage

    def on_kill(self) -> None:
        """Stop the run this task started: the Glue evaluation run, the Deequ job or the local
        Great Expectations check."""
        if self._local_run_key is not None:
            from include import local_quality

            self.log.info("Stopping the local Great Expectations check %s", self._local_run_key)
            local_quality.stop(self._local_run_key)
        elif self._glue_run_id is not None:
            self.log.info("Cancelling Glue Data Quality run %s", self._glue_run_id)
            self.hook.conn.cancel_data_quality_ruleset_evaluation_run(RunId=self._glue_run_id)
        elif self._deequ_operator is not None:
            self._deequ_operator.on_kill()

    # --- local: Great Expectations in a job of its own -------------------------------------

    def _run_great_expectations(self, context: Context, rule_set: RuleSet, ds: str) -> GateResult:
        """The rules in Great Expectations, in a local job named by this task's run key
        (:mod:`include.local_quality`): a retry re-attaches to the check its earlier try started,
        and the check stops itself at the gate's runtime, as a Glue Data Quality run does."""
        from headrace_operators.local_job_loop import run_local_job
        from include import local_quality
        from include.dq.results import GateResult
        from include.local_jobs import LocalJobError

        run_key = TaskRunIdentity.from_context(context).run_key
        self._local_run_key = run_key

        def start() -> tuple[str, bool, str]:
            description, started = local_quality.start_or_attach(
                run_key,
                dataset=rule_set.dataset,
                ds=ds,
                rules_dir=Path(self.rules_dir).resolve(),
                lake_root=get_settings().lake_root,
                max_runtime_s=self.run_timeout.total_seconds(),
            )
            return description["Status"], started, description["LogPath"]

        document = run_local_job(
            self.log,
            f"the local Great Expectations check {run_key}",
            start=start,
            wait=lambda timeout: local_quality.wait_for_result(run_key, timeout=timeout),
            stop=lambda: local_quality.stop(run_key),
            timeout=self.run_timeout,
            job_error=LocalJobError,
        )
        return GateResult.from_dict(document)

    # --- AWS Glue Data Quality -------------------------------------------------------------

    def _run_glue_data_quality(self, context: Context, rule_set: RuleSet, ds: str) -> GateResult:
        from include.dq import glue_data_quality as gdq
        from include.dq.dqdl import compile_rulesets

        settings = get_settings()
        partition_uri = curated_partition_uri(settings.lake_root, rule_set.dataset, ds)
        manifest, content_sha256 = load_manifest(partition_uri)
        rules = resolved_rules_for(rule_set, settings.lake_root, ds)
        rulesets = compile_rulesets(engine_rules(rules))
        client = self.hook.conn
        # What the run checks, recorded as read now: a re-ingest while it runs changes the
        # manifest, not what this run saw.
        partition = self._partition_facts(
            rule_set,
            ds,
            self._ensure_catalog_partition(client, rule_set, ds, manifest),
            (manifest, content_sha256),
        )
        self._ensure_security_configuration(client)
        identity = TaskRunIdentity.from_context(context)
        # The evaluation run takes no tags: the rulesets carry the run's cost allocation tags.
        tags = job_tags(
            rule_set.dataset,
            dag_id=identity.dag_id,
            run_id=identity.run_id,
            datasets_dir=Path(self.rules_dir),
        )
        for ruleset in rulesets.values():
            self._put_ruleset(client, rule_set.dataset, ds, ruleset, tags)

        request = gdq.build_start_evaluation_run_request(
            settings,
            rule_set.dataset,
            ds,
            [gdq.ruleset_name(rule_set.dataset, ds, severity) for severity in rulesets],
            # The same token on a retry returns the run the first try started.
            client_token=identity.run_key,
            results_prefix=f"{quality_report_uri(settings.lake_root, rule_set.dataset, ds)}/glue-row-level/",
            timeout=self.run_timeout,
            number_of_workers=self.capacity.quality.glue_data_quality_workers,
        )
        self._enforce_budget(request)
        run_id = client.start_data_quality_ruleset_evaluation_run(**request)["RunId"]
        self._glue_run_id = run_id
        self.log.info("Glue Data Quality run %s checks %s ds=%s", run_id, rule_set.dataset, ds)
        if self.deferrable:
            from headrace_operators.job_triggers import GlueDataQualityRunTrigger

            delay = max(1, int(self.poll_interval))
            self.defer(
                trigger=GlueDataQualityRunTrigger(
                    evaluation_run_id=run_id,
                    waiter_delay=delay,
                    waiter_max_attempts=max(
                        1, math.ceil(self.run_timeout.total_seconds() * 1.25 / delay)
                    ),
                    aws_conn_id=self.aws_conn_id,
                ),
                method_name="execute_complete",
                kwargs={"run_id": run_id, "partition": partition},
            )
        self._wait_for_glue_run(client, run_id)
        return self._glue_gate_result(rule_set, ds, run_id, partition)

    def _glue_gate_result(
        self, rule_set: RuleSet, ds: str, run_id: str, partition: dict[str, Any]
    ) -> GateResult:
        """The gate's result from an ended Glue Data Quality run of ``ds`` over ``partition``."""
        from include.dq import glue_data_quality as gdq
        from include.dq.dqdl import compile_rulesets
        from include.dq.results import GateResult

        settings = get_settings()
        rules = resolved_rules_for(rule_set, settings.lake_root, ds)
        checked = engine_rules(rules)
        rulesets = compile_rulesets(checked)
        client = self.hook.conn
        run = client.get_data_quality_ruleset_evaluation_run(RunId=run_id)
        if run["Status"] != gdq.SUCCEEDED:
            raise AirflowException(
                f"Glue Data Quality run {run_id} for {rule_set.dataset} ds={ds} ended "
                f"{run['Status']}: {run.get('ErrorString') or 'no reason given'}"
            )
        results = [
            client.get_data_quality_result(ResultId=result_id)
            for result_id in run.get("ResultIds", [])
        ]
        result = GateResult(
            dataset=rule_set.dataset,
            ds=ds,
            engine="glue_data_quality",
            outcomes=gdq.outcomes_from_glue_results(checked, rulesets, results),
            partition={**partition, "glue_run_id": run_id},
        )
        # The ingestion rules read the manifest now: a day re-ingested since the run started has
        # another digest, and its own validation run replaces this result.
        manifest, _ = load_manifest(curated_partition_uri(settings.lake_root, rule_set.dataset, ds))
        return with_ingestion_rules(result, rules, manifest, settings.lake_root)

    def _partition_facts(
        self,
        rule_set: RuleSet,
        ds: str,
        glue_input_uri: str,
        manifest_and_digest: tuple[dict[str, Any], str] | None = None,
    ) -> dict[str, Any]:
        """The curated partition a Glue run checks, for the result (the manifest read now unless
        given)."""
        partition_uri = curated_partition_uri(get_settings().lake_root, rule_set.dataset, ds)
        manifest, content_sha256 = manifest_and_digest or load_manifest(partition_uri)
        return {
            "uri": partition_uri,
            "manifest_uri": f"{partition_uri}/{MANIFEST_NAME}",
            "content_sha256": content_sha256,
            "rows_accepted_by_ingest": manifest.get("totals", {}).get("rows_accepted"),
            "glue_input_uri": glue_input_uri,
        }

    def _catalog_location(self, ds: str) -> str:
        """Where the catalog partition ``ds=<D>`` of the curated table points: the staged copy."""
        from include.dq import glue_data_quality as gdq

        partition = self.hook.conn.get_partition(
            DatabaseName=gdq.GLUE_DATABASE,
            TableName=gdq.curated_table_name(self.dataset),
            PartitionValues=[ds],
        )
        # Written as the staging step returns it: a folder, ending in "/".
        return partition["Partition"]["StorageDescriptor"]["Location"].rstrip("/") + "/"

    def _wait_for_glue_run(self, client, run_id: str) -> dict:
        from include.dq.glue_data_quality import RUNNING_STATES

        deadline = time.monotonic() + self.run_timeout.total_seconds() * 1.25
        while True:
            run = client.get_data_quality_ruleset_evaluation_run(RunId=run_id)
            if run["Status"] not in RUNNING_STATES:
                return run
            if time.monotonic() >= deadline:
                client.cancel_data_quality_ruleset_evaluation_run(RunId=run_id)
                raise AirflowException(
                    f"Glue Data Quality run {run_id} still {run['Status']} after {self.run_timeout}; cancelled it"
                )
            self.log.info("Glue Data Quality run %s is %s", run_id, run["Status"])
            time.sleep(self.poll_interval)

    def _ensure_catalog_partition(
        self, client, rule_set: RuleSet, ds: str, manifest: dict[str, Any]
    ) -> str:
        """The catalog database and curated table, created where absent, and this partition
        pointed at a copy of exactly the manifest's files (a Glue partition is a folder, and the
        curated folder may hold files no manifest lists); returns that copy's prefix."""
        from include.dq import glue_data_quality as gdq

        settings = get_settings()
        with contextlib.suppress(client.exceptions.AlreadyExistsException):
            client.create_database(**gdq.build_create_database_request())
        with contextlib.suppress(client.exceptions.AlreadyExistsException):
            client.create_table(**gdq.build_curated_table_request(settings, rule_set))
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        s3 = S3Hook(aws_conn_id=self.aws_conn_id, region_name=settings.aws.region).conn
        return gdq.stage_manifest_partition(client, s3, settings, rule_set, ds, manifest)

    def _ensure_security_configuration(self, client) -> None:
        from include.spark_job_requests import build_glue_security_configuration_request

        # Named after the KMS key, so an existing one is the right one.
        with contextlib.suppress(client.exceptions.AlreadyExistsException):
            client.create_security_configuration(
                **build_glue_security_configuration_request(get_settings())
            )

    def _put_ruleset(self, client, dataset: str, ds: str, ruleset, tags: dict[str, str]) -> None:
        from include.dq import glue_data_quality as gdq

        create = gdq.build_create_ruleset_request(get_settings(), dataset, ds, ruleset, tags)
        try:
            existing = client.get_data_quality_ruleset(Name=create["Name"])
        except client.exceptions.EntityNotFoundException:
            client.create_data_quality_ruleset(**create)
            self.log.info("Created Glue Data Quality ruleset %s", create["Name"])
            return
        if existing.get("Description") != create["Description"]:
            client.update_data_quality_ruleset(
                **gdq.build_update_ruleset_request(dataset, ds, ruleset)
            )
            self.log.info("Updated Glue Data Quality ruleset %s", create["Name"])

    def _enforce_budget(self, request: dict) -> None:
        """Log the run's worst-case cost; fail the task, starting nothing, when it is over the
        dataset's budget (its spec's ``cost:`` block) or cannot be priced."""
        enforce_budget_or_fail(
            "glue",
            "StartDataQualityRulesetEvaluationRun",
            request,
            dataset=self.dataset,
            datasets_dir=Path(self.rules_dir),
            region=get_settings().aws.region,
            log=self.log,
        )

    # --- Deequ on EMR ----------------------------------------------------------------------

    def _run_deequ(self, context: Context, rule_set: RuleSet, ds: str) -> GateResult:
        from headrace_operators.spark_job import SparkJobOperator
        from include.dq.deequ_checks import build_deequ_checks
        from include.dq.results import GateResult
        from include.storage import storage_for

        settings = get_settings()
        manifest, content_sha256 = load_manifest(
            curated_partition_uri(settings.lake_root, rule_set.dataset, ds)
        )
        rules = resolved_rules_for(rule_set, settings.lake_root, ds)
        checks = build_deequ_checks(
            engine_rules(rules), dataset=rule_set.dataset, ds=ds, key_columns=rule_set.key_columns
        )
        folder = quality_report_uri(settings.lake_root, rule_set.dataset, ds)
        checks_uri, result_uri = f"{folder}/{DEEQU_CHECKS_NAME}", f"{folder}/{RESULT_NAME}"
        storage = storage_for(folder)
        storage.write_bytes(
            checks_uri, (json.dumps(checks, indent=2, sort_keys=True) + "\n").encode()
        )
        job_args = [
            "--checks-uri", checks_uri,
            "--lake-root", settings.lake_root,
            "--dataset", rule_set.dataset,
            "--ds", ds,
            "--result-uri", result_uri,
        ]  # fmt: skip
        # The job runs under this task's identity: its run key, re-attachment and on_kill are
        # SparkJobOperator's; it waits in this worker (a nested operator cannot defer).
        self._deequ_operator = SparkJobOperator(
            task_id=self.task_id,
            job=DEEQU_JOB,
            job_args=job_args,
            # Sized by the dataset's capacity.spark (EMR executors), bounded by the gate's runtime.
            dataset=rule_set.dataset,
            timeout=self.run_timeout,
            deferrable=False,
            poll_interval=self.poll_interval,
            aws_conn_id=self.aws_conn_id,
        )
        self._deequ_operator.execute(context)
        if not storage.exists(result_uri):
            raise AirflowException(f"the Deequ job finished but wrote no result at {result_uri}")
        result = GateResult.from_dict(json.loads(storage.read_bytes(result_uri)))
        if (result.engine, result.dataset, result.ds) != ("deequ", rule_set.dataset, ds):
            raise AirflowException(
                f"{result_uri} holds a {result.engine} result for {result.dataset} ds={result.ds}, "
                f"not the Deequ job's for {rule_set.dataset} ds={ds}"
            )
        # The manifest as this task read it before the job: a re-ingest in between emits a new
        # curated event, whose validation run replaces this result.
        result.partition["content_sha256"] = content_sha256
        return with_ingestion_rules(result, rules, manifest, settings.lake_root)
