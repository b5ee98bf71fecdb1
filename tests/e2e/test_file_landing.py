"""The first run of a new dataset: from a fresh Airflow home and lake, a dataset scaffolded with
``make new-pipeline`` and nothing else, ``airflow_stack.py up`` (``make up``) and a file dropped
into the landing inbox start ``<dataset>_ingestion`` with nobody clicking or calling anything: the
real stack on 127.0.0.1 (scheduler, triggerer running the inbox watcher, dag-processor,
api-server), in its own home, lake and port. ``up`` set up the lake and the DAGs started unpaused
(the local default; MWAA keeps paused-on-creation).

The scaffold writes into the repository's ``include/datasets/``, so the test runs in a copy of
the working tree (the files git tracks or would track; the environments linked, not copied): a
new engineer's clone with one new dataset, leaving this checkout as it is.

The DAG also keeps its daily schedule: unpaused, the scheduler runs the day that has just ended
at once. No file of that day has landed, so that run is skipped (the landing event will start
the day's ingestion); the test waits for it first, because a DAG with ``max_active_runs=1`` gets
its next run only after the running one ends, and the delay measured is then the watcher's and
the scheduler's alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.airflow_api import AirflowApi
from scripts.airflow_stack import free_port
from tests.e2e.conftest import stack_environment

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]
# What `make new-pipeline NAME=meter_readings` scaffolds, unedited.
DATASET = "meter_readings"
INGESTION = f"{DATASET}_ingestion"
DROPPED_DAY = "2026-01-07"
ROWS = 300
# Generous: the watcher looks every 2 s and takes a file unchanged across two looks; the
# triggerer picks up a new watcher within seconds, the scheduler loops every second or so.
TRIGGER_BOUND_S = 60
ENVIRONMENTS = (".venv", ".venv-spark", ".venv-training")


def _copy_of_the_working_tree(to: Path) -> Path:
    """The files of this checkout that git tracks or would track, copied; the three
    environments linked (they are built by ``make envs`` and read only here)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT, check=True, capture_output=True, timeout=60,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # a deleted, not yet committed file is listed too
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    for environment in ENVIRONMENTS:
        (to / environment).symlink_to(REPO_ROOT / environment, target_is_directory=True)
    return to


