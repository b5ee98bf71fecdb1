"""Benchmark: the drift check against a per-feature scipy loop (and Evidently), same data, same run.

Generates a reference partition and a batch of ``--rows`` rows (default 1M) with ``--features``
columns (default 20: three in ten categorical, the rest numeric: continuous, heavy-tailed,
integer counts with ties, some with missing values; a few drifted), builds the baseline once
(untimed beyond a line of its own: it is computed once per model version), then times, each the
median of ``--repeat`` runs:

- ``check_drift``: ``include.monitoring.drift.check_drift``: every metric of every column (KS,
  PSI, Jensen-Shannon, L-infinity, missing rates, unseen categories), the batch's Model Monitor
  statistics and the report's plot data;
- ``scipy loop``: what the check would cost written the obvious way, given the same stored
  reference (sample, PSI edges and shares): per numeric column ``scipy.stats.ks_2samp`` and a PSI
  from ``np.histogram``, per categorical column a PSI from ``value_counts``;
- ``evidently`` (with ``--evidently-python``): Evidently's ``DataDriftPreset`` on the same
  reference sample and batch, run by that interpreter in a subprocess (Evidently lives in a side
  environment of its own, never the project's); only ``Report.run`` is timed. Its default
  metrics differ (Wasserstein / Jensen-Shannon), so its ratio is one of cost, not of results.

The KS statistics and PSI values of the check and the scipy loop are compared too (they must
agree to 1e-9). Target: the check at least 5x faster than the scipy loop.

    python bench/drift.py [--rows 1000000] [--features 20] [--repeat 3] \\
        [--evidently-python /tmp/evidently-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from include.monitoring.baseline import build_baseline  # noqa: E402
from include.monitoring.columns import (  # noqa: E402
    CATEGORICAL,
    FRACTIONAL,
    INTEGRAL,
    NUMERIC,
    STRING,
    MonitoredColumn,
)
from include.monitoring.drift import PSI_EPSILON, check_drift  # noqa: E402
from include.monitoring.thresholds import MonitoringConfig  # noqa: E402

GOAL_RATIO = 5.0
CATEGORY_SETS = (
    ("basic", "standard", "premium", "family"),
    ("month-to-month", "one-year", "two-year"),
    ("na-east", "na-west", "eu-west", "eu-central", "apac", "latam"),
    ("card", "bank_transfer", "paypal", "invoice"),
    tuple(f"device-{i:02d}" for i in range(24)),
)

EVIDENTLY_SCRIPT = """
import json, sys, time
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

