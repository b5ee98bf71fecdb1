"""The scoring jobs: what runs in the SageMaker Processing container around the batch transform.

Two jobs, run by ``training/process.py`` in the training image, so no worker reads a data file:

- ``scoring-input``: the features rows of a day (every split) as the transform's input, headerless
  CSV lines ``<id columns…>,<features in model order…>`` in ``part-NNNNN.csv`` files of
  ``rows_per_file`` rows (each mini-batch of a ``SplitType=Line`` job is a request of its own;
  only the first would get a header);
- ``predictions``: the transform's ``.out`` lines (``ids…,score``) as Parquet (ids as strings, the
  score as float64, the model version as a column), in row groups of exactly ``row_group_rows``
  rows, so the bytes depend on the rows, not on how the ``.out`` files split them.

Each leaves its files in one output and its facts (rows, files) in ``facts/facts.json``, which
the worker reads; the worker writes the predictions manifest, the commit
(:mod:`include.scoring_pipeline`). Both stream record batches with pyarrow: memory does not grow
with the day's rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Every processing job's plan: input/plan/plan.json (sagemaker_requests.write_processing_inputs).
PLAN_INPUT = "plan"
PLAN_FILE = "plan.json"
FEATURES_INPUT = "features"
TRANSFORM_OUTPUT_INPUT = "transform_output"
SCORING_INPUT_OUTPUT = "scoring_input"
PREDICTIONS_OUTPUT = "predictions"
FACTS_OUTPUT = "facts"
FACTS_FILE = "facts.json"
SCORE_COLUMN = "score"
MODEL_VERSION_COLUMN = "model_version"
# Rows per input CSV file (a file of about 60 MB at ~300 bytes a line) and per read chunk.
INPUT_ROWS_PER_FILE = 200_000
CHUNK_ROWS = 50_000
PREDICTIONS_ROWS_PER_FILE = 1_000_000
# Rows per parquet row group of the predictions (a multiple of it per file).
ROW_GROUP_ROWS = 100_000


class ScoringJobError(ValueError):
    """The job's inputs cannot be used; the message names the file and what is wrong."""


def json_bytes(payload: dict[str, Any]) -> bytes:
    """Stable JSON (sorted keys): the same facts give the same bytes."""
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()


def scoring_input_plan(
    *, model_version: str, columns: list[str], features_files: list[str], rows_per_file: int
) -> bytes:
    """``plan.json`` of the scoring-input job: the columns in line order and the features files
    (keys relative to the features input) in manifest order."""
    return json_bytes(
        {
            "kind": "scoring-input",
            "model_version": model_version,
            "columns": columns,
            "features_files": features_files,
            "rows_per_file": rows_per_file,
        }
    )


def predictions_plan(
    *,
    model_version: str,
    id_columns: list[str],
    expected_rows: int,
    rows_per_file: int = PREDICTIONS_ROWS_PER_FILE,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> bytes:
    """``plan.json`` of the predictions job: the ids the lines start with, the rows the input
    had (fewer or more predictions fail the job), and the files' layout."""
    return json_bytes(
        {
            "kind": "predictions",
            "model_version": model_version,
            "id_columns": id_columns,
            "expected_rows": expected_rows,
            "rows_per_file": rows_per_file,
            "row_group_rows": row_group_rows,
        }
    )


def _write_facts(root: Path, facts: dict[str, Any]) -> dict[str, Any]:
    folder = root / "output" / FACTS_OUTPUT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FACTS_FILE).write_bytes(json_bytes(facts))
    return facts


