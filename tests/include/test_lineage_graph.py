"""The lineage chain (include/lineage_graph.py) over events in the provider's format: made with
the OpenLineage client's own objects and the provider's Airflow facets, serialized with the
client's Serde into a lake's ``lineage/events/``, then read back by ``read_events``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from airflow.providers.openlineage.plugins.facets import AirflowDagRunFacet, AirflowRunFacet
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.generated.data_quality_assertions_dataset import (
    Assertion,
    DataQualityAssertionsDatasetFacet,
)
from openlineage.client.generated.job_dependencies_run import (
    JobDependenciesRunFacet,
    JobDependency,
    JobIdentifier,
    RunIdentifier,
)
from openlineage.client.serde import Serde

from include.config import load_settings
from include.lineage import (
    external_job_facet,
    input_dataset,
    output_dataset,
    read_events,
    version_facet,
)
from include.lineage_graph import LineageGraph, chain_for, chain_html, chain_text, step_rows

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "headrace-local"
DAY1, DAY2 = "2026-01-05", "2026-01-06"


class EventLake:
    """A tmp lake whose ``lineage/events/`` gets one serialized RunEvent per file."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0

    def uri(self, relative: str) -> str:
        return f"{self.root.as_uri()}/{relative}"

    def name(self, relative: str) -> str:
        return str(self.root / relative)

    def _write(self, event: RunEvent) -> None:
        self.count += 1
        folder = self.root / "lineage" / "events"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"openlineage-{self.count:04d}.json").write_text(Serde.to_json(event))

    def task(
        self,
        job: str,
        dag_run_id: str,
        minute: int,
        *,
        inputs=(),
        outputs=(),
        external: tuple[str, str] | None = None,
    ) -> str:
        """A task's COMPLETE event; returns its OpenLineage run id."""
        run_id = f"01a241da-0000-7000-8000-{self.count:012d}"
        dag_id, task_id = job.split(".")
        facets = {
            "airflow": AirflowRunFacet(
                dag={"dag_id": dag_id},
                dagRun={"dag_id": dag_id, "run_id": dag_run_id},
                task={"task_id": task_id},
                taskInstance={"try_number": 1},
                taskUuid=run_id,
            )
        }
        if external:
            facets["externalQuery"] = external_job_facet(*external)
        self._write(
            RunEvent(
                eventType=RunState.COMPLETE,
                eventTime=f"2026-12-04T16:{minute:02d}:00+00:00",
                run=Run(runId=run_id, facets=facets),
                job=Job(namespace=NAMESPACE, name=job),
                inputs=list(inputs),
                outputs=list(outputs),
            )
        )
        return run_id

    def dag_start(self, dag_id: str, dag_run_id: str, minute: int, *, upstream=()) -> None:
        """A DAG run's START event, with the asset events that triggered it."""
        dependencies = [
            JobDependency(
                job=JobIdentifier(namespace=NAMESPACE, name=job),
                run=RunIdentifier(runId="01a241e0-0000-7000-8000-000000000000"),
                dependency_type="IMPLICIT_ASSET_DEPENDENCY",
            ).with_additional_properties(airflow={"asset_events": [asset_event]})
            for job, asset_event in upstream
        ]
        self._write(
            RunEvent(
                eventType=RunState.START,
                eventTime=f"2026-12-04T16:{minute:02d}:00+00:00",
                run=Run(
                    runId=f"01a241d9-0000-7000-8000-{self.count:012d}",
                    facets={
                        "airflowDagRun": AirflowDagRunFacet(
                            dag={"dag_id": dag_id},
                            dagRun={"dag_id": dag_id, "run_id": dag_run_id},
                        ),
                        "jobDependencies": JobDependenciesRunFacet(upstream=dependencies),
                    },
                ),
                job=Job(namespace=NAMESPACE, name=dag_id),
            )
        )

    def write_json(self, relative: str, document: dict) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document))


