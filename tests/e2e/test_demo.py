"""`make demo`'s script end to end through the real scheduler, in its own Airflow home, lake and port."""

from __future__ import annotations

import json
import os
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
    assert "lake setup  validate_settings  success" in summary
    assert "lake setup  initialize_lake    success" in summary
    assert f"{(tmp_path / 'lake').as_uri()}/_lake.json (zones created: 8)" in summary
    # A fresh stack has the daily ingestion DAG paused: the demo unpauses it and follows the
    # run the scheduler makes for yesterday, the day the demo generated landing files for.
    assert "ingest: following the scheduler's run scheduled__" in result.stdout
    ingest_line = next(
        line for line in summary.splitlines() if line.startswith("ingest      ingest ")
    )
    assert " success " in ingest_line
    manifest = json.loads(
        next((tmp_path / "lake" / "curated" / "churn").glob("ds=*/_manifest.json")).read_text()
    )
    totals = manifest["totals"]
    assert totals["rows_read"] == totals["rows_accepted"] + totals["rows_quarantined"]
    assert totals["rows_quarantined"] > 0  # the demo plants 1% defects
    assert f"{totals['rows_read']:,} rows: {totals['rows_accepted']:,} curated" in ingest_line
    assert "4 tasks, 0 not successful" in summary
    assert f"Airflow UI: http://127.0.0.1:{port}" in summary
    # The demo started the stack, so it stopped it: no pid file and nothing on the port.
    assert list((tmp_path / "airflow" / "pids").glob("*.pid")) == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