def _in_copy(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python <args>`` in the copy, with the worker environment's interpreter."""
    return subprocess.run(
        [sys.executable, *args], cwd=repo, check=True, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    repo = _copy_of_the_working_tree(tmp_path_factory.mktemp("clone"))
    # `make new-pipeline NAME=meter_readings` runs exactly this.
    scaffolded = _in_copy(repo, "scripts/new_pipeline.py", DATASET)
    home = tmp_path_factory.mktemp("airflow-home")
    lake = tmp_path_factory.mktemp("lake")
    port = free_port()
    env = stack_environment(home, lake, port)
    stack_script = [sys.executable, "scripts/airflow_stack.py"]
    started = subprocess.run(
        [*stack_script, "up"], cwd=repo, env=env, capture_output=True, text=True, timeout=800
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        password = json.loads((home / "passwords.json").read_text())["admin"]
        api = AirflowApi(f"http://127.0.0.1:{port}", "admin", password)
        yield {
            "api": api, "lake": lake, "home": home, "repo": repo, "up": started.stdout,
            "scaffolded": scaffolded.stdout,
        }  # fmt: skip
    finally:
        subprocess.run([*stack_script, "down"], cwd=repo, env=env, capture_output=True, timeout=120)


def _generate(repo: Path, out: Path, day: str) -> None:
    """A small day of the scaffolded dataset's landing files, as the next steps that
    ``new_pipeline.py`` printed say: ``<out>/<dataset>/ds=<day>/part-*.csv``."""
    _in_copy(
        repo, "-m", "include.datagen.from_spec", "--spec", f"include/datasets/{DATASET}.yaml",
        "--out", str(out), "--start", day, "--days", "1", "--rows-per-day", str(ROWS),
        "--format", "csv", "--seed", "11",
    )  # fmt: skip


def test_a_dropped_file_starts_ingestion_of_its_day_within_seconds(stack, tmp_path):
    api, lake = stack["api"], stack["lake"]
    api.wait_for_dags({INGESTION}, timeout=240)
    # The scaffolded spec, unedited, parses into DAGs; nothing else was called or edited.
    assert f"{DATASET}_ingestion" in stack["scaffolded"], stack["scaffolded"]
    assert api.import_errors() == []
    # The first run needs no call: `up` ran lake_setup, and the DAGs started unpaused.
    assert "headrace: set up the lake" in stack["up"], stack["up"]
    assert json.loads((lake / "_lake.json").read_text())
    assert api.get(f"/api/v2/dags/{INGESTION}")["is_paused"] is False
    known: set[str] = set()
    scheduled_id = api.wait_for_new_run(INGESTION, known, timeout=60)
    assert scheduled_id is not None and scheduled_id.startswith("scheduled__")
    scheduled = api.wait_for_run(INGESTION, scheduled_id, timeout=120)
    scheduled_states = {
        ti["task_id"]: ti["state"] for ti in api.task_instances(INGESTION, scheduled_id)
    }
    assert scheduled["state"] == "success"
    assert scheduled_states == {"landing_days": "skipped", "ingest": "skipped"}
    known.add(scheduled_id)

    # Written aside, then moved in with one rename: the way a producer completes a drop.
    _generate(stack["repo"], tmp_path / "staging", DROPPED_DAY)
    staged = tmp_path / "staging" / DATASET / f"ds={DROPPED_DAY}"
    inbox = lake / "landing" / "_inbox" / DATASET
    inbox.mkdir(parents=True, exist_ok=True)
    # The triggerer starts the watcher for an unpaused DAG; drop when it is watching, so
    # the delay measured is the watcher's and the scheduler's, not the triggerer's start-up.
    triggerer_log = stack["home"] / "logs" / "triggerer.out"
    deadline = time.monotonic() + 120
    while f"watching {inbox} " not in triggerer_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the triggerer never started the inbox watcher"
        time.sleep(0.5)
    dropped_at = time.monotonic()
    os.replace(staged, inbox / f"ds={DROPPED_DAY}")

    run_id = None
    while time.monotonic() - dropped_at < TRIGGER_BOUND_S and run_id is None:
        for run in api.dag_runs(INGESTION):
            if run["dag_run_id"] not in known and run["run_type"] == "asset_triggered":
                run_id = run["dag_run_id"]
        time.sleep(0.5)
    delay_s = time.monotonic() - dropped_at
    print(f"file landing -> {INGESTION} run created in {delay_s:.1f}s")
    assert run_id is not None, (
        f"no asset-triggered {INGESTION} run {TRIGGER_BOUND_S}s after the drop"
    )

    # Landed before the event: the inbox is empty and the day's files are in the landing zone.
    assert [p for p in inbox.rglob("*") if p.is_file()] == []
    landed = sorted(p.name for p in (lake / "landing" / DATASET / f"ds={DROPPED_DAY}").iterdir())
    assert landed and all(name.startswith("part-") for name in landed)

    run = api.wait_for_run(INGESTION, run_id, timeout=400)
    states = {
        (ti["task_id"], ti["map_index"]): ti["state"]
        for ti in api.task_instances(INGESTION, run_id)
    }
    assert run["state"] == "success", states
    assert states == {("landing_days", -1): "success", ("ingest", 0): "success"}
    events = api.upstream_asset_events(INGESTION, run_id)
    payloads = [e["extra"]["payload"] for e in events if e["name"] == f"{DATASET}_landing"]
    assert [p["ds"] for p in payloads] == [DROPPED_DAY]
    assert sorted(f["uri"].rsplit("/", 1)[1] for f in payloads[0]["files"]) == landed

    manifest = json.loads(
        (lake / "curated" / DATASET / f"ds={DROPPED_DAY}" / "_manifest.json").read_text()
    )
    assert manifest["totals"]["rows_read"] == ROWS
    # The generator writes rows the spec accepts: none is quarantined.
    assert (manifest["totals"]["rows_accepted"], manifest["totals"]["rows_quarantined"]) == (
        ROWS,
        0,
    )
    # The curated Asset event the run emitted names the dropped day for validation.
    curated_events = api.asset_events(source_run_id=run_id)
    assert {(e["name"], e["extra"].get("ds")) for e in curated_events} >= {
        (f"{DATASET}_curated", DROPPED_DAY)
    }

    # Lineage (docs/lineage.md): the ingest task's COMPLETE event names the landing folder it
    # read and the partitions it committed, with the manifest's counts and its SHA-256.
    from include.config import load_settings
    from include.lineage import read_events

    settings = load_settings({"PIPELINE_TARGET": "local", "HEADRACE_LAKE_ROOT": lake.as_uri()})
    (complete,) = [
        event
        for event in read_events(settings)
        if event.get("eventType") == "COMPLETE"
        and event["job"]["name"] == f"{INGESTION}.ingest"
        and event["run"]["facets"]["airflow"]["dagRun"]["run_id"] == run_id
    ]
    (landing,) = complete["inputs"]
    assert (landing["namespace"], landing["name"]) == (
        "file",
        str(lake / "landing" / DATASET / f"ds={DROPPED_DAY}"),
    )
    read = landing["inputFacets"]["inputStatistics"]
    assert (read["rowCount"], read["fileCount"]) == (ROWS, len(landed))
    outputs = {output["name"]: output for output in complete["outputs"]}
    curated = outputs[str(lake / "curated" / DATASET / f"ds={DROPPED_DAY}")]
    quarantine = outputs[str(lake / "quarantine" / DATASET / f"ds={DROPPED_DAY}")]
    assert (
        curated["outputFacets"]["outputStatistics"]["rowCount"]
        == (manifest["totals"]["rows_accepted"])
    )
    assert (
        quarantine["outputFacets"]["outputStatistics"]["rowCount"]
        == (manifest["totals"]["rows_quarantined"])
    )
    manifest_bytes = (
        lake / "curated" / DATASET / f"ds={DROPPED_DAY}" / "_manifest.json"
    ).read_bytes()
    assert (
        curated["facets"]["version"]["datasetVersion"] == hashlib.sha256(manifest_bytes).hexdigest()
    )
    assert complete["run"]["facets"]["externalQuery"]["source"] == "spark-local"
