"""The worker's steps of the scoring and monitoring DAGs: plans before each job, commits after.

No step reads a data file of a partition: each writes a small plan for a processing job (the
training image; the local processing runtime locally), and reads back the job's small facts.

- :func:`scoring_input_plan`: the features rows of day ``ds`` (every split: every customer of
  the day) as headerless CSV lines ``ids…,features…`` in the champion model's feature order,
  because batch transform reads lines, not parquet (:mod:`include.scoring_job`);
- :func:`predictions_job_plan` and :func:`commit_predictions`: the transform's ``.out`` lines as
  Parquet files (the job), then the predictions partition ``predictions/<dataset>/ds=D/`` (ids,
  score, model version) committed by its manifest (the worker);
- :func:`drift_job_plan` and :func:`drift_check_result`: before and after the drift check's
  processing job (the curated partition of ``ds`` joined with its scores against the scoring
  model's monitoring baseline, :mod:`include.monitoring.job`): its plan and inputs, then the
  HTML report and the verdict from the job's small report;
- :func:`raise_drift_alert`: an SNS message on aws, a log line locally; a JSON file in the lake
  on both.

Every job streams in chunks (pyarrow), so memory does not grow with the day's rows, and each step
is idempotent: the same inputs write the same bytes at the same keys.

Commit of a predictions partition: the job's parquet files go to a folder named after what
decides them (``ds=D/<digest>/part-*.parquet``: the scoring input's folder, itself named by the
features commit and layout, and the model version), then ``ds=D/_manifest.json`` is written
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
from collections.abc import Mapping, Sequence
from typing import Any

from include.config import Settings
from include.scoring_job import INPUT_ROWS_PER_FILE, SCORE_COLUMN, json_bytes

log = logging.getLogger("headrace.scoring")

MANIFEST_NAME = "_manifest.json"
MODEL_CONFIG_FILE = "model_config.json"


class ScoringError(ValueError):
    """A scoring or monitoring step cannot go on; the message names the file, column or setting."""


# --- where things live -------------------------------------------------------------------------


class NoChampionError(ScoringError):
    """The registry has no approved version of the dataset yet (the scoring DAG waits for one)."""


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


# --- the champion ------------------------------------------------------------------------------


def champion_model(settings: Settings, dataset: str, registry=None) -> dict[str, Any]:
    """The approved version's facts the scoring needs: version, model URI, model name, and the
    features and id columns of its ``model_config.json``."""
    from include.registry import registry_for
    from include.training_pipeline import read_model_file

    registry = registry or registry_for(settings)
    version = registry.approved_version(dataset)
    if version is None:
        raise NoChampionError(
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


def scoring_input_plan(
    settings: Settings,
    dataset: str,
    ds: str,
    model: Mapping[str, Any],
    *,
    rows_per_file: int = INPUT_ROWS_PER_FILE,
) -> dict[str, Any]:
    """The plan of the scoring-input job (:func:`include.scoring_job.run_scoring_input_job`):
    the features rows of ``ds`` as the transform's input lines. Reads only the features manifest.

    The lines go to ``predictions/<dataset>/input/ds=D/<digest>/``; the digest covers the
    features manifest, the model's columns and the file size, so the same features and model
    give the same folder and bytes, and changed ones never mix with stale files.

    :param model: :func:`champion_model`'s facts (features and id columns).
    :return: ``{input_uri, inputs, manifest_inputs, outputs}``: the last three are the
        processing operator's arguments; the job's facts go to ``outputs["facts"]``.
    """
    from include.sagemaker_requests import write_processing_inputs
    from include.scoring_job import FACTS_OUTPUT, FEATURES_INPUT, SCORING_INPUT_OUTPUT
    from include.scoring_job import scoring_input_plan as plan_bytes
    from include.training_jobs import features_partition_uri

    files, manifest_bytes = _features_files(settings, dataset, ds)
    partition = features_partition_uri(settings, dataset, ds)
    outside = [uri for uri in files if not uri.startswith(f"{partition}/")]
    if outside:
        raise ScoringError(f"the features manifest of {ds} lists files outside it: {outside}")
    keys = [uri[len(partition) + 1 :] for uri in files]
    columns = [*model["id_columns"], *model["features"]]
    # Everything that decides the files' names and bytes: a folder never mixes two layouts.
    layout = json.dumps({"columns": columns, "rows_per_file": rows_per_file}).encode()
    digest = hashlib.sha256(manifest_bytes + layout).hexdigest()[:16]
    input_uri = f"{predictions_root(settings, dataset)}/input/ds={ds}/{digest}"
    plan = plan_bytes(
        model_version=str(model["version"]),
        columns=columns,
        features_files=keys,
        rows_per_file=rows_per_file,
    )
    inputs, manifest_inputs = write_processing_inputs(
        _jobs_root(settings, dataset, "input", ds), plan, {FEATURES_INPUT: (partition, keys)}
    )
    return {
        "input_uri": input_uri,
        "inputs": inputs,
        "manifest_inputs": manifest_inputs,
        "outputs": {
            SCORING_INPUT_OUTPUT: input_uri,
            FACTS_OUTPUT: f"{inputs['plan'].rsplit('/', 1)[0]}/{FACTS_OUTPUT}",
        },
    }


def _jobs_root(settings: Settings, dataset: str, job: str, ds: str) -> str:
    """Where the plans of a scoring job of day ``ds`` go (beside, never inside, the data)."""
    return f"{predictions_root(settings, dataset)}/jobs/{job}/ds={ds}"


def job_facts(outputs: Mapping[str, str]) -> dict[str, Any]:
    """The ``facts.json`` a scoring job left in its ``facts`` output."""
    from include.scoring_job import FACTS_FILE, FACTS_OUTPUT
    from include.storage import storage_for

    uri = f"{outputs[FACTS_OUTPUT].rstrip('/')}/{FACTS_FILE}"
    storage = storage_for(uri)
    if not storage.exists(uri):
        raise ScoringError(f"{uri} does not exist: the job left no facts")
    return json.loads(storage.read_bytes(uri))


# --- 2. the predictions partition --------------------------------------------------------------


def predictions_job_plan(
    settings: Settings,
    dataset: str,
    ds: str,
    *,
    output_uri: str,
    model: Mapping[str, Any],
    scoring_input: Mapping[str, Any],
) -> dict[str, Any]:
    """The plan of the predictions job (:func:`include.scoring_job.run_predictions_job`): the
    transform's ``.out`` lines under ``output_uri`` as Parquet files in the predictions partition.

    The files go to ``predictions/<dataset>/ds=D/<digest>/``, the digest covering the scoring
    input's folder (features and layout) and the model version: a re-run of the same model on the
    same features rewrites the same bytes at the same keys, and a new model gets a new folder.

    :param scoring_input: :func:`scoring_input_plan`'s result; its job's facts give the rows the
        predictions must number.
    """
    from include.sagemaker_requests import write_processing_inputs
    from include.scoring_job import FACTS_OUTPUT, PREDICTIONS_OUTPUT, TRANSFORM_OUTPUT_INPUT
    from include.scoring_job import predictions_plan as plan_bytes

    expected_rows = int(job_facts(scoring_input["outputs"])["rows"])
    version = str(model["version"])
    plan = plan_bytes(
        model_version=version, id_columns=list(model["id_columns"]), expected_rows=expected_rows
    )
    identity = f"{scoring_input['input_uri']}\n{version}\n".encode() + plan
    folder = hashlib.sha256(identity).hexdigest()[:16]
    inputs, _ = write_processing_inputs(_jobs_root(settings, dataset, "predictions", ds), plan, {})
    return {
        "inputs": {**inputs, TRANSFORM_OUTPUT_INPUT: output_uri},
        "manifest_inputs": {},
        "outputs": {
            PREDICTIONS_OUTPUT: f"{predictions_partition_uri(settings, dataset, ds)}/{folder}",
            FACTS_OUTPUT: f"{inputs['plan'].rsplit('/', 1)[0]}/{FACTS_OUTPUT}",
        },
    }


def commit_predictions(
    settings: Settings, dataset: str, ds: str, *, model: Mapping[str, Any], plan: Mapping[str, Any]
) -> dict[str, Any]:
    """Commit the predictions job's files as the partition ``predictions/<dataset>/ds=D/``: its
    manifest, written last, names them (see the module docstring). Reads only the job's facts.
    Returns the manifest's URI and facts."""
    from include.scoring_job import PREDICTIONS_OUTPUT
    from include.storage import storage_for

    facts = job_facts(plan["outputs"])
    partition = predictions_partition_uri(settings, dataset, ds)
    folder = plan["outputs"][PREDICTIONS_OUTPUT].rstrip("/")
    if not folder.startswith(f"{partition}/"):
        raise ScoringError(f"the predictions job wrote to {folder}, outside {partition}")
    prefix = folder[len(partition) + 1 :]
    storage = storage_for(partition)
    files = []
    for item in facts["files"]:
        uri = f"{folder}/{item['name']}"
        if not storage.exists(uri):
            raise ScoringError(f"{uri} does not exist: the predictions job's upload is missing")
        files.append({"path": f"{prefix}/{item['name']}", "bytes": item["bytes"]})
    manifest = {
        "dataset": dataset,
        "ds": ds,
        "model_version": str(model["version"]),
        "model_uri": model["model_uri"],
        "rows": facts["rows"],
        "columns": facts["columns"],
        "files": files,
    }
    manifest_uri = f"{partition}/{MANIFEST_NAME}"
    # Written last: the commit.
    storage.write_bytes(manifest_uri, json_bytes(manifest))
    log.info(
        "committed %d predictions of %s by model %s: %s",
        facts["rows"], ds, model["version"], partition,
    )  # fmt: skip
    return {"ds": ds, "model_version": str(model["version"]), "rows": facts["rows"],
            "manifest_uri": manifest_uri}  # fmt: skip


