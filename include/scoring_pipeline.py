"""The steps of the scoring and monitoring DAGs around the batch transform job.

- :func:`prepare_scoring_input`: the features rows of day ``ds`` (every split: every customer of
  the day) as headerless CSV lines ``ids…,features…`` in the champion model's feature order,
  because batch transform reads lines, not parquet;
- :func:`commit_predictions`: the transform's ``.out`` lines as the predictions partition
  ``predictions/<dataset>/ds=D/`` (ids, score, model version), committed by a manifest;
- :func:`drift_job_plan` and :func:`drift_check_result`: before and after the drift check's
  processing job (the curated partition of ``ds`` joined with its scores against the scoring
  model's monitoring baseline, :mod:`include.monitoring.job`): its plan and inputs, then the
  HTML report and the verdict from the job's small report;
- :func:`raise_drift_alert`: an SNS message on aws, a log line locally; a JSON file in the lake
  on both.

Every step streams in chunks (pyarrow), so memory does not grow with the day's rows, and each is
idempotent: the same inputs write the same bytes at the same keys.

Commit of a predictions partition: the parquet files go to a folder named after their own
content digest (``ds=D/<digest>/part-*.parquet``), then ``ds=D/_manifest.json`` is written
naming that folder. The manifest write is the commit (one atomic object write on both
targets): a reader never sees half a partition, a re-run with the same model and data rewrites
identical bytes, and a re-run with a new model points the manifest at a new folder. S3 has no
rename, and the lake interface has no delete, so a superseded folder stays as an orphan that
no manifest names.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from include.config import Settings

log = logging.getLogger("headrace.scoring")

MANIFEST_NAME = "_manifest.json"
SCORE_COLUMN = "score"
MODEL_VERSION_COLUMN = "model_version"
# Rows per input CSV file (a file of about 60 MB at ~300 bytes a line) and per read chunk.
INPUT_ROWS_PER_FILE = 200_000
CHUNK_ROWS = 50_000
PREDICTIONS_ROWS_PER_FILE = 1_000_000
# Rows per parquet row group of the predictions (a multiple of it per file).
ROW_GROUP_ROWS = 100_000
MODEL_CONFIG_FILE = "model_config.json"


class ScoringError(ValueError):
    """A scoring or monitoring step cannot go on; the message names the file, column or setting."""


# --- where things live -------------------------------------------------------------------------


def predictions_root(settings: Settings, dataset: str) -> str:
    return f"{settings.zone_uri('predictions')}/{dataset}"


def predictions_partition_uri(settings: Settings, dataset: str, ds: str) -> str:
    return f"{predictions_root(settings, dataset)}/ds={ds}"


def transform_output_uri(settings: Settings, dataset: str, ds: str) -> str:
    """Where transform jobs of day ``ds`` write; the job name is appended per job."""
    return f"{predictions_root(settings, dataset)}/transform/ds={ds}"


def monitoring_uri(settings: Settings, dataset: str, model_version: str, ds: str) -> str:
    return f"{settings.zone_uri('monitoring')}/{dataset}/model_version={model_version}/ds={ds}"


def drift_report_uri(settings: Settings, dataset: str, ds: str) -> str:
    return f"{settings.zone_uri('reports')}/{dataset}/drift/ds={ds}/drift_report.html"


def alerts_uri(settings: Settings, dataset: str, ds: str) -> str:
    return f"{settings.zone_uri('monitoring')}/{dataset}/alerts/ds={ds}.json"


def model_name_for(dataset: str, version: str, model_uri: str) -> str:
    """The SageMaker model of a registry version: readable, with a digest of its artifact (a
    version number alone repeats after a registry is rebuilt; the artifact never does)."""
    from include.job_names import NAMING_RULES, sanitize

    digest = hashlib.sha256(model_uri.encode()).hexdigest()[:12]
    return sanitize(f"headrace-{dataset}-v{version}-{digest}", NAMING_RULES["sagemaker"])[:63]


def _list(uri: str) -> list[str]:
    from include.storage import storage_for

    return storage_for(uri).list_uris(uri)


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()


# --- the champion ------------------------------------------------------------------------------


def champion_model(settings: Settings, dataset: str, registry=None) -> dict[str, Any]:
    """The approved version's facts the scoring needs: version, model URI, model name, and the
    features and id columns of its ``model_config.json``."""
    from include.registry import registry_for
    from include.training_pipeline import read_model_file

    registry = registry or registry_for(settings)
    version = registry.approved_version(dataset)
    if version is None:
        raise ScoringError(
            f"{dataset} has no approved model version to score with: approve one "
            f"({dataset}_model_approval) or train a model that beats the champion"
        )
    config = json.loads(read_model_file(version.model_uri, MODEL_CONFIG_FILE))
    return {
        "version": version.version,
        "model_uri": version.model_uri,
        "model_name": model_name_for(dataset, version.version, version.model_uri),
        "features": list(config["features"]),
        "id_columns": list(config["id_columns"]),
    }


# --- 1. the transform's input ------------------------------------------------------------------


def _features_files(settings: Settings, dataset: str, ds: str) -> tuple[list[str], bytes]:
    """The files the features manifest of ``ds`` lists (the one reader training uses too),
    and the manifest's bytes; a :class:`ScoringError` when there are none to score."""
    from include.training_jobs import features_files

    try:
        files, manifest_bytes = features_files(settings, dataset, ds)
    except (FileNotFoundError, ValueError) as error:
        raise ScoringError(str(error)) from None
    if not files:
        raise ScoringError(f"the features manifest of {dataset} ds={ds} lists no files")
    return files, manifest_bytes


