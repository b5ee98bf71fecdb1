"""`make demo`'s script end to end through the real scheduler, in its own Airflow home, lake and port."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_dags_prints_a_summary_and_stops_what_it_started(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        HEADRACE_AIRFLOW_HOME=str(tmp_path / "airflow"),
        HEADRACE_API_PORT=str(port),
        HEADRACE_LAKE_ROOT=(tmp_path / "lake").as_uri(),
        PIPELINE_TARGET="local",
    )
    result = subprocess.run(
        [sys.executable, "scripts/demo.py"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.split("stage  ", 1)[1]
    # One row per task: stage, task, state, duration, result (columns two spaces apart).
    rows = {}
    for line in summary.splitlines()[2:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 3 and cells[2] in ("success", "skipped", "failed", "upstream_failed"):
            rows[(cells[0], cells[1])] = cells
    assert rows[("lake setup", "validate_settings")][2] == "success"
    assert rows[("lake setup", "initialize_lake")][2] == "success"
    assert f"{(tmp_path / 'lake').as_uri()}/_lake.json (zones created: 8)" in summary
    # A fresh stack has the daily ingestion DAG paused: the demo unpauses it and follows the
    # run the scheduler makes for yesterday, the day the demo generated landing files for.
    assert "ingest: following the scheduler's run scheduled__" in result.stdout
    ingest_row = rows[("ingest", "ingest")]
    assert ingest_row[2] == "success"
    manifest = json.loads(
        next((tmp_path / "lake" / "curated" / "churn").glob("ds=*/_manifest.json")).read_text()
    )
    totals = manifest["totals"]
    assert totals["rows_read"] == totals["rows_accepted"] + totals["rows_quarantined"]
    assert totals["rows_quarantined"] > 0  # the demo plants 1% defects
    assert f"{totals['rows_read']:,} rows: {totals['rows_accepted']:,} curated" in ingest_row[-1]

    # The Assets drove the rest with nobody triggering: every later stage ran from an event.
    for stage in ("validate + features", "train + tune + register", "batch score", "drift check"):
        assert re.search(
            rf"demo: {re.escape(stage)}: following the Asset-triggered run", result.stdout
        )
    assert rows[("validate + features", "quality_gate")][2] == "success"
    assert rows[("validate + features", "features")][2] == "success"
    assert rows[("train + tune + register", "tune")][2] == "success"
    assert rows[("train + tune + register", "register_model")][2] == "success"
    # A fresh registry has no champion: version 1 is approved automatically.
    card = json.loads(
        (tmp_path / "lake" / "models" / "churn" / "1" / "model_card.json").read_text()
    )
    assert card["approval"]["status"] == "Approved"
    assert card["metrics"]["roc_auc"] > 0.7  # the generator's signal, well above chance
    assert rows[("batch score", "commit_predictions")][2] == "success"
    # One day, no drift planted: the check passes and the retraining branch is skipped.
    assert rows[("drift check", "drift_check")][2] == "success"
    assert rows[("drift check", "emit_drift_event")][2] == "skipped"
    assert re.search(r"\d+ tasks, 0 failed", summary)
    assert f"Airflow UI: http://127.0.0.1:{port}" in summary
    # The demo started the stack, so it stopped it: no pid file and nothing on the port.
    assert list((tmp_path / "airflow" / "pids").glob("*.pid")) == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
