"""Benchmark: the baseline and the drift check streamed over Parquet against the in-memory path.

Generates a reference partition and a batch of ``--rows`` rows each (bench/drift.py's columns:
``--features`` of them, three in ten categorical, numeric ones continuous, heavy-tailed, tied
and with missing values, plus a model's ``score``), writes each as Parquet files of several row
groups, and runs four jobs, each in a fresh subprocess so its peak RSS is its own:

- ``baseline in memory``: the files read into one pandas frame (as the worker once did) and
  ``build_baseline``;
- ``baseline streamed``: ``build_baseline_from_parquet`` over the same files;
- ``drift in memory``: the batch's files and its predictions (``id``, ``score``; in another
  order, as the transform writes them) into frames, left-joined on ``id``, and ``check_drift``;
- ``drift streamed``: what the drift job does: the predictions lined up with the batch's rows on
  disk (``align_predictions``) and ``check_drift_from_parquet`` reading them with each record
  batch.

Printed per job, the median of ``--repeat`` interleaved runs: wall and CPU seconds (CPU is the
steadier on a shared machine), seconds per million rows and peak RSS; then the streamed job's
time against the in-memory one's (goal <= 1.3x) and its peak RSS (goal: flat in rows, under
1.5 GB at 10M). The streamed and in-memory results are compared too (the same PSI and KS).
``--keep-values 0`` takes the path of a day too large to keep a column of (the multi-pass exact
order statistics) at any size.

    python bench/monitoring_memory.py [--rows 1000000] [--features 20] [--batch-rows 262144] \\
        [--keep-values 0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from include.monitoring.streaming import KEEP_VALUES  # noqa: E402

GOAL_RATIO = 1.3
GOAL_RSS_MB = 1536
ROW_GROUP_ROWS = 131_072
FILES = 4


def write_inputs(rows: int, features: int, seed: int, folder: Path) -> dict:
    """The reference, the batch (its rows keyed by ``id``) and the batch's predictions as Parquet
    files, the monitored columns as JSON."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.drift import make_frames
    from include.monitoring.columns import FRACTIONAL, NUMERIC, MonitoredColumn

    reference, current, columns, drifted = make_frames(rows, features, seed)
    rng = np.random.default_rng(seed + 1)
    reference["score"] = rng.beta(2, 5, rows)
    columns.append(MonitoredColumn("score", NUMERIC, FRACTIONAL))
    current.insert(0, "id", [f"c{i:010d}" for i in range(rows)])
    order = rng.permutation(rows)
    predictions = pd.DataFrame(
        {"id": current["id"].to_numpy()[order], "score": rng.beta(2, 5, rows)}
    )
    paths = {}
    for name, frame in (("reference", reference), ("batch", current), ("predictions", predictions)):
        bounds = np.linspace(0, rows, FILES + 1).astype(int)
        paths[name] = []
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            path = folder / f"{name}-{i:02d}.parquet"
            table = pa.Table.from_pandas(frame.iloc[lo:hi], preserve_index=False)
            pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)
            paths[name].append(f"file://{path}")
    return {
        "paths": paths,
        "columns": [c.as_dict() for c in columns],
        "drifted": drifted,
        "baseline_uri": f"file://{folder / 'baseline'}",
    }