def _open_parquet(uri: str):
    import pyarrow.parquet as pq

    from include.storage import storage_for

    if uri.startswith("file://"):
        return pq.ParquetFile(uri[len("file://") :])
    return pq.ParquetFile(io.BytesIO(storage_for(uri).read_bytes(uri)))


def prepare_scoring_input(
    settings: Settings,
    dataset: str,
    ds: str,
    model: Mapping[str, Any],
    *,
    rows_per_file: int = INPUT_ROWS_PER_FILE,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, Any]:
    """Write the features rows of ``ds`` as the transform's input; returns its URI and counts.

    Lines are ``<id columns…>,<features in model order…>`` without a header (each mini-batch of
    a ``SplitType=Line`` job is a request of its own; only the first would get a header), in
    ``part-NNNNN.csv`` files of ``rows_per_file`` rows under
    ``predictions/<dataset>/input/ds=D/<digest>/``. The digest covers the features manifest, the
    model's columns and the file size, so the same features and model give the same folder and
    bytes, and changed ones never mix with stale files.

    :param model: :func:`champion_model`'s facts (features and id columns).
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from include.storage import storage_for

    files, manifest_bytes = _features_files(settings, dataset, ds)
    columns = [*model["id_columns"], *model["features"]]
    # Everything that decides the files' names and bytes: a folder never mixes two layouts.
    layout = json.dumps({"columns": columns, "rows_per_file": rows_per_file}).encode()
    digest = hashlib.sha256(manifest_bytes + layout).hexdigest()[:16]
    input_uri = f"{predictions_root(settings, dataset)}/input/ds={ds}/{digest}"
    storage = storage_for(input_uri)
    options = pa_csv.WriteOptions(include_header=False)
    rows = 0
    written: list[str] = []
    buffer = io.BytesIO()
    in_file = 0

    def flush() -> None:
        nonlocal buffer, in_file
        if in_file:
            uri = f"{input_uri}/part-{len(written):05d}.csv"
            storage.write_bytes(uri, buffer.getvalue())
            written.append(uri)
        buffer, in_file = io.BytesIO(), 0

    for uri in files:
        parquet = _open_parquet(uri)
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        if missing:
            raise ScoringError(
                f"{uri} lacks columns the model {model['version']} needs: {missing} (the model "
                "was trained on other features; retrain it or rebuild the features)"
            )
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
            start = 0
            while start < batch.num_rows:
                take = min(batch.num_rows - start, rows_per_file - in_file)
                pa_csv.write_csv(pa.Table.from_batches([batch.slice(start, take)]), buffer, options)
                in_file += take
                rows += take
                start += take
                if in_file == rows_per_file:
                    flush()
    flush()
    if rows == 0:
        raise ScoringError(f"the features partition of {ds} has no rows to score")
    log.info("scoring input of %s: %d rows in %d files under %s", ds, rows, len(written), input_uri)
    return {"input_uri": input_uri, "rows": rows, "files": len(written)}


# --- 2. the predictions partition --------------------------------------------------------------


def commit_predictions(
    settings: Settings,
    dataset: str,
    ds: str,
    *,
    output_uri: str,
    model: Mapping[str, Any],
    expected_rows: int | None = None,
    rows_per_file: int = PREDICTIONS_ROWS_PER_FILE,
) -> dict[str, Any]:
    """Turn the transform's ``.out`` lines (``ids…,score``) into ``predictions/<dataset>/ds=D/``.

    Streams the output files through pyarrow's CSV reader into parquet (ids as strings, the
    score as float64, the model version as a column) and commits the partition with its
    manifest (see the module docstring). Returns the manifest's URI and facts.

    :param output_uri: the transform job's ``S3OutputPath``.
    :param expected_rows: the input's rows; fewer or more predictions fail the step.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from include.storage import storage_for

    outputs = [u for u in _list(output_uri.rstrip("/")) if u.endswith(".out")]
    if not outputs:
        raise ScoringError(f"the transform wrote no .out files under {output_uri}")
    id_columns = list(model["id_columns"])
    names = [*id_columns, SCORE_COLUMN]
    convert = pa_csv.ConvertOptions(
        column_types={**dict.fromkeys(id_columns, pa.string()), SCORE_COLUMN: pa.float64()},
        strings_can_be_null=False,
    )
    schema = pa.schema(
        [*((name, pa.string()) for name in id_columns), (SCORE_COLUMN, pa.float64()),
         (MODEL_VERSION_COLUMN, pa.string())]
    )  # fmt: skip
    version = str(model["version"])
    rows = 0
    parts: list[tuple[str, bytes]] = []
    pending: list = []  # record batches not yet written
    pending_rows = 0
    with tempfile.TemporaryDirectory(prefix="headrace-predictions-") as tmp:
        writer = None
        in_part = 0
        path = ""

        def write(table) -> None:
            """Row groups of exactly ROW_GROUP_ROWS rows (the last one fewer), whatever the
            reader's batches: the bytes depend on the rows, not on how the .out files split."""
            nonlocal writer, in_part, path
            if writer is None:
                path = os.path.join(tmp, f"part-{len(parts):05d}.parquet")
                writer = pq.ParquetWriter(path, schema, compression="zstd")
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            in_part += table.num_rows
            if in_part >= rows_per_file:
                close_part()

        def close_part() -> None:
            nonlocal writer, in_part
            if writer is not None:
                writer.close()
                with open(path, "rb") as part:
                    parts.append((f"part-{len(parts):05d}.parquet", part.read()))
                os.unlink(path)
            writer, in_part = None, 0

        for uri in outputs:
            source = (
                uri[len("file://") :]
                if uri.startswith("file://")
                else io.BytesIO(storage_for(uri).read_bytes(uri))
            )
            try:
                reader = pa_csv.open_csv(
                    source,
                    read_options=pa_csv.ReadOptions(column_names=names, block_size=8 << 20),
                    convert_options=convert,
                )
                for batch in reader:
                    columns = [*batch.columns, pa.array([version] * batch.num_rows, pa.string())]
                    pending.append(pa.RecordBatch.from_arrays(columns, schema=schema))
                    pending_rows += batch.num_rows
                    rows += batch.num_rows
                    while pending_rows >= ROW_GROUP_ROWS:
                        table = pa.Table.from_batches(pending, schema=schema)
                        write(table.slice(0, ROW_GROUP_ROWS).combine_chunks())
                        rest = table.slice(ROW_GROUP_ROWS)
                        pending, pending_rows = rest.to_batches(), rest.num_rows
            except pa.ArrowInvalid as error:
                raise ScoringError(f"{uri}: not lines of {', '.join(names)}: {error}") from None
        if pending_rows:
            write(pa.Table.from_batches(pending, schema=schema).combine_chunks())
        close_part()
    if expected_rows is not None and rows != expected_rows:
        raise ScoringError(
            f"the transform under {output_uri} wrote {rows} predictions for {expected_rows} "
            "input rows: a record was lost or duplicated"
        )
    digest = hashlib.sha256(b"".join(data for _, data in parts)).hexdigest()[:16]
    partition = predictions_partition_uri(settings, dataset, ds)
    storage = storage_for(partition)
    files = []
    for name, data in parts:
        storage.write_bytes(f"{partition}/{digest}/{name}", data)
        files.append({"path": f"{digest}/{name}", "bytes": len(data)})
    manifest = {
        "dataset": dataset,
        "ds": ds,
        "model_version": str(model["version"]),
        "model_uri": model["model_uri"],
        "rows": rows,
        "columns": [*names, MODEL_VERSION_COLUMN],
        "files": files,
    }
    manifest_uri = f"{partition}/{MANIFEST_NAME}"
    # Written last: the commit.
    storage.write_bytes(manifest_uri, _json_bytes(manifest))
    log.info(
        "committed %d predictions of %s by model %s: %s", rows, ds, model["version"], partition
    )
    return {"ds": ds, "model_version": str(model["version"]), "rows": rows,
            "manifest_uri": manifest_uri}  # fmt: skip


