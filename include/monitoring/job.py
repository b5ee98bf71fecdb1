"""The monitoring jobs: what runs in the SageMaker Processing container, off the worker.

Two jobs, run by ``training/process.py baseline|drift`` in the training image:

- ``baseline``: the monitoring baseline of a trained model, from the curated days of its
  training window joined by day and key with the scores the model gave those rows
  (``baseline_scores.parquet`` in the training job's ``output.tar.gz``);
- ``drift``: a scored day's curated rows, with their scores joined by key, against the baseline
  of the model version that scored them; Model Monitor's files and ``drift_report.json``.

The worker writes a small plan (the columns, the join key, the monitoring config and the files
of each input, in order; :func:`include.sagemaker_requests.write_processing_inputs`) and starts
the job; its inputs are the plan
and exactly the files the plan names, its output one lake folder. The worker then reads only the
job's small outputs. The curated rows are streamed a record batch at a time; the day's scores are
held for the join by a hash of their key (:mod:`include.monitoring.score_join`).

It imports nothing beyond what the training image has (numpy, pandas, pyarrow) and the modules
of ``include/monitoring/`` that ship in the source tarball beside ``training/``.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from include.monitoring.baseline import (
    MIN_REFERENCE_ROWS_PER_PSI_BIN,
    SCORE_ROWS_COLUMN,
    build_baseline_from_parquet,
    build_baseline_from_source,
    json_bytes,
    load_baseline,
    min_score_reference_rows,
    store_baseline,
)
from include.monitoring.columns import MonitoredColumn
from include.monitoring.drift import DriftReport, check_drift_from_parquet
from include.monitoring.score_join import KeyedScores, ScoreJoin
from include.monitoring.streaming import (
    DEFAULT_BATCH_ROWS,
    ChunkSource,
    parquet_columns,
    parquet_source,
    run_pass,
)
from include.monitoring.thresholds import MonitoringConfig
from include.scoring_job import PLAN_FILE, PLAN_INPUT

# The job's inputs and output (``/opt/ml/processing/input/<name>``, ``output/<name>``).
BASELINE_INPUT = "baseline"
CURATED_INPUT = "curated"
PREDICTIONS_INPUT = "predictions"
SCORES_INPUT = "scores"
MONITORING_OUTPUT = "monitoring"
BASELINE_OUTPUT = "baseline"
# What train.py writes into SM_OUTPUT_DATA_DIR (output.tar.gz beside model.tar.gz): every
# training-partition row's ids with its split and the final model's score.
BASELINE_SCORES_FILE = "baseline_scores.parquet"
# The splits the model did not train on: the score's reference distribution comes from these
# alone (a model scores its own training rows more confidently than new data).
TRAINING_SPLIT = "train"
HELD_OUT_SPLITS = ("validation", "test")
SPLITS = (TRAINING_SPLIT, *HELD_OUT_SPLITS)
_HELD_OUT_CODES = [SPLITS.index(name) for name in HELD_OUT_SPLITS]
# What the job leaves in the batch's monitoring folder; drift_report.json is written last.
VIOLATIONS_FILE = "constraint_violations.json"
BATCH_STATISTICS_FILE = "statistics.json"
DRIFT_REPORT_FILE = "drift_report.json"


class MonitoringJobError(ValueError):
    """The job's inputs cannot be used; the message names the input and the file."""


# --- the worker's side: the plan and the job's inputs -------------------------------------------


def baseline_plan(
    *,
    columns: list[MonitoredColumn],
    key: str,
    config: MonitoringConfig,
    metadata: dict[str, Any],
    curated_files: list[str],
) -> bytes:
    """``plan.json`` of a baseline job: the monitored columns (the score last, when the config
    monitors it), the split key the scores join on, and the curated files in manifest order."""
    return json_bytes(
        {
            "kind": "baseline",
            "columns": [asdict(column) for column in columns],
            "key": key,
            "config": asdict(config),
            "metadata": metadata,
            "curated_files": curated_files,
        }
    )