MODEL = "models/churn/jobs/headrace-churn-aaa-001/output/model.tar.gz"
PREDICTIONS = f"predictions/churn/ds={DAY2}/21cf41e5842c2018"
DRIFT = f"monitoring/churn/model_version=1/ds={DAY2}"


def _gate_input(lake: EventLake, day: str, failed: tuple[str, ...] = ()):
    assertions = [
        Assertion(assertion=f"{rule} (not_null, error)", success=rule not in failed, column=rule)
        for rule in ("customer_id", "snapshot_date", "monthly_charge")
    ]
    return input_dataset(
        lake.uri(f"curated/churn/ds={day}"),
        facets={"dataQualityAssertions": DataQualityAssertionsDatasetFacet(assertions=assertions)},
    )


def _ingest(lake: EventLake, day: str, minute: int, version: str, run: str) -> str:
    return lake.task(
        "churn_ingestion.ingest",
        run,
        minute,
        inputs=[input_dataset(lake.uri(f"landing/churn/ds={day}"), files=1, rows=2000)],
        outputs=[
            output_dataset(
                lake.uri(f"curated/churn/ds={day}"), facets={"version": version_facet(version)}
            ),
            output_dataset(
                lake.uri(f"quarantine/churn/ds={day}"), facets={"version": version_facet(version)}
            ),
        ],
        external=(f"churn-ingestion-ingest-{day}", "spark-local"),
    )


def _lifecycle(lake: EventLake, *, ingest_day2: bool = True, gate_fails: tuple = ()) -> dict:
    """Day 1 trains the model, day 2 is scored with it and its drift checked; returns run ids."""
    runs = {}
    runs["ingest1"] = _ingest(lake, DAY1, 1, "v-curated-1", "ingest-run-1")
    runs["gate1"] = lake.task(
        "churn_validation.quality_gate",
        "validation-run-1",
        2,
        inputs=[_gate_input(lake, DAY1, gate_fails)],
        outputs=[output_dataset(lake.uri(f"reports/churn/quality/ds={DAY1}/result.json"))],
    )
    runs["features1"] = lake.task(
        "churn_validation.features",
        "validation-run-1",
        3,
        inputs=[
            input_dataset(
                lake.uri(f"curated/churn/ds={DAY1}"),
                facets={"version": version_facet("v-curated-1")},
            )
        ],
        outputs=[
            output_dataset(
                lake.uri(f"features/churn/ds={DAY1}"), facets={"version": version_facet("v-feat-1")}
            )
        ],
        external=("churn-validation-features-1", "spark-local"),
    )
    lake.dag_start("churn_training", "training-run-1", 4)
    runs["tune"] = lake.task(
        "churn_training.tune",
        "training-run-1",
        5,
        inputs=[input_dataset(lake.uri(f"features/churn/ds={DAY1}"))],
        outputs=[output_dataset(lake.uri(MODEL))],
        external=("headrace-churn-aaa", "sagemaker-tuning"),
    )
    if ingest_day2:
        runs["ingest2"] = _ingest(lake, DAY2, 6, "v-curated-2", "ingest-run-2")
        runs["gate2"] = lake.task(
            "churn_validation.quality_gate",
            "validation-run-2",
            7,
            inputs=[_gate_input(lake, DAY2)],
            outputs=[output_dataset(lake.uri(f"reports/churn/quality/ds={DAY2}/result.json"))],
        )
    runs["features2"] = lake.task(
        "churn_validation.features",
        "validation-run-2",
        8,
        inputs=[
            input_dataset(lake.uri(f"curated/churn/ds={DAY1}")),
            input_dataset(lake.uri(f"curated/churn/ds={DAY2}")),
        ],
        outputs=[output_dataset(lake.uri(f"features/churn/ds={DAY2}"))],
    )
    plan = f"predictions/churn/jobs/input/ds={DAY2}/61cd/plan"
    runs["scoring_input"] = lake.task(
        "churn_scoring.scoring_input",
        "scoring-run-2",
        9,
        inputs=[
            input_dataset(lake.uri(f"features/churn/ds={DAY2}")),
            input_dataset(lake.uri(plan)),
        ],
        outputs=[
            output_dataset(lake.uri(f"predictions/churn/input/ds={DAY2}/a1cb")),
            output_dataset(lake.uri(f"predictions/churn/jobs/input/ds={DAY2}/61cd/facts")),
        ],
        external=("headrace-churn-scoring-input-1", "sagemaker-processing"),
    )
    runs["transform"] = lake.task(
        "churn_scoring.transform",
        "scoring-run-2",
        10,
        inputs=[
            input_dataset(lake.uri(f"predictions/churn/input/ds={DAY2}/a1cb")),
            input_dataset(lake.uri(MODEL)),
        ],
        outputs=[output_dataset(lake.uri(f"predictions/churn/transform/ds={DAY2}/tr-1"))],
        external=("headrace-churn-scoring-transform-1", "sagemaker-transform"),
    )
    runs["predictions"] = lake.task(
        "churn_scoring.predictions",
        "scoring-run-2",
        11,
        inputs=[input_dataset(lake.uri(f"predictions/churn/transform/ds={DAY2}/tr-1"))],
        outputs=[output_dataset(lake.uri(PREDICTIONS))],
        external=("headrace-churn-scoring-predictions-1", "sagemaker-processing"),
    )
    runs["drift"] = lake.task(
        "churn_monitoring.drift_job",
        "monitoring-run-2",
        12,
        inputs=[
            input_dataset(lake.uri(f"predictions/churn/ds={DAY2}")),
            input_dataset(lake.uri(f"curated/churn/ds={DAY2}")),
        ],
        outputs=[output_dataset(lake.uri(DRIFT))],
        external=("headrace-churn-monitoring-drift-1", "sagemaker-processing"),
    )
    return runs