def read_predictions(
    settings: Settings, dataset: str, ds: str, columns: Sequence[str] | None = None
):
    """``(manifest, DataFrame)`` of a committed predictions partition."""
    import pyarrow as pa

    from include.storage import storage_for

    partition = predictions_partition_uri(settings, dataset, ds)
    manifest_uri = f"{partition}/{MANIFEST_NAME}"
    storage = storage_for(manifest_uri)
    if not storage.exists(manifest_uri):
        raise ScoringError(f"{manifest_uri} does not exist: day {ds} was never scored")
    manifest = json.loads(storage.read_bytes(manifest_uri))
    tables = [
        _open_parquet(f"{partition}/{item['path']}").read(columns=columns)
        for item in manifest["files"]
    ]
    return manifest, pa.concat_tables(tables).to_pandas()


# --- 3. the drift check ------------------------------------------------------------------------


def drift_job_plan(settings: Settings, dataset: str, ds: str, registry=None) -> dict[str, Any]:
    """Write the drift check's plan for day ``ds``; returns the processing job's inputs and facts.

    The check compares the day's curated rows, with the scores of the model version that scored
    them, against that version's baseline. Reads only manifests, the registry and the monitoring
    config; the job (:mod:`include.monitoring.job`, run by ``training/monitor.py drift``) reads the
    data. Writes, content-addressed under the day's monitoring folder, ``job/<digest>/plan/``
    and the curated and predictions channel manifests (exactly the committed files, in order).

    Returns ``{ds, model_version, inputs, manifest_inputs, outputs}``: the last three are the
    processing operator's arguments.
    """
    from dataclasses import replace

    from include.dq.gate import curated_partition_uri, manifest_file_uris, read_manifest
    from include.ingestion import DATASETS_DIR
    from include.monitoring.job import (
        BASELINE_INPUT,
        CURATED_INPUT,
        MONITORING_OUTPUT,
        PREDICTIONS_INPUT,
        drift_plan,
    )
    from include.monitoring.thresholds import load_monitoring_config
    from include.registry import registry_for
    from include.sagemaker_requests import write_processing_inputs
    from include.storage import storage_for
    from spark_jobs.dataset_spec import load_spec

    spec = load_spec(DATASETS_DIR / f"{dataset}.yaml")
    config_path = DATASETS_DIR / f"{dataset}.monitoring.yaml"
    # The job reports the file by its name; the worker's path means nothing there.
    config = replace(load_monitoring_config(config_path), source=config_path.name)
    key = spec.features.split_key

    partition = predictions_partition_uri(settings, dataset, ds)
    manifest_uri = f"{partition}/{MANIFEST_NAME}"
    storage = storage_for(manifest_uri)
    if not storage.exists(manifest_uri):
        raise ScoringError(f"{manifest_uri} does not exist: day {ds} was never scored")
    manifest = json.loads(storage.read_bytes(manifest_uri))
    if key not in manifest["columns"]:
        raise ScoringError(f"the predictions of {ds} lack the key column {key!r}")
    model_version = manifest["model_version"]
    version = (registry or registry_for(settings)).get_version(dataset, model_version)
    if not version.baseline_uri:
        raise ScoringError(f"{dataset} model version {model_version} has no monitoring baseline")

    curated = curated_partition_uri(settings.lake_root, dataset, ds)
    curated_files = manifest_file_uris(read_manifest(curated), f"{curated}/{MANIFEST_NAME}")
    outside = [uri for uri in curated_files if not uri.startswith(f"{curated}/")]
    if outside:
        raise ScoringError(f"the curated manifest of {ds} lists files outside {curated}: {outside}")
    curated_keys = [uri[len(curated) + 1 :] for uri in curated_files]
    predictions_keys = [item["path"] for item in manifest["files"]]
    plan = drift_plan(
        dataset=dataset,
        ds=ds,
        model_version=model_version,
        key=key,
        score_column=SCORE_COLUMN,
        config=config,
        metadata={"dataset": dataset, "ds": ds, "model_version": model_version},
        curated_files=curated_keys,
        predictions_files=predictions_keys,
    )
    inputs, manifest_inputs = write_processing_inputs(
        f"{settings.zone_uri('monitoring')}/{dataset}/jobs/drift/ds={ds}",
        plan,
        {CURATED_INPUT: (curated, curated_keys), PREDICTIONS_INPUT: (partition, predictions_keys)},
    )
    return {
        "ds": ds,
        "model_version": model_version,
        "inputs": {**inputs, BASELINE_INPUT: version.baseline_uri},
        "manifest_inputs": manifest_inputs,
        "outputs": {MONITORING_OUTPUT: monitoring_uri(settings, dataset, model_version, ds)},
    }