def drift_plan(
    *,
    dataset: str,
    ds: str,
    model_version: str,
    key: str,
    score_column: str,
    config: MonitoringConfig,
    metadata: dict[str, Any],
    curated_files: list[str],
    predictions_files: list[str],
) -> bytes:
    """``plan.json``: everything the job needs besides the data, as deterministic bytes.

    :param curated_files: the curated files' keys relative to the curated input, in the
        manifest's order (the order the check reads them in).
    :param predictions_files: the same for the predictions input.
    """
    return json_bytes(
        {
            "kind": "drift",
            "dataset": dataset,
            "ds": ds,
            "model_version": model_version,
            "key": key,
            "score_column": score_column,
            "config": asdict(config),
            "metadata": metadata,
            "curated_files": curated_files,
            "predictions_files": predictions_files,
        }
    )


def run_drift_job(root: Path) -> DriftReport:
    """Check the day the plan under ``root/input`` names; write the report under ``root/output``."""
    inputs = root / "input"
    plan = json.loads((inputs / PLAN_INPUT / PLAN_FILE).read_text())
    key, score_column = plan["key"], plan["score_column"]
    config = MonitoringConfig(**plan["config"])
    baseline = load_baseline(f"file://{inputs / BASELINE_INPUT}")

    scores = read_keyed_scores(
        [inputs / PREDICTIONS_INPUT / name for name in plan["predictions_files"]],
        key,
        score_column,
        what=f"the predictions of {plan['ds']}",
    )
    report = check_drift_from_parquet(
        baseline,
        [f"file://{inputs / CURATED_INPUT / name}" for name in plan["curated_files"]],
        config,
        metadata=plan["metadata"],
        scores=scores,
        score_column=score_column,
    )
    write_drift_files(report, root / "output" / MONITORING_OUTPUT)
    return report


def read_keyed_scores(
    paths: Sequence[Path], key: str, score_column: str, *, what: str
) -> KeyedScores:
    """The scores in the Parquet files ``paths`` (columns ``key`` and ``score_column``) by key,
    read a record batch at a time; ``what`` names them in the error of a key scored twice."""
    import pyarrow.parquet as pq

    for path in paths:
        missing = [c for c in (key, score_column) if c not in pq.read_schema(path).names]
        if missing:
            raise MonitoringJobError(f"predictions file {path.name} lacks the column(s) {missing}")

    def chunks():
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(
                batch_size=DEFAULT_BATCH_ROWS, columns=[key, score_column]
            ):
                yield batch.to_pandas()

    scores = KeyedScores.from_chunks(key, chunks(), [score_column])
    if scores.repeats:
        raise MonitoringJobError(
            f"{what} hold {key} values more than once, "
            f"e.g. {scores.repeated_key(chunks())!r} ({scores.repeats} repeats)"
        )
    return scores