@pytest.fixture
def lake(tmp_path) -> EventLake:
    return EventLake(tmp_path / "lake")


@pytest.fixture
def settings(lake):
    return load_settings({"PIPELINE_TARGET": "local", "HEADRACE_LAKE_ROOT": lake.root.as_uri()})


def _graph(settings) -> LineageGraph:
    return LineageGraph(read_events(settings))


def _start(graph: LineageGraph, relative: str):
    (found,) = graph.outputs_at(relative)
    return found


def _by_dataset(chain, lake: EventLake) -> dict[str, dict]:
    return {row["dataset"]: row for row in step_rows(chain, str(lake.root))}


def test_a_days_predictions_lead_back_to_the_landing_files(lake, settings):
    runs = _lifecycle(lake)
    graph = _graph(settings)
    chain = chain_for(graph, [_start(graph, PREDICTIONS)])
    rows = step_rows(chain, str(lake.root))

    assert [(row["stage"], row["dataset"]) for row in rows] == [
        ("landing", f"landing/churn/ds={DAY1}"),
        ("landing", f"landing/churn/ds={DAY2}"),
        ("curated", f"curated/churn/ds={DAY1}"),
        ("curated", f"curated/churn/ds={DAY2}"),
        ("gate", f"reports/churn/quality/ds={DAY1}/result.json"),
        ("gate", f"reports/churn/quality/ds={DAY2}/result.json"),
        ("features", f"features/churn/ds={DAY1}"),
        ("features", f"features/churn/ds={DAY2}"),
        ("model", MODEL),
        ("scoring input", f"predictions/churn/input/ds={DAY2}/a1cb"),
        ("transform output", f"predictions/churn/transform/ds={DAY2}/tr-1"),
        ("predictions", PREDICTIONS),
        # Downstream: the drift check that read the day's predictions folder.
        ("drift report", DRIFT),
    ]
    by_dataset = _by_dataset(chain, lake)
    curated1 = by_dataset[f"curated/churn/ds={DAY1}"]
    assert (curated1["task"], curated1["airflow_run_id"], curated1["version"]) == (
        "churn_ingestion.ingest",
        "ingest-run-1",
        "v-curated-1",
    )
    assert curated1["time"] == "2026-12-04T16:01:00+00:00"
    assert curated1["external_job"] == f"churn-ingestion-ingest-{DAY1}"
    model = by_dataset[MODEL]
    assert (model["task"], model["airflow_run_id"], model["external_job"]) == (
        "churn_training.tune",
        "training-run-1",
        "headrace-churn-aaa",
    )
    assert by_dataset[PREDICTIONS]["external_job"] == "headrace-churn-scoring-predictions-1"
    # The bookkeeping plan and facts folders are not steps.
    assert not any(row["dataset"].endswith(("/plan", "/facts")) for row in rows)
    assert set(chain.runs) == set(runs.values())
    assert chain.missing == []
    # Edges: the transform read the scoring input and the model, and wrote the transform output.
    model_key = ("file", lake.name(MODEL))
    assert (model_key, runs["transform"]) in chain.edges
    assert (runs["tune"], model_key) in chain.edges


