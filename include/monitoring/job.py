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
job's small outputs. The curated rows are streamed a record batch at a time, and their scores
lined up with them on the job's disk first (:mod:`include.monitoring.score_join`): memory does
not grow with the day.

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
from include.monitoring.score_join import MATCHED, AlignedScores, ScoreJoin, align_scores
from include.monitoring.streaming import (
    DEFAULT_BATCH_ROWS,
    ChunkSource,
    parquet_columns,
    parquet_source,
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

    curated = [f"file://{inputs / CURATED_INPUT / name}" for name in plan["curated_files"]]
    with tempfile.TemporaryDirectory(prefix="score-join-", dir=root) as scratch:
        scores = align_predictions(
            [inputs / PREDICTIONS_INPUT / name for name in plan["predictions_files"]],
            parquet_source(curated, [key]),
            key,
            score_column,
            Path(scratch),
            what=f"the predictions of {plan['ds']}",
        )
        report = check_drift_from_parquet(
            baseline,
            curated,
            config,
            metadata=plan["metadata"],
            scores=scores,
            score_column=score_column,
        )
    write_drift_files(report, root / "output" / MONITORING_OUTPUT)
    return report


def align_predictions(
    paths: Sequence[Path],
    rows: ChunkSource,
    key: str,
    score_column: str,
    folder: Path,
    *,
    what: str,
) -> AlignedScores:
    """The scores in the Parquet files ``paths`` (columns ``key`` and ``score_column``) lined up
    with the curated ``rows`` under ``folder``; ``what`` names them in the error of a key scored
    twice."""
    import pyarrow.parquet as pq

    score_rows = 0
    for path in paths:
        parquet = pq.ParquetFile(path)
        missing = [c for c in (key, score_column) if c not in parquet.schema_arrow.names]
        if missing:
            raise MonitoringJobError(f"predictions file {path.name} lacks the column(s) {missing}")
        score_rows += parquet.metadata.num_rows

    def chunks():
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(
                batch_size=DEFAULT_BATCH_ROWS, columns=[key, score_column]
            ):
                yield batch.to_pandas()

    try:
        return align_scores(
            chunks, rows, key, {score_column: np.float64}, folder,
            score_rows=score_rows, what=what,
        )  # fmt: skip
    except ValueError as error:
        raise MonitoringJobError(str(error)) from None


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
    with tempfile.TemporaryDirectory(prefix="score-join-", dir=root) as scratch:
        scores = _aligned_baseline_scores(
            inputs / SCORES_INPUT / "output.tar.gz", scores_uri, key, score, days=days,
            day_column=metadata.get("partition_column"), folder=Path(scratch),
        )  # fmt: skip
        return _score_reference_baseline(root, days, scores, columns, config, metadata)


def _score_reference_baseline(
    root: Path,
    days: dict[str, list[str]],
    scores: dict[str, AlignedScores],
    columns: list[MonitoredColumn],
    config: MonitoringConfig,
    metadata: dict,
) -> dict[str, str]:
    """The baseline of the days' curated rows with their aligned scores: the score's reference
    is the held-out rows; refused when they are too few for the PSI bins."""
    score = config.score_column
    rows = dict.fromkeys(SPLITS, 0)
    unscored = total = 0
    for day_scores in scores.values():
        for start in range(0, day_scores.rows, DEFAULT_BATCH_ROWS):
            length = min(DEFAULT_BATCH_ROWS, day_scores.rows - start)
            matched = day_scores.read(MATCHED, start, length)
            counts = np.bincount(
                day_scores.read("split", start, length)[matched], minlength=len(SPLITS)
            )
            rows = {name: rows[name] + int(counts[i]) for i, name in enumerate(SPLITS)}
            unscored += int((~matched).sum())
        total += day_scores.rows
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
    days: dict[str, list[str]], scores: dict[str, AlignedScores], score: str, columns: list[str]
) -> ChunkSource:
    """The curated files of every day, a record batch at a time, each batch joined with its own
    day's aligned scores (the score and the held-out mask)."""
    made = [score, SCORE_ROWS_COLUMN]
    sources = []
    for day, paths in days.items():
        join = ScoreJoin(scores[day], made, fill={SCORE_ROWS_COLUMN: False})
        sources.append(parquet_source(paths, columns, transform=join, transform_makes=made))

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


def _aligned_baseline_scores(
    tarball: Path,
    scores_uri: str,
    key: str,
    score: str,
    *,
    days: dict[str, list[str]],
    day_column: str | None,
    folder: Path,
) -> dict[str, AlignedScores]:
    """Day → the training job's baseline scores of that day lined up with the day's curated rows
    (:func:`include.monitoring.score_join.align_scores`): columns ``score``, ``split`` (its
    index in :data:`SPLITS`) and :data:`SCORE_ROWS_COLUMN` (held out), checked; errors name the
    job's ``output.tar.gz`` by its lake URI. One day: every score is that day's (as a
    one-partition job wrote them). A score joins a day's rows on the key (as text): a curated
    row the features job left out has no score, as in the scored batches."""
    import pandas as pd
    import pyarrow.parquet as pq

    path = folder / BASELINE_SCORES_FILE
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
    window = list(days)
    if len(window) > 1 and day_column not in names:
        raise MonitoringJobError(
            f"{scores_uri}: {BASELINE_SCORES_FILE} has no column {day_column!r} (the partition "
            f"column), so its scores cannot be joined to the rows of {len(window)} days"
        )
    read = expected + ([day_column] if len(window) > 1 else [])

    def day_chunks(day: str):
        for batch in parquet.iter_batches(batch_size=DEFAULT_BATCH_ROWS, columns=read):
            frame = batch.to_pandas()
            split = pd.Categorical(frame["split"].astype("string"), categories=SPLITS)
            if (split.codes < 0).any():
                unknown = sorted(set(frame["split"].dropna().astype(str)) - set(SPLITS))
                raise MonitoringJobError(
                    f"{scores_uri}: {BASELINE_SCORES_FILE} column 'split' holds "
                    f"{unknown or ['null']}, expected only {', '.join(SPLITS)}"
                )
            if len(window) == 1:
                of_day = np.ones(len(frame), dtype=bool)
            else:
                day_of = _day_text(frame[day_column])
                if others := sorted(set(day_of) - set(window)):
                    raise MonitoringJobError(
                        f"{scores_uri}: {BASELINE_SCORES_FILE} scores rows of {others}, days "
                        f"outside the training window {window[0]}..{window[-1]} of the plan"
                    )
                of_day = (day_of == day).to_numpy()
            yield pd.DataFrame(
                {
                    key: frame[key][of_day],
                    score: frame["score"].to_numpy()[of_day],
                    "split": split.codes[of_day],
                    SCORE_ROWS_COLUMN: np.isin(split.codes[of_day], _HELD_OUT_CODES),
                }
            )

    aligned = {}
    for day, day_paths in days.items():
        where = f" on {day}" if len(window) > 1 else ""
        try:
            aligned[day] = align_scores(
                lambda day=day: day_chunks(day),
                parquet_source(day_paths, [key]),
                key,
                {score: np.float64, "split": np.int8, SCORE_ROWS_COLUMN: bool},
                folder / f"ds={day}",
                score_rows=parquet.metadata.num_rows,
                what=f"{scores_uri}: {BASELINE_SCORES_FILE}{where}",
            )
        except ValueError as error:  # its own errors among them, rewrapped as they were
            raise MonitoringJobError(str(error)) from None
    return aligned


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
