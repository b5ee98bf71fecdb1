"""`make demo`'s script end to end through the real scheduler, in its own Airflow home, lake and
port, on small data (``--rows``): files dropped into the landing inbox drive every stage, the
last day's drift is detected (and only that day's), and the retraining it starts finishes."""

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
DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]
ROWS_PER_DAY = 2000


def test_demo_runs_the_lifecycle_from_landing_files_to_retraining(tmp_path):
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
    env.pop("HEADRACE_LANDING_INBOX", None)
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--days", str(len(DAYS)),
         "--rows", str(ROWS_PER_DAY * len(DAYS))],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    summary = "stage " + result.stdout.split("\nstage ", 1)[1]
    # Fixed-width columns (a cell may be empty): slice each line at the header's column starts.
    header = summary.splitlines()[0]
    names = ["stage", "ds", "state", "duration", "rows", "key metric", "artifact"]
    starts = [header.index(name) for name in names]
    rows = {}
    for line in summary.splitlines()[2:]:
        cells = [
            line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)
        ]
        if cells[2] in ("success", "failed", "not started"):
            rows[(cells[0], cells[1])] = cells
    lake = tmp_path / "lake"

    assert rows[("lake setup", "-")][2] == "success"
    for ds in DAYS:
        # The watcher landed the day's files (the inbox is empty) and ingestion took them.
        ingest = rows[("ingest", ds)]
        assert ingest[2] == "success"
        totals = json.loads(
            (lake / "curated" / "churn" / f"ds={ds}" / "_manifest.json").read_text()
        )["totals"]
        # The generator's planted duplicates and malformed lines come on top of its rows.
        assert ROWS_PER_DAY <= totals["rows_read"] <= ROWS_PER_DAY * 1.02
        assert totals["rows_read"] == totals["rows_accepted"] + totals["rows_quarantined"]
        assert totals["rows_quarantined"] > 0  # the demo plants 1% defects
        assert ingest[4] == f"{totals['rows_read']:,}"
        assert rows[("validate + features", ds)][2] == "success"
        assert re.search(
            rf"demo: dropped {ds} \([\d,]+ bytes\) into the landing inbox", result.stdout
        )
    inbox = lake / "landing" / "_inbox" / "churn"
    assert [p for p in inbox.rglob("*") if p.is_file()] == []

    # Day 1 trains the first model; it is approved (a fresh registry has no champion).
    assert rows[("train + tune + register", DAYS[0])][2] == "success"
    assert rows[("train + tune + register", DAYS[0])][5].startswith("v1 Approved")
    # The later days are scored by it; only the last one, where drift was planted, drifts.
    for ds in DAYS[1:]:
        assert rows[("score", ds)][2] == "success"
        assert int(rows[("score", ds)][4].replace(",", "")) > 0
        assert rows[("drift check", ds)][2] == "success"
    assert rows[("drift check", DAYS[1])][5] == "no drift"
    assert rows[("drift check", DAYS[2])][5].startswith("drift: ")
    alerts = sorted(p.name for p in (lake / "monitoring" / "churn" / "alerts").glob("*.json"))
    assert alerts == [f"ds={DAYS[2]}.json"]
    # The drift event started retraining, which registered version 2.
    assert rows[("retrain (drift)", DAYS[2])][2] == "success"
    assert rows[("retrain (drift)", DAYS[2])][5].startswith("v2 ")
    assert (lake / "models" / "churn" / "2" / "model_card.json").exists()
    # Its champion / challenger decision is printed with the interval of the paired difference.
    assert "Challenger and champion version 1 scored on the same" in result.stdout
    assert re.search(
        r"95% interval of the difference: \[[-+]\d\.\d{6}, [-+]\d\.\d{6}\] "
        r"\(paired bootstrap \(percentile\), 1000 resamples, seed 0\)",
        result.stdout,
    ), result.stdout[-3000:]

    assert re.search(r"\d+ runs, 0 failed, 6,000 rows generated, wall time [\d.]+s", summary)
    assert f"Airflow UI: http://127.0.0.1:{port}" in summary
    # The demo started the stack, so it stopped it: no pid file and nothing on the port.
    assert list((tmp_path / "airflow" / "pids").glob("*.pid")) == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