def test_the_gate_verdict_counts_the_assertions_on_the_curated_partition(lake, settings):
    _lifecycle(lake, gate_fails=("monthly_charge",))
    graph = _graph(settings)
    chain = chain_for(graph, [_start(graph, PREDICTIONS)])
    by_dataset = _by_dataset(chain, lake)

    day1 = by_dataset[f"reports/churn/quality/ds={DAY1}/result.json"]
    assert day1["task"] == "churn_validation.quality_gate"
    assert day1["airflow_run_id"] == "validation-run-1"
    assert day1["note"] == "FAIL: 2 passed, 1 failed (monthly_charge (not_null, error))"
    assert by_dataset[f"reports/churn/quality/ds={DAY2}/result.json"]["note"] == (
        "PASS: 3 passed, 0 failed"
    )


def test_a_link_the_events_lack_is_reported_missing(lake, settings):
    _lifecycle(lake, ingest_day2=False)
    graph = _graph(settings)
    chain = chain_for(graph, [_start(graph, PREDICTIONS)])

    curated2 = lake.name(f"curated/churn/ds={DAY2}")
    assert [(m.after, m.what) for m in chain.missing] == [
        (curated2, f"no COMPLETE event lists {curated2} as an output"),
    ]
    row = _by_dataset(chain, lake)[f"curated/churn/ds={DAY2}"]
    assert (row["task"], row["airflow_run_id"]) == ("-", "-")
    text = chain_text(chain, str(lake.root))
    assert f"MISSING  curated/churn/ds={DAY2}: no COMPLETE event lists" in text


def test_the_writer_is_the_latest_run_before_its_reader(lake, settings):
    _lifecycle(lake)
    # A re-ingestion of day 1 after everything else ran is not what day 2's features read.
    _ingest(lake, DAY1, 30, "v-curated-1-again", "ingest-run-1-again")
    graph = _graph(settings)
    chain = chain_for(graph, [_start(graph, PREDICTIONS)])

    row = _by_dataset(chain, lake)[f"curated/churn/ds={DAY1}"]
    assert (row["airflow_run_id"], row["version"]) == ("ingest-run-1", "v-curated-1")