def run_baseline_job(root: Path) -> dict[str, str]:
    """Build the baseline the plan under ``root/input`` names into ``root/output/baseline``.

    The curated files are the days of the model's training window (keys ``ds=<D>/…``; a key
    without that folder is of the plan's ``ds``). The features' reference is every curated row;
    the score's distribution comes from the validation and test rows only
    (:data:`HELD_OUT_SPLITS`), its missing rate from every row. Scores join a day's rows on the
    split key among that day's scores (their ``partition_column``): an entity has a row on
    every day. A one-day window joins on the key alone, as a one-partition baseline always did.
    The profile's ``metadata.score_reference`` says which rows and how many. Deterministic: a
    retry writes the same bytes.
    """
    inputs = root / "input"
    plan = json.loads((inputs / PLAN_INPUT / PLAN_FILE).read_text())
    config = MonitoringConfig(**plan["config"])
    columns = [MonitoredColumn(**column) for column in plan["columns"]]
    key, score = plan["key"], config.score_column
    metadata = dict(plan["metadata"])
    days: dict[str, list[str]] = {}
    for name in plan["curated_files"]:
        folder, _, rest = name.partition("/")
        day = folder.removeprefix("ds=") if folder.startswith("ds=") and rest else metadata["ds"]
        days.setdefault(day, []).append(f"file://{inputs / CURATED_INPUT / name}")
    paths = [path for day_paths in days.values() for path in day_paths]
    present = set(parquet_columns(paths))
    absent = [c.name for c in columns if c.name not in present and c.name != score]
    if absent:
        raise MonitoringJobError(
            f"the curated files lack monitored columns {absent} (the dataset spec's features)"
        )
    if not score:  # the monitoring config may switch prediction drift off (score_column: null)
        baseline, sample = build_baseline_from_parquet(paths, columns, config, metadata=metadata)
        return store_baseline(baseline, sample, f"file://{root / 'output' / BASELINE_OUTPUT}")

    scores_uri = metadata["scores"]
    scores = _baseline_scores(
        inputs / SCORES_INPUT / "output.tar.gz", scores_uri, key, score,
        days=list(days), day_column=metadata.get("partition_column"),
    )  # fmt: skip
    rows = dict.fromkeys(SPLITS, 0)
    unscored = total = 0
    for day, day_paths in days.items():
        counter = _SplitCounter(scores[day])
        run_pass(parquet_source(day_paths, [key]), [counter])
        rows = {name: rows[name] + counter.rows[name] for name in rows}
        unscored, total = unscored + counter.unscored, total + counter.total
    held_out = sum(rows[name] for name in HELD_OUT_SPLITS)
    minimum = min_score_reference_rows(config)
    if held_out < minimum:
        counts = ", ".join(f"{name} {count}" for name, count in rows.items())
        where = "the partition has" if len(days) == 1 else f"the window's {len(days)} days have"
        raise MonitoringJobError(
            f"{metadata['dataset']} ds={metadata['ds']}, training job "
            f"{metadata['training_job']}: the score reference needs at least {minimum} "
            f"held-out rows ({MIN_REFERENCE_ROWS_PER_PSI_BIN} per PSI bin, "
            f"psi_bins={config.psi_bins} in {config.source}), {where} "
            f"{held_out} ({counts} of {total} curated rows); train on a "
            "larger partition or a longer training.window_days, or lower psi_bins"
        )
    metadata["score_reference"] = {
        "column": score,
        "splits": list(HELD_OUT_SPLITS),
        "rows": held_out,
        "rows_by_split": rows,
        "unscored_rows": unscored,
    }
    read = [c.name for c in columns if c.name != score]
    source = _scored_days_source(days, scores, score, read)
    baseline, sample = build_baseline_from_source(
        source, columns, config, metadata=metadata, score_rows=True
    )
    return store_baseline(baseline, sample, f"file://{root / 'output' / BASELINE_OUTPUT}")


def _scored_days_source(
    days: dict[str, list[str]], scores: dict[str, KeyedScores], score: str, columns: list[str]
) -> ChunkSource:
    """The curated files of every day, a record batch at a time, each batch left-joined on the
    key with its own day's scores (the score and the held-out mask)."""
    made = [score, SCORE_ROWS_COLUMN]
    sources = []
    for day, paths in days.items():
        join = ScoreJoin(scores[day], made, fill={SCORE_ROWS_COLUMN: False})
        sources.append(
            parquet_source(
                paths, columns, transform=join, transform_reads=[join.key], transform_makes=made
            )
        )

    def chunks(names=None):
        offset = 0
        for source in sources:
            for _, chunk in source.chunks(names):
                yield offset, chunk
                offset += len(chunk)

    return ChunkSource(
        rows=sum(source.rows for source in sources),
        chunks=chunks,
        description=f"{sum(len(paths) for paths in days.values())} Parquet file(s) "
        f"of {len(days)} day(s)",
    )


