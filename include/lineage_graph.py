"""The lineage chain of a day's predictions or of a model version, read from the OpenLineage events.

A graph of lake datasets and task runs (one COMPLETE event each) built from the events the
provider wrote (:func:`include.lineage.read_events`). :func:`chain_for` walks it upstream from
the starting datasets to the landing files, and downstream to what used them: landing →
curated (with its version) → the gate verdict on it → features → training job → model →
scoring → predictions → drift report. A link the events do not carry is kept as a
:class:`Missing` entry, never dropped. The drift report that started a retraining comes from the
events: the training DAG run's START event carries the provider's ``jobDependencies`` run facet,
whose upstream asset events name the monitoring DAG run that emitted the drift asset event; its
``drift_job`` run's output is the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from include.config import LAKE_ZONES
from include.lineage import dataset_name

# Folders our jobs write for their own bookkeeping (a plan read, the facts written): not data
# anyone asks the lineage of, so the chain leaves them out.
BOOKKEEPING_SEGMENTS = ("plan", "facts")

# The order stages read in a chain, upstream first.
STAGES = (
    "landing",
    "curated",
    "gate",
    "features",
    "training input",
    "model",
    "baseline",
    "scoring input",
    "transform output",
    "predictions",
    "drift report",
    "other",
)


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as one event names it, with what that event said about it."""

    namespace: str
    name: str
    version: str | None = None
    rows: int | None = None
    # On a gate's input: [(assertion, success, column)].
    assertions: tuple[tuple[str, bool, str | None], ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name


@dataclass(frozen=True)
class TaskRun:
    """One finished task: its COMPLETE event."""

    job: str
    dag_run_id: str
    event_time: str
    run_id: str
    external_id: str | None
    external_source: str | None
    inputs: tuple[DatasetRef, ...]
    outputs: tuple[DatasetRef, ...]

    @property
    def dag_id(self) -> str:
        return self.job.split(".", 1)[0]


@dataclass(frozen=True)
class Trigger:
    """An asset event that started a DAG run (from its START event's ``jobDependencies``)."""

    asset_uri: str
    upstream_job: str
    upstream_dag_run_id: str
    extra: Mapping[str, Any]


@dataclass(frozen=True)
class Missing:
    """A link the events do not carry: what was looked for, and from where."""

    after: str  # the dataset name or task run the link should lead from
    what: str


@dataclass
class Step:
    """A dataset of the chain and the task run that wrote it (None for landing files)."""

    stage: str
    dataset: DatasetRef
    run: TaskRun | None
    note: str = ""


@dataclass
class Chain:
    """The datasets and runs of a chain, the edges between them, and the links not found."""

    steps: dict[tuple[str, str], Step] = field(default_factory=dict)
    # (dataset key, run id) for a run's input; (run id, dataset key) for its output.
    edges: set[tuple[Any, Any]] = field(default_factory=set)
    runs: dict[str, TaskRun] = field(default_factory=dict)
    missing: list[Missing] = field(default_factory=list)
    gates: dict[tuple[str, str], TaskRun] = field(default_factory=dict)
    triggers: list[tuple[TaskRun, Trigger, TaskRun | None]] = field(default_factory=list)

    def ordered_steps(self) -> list[Step]:
        """Steps upstream first: by stage, then by the time of the run that wrote them."""
        return sorted(
            self.steps.values(),
            key=lambda s: (
                STAGES.index(s.stage),
                s.run.event_time if s.run else "",
                s.dataset.name,
            ),
        )


def _dataset_ref(raw: Mapping[str, Any]) -> DatasetRef:
    facets = raw.get("facets") or {}
    stats = (raw.get("inputFacets") or {}).get("inputStatistics") or (
        raw.get("outputFacets") or {}
    ).get("outputStatistics")
    assertions = tuple(
        (item.get("assertion", ""), bool(item.get("success")), item.get("column"))
        for item in (facets.get("dataQualityAssertions") or {}).get("assertions") or []
    )
    return DatasetRef(
        namespace=raw["namespace"],
        name=raw["name"],
        version=(facets.get("version") or {}).get("datasetVersion"),
        rows=(stats or {}).get("rowCount"),
        assertions=assertions,
    )


def _finding(facets: Mapping[str, Any]) -> str:
    """A step's note from our own facets (include/lineage_facets.py), or ``""``."""
    model = facets.get("headrace_modelVersion")
    if model:
        auc = (model.get("metrics") or {}).get("roc_auc")
        metric = f", test roc_auc {auc:.3f}" if isinstance(auc, int | float) else ""
        return f"version {model.get('version')} {model.get('approval')}{metric}"
    drift = facets.get("headrace_driftVerdict")
    if drift:
        return str(drift.get("verdict") or ("drift" if drift.get("drifted") else "no drift"))
    return ""


def _airflow_run_id(facets: Mapping[str, Any]) -> str:
    for key in ("airflow", "airflowDagRun"):
        run_id = ((facets.get(key) or {}).get("dagRun") or {}).get("run_id")
        if run_id:
            return run_id
    return ""


class LineageGraph:
    """Task runs (COMPLETE task events) and the DAG runs' triggers, from raw event dicts."""

    def __init__(self, events: Iterable[Mapping[str, Any]]):
        self.runs: list[TaskRun] = []
        self.triggers: dict[tuple[str, str], list[Trigger]] = {}
        # What a task found about a dataset (a model version, a drift verdict), by dataset key:
        # reported in a RUNNING event by a TaskFlow task (include.lineage.emit_task_outputs).
        self.findings: dict[tuple[str, str], str] = {}
        for event in events:
            job = event.get("job", {}).get("name", "")
            facets = event.get("run", {}).get("facets") or {}
            for output in event.get("outputs") or []:
                finding = _finding(output.get("facets") or {})
                if finding:
                    self.findings[(output["namespace"], output["name"])] = finding
            if "." not in job:
                if event.get("eventType") == "START":
                    self._add_triggers(job, facets)
                continue
            if event.get("eventType") != "COMPLETE":
                continue
            external = facets.get("externalQuery") or {}
            self.runs.append(
                TaskRun(
                    job=job,
                    dag_run_id=_airflow_run_id(facets),
                    event_time=event["eventTime"],
                    run_id=event["run"]["runId"],
                    external_id=external.get("externalQueryId"),
                    external_source=external.get("source"),
                    inputs=tuple(_dataset_ref(d) for d in event.get("inputs") or []),
                    outputs=tuple(_dataset_ref(d) for d in event.get("outputs") or []),
                )
            )
        self.runs.sort(key=lambda run: run.event_time)

    def _add_triggers(self, dag_id: str, facets: Mapping[str, Any]) -> None:
        run_id = _airflow_run_id(facets)
        for upstream in (facets.get("jobDependencies") or {}).get("upstream") or []:
            for asset_event in (upstream.get("airflow") or {}).get("asset_events") or []:
                self.triggers.setdefault((dag_id, run_id), []).append(
                    Trigger(
                        asset_uri=asset_event.get("asset_uri", ""),
                        upstream_job=(upstream.get("job") or {}).get("name", ""),
                        upstream_dag_run_id=asset_event.get("dag_run_id", ""),
                        extra=asset_event.get("asset_event_extra") or {},
                    )
                )

    def writers(self, key: tuple[str, str], before: str | None = None) -> list[TaskRun]:
        """Runs whose outputs are ``key`` (at or before ``before``), oldest first; else, for a
        folder read whole (a model's ``output/``), the runs that wrote into it."""
        runs = [r for r in self.runs if before is None or r.event_time <= before]
        exact = [r for r in runs if any(out.key == key for out in r.outputs)]
        if exact:
            return exact
        namespace, folder = key[0], key[1].rstrip("/") + "/"
        return [
            r
            for r in runs
            if any(o.namespace == namespace and o.name.startswith(folder) for o in r.outputs)
        ]

    def readers(self, key: tuple[str, str], after: str | None = None) -> list[TaskRun]:
        """Runs that read ``key`` or a folder holding it (at or after ``after``)."""
        namespace, name = key
        return [
            run
            for run in self.runs
            if (after is None or run.event_time >= after)
            and any(
                ref.namespace == namespace
                and (ref.name == name or name.startswith(ref.name.rstrip("/") + "/"))
                for ref in run.inputs
            )
        ]

    def outputs_at(self, relative: str) -> list[DatasetRef]:
        """Every output dataset whose lake-relative path is ``relative``, oldest first."""
        found: dict[tuple[str, str], DatasetRef] = {}
        for run in self.runs:
            for out in run.outputs:
                if lake_relative(out.name) == relative:
                    found.setdefault(out.key, out)
        return list(found.values())


def lake_relative(name: str, lake_path: str | None = None) -> str:
    """A dataset name as a path inside the lake (``curated/churn/ds=…``): after ``lake_path``
    when the name starts with it, else from the first segment that is a lake zone."""
    name = name.strip("/")
    if lake_path and name.startswith(lake_path.strip("/") + "/"):
        return name[len(lake_path.strip("/")) + 1 :]
    parts = name.split("/")
    for i, part in enumerate(parts[:-1]):
        if part in LAKE_ZONES:
            return "/".join(parts[i:])
    return name


def is_bookkeeping(name: str) -> bool:
    """A job's plan or facts folder (``…/jobs/…/plan``), or a zone-level asset folder."""
    parts = lake_relative(name).split("/")
    return ("jobs" in parts and parts[-1] in BOOKKEEPING_SEGMENTS) or len(parts) <= 2


def stage_of(name: str) -> str:
    """The chain stage of a dataset, from where it lives in the lake."""
    parts = lake_relative(name).split("/")
    zone, rest = parts[0], parts[2:]
    if zone in ("landing", "curated", "features"):
        return zone
    if zone == "reports" and rest[:1] == ["quality"]:
        return "gate"
    if zone == "models":
        if rest[:1] == ["input"]:
            return "training input"
        return "model" if rest[:1] == ["jobs"] else "other"
    if zone == "predictions":
        if rest[:1] == ["input"]:
            return "scoring input"
        if rest[:1] == ["transform"]:
            return "transform output"
        return "predictions" if rest[:1] and rest[0].startswith("ds=") else "other"
    if zone == "monitoring":
        if rest[:1] == ["baselines"]:
            return "baseline"
        return "drift report" if rest[:1] and rest[0].startswith("model_version=") else "other"
    return "other"


def is_drift_asset(uri: str) -> bool:
    """The drift asset of a dataset: ``monitoring/<dataset>/drift``."""
    try:
        parts = lake_relative(dataset_name(uri)[1]).split("/")
    except ValueError:
        return False
    return len(parts) == 3 and parts[0] == "monitoring" and parts[2] == "drift"


def _gate_summary(run: TaskRun, curated_key: tuple[str, str]) -> tuple[int, int, list[str]]:
    """(passed, failed, failed assertions) of the gate's judgement of ``curated_key``."""
    for ref in run.inputs:
        if ref.key == curated_key:
            failed = [a for a, ok, _ in ref.assertions if not ok]
            return len(ref.assertions) - len(failed), len(failed), failed
    return 0, 0, []


def gate_note(run: TaskRun, curated_key: tuple[str, str]) -> str:
    passed, failed, names = _gate_summary(run, curated_key)
    verdict = "FAIL" if failed else "PASS"
    text = f"{verdict}: {passed} passed, {failed} failed"
    return f"{text} ({'; '.join(names)})" if names else text


class _Walker:
    def __init__(self, graph: LineageGraph, training_inputs: Mapping[tuple[str, str], list]):
        self.graph = graph
        self.chain = Chain()
        self.training_inputs = training_inputs
        self.seen_up: set[tuple[str, str]] = set()
        self.seen_down: set[str] = set()

    def _add_step(self, ref: DatasetRef, run: TaskRun | None, note: str = "") -> Step:
        key = ref.key
        step = self.chain.steps.get(key)
        if step is None:
            step = Step(stage_of(ref.name), ref, run, note)
            self.chain.steps[key] = step
        return step

    def _add_run(self, run: TaskRun) -> None:
        self.chain.runs[run.run_id] = run

    def up(self, ref: DatasetRef, before: str | None, *, walk_on: bool = True) -> None:
        """The run that wrote ``ref`` (the latest at or before ``before``), then (``walk_on``)
        its inputs."""
        if ref.key in self.seen_up:
            return
        self.seen_up.add(ref.key)
        stage = stage_of(ref.name)
        if stage == "landing":
            self._add_step(ref, None)
            return
        writers = self.graph.writers(ref.key, before)
        if not writers:
            self._add_step(ref, None)
            self.chain.missing.append(
                Missing(ref.name, f"no COMPLETE event lists {ref.name} as an output")
            )
            return
        run = writers[-1]
        written = next((out for out in run.outputs if out.key == ref.key), ref)
        step = self._add_step(written, run)
        step.run = run
        self._add_run(run)
        self.chain.edges.add((run.run_id, ref.key))
        if stage == "curated":
            self._gate(written, before)
        if not walk_on:
            return
        inputs = [i for i in run.inputs if not is_bookkeeping(i.name)]
        if not inputs and stage == "model":
            inputs = self._inputs_from_card(run, ref)
        if not inputs:
            self.chain.missing.append(
                Missing(f"{run.job} ({run.dag_run_id})", "the run's event lists no input datasets")
            )
        for item in inputs:
            self.chain.edges.add((item.key, run.run_id))
            self._check_version(item)
            # A model a training run read (the champion it was compared with) is shown with
            # the run that trained it, not walked back: its own chain is another question.
            compared = stage == "model" and stage_of(item.name) == "model"
            self.up(item, run.event_time, walk_on=not compared)
            if compared:
                self.chain.steps[item.key].note = "champion the new model was compared with"
        self._trigger(run)

    def _inputs_from_card(self, run: TaskRun, model: DatasetRef) -> list[DatasetRef]:
        """Training inputs from the model card's training window, when the event has none."""
        refs = self.training_inputs.get(model.key) or []
        if refs:
            self.chain.missing.append(
                Missing(
                    f"{run.job} ({run.dag_run_id})",
                    "the run's event lists no input datasets; its features come from the "
                    "model card's training window",
                )
            )
        return [DatasetRef(*key, version=version) for key, version in refs]

    def _check_version(self, item: DatasetRef) -> None:
        """A reader's version of a dataset that differs from its writer's is worth a note."""
        step = self.chain.steps.get(item.key)
        if step and item.version and step.dataset.version and item.version != step.dataset.version:
            step.note = (
                f"read as version {item.version[:12]}, written as {step.dataset.version[:12]}"
            )

    def _gate(self, curated: DatasetRef, before: str | None) -> None:
        gates = [
            run
            for run in self.graph.readers(curated.key)
            if run.job.endswith(".quality_gate")
            and any(i.key == curated.key and i.assertions for i in run.inputs)
            and (before is None or run.event_time <= before)
        ]
        if not gates:
            self.chain.missing.append(
                Missing(curated.name, "no quality_gate run lists it as an input")
            )
            return
        gate = gates[-1]
        self.chain.gates[curated.key] = gate
        self._add_run(gate)
        self.chain.edges.add((curated.key, gate.run_id))
        for out in gate.outputs:
            self._add_step(out, gate, gate_note(gate, curated.key))
            self.chain.edges.add((gate.run_id, out.key))

    def _trigger(self, run: TaskRun) -> None:
        """The drift report whose asset event started ``run``'s DAG run, if one did."""
        for trigger in self.graph.triggers.get((run.dag_id, run.dag_run_id), []):
            if not is_drift_asset(trigger.asset_uri):
                continue
            report_run = next(
                (
                    r
                    for r in reversed(self.graph.runs)
                    if r.dag_run_id == trigger.upstream_dag_run_id
                    and any(stage_of(o.name) == "drift report" for o in r.outputs)
                ),
                None,
            )
            if any(t is trigger for _, t, _ in self.chain.triggers):
                continue
            self.chain.triggers.append((run, trigger, report_run))
            if report_run is None:
                self.chain.missing.append(
                    Missing(
                        f"{run.job} ({run.dag_run_id})",
                        f"started by a drift event of {trigger.upstream_dag_run_id}, whose "
                        "drift report no COMPLETE event names",
                    )
                )
                continue
            self._add_run(report_run)
            for out in report_run.outputs:
                if stage_of(out.name) == "drift report":
                    self._add_step(out, report_run, "started this retraining")
                    self.chain.edges.add((report_run.run_id, out.key))
                    self.chain.edges.add((out.key, run.run_id))

    def down(self, ref: DatasetRef, after: str | None) -> None:
        """The runs that read ``ref`` (at or after ``after``), then what they wrote."""
        for run in self.graph.readers(ref.key, after):
            if run.job.endswith(".quality_gate"):
                continue
            self.chain.edges.add((ref.key, run.run_id))
            if run.run_id in self.seen_down:
                continue
            self.seen_down.add(run.run_id)
            self._add_run(run)
            for out in run.outputs:
                if is_bookkeeping(out.name):
                    continue
                self._add_step(out, run)
                self.chain.edges.add((run.run_id, out.key))
                self.down(out, run.event_time)


def chain_for(
    graph: LineageGraph,
    start: Iterable[DatasetRef],
    *,
    training_inputs: Mapping[tuple[str, str], list[tuple[tuple[str, str], str | None]]]
    | None = None,
    downstream: bool = True,
) -> Chain:
    """The chain through ``start``: upstream to the landing files, and (``downstream``) to the
    runs that used it and what they wrote.

    ``training_inputs`` maps a model artifact to ``[(features key, version)]`` from its model
    card, used (and reported as such) when the training run's event lists no inputs.
    """
    walker = _Walker(graph, training_inputs or {})
    starts = list(start)
    for ref in starts:
        walker.up(ref, None)
    if downstream:
        for ref in starts:
            step = walker.chain.steps.get(ref.key)
            walker.down(ref, step.run.event_time if step and step.run else None)
    for key, step in walker.chain.steps.items():
        finding = graph.findings.get(key)
        if finding:
            step.note = f"{step.note}; {finding}" if step.note else finding
    return walker.chain


def training_window_features(window: Mapping[str, Any]) -> list[tuple[tuple[str, str], str]]:
    """``[(features key, version)]`` of a training window document (``window.json``)."""
    found = []
    for item in window.get("manifests") or []:
        uri = item["uri"]
        if uri.endswith("/_manifest.json"):
            uri = uri[: -len("/_manifest.json")]
        found.append((dataset_name(uri), item.get("sha256")))
    return found


def load_json(uri: str) -> dict[str, Any] | None:
    """A lake JSON document, or None when it is not there."""
    from include.storage import storage_for

    storage = storage_for(uri)
    if not storage.exists(uri):
        return None
    return json.loads(storage.read_bytes(uri))


# --- presenting a chain -------------------------------------------------------------------------


def _short_version(version: str | None) -> str:
    return f"@{version[:12]}" if version else ""


def step_rows(chain: Chain, lake_path: str | None = None) -> list[dict[str, str]]:
    """One row per step, upstream first: the columns the CLI prints and the HTML table shows."""
    rows = []
    for step in chain.ordered_steps():
        run = step.run
        rows.append(
            {
                "stage": step.stage,
                "dataset": lake_relative(step.dataset.name, lake_path),
                "version": step.dataset.version or "",
                "task": run.job if run else "-",
                "airflow_run_id": run.dag_run_id if run else "-",
                "time": run.event_time if run else "-",
                "external_job": (run.external_id or "-") if run else "-",
                "note": step.note,
            }
        )
    return rows


def chain_text(chain: Chain, lake_path: str | None = None) -> str:
    """The chain as aligned text lines, then the links that are missing."""
    rows = step_rows(chain, lake_path)
    columns = ("stage", "dataset", "task", "airflow_run_id", "time", "external_job")
    cells = [
        [
            row["stage"],
            row["dataset"] + (" " + _short_version(row["version"]) if row["version"] else ""),
            row["task"],
            row["airflow_run_id"],
            row["time"],
            row["external_job"],
        ]
        for row in rows
    ]
    header = [c.replace("_", " ") for c in columns]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(columns))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row, cell in zip(rows, cells, strict=True):
        line = "  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip()
        lines.append(line + (f"  [{row['note']}]" if row["note"] else ""))
    for missing in chain.missing:
        lines.append(f"MISSING  {lake_relative(missing.after, lake_path)}: {missing.what}")
    return "\n".join(lines)