def test_a_model_chain_names_the_drift_report_that_started_its_training(lake, settings):
    _lifecycle(lake)
    lake.dag_start(
        "churn_training",
        "training-run-2",
        13,
        upstream=[
            (
                "churn_monitoring.emit_drift_event",
                {
                    "asset_uri": lake.uri("monitoring/churn/drift"),
                    "dag_run_id": "monitoring-run-2",
                    "asset_event_extra": {"ds": DAY2, "model_version": "1"},
                },
            )
        ],
    )
    model2 = "models/churn/jobs/headrace-churn-bbb-001/output/model.tar.gz"
    tune2 = lake.task(
        "churn_training.tune",
        "training-run-2",
        14,
        inputs=[
            input_dataset(lake.uri(f"features/churn/ds={DAY2}")),
            # The champion the new model is compared with: its folder, not its artifact.
            input_dataset(lake.uri("models/churn/jobs/headrace-churn-aaa-001/output")),
        ],
        outputs=[output_dataset(lake.uri(model2))],
        external=("headrace-churn-bbb", "sagemaker-tuning"),
    )
    graph = _graph(settings)
    chain = chain_for(graph, [_start(graph, model2)])
    by_dataset = _by_dataset(chain, lake)

    drift = by_dataset[DRIFT]
    assert (drift["task"], drift["airflow_run_id"], drift["note"]) == (
        "churn_monitoring.drift_job",
        "monitoring-run-2",
        "started this retraining",
    )
    drift_key = next(k for k in chain.steps if k[1].endswith(DRIFT))
    assert (drift_key, tune2) in chain.edges
    champion = by_dataset["models/churn/jobs/headrace-churn-aaa-001/output"]
    assert (champion["airflow_run_id"], champion["note"]) == (
        "training-run-1",
        "champion the new model was compared with",
    )
    # The champion's own chain is not walked: day 1's features are not in model 2's chain.
    assert f"features/churn/ds={DAY1}" not in by_dataset
    assert by_dataset[f"landing/churn/ds={DAY1}"]["stage"] == "landing"  # via day 2's window


def test_a_training_run_without_inputs_falls_back_to_the_model_card_and_says_so(lake, settings):
    _lifecycle(lake)
    model3 = "models/churn/jobs/headrace-churn-ccc-001/output/model.tar.gz"
    lake.task(
        "churn_training.tune", "training-run-3", 20, outputs=[output_dataset(lake.uri(model3))]
    )
    graph = _graph(settings)
    model_key = ("file", lake.name(model3))
    features1 = ("file", lake.name(f"features/churn/ds={DAY1}"))

    without = chain_for(graph, [_start(graph, model3)])
    assert [m.what for m in without.missing] == ["the run's event lists no input datasets"]
    assert set(without.steps) == {model_key}

    chain = chain_for(
        graph, [_start(graph, model3)], training_inputs={model_key: [(features1, "v-feat-1")]}
    )
    assert [m.what for m in chain.missing] == [
        "the run's event lists no input datasets; its features come from the model card's "
        "training window"
    ]
    by_dataset = _by_dataset(chain, lake)
    assert by_dataset[f"features/churn/ds={DAY1}"]["airflow_run_id"] == "validation-run-1"
    assert by_dataset[f"landing/churn/ds={DAY1}"]["stage"] == "landing"


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.open: list[str] = []
        self.nodes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag != "meta":  # the page's only void element
            self.open.append(tag)
        if tag == "g":
            self.nodes.append(dict(attrs)["data-node"])

    def handle_startendtag(self, tag, attrs):
        """A self-closed SVG element (``<rect/>``) opens nothing."""

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_the_html_page_draws_every_step_and_run(lake, settings):
    runs = _lifecycle(lake)
    graph = _graph(settings)
    chain = chain_for(graph, [_start(graph, PREDICTIONS)])
    page = chain_html(chain, "Lineage of the predictions of churn", str(lake.root))

    parser = _PageParser()
    parser.feed(page)
    parser.close()
    assert parser.open == []
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert sorted(parser.nodes) == sorted([*map(str, chain.steps), *runs.values()])
    text = "".join(parser.text)
    for row in step_rows(chain, str(lake.root)):
        assert row["dataset"] in text
        assert row["airflow_run_id"] in text