reference = pd.read_parquet(sys.argv[1])
current = pd.read_parquet(sys.argv[2])
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    times.append(time.perf_counter() - start)
drifted = [m["value"] for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount")]
print(json.dumps({"seconds": times, "drifted": drifted}))
"""


def make_frames(
    rows: int, features: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, list[MonitoredColumn], list[str]]:
    """A reference partition and a batch of ``rows`` rows each; about one column in five drifts."""
    rng = np.random.default_rng(seed)
    n_categorical = max(1, round(features * 0.3))
    columns, reference, current, drifted = [], {}, {}, []
    for i in range(features - n_categorical):
        name = f"num_{i:02d}"
        shape = i % 4
        drift = i % 5 == 1
        if shape == 0:  # continuous
            ref, cur = rng.normal(50, 10, rows), rng.normal(50 + 4 * drift, 10, rows)
            kind = FRACTIONAL
        elif shape == 1:  # heavy tail, rounded to cents
            ref = np.round(rng.lognormal(3, 1, rows), 2)
            cur = np.round(rng.lognormal(3 + 0.4 * drift, 1, rows), 2)
            kind = FRACTIONAL
        elif shape == 2:  # counts: heavy ties
            ref, cur = rng.poisson(1.5, rows), rng.poisson(1.5 + drift, rows)
            kind = INTEGRAL
        else:  # continuous with ~3 % missing
            ref, cur = rng.gamma(2, 30, rows), rng.gamma(2, 30 * (1 + 0.5 * drift), rows)
            ref[rng.random(rows) < 0.03] = np.nan
            cur[rng.random(rows) < 0.03] = np.nan
            kind = FRACTIONAL
        reference[name], current[name] = ref, cur
        columns.append(MonitoredColumn(name, NUMERIC, kind))
        if drift:
            drifted.append(name)
    for i in range(n_categorical):
        name = f"cat_{i:02d}"
        values = np.array(CATEGORY_SETS[i % len(CATEGORY_SETS)], dtype=object)
        weights = rng.dirichlet(np.full(len(values), 5.0))
        drift = i % 3 == 0
        shifted = np.roll(weights, 1) if drift else weights
        reference[name] = values[rng.choice(len(values), rows, p=weights)]
        current[name] = values[rng.choice(len(values), rows, p=shifted)]
        columns.append(MonitoredColumn(name, CATEGORICAL, STRING))
        if drift:
            drifted.append(name)
    return pd.DataFrame(reference), pd.DataFrame(current), columns, drifted


def scipy_loop(baseline, current: pd.DataFrame, reference_samples: dict) -> dict[str, dict]:
    """The per-feature baseline: scipy's ks_2samp and a numpy/pandas PSI, column by column."""
    from scipy import stats

    out = {}
    for name, reference in baseline.references.items():
        if reference.column.kind == NUMERIC:
            values = current[name].dropna().to_numpy()
            ks = stats.ks_2samp(reference_samples[name], values).statistic
            bins = np.concatenate(([-np.inf], reference.psi_edges, [np.inf]))
            counts, _ = np.histogram(values, bins=bins)
            shares, expected = counts / values.size, reference.psi_shares
        else:
            shares_by_value = current[name].value_counts(normalize=True)
            categories = list(reference.categories)
            shares = shares_by_value.reindex(categories, fill_value=0.0).to_numpy()
            expected, ks = reference.shares, None
        a, e = np.maximum(shares, PSI_EPSILON), np.maximum(expected, PSI_EPSILON)
        out[name] = {"ks": ks, "psi": float(np.sum((a - e) * np.log(a / e)))}
    return out


def interleaved(variants: dict, repeat: int) -> tuple[dict, dict, dict]:
    """Run the variants in turn, ``repeat`` rounds; median wall and CPU seconds of each.

    Interleaved rather than one after the other so a change of load on a shared machine hits
    every variant alike; CPU time (this process, all threads) is printed beside wall time
    because it is the steadier of the two when other work competes for the cores.
    """
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    results = {}
    for _ in range(repeat):
        for name, fn in variants.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            results[name] = fn()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    median = statistics.median
    return (
        {k: median(v) for k, v in wall.items()},
        {k: median(v) for k, v in cpu.items()},
        results,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows of the batch and of the reference"
    )
    parser.add_argument("--features", type=int, default=20, help="monitored columns")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each variant (median)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--evidently-python",
        help="an interpreter with evidently installed (a side environment); omit to skip Evidently",
    )
    parser.add_argument(
        "--evidently-repeat", type=int, default=1, help="timed Evidently runs (each takes minutes)"
    )
    args = parser.parse_args(argv)

    print(
        f"generating {args.rows} rows x {args.features} columns (reference and batch) …", flush=True
    )
    reference, current, columns, drifted = make_frames(args.rows, args.features, args.seed)
    config = MonitoringConfig(dataset="bench")
    start = time.perf_counter()
    baseline, sample = build_baseline(reference, columns, config)
    print(
        f"baseline (once per model version, untimed below): {time.perf_counter() - start:.2f}s, "
        f"reference sample {len(sample)} rows",
        flush=True,
    )
    reference_samples = {
        name: ref.sample_sorted
        for name, ref in baseline.references.items()
        if ref.column.kind == NUMERIC
    }

    wall, cpu, results = interleaved(
        {
            "check": lambda: check_drift(baseline, current, config),
            "loop": lambda: scipy_loop(baseline, current, reference_samples),
        },
        args.repeat,
    )
    report, loop = results["check"], results["loop"]
    check_s, loop_s = wall["check"], wall["loop"]

    ks_gap = max(
        abs(f.metrics["ks"] - loop[f.name]["ks"]) for f in report.features if f.kind == NUMERIC
    )
    psi_gap = max(abs(f.metrics["psi"] - loop[f.name]["psi"]) for f in report.features)
    flagged = sorted(report.features_over_threshold)
    print(f"check_drift : {check_s * 1000:8.1f} ms wall, {cpu['check'] * 1000:8.1f} ms CPU")
    print(f"scipy loop  : {loop_s * 1000:8.1f} ms wall, {cpu['loop'] * 1000:8.1f} ms CPU")
    print(
        f"ratio       : {loop_s / check_s:8.2f}x faster wall, {cpu['loop'] / cpu['check']:.2f}x "
        f"CPU (goal >= {GOAL_RATIO:.0f}x)"
    )
    print(f"verdict     : {report.verdict}")
    print(f"agreement   : max |KS diff| {ks_gap:.2e}, max |PSI diff| {psi_gap:.2e}")
    print(
        f"drift found : {flagged == sorted(drifted)} (planted {len(drifted)}: {', '.join(drifted)})"
    )
    print(f"machine     : {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")

    if args.evidently_python:
        with tempfile.TemporaryDirectory(prefix="headrace-bench-drift-") as tmp:
            # Evidently gets the same reference the check uses: the stored sample's rows (numeric
            # columns) beside the same number of reference rows of the categorical columns.
            ref_path, cur_path = Path(tmp) / "reference.parquet", Path(tmp) / "current.parquet"
            ev_reference = reference.iloc[: len(sample)].copy()
            for name in sample.columns:
                ev_reference[name] = sample[name].to_numpy()
            ev_reference.to_parquet(ref_path, index=False)
            current.to_parquet(cur_path, index=False)
            done = subprocess.run(
                [args.evidently_python, "-c", EVIDENTLY_SCRIPT, str(ref_path), str(cur_path), str(args.evidently_repeat)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            print(f"evidently   : failed ({done.stderr.strip().splitlines()[-1:]})")
        else:
            result = json.loads(done.stdout.strip().splitlines()[-1])
            evidently_s = statistics.median(result["seconds"])
            print(
                f"evidently   : {evidently_s * 1000:8.1f} ms  (DataDriftPreset, Report.run only; "
                f"drifted columns {result['drifted']})"
            )
            print(f"ratio       : {evidently_s / check_s:8.2f}x faster than Evidently")
    # Like the other benchmarks, a missed goal is printed, not an exit status: `make bench` runs
    # them all on shared machines, where one noisy run must not hide the others' numbers.
    return 0


if __name__ == "__main__":
    sys.exit(main())