def run_scoring_input_job(root: Path) -> dict[str, Any]:
    """Write the transform's input lines the plan under ``root/input`` names."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    inputs = root / "input"
    plan = json.loads((inputs / PLAN_INPUT / PLAN_FILE).read_text())
    columns, rows_per_file = plan["columns"], plan["rows_per_file"]
    output = root / "output" / SCORING_INPUT_OUTPUT
    output.mkdir(parents=True, exist_ok=True)
    options = pa_csv.WriteOptions(include_header=False)
    rows = 0
    written: list[str] = []
    sink = None
    in_file = 0

    def flush() -> None:
        nonlocal sink, in_file
        if sink is not None:
            sink.close()
            written.append(sink.name)
        sink, in_file = None, 0

    for name in plan["features_files"]:
        parquet = pq.ParquetFile(inputs / FEATURES_INPUT / name)
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        if missing:
            raise ScoringJobError(
                f"features file {name} lacks columns the model {plan['model_version']} needs: "
                f"{missing} (the model was trained on other features; retrain it or rebuild "
                "the features)"
            )
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
            start = 0
            while start < batch.num_rows:
                if sink is None:
                    sink = open(output / f"part-{len(written):05d}.csv", "wb")  # noqa: SIM115
                take = min(batch.num_rows - start, rows_per_file - in_file)
                pa_csv.write_csv(pa.Table.from_batches([batch.slice(start, take)]), sink, options)
                in_file += take
                rows += take
                start += take
                if in_file == rows_per_file:
                    flush()
    flush()
    if rows == 0:
        raise ScoringJobError("the features partition has no rows to score")
    return _write_facts(root, {"rows": rows, "files": [Path(p).name for p in written]})


def run_predictions_job(root: Path) -> dict[str, Any]:
    """Turn the transform's ``.out`` files under ``root/input`` into the predictions files."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    inputs = root / "input"
    plan = json.loads((inputs / PLAN_INPUT / PLAN_FILE).read_text())
    transform_output = inputs / TRANSFORM_OUTPUT_INPUT
    outputs = sorted(p for p in transform_output.rglob("*.out") if p.is_file())
    if not outputs:
        raise ScoringJobError("the transform wrote no .out files")
    id_columns = list(plan["id_columns"])
    names = [*id_columns, SCORE_COLUMN]
    rows_per_file, row_group_rows = plan["rows_per_file"], plan["row_group_rows"]
    convert = pa_csv.ConvertOptions(
        column_types={**dict.fromkeys(id_columns, pa.string()), SCORE_COLUMN: pa.float64()},
        strings_can_be_null=False,
    )
    schema = pa.schema(
        [*((name, pa.string()) for name in id_columns), (SCORE_COLUMN, pa.float64()),
         (MODEL_VERSION_COLUMN, pa.string())]
    )  # fmt: skip
    version = str(plan["model_version"])
    folder = root / "output" / PREDICTIONS_OUTPUT
    folder.mkdir(parents=True, exist_ok=True)
    rows = 0
    files: list[dict[str, Any]] = []
    pending: list = []  # record batches not yet written
    pending_rows = 0
    writer = None
    in_part = 0

    def close_part() -> None:
        nonlocal writer, in_part
        if writer is not None:
            writer.close()
            name = f"part-{len(files):05d}.parquet"
            files.append({"name": name, "bytes": (folder / name).stat().st_size})
        writer, in_part = None, 0

    def write(table) -> None:
        nonlocal writer, in_part
        if writer is None:
            writer = pq.ParquetWriter(
                folder / f"part-{len(files):05d}.parquet", schema, compression="zstd"
            )
        writer.write_table(table, row_group_size=row_group_rows)
        in_part += table.num_rows
        if in_part >= rows_per_file:
            close_part()

    for path in outputs:
        name = path.relative_to(transform_output).as_posix()
        try:
            reader = pa_csv.open_csv(
                path,
                read_options=pa_csv.ReadOptions(column_names=names, block_size=8 << 20),
                convert_options=convert,
            )
            for batch in reader:
                columns = [*batch.columns, pa.array([version] * batch.num_rows, pa.string())]
                pending.append(pa.RecordBatch.from_arrays(columns, schema=schema))
                pending_rows += batch.num_rows
                rows += batch.num_rows
                while pending_rows >= row_group_rows:
                    table = pa.Table.from_batches(pending, schema=schema)
                    write(table.slice(0, row_group_rows).combine_chunks())
                    rest = table.slice(row_group_rows)
                    pending, pending_rows = rest.to_batches(), rest.num_rows
        except pa.ArrowInvalid as error:
            raise ScoringJobError(f"{name}: not lines of {', '.join(names)}: {error}") from None
    if pending_rows:
        write(pa.Table.from_batches(pending, schema=schema).combine_chunks())
    close_part()
    if rows != plan["expected_rows"]:
        raise ScoringJobError(
            f"the transform wrote {rows} predictions for {plan['expected_rows']} input rows: "
            "a record was lost or duplicated"
        )
    return _write_facts(
        root, {"rows": rows, "files": files, "columns": [*names, MODEL_VERSION_COLUMN]}
    )


JOBS = {"scoring-input": run_scoring_input_job, "predictions": run_predictions_job}