def _run_cli(lake: EventLake, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PIPELINE_TARGET": "local",
        "HEADRACE_LAKE_ROOT": lake.root.as_uri(),
    }
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "lineage.py"), "--dataset", "churn", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_the_cli_prints_the_chain_and_writes_the_page(lake):
    runs = _lifecycle(lake)
    lake.write_json(
        f"predictions/churn/ds={DAY2}/_manifest.json",
        {
            "files": [{"path": "21cf41e5842c2018/part-00000.parquet", "bytes": 10}],
            "model_version": "1",
            "model_uri": lake.uri(MODEL),
        },
    )
    result = _run_cli(lake, "--predictions-day", DAY2)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"lineage of the predictions of churn for {DAY2}"
    assert lines[1].split() == [
        "stage", "dataset", "task", "airflow", "run", "id", "time", "external", "job"
    ]  # fmt: skip
    assert lines[2].split()[:2] == ["landing", f"landing/churn/ds={DAY1}"]
    predictions = next(line for line in lines if line.startswith("predictions "))
    assert predictions.split()[1:5] == [
        PREDICTIONS,
        "churn_scoring.predictions",
        "scoring-run-2",
        "2026-12-04T16:11:00+00:00",
    ]
    page_path = lake.root / "lineage" / "chains" / f"churn-predictions-{DAY2}.html"
    assert lines[-1] == f"html: {page_path}"
    parser = _PageParser()
    parser.feed(page_path.read_text())
    assert len(parser.nodes) == 13 + len(runs)
    assert f"reports/churn/quality/ds={DAY1}/result.json" in "".join(parser.text)


@pytest.mark.slow
def test_the_cli_fails_naming_the_day_without_predictions(lake):
    _lifecycle(lake)
    result = _run_cli(lake, "--predictions-day", "2026-02-01")

    assert result.returncode == 1
    manifest = lake.uri("predictions/churn/ds=2026-02-01/_manifest.json")
    assert result.stderr.strip() == (
        f"lineage: no predictions of churn for 2026-02-01: no committed manifest at {manifest}"
    )
    assert result.stdout == ""


def test_a_chain_shows_the_model_version_and_the_drift_verdict_the_tasks_reported(lake, settings):
    """register_model's and drift_check's RUNNING events (include.lineage.emit_task_outputs)
    put the version, its test roc_auc and the verdict on the model and drift report steps."""
    from include.lineage import drift_verdict_lineage, model_version_lineage

    _lifecycle(lake)
    model_dir = lake.root / MODEL.rsplit("/", 1)[0]
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "evaluation.json").write_text(json.dumps({"metrics": {"roc_auc": 0.7884}}))
    verdict = "drift: minutes_used, score"
    reported = {
        "churn_training.register_model": model_version_lineage(
            lake.uri(MODEL), {"version": "1", "approval": "Approved", "champion_version": None}
        ),
        "churn_monitoring.drift_check": drift_verdict_lineage(
            {"ds": DAY2, "model_version": "1", "drifted": True, "verdict": verdict,
             "drifted_features": ["minutes_used", "score"],
             "uris": {"drift_report": lake.uri(f"{DRIFT}/drift_report.json")}}
        ),
    }  # fmt: skip
    for job, outputs in reported.items():
        lake._write(
            RunEvent(
                eventType=RunState.RUNNING,
                eventTime="2026-12-04T16:40:00+00:00",
                run=Run(runId=f"01a241da-0000-7000-8000-{lake.count:012d}"),
                job=Job(namespace=NAMESPACE, name=job),
                outputs=outputs,
            )
        )
    graph = _graph(settings)
    by_dataset = _by_dataset(chain_for(graph, [_start(graph, PREDICTIONS)]), lake)

    assert by_dataset[MODEL]["note"] == "version 1 Approved, test roc_auc 0.788"
    assert by_dataset[MODEL]["task"] == "churn_training.tune"  # the writer stays the job
    assert by_dataset[DRIFT]["note"] == verdict
