"""Benchmark: local batch scoring (the transform runtime) beside a bare predict loop, same rows.

Writes ``--rows`` rows (default 1M) of churn-like features as the headerless CSV lines a scoring
input holds (``customer_id,snapshot_date,<features…>`` in files of 250,000 rows), saves a model
directory with training's own functions (a seeded, untrained network of the production shape:
the cost of scoring does not depend on the weights), then times, in the same process:

- ``local scoring``: :func:`include.local_transform.transform` on the CreateTransformJob body
  the aws target sends (``MultiRecord`` mini-batches of ``MaxPayloadInMB`` = 6 and at most
  ``--max-records`` records, the scoring operator's local default; the ``DataProcessing`` join): read lines, ``input_fn`` → ``predict_fn`` → ``output_fn`` of
  ``training/inference.py``, join the ids back, write ``.out`` lines;
- ``bare predict loop``: ``training.model.predict_scores`` over the same rows already parsed
  and standardized in memory (what scoring costs with no I/O, parsing or formatting at all).

Prints both rates, their ratio, and the peak-RSS growth of the local scoring over a process that
has loaded torch and the model (the scoring runs in a fresh subprocess, so its peak is its own;
the streaming keeps it flat, while the bare loop needs every row in memory). The scores of both are compared too (equal to float32 rounding). Torch runs on
``--threads`` threads (default 1: this machine is shared).

    python bench/scoring.py [--rows 1000000] [--threads 1] [--max-records 5000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from include.local_transform import DEFAULT_MAX_RECORDS  # noqa: E402

ROWS_PER_FILE = 250_000
BARE_WARM_UP_ROWS = 65_536
ID_COLUMNS = ["customer_id", "snapshot_date"]
NUMERIC = ["tenure_months", "monthly_charge", "total_charges", "minutes_used", "sessions",
           "data_gb", "support_tickets_30d", "payment_failures_90d", "total_charges_missing",
           "charge_per_tenure_month", "minutes_per_session", "autopay"]  # fmt: skip
ONE_HOT = [f"plan__{v}" for v in ("basic", "standard", "premium", "family")] + [
    f"region__{v}" for v in ("na_east", "na_west", "eu_west", "eu_central", "apac", "latam")
]
FEATURES = NUMERIC + ONE_HOT


def high_water_mark_mb() -> float:
    """VmHWM (peak RSS of this process) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_input(folder: Path, rows: int, seed: int = 0) -> np.ndarray:
    """The input files; returns the feature matrix (float64) in row order."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    matrix = np.column_stack(
        [np.round(rng.gamma(2.0, 20.0, rows), 2) for _ in NUMERIC]
        + [(rng.random(rows) < 0.25).astype(float) for _ in ONE_HOT]
    )
    folder.mkdir(parents=True, exist_ok=True)
    options = pa_csv.WriteOptions(include_header=False)
    for start in range(0, rows, ROWS_PER_FILE):
        stop = min(rows, start + ROWS_PER_FILE)
        columns = {
            "customer_id": pa.array([f"C{i:09d}" for i in range(start, stop)]),
            "snapshot_date": pa.array(["2026-01-07"] * (stop - start)),
            **{name: pa.array(matrix[start:stop, j]) for j, name in enumerate(FEATURES)},
        }
        pa_csv.write_csv(
            pa.table(columns), str(folder / f"part-{start // ROWS_PER_FILE:05d}.csv"), options
        )
    return matrix


def write_model(model_dir: Path, matrix: np.ndarray) -> None:
    import torch

    from training.model import MODEL_CONFIG_VERSION, architecture_config, build_model
    from training.preprocessing import Standardizer
    from training.train import write_model_dir

    torch.manual_seed(0)
    config = architecture_config(len(FEATURES), 128, 2, 0.1)
    write_model_dir(
        model_dir,
        model=build_model(config).eval(),
        config={
            "version": MODEL_CONFIG_VERSION,
            **config,
            "features": FEATURES,
            "label": "churned",
            "id_columns": ID_COLUMNS,
        },
        standardizer=Standardizer.fit(FEATURES, matrix[:100_000]),
        evaluation={},
    )


def score_only(root: Path, threads: int, max_records: int | None) -> None:
    """The local scoring of ``root``'s input, in this (fresh) process; prints JSON."""
    import torch

    from include.config import load_settings
    from include.local_transform import transform
    from include.sagemaker_requests import build_transform_job_request
    from training.inference import model_fn

    torch.set_num_threads(threads)
    request = build_transform_job_request(
        load_settings({"PIPELINE_TARGET": "local", "HEADRACE_LAKE_ROOT": f"file://{root}"}),
        job_name="bench-scoring", model_name="bench-model",
        input_uri=f"file://{root}/input", output_uri=f"file://{root}/out",
        id_columns=ID_COLUMNS,
    )  # fmt: skip
    model_fn(str(root / "model"))  # torch and the model resident before the baseline
    baseline_mb = high_water_mark_mb()
    started = time.perf_counter()
    result = transform(request, root / "model", max_records=max_records)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "records": result["records"],
                      "peak_rss_growth_mb": high_water_mark_mb() - baseline_mb}))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--max-records",
        type=int,
        default=DEFAULT_MAX_RECORDS,
        help="records per mini-batch at most (0: the 6 MB payload alone)",
    )
    parser.add_argument("--score-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.score_only:
        score_only(args.score_only, args.threads, args.max_records or None)
        return 0

    import torch

    from training.inference import model_fn
    from training.model import predict_scores

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="headrace-bench-scoring-") as tmp:
        root = Path(tmp)
        matrix = write_input(root / "input", args.rows)
        write_model(root / "model", matrix)
        del matrix
        # Scored in a fresh process: its peak RSS then says what scoring takes, not what
        # generating the input took.
        completed = subprocess.run(
            [sys.executable, __file__, "--score-only", str(root), "--threads", str(args.threads),
             "--max-records", str(args.max_records)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if completed.returncode != 0:
            print(completed.stderr[-3000:], file=sys.stderr)
            return 1
        scored = json.loads(completed.stdout.strip().splitlines()[-1])
        local_s, local_peak_mb = scored["seconds"], scored["peak_rss_growth_mb"]
        assert scored["records"] == args.rows, scored
        served = model_fn(str(root / "model"))

        # The bare loop's input: the same rows, parsed and standardized ahead of the clock.
        import pyarrow.csv as pa_csv

        names = [*ID_COLUMNS, *FEATURES]
        tables = [
            pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(column_names=names))
            for path in sorted((root / "input").glob("*.csv"))
        ]
        features = np.concatenate(
            [np.column_stack([t[name].to_numpy() for name in FEATURES]) for t in tables]
        )
        standardized = served.standardizer.transform(features)
        # One warm-up batch off the clock: torch's first call allocates and picks its kernels.
        predict_scores(served.model, standardized[:BARE_WARM_UP_ROWS], served.device)
        started = time.perf_counter()
        bare_scores = predict_scores(served.model, standardized, served.device)
        bare_s = time.perf_counter() - started

        local_scores = np.concatenate(
            [
                pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(
                    column_names=[*ID_COLUMNS, "score"]))["score"].to_numpy()
                for path in sorted((root / "out").glob("*.out"))
            ]
        ).astype(np.float32)  # fmt: skip
        max_difference = float(np.max(np.abs(local_scores - bare_scores)))

    local_rate, bare_rate = args.rows / local_s, args.rows / bare_s
    summary = {
        "rows": args.rows,
        "threads": args.threads,
        "max_records_per_mini_batch": args.max_records or None,
        "local_scoring_rows_per_s": round(local_rate),
        "bare_predict_loop_rows_per_s": round(bare_rate),
        "bare_over_local": round(bare_rate / local_rate, 1),
        "local_scoring_peak_rss_growth_mb": round(local_peak_mb, 1),
        "bare_loop_input_tensor_mb": round(standardized.nbytes / 2**20, 1),
        "max_score_difference": max_difference,
    }
    print(f"local scoring     {local_rate:>12,.0f} rows/s  ({local_s:.1f} s, peak RSS "
          f"+{local_peak_mb:.0f} MB over torch and the model)")  # fmt: skip
    print(f"bare predict loop {bare_rate:>12,.0f} rows/s  ({bare_s:.2f} s, its input tensor "
          f"alone {standardized.nbytes / 2**20:.0f} MB)")  # fmt: skip
    print(f"ratio: the bare loop is {bare_rate / local_rate:.1f}x the local scoring's rate; "
          f"scores agree to {max_difference:.1e}")  # fmt: skip
    print(json.dumps(summary))
    return 0 if max_difference < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