def drift_check_result(settings: Settings, dataset: str, plan: Mapping[str, Any]) -> dict[str, Any]:
    """After the drift job: its report rendered as the HTML page under
    ``reports/<dataset>/drift/ds=<D>/``, the one-line verdict logged, and small facts for XCom:
    ``{dataset, ds, model_version, drifted, drifted_features, verdict, uris}``.

    Reads only the job's ``drift_report.json`` and ``statistics.json`` (a few KB a column).
    """
    from include.monitoring.drift import DriftReport
    from include.monitoring.job import (
        BATCH_STATISTICS_FILE,
        DRIFT_REPORT_FILE,
        MONITORING_OUTPUT,
        VIOLATIONS_FILE,
    )
    from include.monitoring.report import write_drift_html
    from include.storage import storage_for

    ds = plan["ds"]
    root = plan["outputs"][MONITORING_OUTPUT].rstrip("/")
    uris = {
        "constraint_violations": f"{root}/{VIOLATIONS_FILE}",
        "statistics": f"{root}/{BATCH_STATISTICS_FILE}",
        "drift_report": f"{root}/{DRIFT_REPORT_FILE}",
    }
    storage = storage_for(root)
    missing = [uri for uri in uris.values() if not storage.exists(uri)]
    if missing:
        raise ScoringError(f"the drift job of {dataset} ds={ds} left no {missing}")
    report = DriftReport.from_dict(
        json.loads(storage.read_bytes(uris["drift_report"])),
        json.loads(storage.read_bytes(uris["statistics"])),
    )
    uris["html"] = write_drift_html(report, drift_report_uri(settings, dataset, ds))
    log.info("drift %s %s model %s: %s", dataset, ds, plan["model_version"], report.verdict)
    return {
        "dataset": dataset,
        "ds": ds,
        "model_version": plan["model_version"],
        "drifted": report.drifted,
        "drifted_features": list(report.features_over_threshold),
        "verdict": report.verdict,
        "uris": uris,
    }


