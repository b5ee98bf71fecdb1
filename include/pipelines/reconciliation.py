"""DAG factory of the reconciliation stage: how far each day of one dataset has come, and an
alert on the days that are stuck.

``reconciliation_dag("churn")`` builds the DAG ``churn_reconciliation``; ``dags/
reconciliation_dags.py`` builds one per dataset spec. The report itself is
:mod:`include.reconciliation`.

Where a person reads it in the Airflow UI (3.3.1), and why there: the ``reconcile`` task's log
holds the Markdown summary (counts, what needs attention, a table of the days), and its XCom the
counts and the report's URIs; this DAG's docs say where the full HTML page and JSON are. What
Airflow offers beyond that does not fit: the DAG's ``doc_md`` is fixed at parse time (no lake
reads there); a task cannot write its run's note or its own note from the Task SDK (the
execution API has no such call in 3.3.1: runtime Dag run notes are apache/airflow PR #69403,
still open, and task notes PR #61066 was closed unmerged); the "Rendered Templates" tab
highlights a field's text but does not render Markdown; an operator extra link to the HTML page
needs a plugin registering the link class (and a browser does not open ``file://`` links from
the UI); a human-in-the-loop task renders Markdown under "Required actions" but holds the run
open until someone answers, which a daily report must not. The alert (SNS on AWS, a warning log
line locally, a JSON file in the lake on both) is what reaches people outside the UI.

The lake-level checks (landing or inbox folders of datasets without a spec) run in every
dataset's DAG: a separate lake DAG could sit paused or be left out of a deployment unnoticed,
while any dataset's report a person opens shows them. The cost is the same finding in each
dataset's report and alert.
"""

from __future__ import annotations

from airflow.sdk import DAG, CronTriggerTimetable, chain, dag, get_current_context, task

from include.config import STUCK_AFTER_HOURS_RANGE, Settings, get_settings
from include.dag_defaults import DEFAULT_ARGS, START_DATE, number_param
from include.pipelines.datasets import PipelineDataset, pipeline_dataset

STAGE = "reconciliation"
# Daily at 06:00 UTC: six hours after ingestion's daily run, so a day that landed by midnight
# has had the default stuck threshold's time to flow through every stage.
DAILY = "0 6 * * *"


def _doc(dataset: PipelineDataset, settings: Settings) -> str:
    name = dataset.name
    folder = f"{settings.zone_uri('reports')}/{name}/reconciliation"
    return f"""
### {dataset.title} reconciliation

*{dataset.description}*

How far every day of {name} has come, one row per day found in any zone of the lake: landing
files and bytes (complete, or what the day waits for: `landing.complete_when` of
`{dataset.spec_file}`), curated rows accepted and quarantined, the quality gate's verdict and
failed error rules, features written, rows scored, the drift verdict and the model version —
then the furthest **stage** the day reached and its **status**:

- `done`: monitored (or featurized before the first day any model scored);
- `waiting`: the next stage has not happened yet, for less than the stuck threshold;
- `stuck`: sat at its stage longer than the threshold (the `stuck_after_hours` parameter,
  default `HEADRACE_STUCK_AFTER_HOURS`, {settings.stuck_after_hours:g} h), with the reason:
  landing incomplete, not ingested, no quality verdict, no features, not scored, not monitored;
- `failed`: needs a person: the gate failed (the rules are named), the day key is not a date,
  an artifact cannot be read.

Also listed: landing events ingestion refused, landing (and local inbox) folders of datasets
that have no spec, files outside any `ds=` folder, inbox files parked or not taken in time.

**Read it**: the `reconcile` task's log (a Markdown summary), the page
`{folder}/reconciliation.html`, and for tools `{folder}/reconciliation.json` (a copy per day
under `history/`). Only manifests and small JSON results are read, never data files.

**For** data and platform engineers on call: anything stuck or failed raises an alert (an SNS
message on AWS when `HEADRACE_ALERTS_TOPIC_ARN` is set; a log line locally; a JSON file under
`monitoring/{name}/alerts/reconciliation/` on both); with nothing to report, `alert` is skipped.

**Triggered** daily at 06:00 UTC, and by hand.

*Built by `include/pipelines/reconciliation.py` from `{dataset.spec_file}`.*
"""


def reconciliation_dag(dataset: str) -> DAG:
    """The ``<dataset>_reconciliation`` DAG: the report, then an alert when days are stuck."""
    info = pipeline_dataset(dataset)
    settings = get_settings()
    low, high = STUCK_AFTER_HOURS_RANGE

    @dag(
        dag_id=f"{dataset}_{STAGE}",
        schedule=CronTriggerTimetable(DAILY, timezone="UTC"),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["headrace", "monitoring"],
        doc_md=_doc(info, settings),
        params={
            "stuck_after_hours": number_param(
                settings.stuck_after_hours,
                title="Stuck after (hours)",
                description=(
                    "A day that has sat at one stage this long is reported stuck and alerted "
                    "on (default: HEADRACE_STUCK_AFTER_HOURS)"
                ),
                minimum=low,
                maximum=high,
            ),
        },
    )
    def reconciliation():
        @task(multiple_outputs=False)
        def reconcile() -> dict:
            """Build and write the report; log its Markdown summary; return counts and URIs."""
            import logging

            from include.reconciliation import build_report, render_markdown, write_report

            params = get_current_context()["params"]
            run_settings = get_settings()
            report = build_report(
                run_settings, dataset, stuck_after_hours=float(params["stuck_after_hours"])
            )
            uris = write_report(run_settings, report)
            logging.getLogger("headrace.reconciliation").info(
                "%s\nReport: %s", render_markdown(report), uris["html"]
            )
            return {
                "dataset": dataset,
                "generated_at": report["generated_at"],
                "counts": report["counts"],
                "attention": len(report["attention"]),
                "uris": uris,
            }

        @task.short_circuit
        def needs_attention(summary: dict) -> bool:
            return summary["attention"] > 0

        @task(multiple_outputs=False)
        def alert(summary: dict) -> dict:
            from include.reconciliation import raise_stuck_days_alert, read_report

            run_settings = get_settings()
            # Configured, not a run parameter: whoever triggers a run must not redirect alerts.
            topic = run_settings.aws.alerts_topic_arn if run_settings.aws else None
            report = read_report(summary["uris"]["json"])
            return raise_stuck_days_alert(run_settings, report, topic_arn=topic or None)

        summary = reconcile()
        chain(summary, needs_attention(summary), alert(summary))

    return reconciliation()