def run_job(job: str, spec: dict, batch_rows: int, keep_values: int) -> dict:
    """One job in the current process: its wall seconds, peak RSS and a digest of its result."""
    from include.dq.gate import read_partition_frame
    from include.monitoring.baseline import (
        build_baseline,
        build_baseline_from_parquet,
        load_baseline,
        store_baseline,
    )
    from include.monitoring.columns import MonitoredColumn
    from include.monitoring.drift import check_drift, check_drift_from_parquet
    from include.monitoring.job import align_predictions
    from include.monitoring.streaming import parquet_source
    from include.monitoring.thresholds import MonitoringConfig

    columns = [MonitoredColumn(**c) for c in spec["columns"]]
    config = MonitoringConfig(dataset="bench")
    start, start_cpu = time.perf_counter(), time.process_time()
    if job.startswith("baseline"):
        paths = spec["paths"]["reference"]
        if job == "baseline-memory":
            frame = read_partition_frame(paths, {})
            baseline, sample = build_baseline(frame, columns, config)
        else:
            baseline, sample = build_baseline_from_parquet(
                paths, columns, config, batch_rows=batch_rows, keep_values=keep_values
            )
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if job == "baseline-memory":  # the drift jobs' baseline
            store_baseline(baseline, sample, spec["baseline_uri"])
        digest = [baseline.profile, len(sample)]
    else:
        baseline = load_baseline(spec["baseline_uri"])
        start, start_cpu = time.perf_counter(), time.process_time()
        paths, predictions = spec["paths"]["batch"], spec["paths"]["predictions"]
        if job == "drift-memory":
            batch = read_partition_frame(paths, {}).merge(
                read_partition_frame(predictions, {}), on="id", how="left", validate="one_to_one"
            )
            report = check_drift(baseline, batch, config)
        else:
            with tempfile.TemporaryDirectory(prefix="headrace-bench-join-") as scratch:
                scores = align_predictions(
                    [Path(p.removeprefix("file://")) for p in predictions],
                    parquet_source(paths, ["id"]),
                    "id",
                    "score",
                    Path(scratch),
                    what="bench",
                )
                report = check_drift_from_parquet(
                    baseline, paths, config, scores=scores, score_column="score",
                    batch_rows=batch_rows, keep_values=keep_values,
                )  # fmt: skip
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        digest = [
            {f.name: [f.metrics.get("psi"), f.metrics.get("ks"), f.metrics.get("js")]}
            for f in report.features
        ]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mb": peak_rss_mb(),
        "digest": json.dumps(digest),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM): unlike getrusage's ru_maxrss, which an exec'd
    child inherits from its parent's size at fork, it starts afresh at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of each partition")
    parser.add_argument("--features", type=int, default=20, help="monitored columns")
    parser.add_argument("--batch-rows", type=int, default=262_144, help="record batch rows")
    parser.add_argument(
        "--keep-values",
        type=int,
        default=KEEP_VALUES,
        help="a column with at most this many values is kept whole (0: always the passes of "
        "exact order statistics, the path of days too large to keep)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each job, interleaved (median)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--job", help=argparse.SUPPRESS)  # the subprocess's side
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        spec = json.loads(Path(args.spec).read_text())
        result = run_job(args.job, spec, args.batch_rows, args.keep_values)
        print(json.dumps(result))
        return 0

    with tempfile.TemporaryDirectory(prefix="headrace-bench-monitoring-") as tmp:
        folder = Path(tmp)
        print(
            f"writing {args.rows} rows x {args.features} columns (reference, batch, predictions) as Parquet …",
            flush=True,
        )
        spec = write_inputs(args.rows, args.features, args.seed, folder)
        spec_path = folder / "spec.json"
        spec_path.write_text(json.dumps(spec))
        runs: dict[str, list[dict]] = {}
        # Interleaved rounds, so a change of load on a shared machine hits every job alike. The
        # in-memory baseline runs first: it stores the baseline the drift jobs load.
        for _ in range(args.repeat):
            for job in ("baseline-memory", "baseline-stream", "drift-memory", "drift-stream"):
                done = subprocess.run(
                    [sys.executable, __file__, "--job", job, "--spec", str(spec_path),
                     "--batch-rows", str(args.batch_rows), "--keep-values", str(args.keep_values)],
                    capture_output=True, text=True, check=False, cwd=REPO_ROOT,
                )  # fmt: skip
                if done.returncode != 0:
                    print(f"{job}: failed\n{done.stderr[-3000:]}")
                    return 1
                runs.setdefault(job, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    results = {
        job: {
            key: statistics.median(r[key] for r in rs)
            for key in ("seconds", "cpu_seconds", "peak_rss_mb")
        }
        | {"digest": rs[-1]["digest"]}
        for job, rs in runs.items()
    }
    for job, r in results.items():
        print(
            f"{job:16s}: {r['seconds']:7.2f} s wall, {r['cpu_seconds']:7.2f} s CPU, "
            f"{r['seconds'] * 1e6 / args.rows:6.2f} s per million rows, "
            f"peak RSS {r['peak_rss_mb']:6.0f} MB"
        )
    for kind in ("baseline", "drift"):
        memory, stream = results[f"{kind}-memory"], results[f"{kind}-stream"]
        print(
            f"{kind:8s} streamed/in-memory: {stream['seconds'] / memory['seconds']:.2f}x wall, "
            f"{stream['cpu_seconds'] / memory['cpu_seconds']:.2f}x CPU (goal <= {GOAL_RATIO}x); "
            f"peak RSS {stream['peak_rss_mb']:.0f} MB vs {memory['peak_rss_mb']:.0f} MB (goal "
            f"flat, < {GOAL_RSS_MB} MB at 10M rows); same results: "
            f"{stream['digest'] == memory['digest']}"
        )
    print(f"machine : {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    # Like the other benchmarks, a missed goal is printed, not an exit status.
    return 0


if __name__ == "__main__":
    sys.exit(main())