def _open_parquet(uri: str):
    import pyarrow.parquet as pq

    from include.storage import storage_for

    if uri.startswith("file://"):
        return pq.ParquetFile(uri[len("file://") :])
    return pq.ParquetFile(io.BytesIO(storage_for(uri).read_bytes(uri)))


def predictions_manifest(settings: Settings, dataset: str, ds: str) -> tuple[str, dict]:
    """``(partition URI, manifest)`` of a committed predictions partition."""
    from include.storage import storage_for

    partition = predictions_partition_uri(settings, dataset, ds)
    manifest_uri = f"{partition}/{MANIFEST_NAME}"
    storage = storage_for(manifest_uri)
    if not storage.exists(manifest_uri):
        raise ScoringError(f"{manifest_uri} does not exist: day {ds} was never scored")
    return partition, json.loads(storage.read_bytes(manifest_uri))


def read_predictions(
    settings: Settings, dataset: str, ds: str, columns: Sequence[str] | None = None
):
    """``(manifest, DataFrame)`` of a committed predictions partition."""
    import pyarrow as pa

    partition, manifest = predictions_manifest(settings, dataset, ds)
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
    config; the job (:mod:`include.monitoring.job`, run by ``training/process.py drift``) reads the
    data. Writes, content-addressed under ``monitoring/<dataset>/jobs/drift/ds=<D>/<digest>/``,
    the plan and the curated and predictions channel manifests (exactly the committed files).

    Returns ``{ds, model_version, inputs, manifest_inputs, outputs}``: the last three are the
    processing operator's arguments.
    """
    from include.monitoring.job import (
        BASELINE_INPUT,
        CURATED_INPUT,
        MONITORING_OUTPUT,
        PREDICTIONS_INPUT,
        drift_plan,
    )
    from include.registry import registry_for
    from include.sagemaker_requests import write_processing_inputs
    from include.training_pipeline import monitoring_job_inputs

    spec, config, curated, curated_keys = monitoring_job_inputs(settings, dataset, ds)
    key = spec.features.split_key

    partition, manifest = predictions_manifest(settings, dataset, ds)
    if key not in manifest["columns"]:
        raise ScoringError(f"the predictions of {ds} lack the key column {key!r}")
    model_version = manifest["model_version"]
    version = (registry or registry_for(settings)).get_version(dataset, model_version)
    if not version.baseline_uri:
        raise ScoringError(f"{dataset} model version {model_version} has no monitoring baseline")

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