def _day_text(values):
    """A day column (date, timestamp or text) as ``YYYY-MM-DD`` text."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.strftime("%Y-%m-%d")
    return values.astype(str).str[:10]


def _baseline_scores(
    tarball: Path, scores_uri: str, key: str, score: str, *, days: list[str], day_column
) -> dict[str, KeyedScores]:
    """Day → the training job's baseline scores of that day by key: columns ``score``,
    ``split`` (its index in :data:`SPLITS`) and :data:`SCORE_ROWS_COLUMN` (held out), checked;
    errors name the job's ``output.tar.gz`` by its lake URI. One day: every score is that
    day's (as a one-partition job wrote them). Read a record batch at a time."""
    import pandas as pd
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="baseline-scores-") as scratch:
        path = Path(scratch) / BASELINE_SCORES_FILE
        with tarfile.open(tarball, mode="r:gz") as archive:
            member = next(
                (m for m in archive.getmembers()
                 if m.name.lstrip("./") == BASELINE_SCORES_FILE and m.isfile()),
                None,
            )  # fmt: skip
            if member is None:
                raise MonitoringJobError(
                    f"{scores_uri} has no {BASELINE_SCORES_FILE}: the training job did not write it"
                )
            with archive.extractfile(member) as source, path.open("wb") as target:
                shutil.copyfileobj(source, target)
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        expected = [key, "split", "score"]
        if any(name not in names for name in expected):
            raise MonitoringJobError(
                f"{scores_uri}: {BASELINE_SCORES_FILE} has columns {names}, "
                f"not the split key {key!r}, 'split' and 'score'"
            )
        if len(days) > 1 and day_column not in names:
            raise MonitoringJobError(
                f"{scores_uri}: {BASELINE_SCORES_FILE} has no column {day_column!r} (the partition "
                f"column), so its scores cannot be joined to the rows of {len(days)} days"
            )
        read = expected + ([day_column] if len(days) > 1 else [])

        def chunks():
            for batch in parquet.iter_batches(batch_size=DEFAULT_BATCH_ROWS, columns=read):
                frame = batch.to_pandas()
                split = pd.Categorical(frame["split"].astype("string"), categories=SPLITS)
                if (split.codes < 0).any():
                    unknown = sorted(set(frame["split"].dropna().astype(str)) - set(SPLITS))
                    raise MonitoringJobError(
                        f"{scores_uri}: {BASELINE_SCORES_FILE} column 'split' holds "
                        f"{unknown or ['null']}, expected only {', '.join(SPLITS)}"
                    )
                if len(days) == 1:
                    day = pd.Categorical.from_codes(np.zeros(len(frame), dtype=np.int8), days)
                else:
                    day = pd.Categorical(_day_text(frame[day_column]), categories=days)
                    if (day.codes < 0).any():
                        others = sorted(set(_day_text(frame[day_column])) - set(days))
                        raise MonitoringJobError(
                            f"{scores_uri}: {BASELINE_SCORES_FILE} scores rows of {others}, days "
                            f"outside the training window {days[0]}..{days[-1]} of the plan"
                        )
                yield pd.DataFrame(
                    {
                        key: frame[key],
                        score: frame["score"].to_numpy(),
                        "split": split.codes,
                        "day": day.codes,
                    }
                )

        every_day = KeyedScores.from_chunks(key, chunks(), [score, "split", "day"])
    by_day = {}
    for number, day in enumerate(days):
        rows = np.flatnonzero(every_day.columns["day"] == number)
        # Left join by key as text: a curated row the features job left out shows up as a
        # missing score, as in the scored batches (the drift job joins the same way).
        split = every_day.columns["split"][rows]
        by_day[day] = KeyedScores(
            key,
            every_day.high[rows],
            every_day.low[rows],
            {
                score: every_day.columns[score][rows],
                "split": split,
                SCORE_ROWS_COLUMN: np.isin(split, _HELD_OUT_CODES),
            },
        )
        if by_day[day].repeats:
            raise MonitoringJobError(
                f"{scores_uri}: {BASELINE_SCORES_FILE} scores a {key} more than once"
                + (f" on {day}" if len(days) > 1 else "")
            )
    return by_day


class _SplitCounter:
    """Curated rows per split of their score (a pass over the key column only)."""

    def __init__(self, scores: KeyedScores):
        self.scores = scores
        self.rows = dict.fromkeys(SPLITS, 0)
        self.unscored = self.total = 0

    def __call__(self, offset: int, chunk) -> None:
        position = self.scores.positions(chunk[self.scores.key])
        codes = self.scores.columns["split"][position[position >= 0]]
        counts = np.bincount(codes, minlength=len(SPLITS))
        for number, name in enumerate(SPLITS):
            self.rows[name] += int(counts[number])
        self.unscored += int((position < 0).sum())
        self.total += len(chunk)


def write_drift_files(report: DriftReport, folder: Path) -> dict[str, Path]:
    """Model Monitor's ``constraint_violations.json``, the batch's ``statistics.json`` and the
    full ``drift_report.json`` (written last: the file the worker reads) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    payloads = {
        "constraint_violations": (VIOLATIONS_FILE, report.constraint_violations()),
        "statistics": (BATCH_STATISTICS_FILE, report.statistics),
        "drift_report": (DRIFT_REPORT_FILE, report.as_dict()),
    }
    paths = {}
    for key, (name, payload) in payloads.items():
        paths[key] = folder / name
        paths[key].write_bytes(json_bytes(payload))
    return paths


def run_drift_job_report(root: Path) -> dict[str, Any]:
    """The drift job's outcome for its log: the verdict."""
    return {"verdict": run_drift_job(root).verdict}


JOBS = {"baseline": run_baseline_job, "drift": run_drift_job_report}