_BOX_W, _BOX_H, _COL_W, _ROW_H, _PAD = 260, 46, 320, 62, 20
_STAGE_COLOURS = {
    "landing": "#e8eef7",
    "curated": "#dcebdc",
    "gate": "#fff2cc",
    "features": "#d5e8d4",
    "training input": "#ececec",
    "model": "#f8cecc",
    "baseline": "#ececec",
    "scoring input": "#e1d5e7",
    "transform output": "#e1d5e7",
    "predictions": "#dae8fc",
    "drift report": "#ffe6cc",
    "other": "#f5f5f5",
}


def _layers(nodes: list[Any], edges: set[tuple[Any, Any]]) -> dict[Any, int]:
    """Each node's column: the longest path to it from a node with no inputs."""
    layer = dict.fromkeys(nodes, 0)
    for _ in range(len(nodes)):
        changed = False
        for source, target in edges:
            if layer[target] < layer[source] + 1:
                layer[target] = layer[source] + 1
                changed = True
        if not changed:
            break
    # Then pull each node right up to its first reader, so a source (a landing folder, the
    # champion's training run) sits next to what used it rather than in the first column.
    successors: dict[Any, list[Any]] = {}
    for source, target in edges:
        successors.setdefault(source, []).append(target)
    for _ in range(len(nodes)):
        changed = False
        for node in sorted(nodes, key=lambda n: -layer[n]):
            if node in successors:
                pulled = min(layer[t] for t in successors[node]) - 1
                if pulled > layer[node]:
                    layer[node] = pulled
                    changed = True
        if not changed:
            break
    return layer