def drift_event_extra(result: Mapping[str, Any]) -> dict[str, Any]:
    """The drift Asset event's ``extra``: what the retraining run needs to know."""
    return {
        "ds": result["ds"],
        "model_version": result["model_version"],
        "drifted_features": list(result["drifted_features"]),
    }


# --- 4. the alert ------------------------------------------------------------------------------


def raise_drift_alert(
    settings: Settings, result: Mapping[str, Any], *, topic_arn: str | None = None
) -> dict[str, Any]:
    """Tell people that ``result`` (a :func:`drift_check_result`) drifted.

    The alert is written as JSON under ``monitoring/<dataset>/alerts/ds=<D>.json`` on both
    targets (an audit trail); on aws it is also published to the SNS topic ``topic_arn`` (a
    warning is logged when none is configured); locally it is logged as a warning line
    (:func:`include.alerts.send_alert`, the path every alert takes).
    """
    from include.alerts import send_alert

    dataset, ds = result["dataset"], result["ds"]
    alert = {**drift_event_extra(result), "dataset": dataset, "verdict": result["verdict"],
             "report": result.get("uris", {}).get("html")}  # fmt: skip
    return send_alert(
        settings,
        uri=alerts_uri(settings, dataset, ds),
        subject=f"headrace: {dataset} drift on {ds}",
        body=alert,
        summary=result["verdict"],
        topic_arn=topic_arn,
    )