def _clip(text: str, limit: int = 40) -> str:
    """The tail of a long name (its partition and run folder say the most)."""
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def chain_html(chain: Chain, title: str, lake_path: str | None = None) -> str:
    """A self-contained HTML page: the chain as an inline SVG, left to right (datasets as boxes,
    task runs as rounded nodes, details in tooltips), the steps as a table, the missing links."""
    from html import escape

    steps = chain.steps
    nodes: list[Any] = [*steps, *chain.runs]
    edges = {(a, b) for a, b in chain.edges if a in steps or a in chain.runs}
    edges = {(a, b) for a, b in edges if b in steps or b in chain.runs}
    layer = _layers(nodes, edges)

    def order(node: Any) -> tuple:
        if node in steps:
            step = steps[node]
            return (STAGES.index(step.stage), step.dataset.name)
        run = chain.runs[node]
        return (len(STAGES), run.event_time)

    columns: dict[int, list[Any]] = {}
    for node in sorted(nodes, key=order):
        columns.setdefault(layer[node], []).append(node)
    position = {
        node: (_PAD + col * _COL_W, _PAD + 24 + row * _ROW_H)
        for col, members in columns.items()
        for row, node in enumerate(members)
    }
    width = _PAD * 2 + (max(columns, default=0) + 1) * _COL_W
    height = _PAD * 2 + 24 + max((len(m) for m in columns.values()), default=1) * _ROW_H

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for source, target in sorted(edges, key=str):
        (x1, y1), (x2, y2) = position[source], position[target]
        x1, y1, y2 = x1 + _BOX_W, y1 + _BOX_H / 2, y2 + _BOX_H / 2
        middle = (x1 + x2) / 2
        parts.append(
            f'<path d="M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}" fill="none" '
            'stroke="#555" marker-end="url(#arrow)"/>'
        )
    for node, (x, y) in position.items():
        if node in steps:
            step = steps[node]
            name = lake_relative(step.dataset.name, lake_path)
            tip = [f"{step.stage}: {name}"]
            if step.dataset.version:
                tip.append(f"version {step.dataset.version}")
            if step.run:
                tip.append(f"written by {step.run.job} at {step.run.event_time}")
            if step.note:
                tip.append(step.note)
            label, detail = step.stage, _clip(name)
            shape = (
                f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" '
                f'fill="{_STAGE_COLOURS[step.stage]}" stroke="#333"/>'
            )
            css = "dataset"
        else:
            run = chain.runs[node]
            tip = [
                run.job,
                f"Airflow run {run.dag_run_id}",
                f"completed {run.event_time}",
                f"external job {run.external_id} ({run.external_source})"
                if run.external_id
                else "no external job",
            ]
            label, detail = run.job, f"{run.event_time[:19]}  {run.external_id or ''}".strip()
            shape = (
                f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="16" '
                'fill="#ffffff" stroke="#1f5fa8" stroke-dasharray="4 2"/>'
            )
            css = "run"
        parts.append(
            f'<g class="{css}" data-node="{escape(str(node))}"><title>'
            f"{escape(chr(10).join(tip))}</title>{shape}"
            f'<text x="{x + 8}" y="{y + 18}" font-weight="bold">{escape(_clip(label, 38))}</text>'
            f'<text x="{x + 8}" y="{y + 36}">{escape(_clip(detail, 42))}</text></g>'
        )
    parts.append("</svg>")

    rows = step_rows(chain, lake_path)
    headers = ("stage", "dataset", "version", "task", "airflow_run_id", "time", "external_job")
    table = [
        "<table><thead><tr>",
        *(f"<th>{h.replace('_', ' ')}</th>" for h in (*headers, "note")),
        "</tr></thead><tbody>",
    ]
    for row in rows:
        table.append(
            "<tr>" + "".join(f"<td>{escape(row[h])}</td>" for h in (*headers, "note")) + "</tr>"
        )
    table.append("</tbody></table>")
    missing = "".join(
        f"<li>{escape(lake_relative(m.after, lake_path))}: {escape(m.what)}</li>"
        for m in chain.missing
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title>",
            "<style>body{font-family:sans-serif;margin:1.5em}"
            "table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}"
            ".missing{color:#a00}.graph{overflow-x:auto}</style>",
            "</head><body>",
            f"<h1>{escape(title)}</h1>",
            "<p>Datasets are boxes; task runs are dashed rounded boxes. Hover for run ids and "
            "times.</p>",
            f'<div class="graph">{"".join(parts)}</div>',
            f'<h2>Missing links</h2><ul class="missing">{missing}</ul>'
            if missing
            else "<p>No missing links.</p>",
            "<h2>Steps</h2>",
            "".join(table),
            "</body></html>",
            "",
        ]
    )
