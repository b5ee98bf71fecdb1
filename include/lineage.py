"""OpenLineage: where the events go, and the lake datasets our job operators report.

Airflow's OpenLineage provider emits the events: its listener sends START / COMPLETE / FAIL for
every task and DAG run, with the tasks' asset inlets and outlets as datasets. What only our
operators know (the lake partitions a job read and wrote, and what it found) they add through
the provider's facet method ``get_openlineage_facets_on_complete``, built here from what the
job committed: the partitions' ``_manifest.json`` for Spark jobs, the gate's result, the
SageMaker request and its outcome. Datasets are named as the provider names an Airflow asset of
the same URI (``file`` + path locally, ``s3://<bucket>`` + key on AWS), so a partition and its
dataset-level asset line up in any lineage tool.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from include.config import DATASETS_DIR, Settings
from include.storage import storage_for

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    from include.dq.results import GateResult

MANIFEST_NAME = "_manifest.json"
# The producer URL of our own facets (include/lineage_facets.py; OpenLineage requires one).
PRODUCER = "https://github.com/headrace/headrace"


def events_uri(settings: Settings) -> str:
    """The lake prefix that holds the OpenLineage events, one JSON object per file."""
    return f"{settings.zone_uri('lineage')}/events"


def openlineage_transport(settings: Settings) -> dict[str, Any]:
    """The provider's ``[openlineage] transport``: its file transport, one timestamped JSON
    file per event under ``lineage/events/`` of the lake (on S3 through s3fs). On MWAA the
    option may name an HTTP lineage server instead (docs/operating-on-mwaa.md)."""
    return {"type": "file", "log_file_path": f"{events_uri(settings)}/openlineage"}


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of a lake URI, by the provider's own asset translation: ``file`` +
    path locally, ``s3://<bucket>`` + key on S3 (how the events name datasets)."""
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
    from airflow.sdk import Asset

    dataset = translate_airflow_asset(Asset(uri=uri.rstrip("/")), None)
    if dataset is None:
        raise ValueError(f"no OpenLineage dataset name for {uri!r} (not a file:// or s3:// URI)")
    return dataset.namespace, dataset.name


def input_dataset(
    uri: str,
    *,
    facets: Mapping[str, Any] | None = None,
    files: int | None = None,
    size: int | None = None,
    rows: int | None = None,
) -> InputDataset:
    """The input dataset of lake URI ``uri`` with what the job read of it."""
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.generated.input_statistics_input_dataset import (
        InputStatisticsInputDatasetFacet,
    )

    namespace, name = dataset_name(uri)
    input_facets = {}
    if files is not None or size is not None or rows is not None:
        input_facets["inputStatistics"] = InputStatisticsInputDatasetFacet(
            rowCount=rows, size=size, fileCount=files
        )
    return InputDataset(
        namespace=namespace, name=name, facets=dict(facets or {}), inputFacets=input_facets
    )


def output_dataset(
    uri: str,
    *,
    facets: Mapping[str, Any] | None = None,
    files: int | None = None,
    size: int | None = None,
    rows: int | None = None,
) -> OutputDataset:
    """The output dataset of lake URI ``uri`` with what the job wrote to it."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.generated.output_statistics_output_dataset import (
        OutputStatisticsOutputDatasetFacet,
    )

    namespace, name = dataset_name(uri)
    output_facets = {}
    if files is not None or size is not None or rows is not None:
        output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
            rowCount=rows, size=size, fileCount=files
        )
    return OutputDataset(
        namespace=namespace, name=name, facets=dict(facets or {}), outputFacets=output_facets
    )


def schema_facet(columns: Iterable[tuple[str, str | None]]):
    """The schema facet of ``[(name, type)]`` (type None where it is not known)."""
    from openlineage.client.generated.schema_dataset import (
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )

    return SchemaDatasetFacet(
        fields=[SchemaDatasetFacetFields(name=name, type=kind) for name, kind in columns]
    )


def version_facet(version: str):
    """The dataset's version: a manifest's checksum, or a model version."""
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    return DatasetVersionDatasetFacet(datasetVersion=version)


def external_job_facet(job_id: str, source: str):
    """The run facet naming the job the task ran elsewhere (a Glue run, a SageMaker job)."""
    from openlineage.client.generated.external_query_run import ExternalQueryRunFacet

    return ExternalQueryRunFacet(externalQueryId=job_id, source=source)


def _read_manifest(partition_uri: str) -> tuple[dict, str]:
    """A committed partition's manifest and its SHA-256 (the partition's version)."""
    import hashlib

    uri = f"{partition_uri.rstrip('/')}/{MANIFEST_NAME}"
    raw = storage_for(uri).read_bytes(uri)
    return json.loads(raw), hashlib.sha256(raw).hexdigest()


def _sizes(files: Iterable[Mapping[str, Any]]) -> int | None:
    sizes = [entry.get("size") for entry in files]
    return sum(sizes) if sizes and all(isinstance(s, int) for s in sizes) else None


def _curated_schema(dataset: str):
    from spark_jobs.dataset_spec import load_spec

    return schema_facet(load_spec(DATASETS_DIR / f"{dataset}.yaml").curated_columns())


def ingest_lineage(settings: Settings, dataset: str, ds: str) -> OperatorLineage:
    """One ingested day: the landing files read, the curated and quarantine partitions written
    (rows, files, the manifest's checksum as version, the curated schema)."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    curated_uri = f"{settings.zone_uri('curated')}/{dataset}/ds={ds}"
    manifest, sha256 = _read_manifest(curated_uri)
    totals, outputs = manifest["totals"], manifest["outputs"]
    version = {"version": version_facet(sha256)}
    return OperatorLineage(
        inputs=[
            input_dataset(
                manifest["landing_uri"],
                files=totals["files"],
                size=_sizes(manifest["inputs"]),
                rows=totals["rows_read"],
            )
        ],
        outputs=[
            output_dataset(
                outputs["curated"]["uri"],
                facets={**version, "schema": _curated_schema(dataset)},
                files=len(outputs["curated"]["files"]),
                rows=totals["rows_accepted"],
            ),
            output_dataset(
                outputs["quarantine"]["uri"],
                facets=version,
                files=len(outputs["quarantine"]["files"]),
                rows=totals["rows_quarantined"],
            ),
        ],
    )


def features_lineage(settings: Settings, dataset: str, ds: str) -> OperatorLineage:
    """One day's features: the curated days of the window it read (each with its manifest's
    checksum, the version ingestion wrote) and the features partition it wrote."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    features_uri = f"{settings.zone_uri('features')}/{dataset}/ds={ds}"
    manifest, sha256 = _read_manifest(features_uri)
    inputs = [
        input_dataset(
            item["uri"],
            facets={"version": version_facet(item["manifest_sha256"])},
            files=len(item["files"]),
            rows=item["rows"],
        )
        for item in manifest["inputs"]
    ]
    columns = [(manifest["key"], None), *((name, None) for name in manifest["features"])]
    rows = sum(split.get("rows", 0) for split in manifest["splits"].values())
    output = output_dataset(
        manifest["outputs"]["uri"],
        facets={"version": version_facet(sha256), "schema": schema_facet(columns)},
        files=len(manifest["outputs"]["files"]),
        rows=rows,
    )
    return OperatorLineage(inputs=inputs, outputs=[output])


# The Spark jobs whose lineage the operator reports, by job name: each reads the manifest the
# job committed, so lineage names what was written, not what was planned.
SPARK_JOB_LINEAGE = {"ingest": ingest_lineage, "features": features_lineage}


def quality_gate_lineage(
    settings: Settings, result: GateResult, result_uri: str | None
) -> OperatorLineage:
    """The gate over one curated day: the partition checked, with each rule it judged as a
    data-quality assertion (skipped rules judged nothing), and the result document written."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.generated.data_quality_assertions_dataset import (
        Assertion,
        DataQualityAssertionsDatasetFacet,
    )

    from include.dq.results import PASS, SKIPPED

    assertions = [
        Assertion(
            assertion=f"{outcome.rule} ({outcome.kind}, {outcome.severity})",
            success=outcome.status == PASS,
            column=outcome.column or None,
        )
        for outcome in result.outcomes
        if outcome.status != SKIPPED
    ]
    curated_uri = f"{settings.zone_uri('curated')}/{result.dataset}/ds={result.ds}"
    checked = input_dataset(
        curated_uri,
        facets={"dataQualityAssertions": DataQualityAssertionsDatasetFacet(assertions=assertions)},
    )
    return OperatorLineage(
        inputs=[checked], outputs=[output_dataset(result_uri)] if result_uri else []
    )


def partitions_read(uri: str, data_type: str) -> list[str]:
    """The lake partitions a SageMaker input read: for a manifest (``ManifestFile``), the
    ``ds=`` folders of the objects it lists (read from the manifest, a small JSON list); for a
    prefix, the prefix itself."""
    if data_type != "ManifestFile":
        return [uri.rstrip("/")]
    entries = json.loads(storage_for(uri).read_bytes(uri))
    prefix = entries[0]["prefix"]
    folders = set()
    for key in entries[1:]:
        parts = f"{prefix}{key}".split("/")
        # The partition is the folder up to its last ds=… segment; else the object's folder.
        cut = max((i for i, part in enumerate(parts) if part.startswith("ds=")), default=None)
        folders.add("/".join(parts[: cut + 1] if cut is not None else parts[:-1]))
    return sorted(folders)


def _s3_inputs(channels: Iterable[tuple[str, str, str]]) -> list[InputDataset]:
    """Input datasets of ``(name, uri, data_type)`` channels, the code channel left out (the
    code version is the job's own, not data)."""
    from include.sagemaker_requests import CODE_CHANNEL

    uris = {
        partition
        for name, uri, data_type in channels
        if name != CODE_CHANNEL
        for partition in partitions_read(uri, data_type)
    }
    return [input_dataset(uri) for uri in sorted(uris)]


def _training_channels(description: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (
            channel["ChannelName"],
            channel["DataSource"]["S3DataSource"]["S3Uri"],
            channel["DataSource"]["S3DataSource"]["S3DataType"],
        )
        for channel in description.get("InputDataConfig", [])
    ]


def sagemaker_job_lineage(
    job_type: str, description: Mapping[str, Any], extra_inputs: Iterable[str] = ()
) -> OperatorLineage:
    """A finished SageMaker job (or its local runtime's, which answers the same Describe shape)
    from its description: the lake data it read (and ``extra_inputs``, e.g. a transform's model
    artifact), what it wrote, and the job's name."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    if job_type == "training":
        name = description["TrainingJobName"]
        inputs = _s3_inputs(_training_channels(description))
        model_uri = description.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        outputs = [output_dataset(model_uri)] if model_uri else []
    elif job_type == "tuning":
        # What the tuning job gives downstream is its best training job's model.
        best = description["_best_description"]
        lineage = sagemaker_job_lineage("training", best)
        name = description["HyperParameterTuningJobName"]
        inputs, outputs = lineage.inputs, lineage.outputs
    elif job_type == "transform":
        name = description["TransformJobName"]
        source = description["TransformInput"]["DataSource"]["S3DataSource"]
        inputs = _s3_inputs([("data", source["S3Uri"], source["S3DataType"])])
        outputs = [output_dataset(description["TransformOutput"]["S3OutputPath"])]
    elif job_type == "processing":
        name = description["ProcessingJobName"]
        inputs = _s3_inputs(
            (item["InputName"], item["S3Input"]["S3Uri"], item["S3Input"]["S3DataType"])
            for item in description.get("ProcessingInputs", [])
            if "S3Input" in item
        )
        outputs = [
            output_dataset(item["S3Output"]["S3Uri"])
            for item in description.get("ProcessingOutputConfig", {}).get("Outputs", [])
        ]
    else:
        raise ValueError(f"no lineage for SageMaker job type {job_type!r}")
    return OperatorLineage(
        inputs=[*inputs, *(input_dataset(uri) for uri in extra_inputs)],
        outputs=outputs,
        run_facets={"externalQuery": external_job_facet(name, f"sagemaker-{job_type}")},
    )


def model_version_lineage(model_uri: str, registered: Mapping[str, Any]) -> list[OutputDataset]:
    """The model artifact a training run registered (the dataset its tuning job wrote), with
    its registry version and the test metrics of ``evaluation.json`` beside it."""
    from include.lineage_facets import ModelVersionDatasetFacet
    from include.training_pipeline import evaluation_uri_of

    evaluation_uri = evaluation_uri_of(model_uri)
    evaluation = json.loads(storage_for(evaluation_uri).read_bytes(evaluation_uri))
    metrics = {
        name: float(value)
        for name, value in evaluation.get("metrics", {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    version = str(registered["version"])
    champion = registered.get("champion_version")
    facet = ModelVersionDatasetFacet(
        version=version,
        approval=str(registered.get("approval", "")),
        championVersion=None if champion is None else str(champion),
        metrics=metrics,
        producer=PRODUCER,
    )
    facets = {"version": version_facet(version), "headrace_modelVersion": facet}
    return [output_dataset(model_uri, facets=facets)]


def drift_verdict_lineage(result: Mapping[str, Any]) -> list[OutputDataset]:
    """The drift job's output folder (the dataset its processing job wrote) with the verdict."""
    from include.lineage_facets import DriftVerdictDatasetFacet

    facet = DriftVerdictDatasetFacet(
        ds=result["ds"],
        modelVersion=str(result["model_version"]),
        drifted=bool(result["drifted"]),
        driftedFeatures=list(result["drifted_features"]),
        verdict=result["verdict"],
        producer=PRODUCER,
    )
    folder = result["uris"]["drift_report"].rsplit("/", 1)[0]
    return [output_dataset(folder, facets={"headrace_driftVerdict": facet})]


def emit_task_outputs(build: Callable[[], list[OutputDataset]]) -> None:
    """Report the outputs ``build`` names for the running TaskFlow task through the provider's
    public API (a RUNNING event of the task's run; a TaskFlow task has no facet method of its
    own). As the provider's own helper, it never fails the task: a failure to build or emit the
    event is logged as a warning."""
    import logging

    from airflow.providers.openlineage.api import emit_dataset_lineage, is_openlineage_active

    if not is_openlineage_active():
        return
    try:
        outputs = build()
    except Exception as error:  # lineage is reported, never a reason for the task to fail
        logging.getLogger(__name__).warning("Lineage of this task not reported: %s", error)
        return
    emit_dataset_lineage(outputs=outputs)


def read_events(settings: Settings) -> list[dict[str, Any]]:
    """Every OpenLineage event the file transport wrote to the lake, oldest first (the file
    names carry the time each was written)."""
    prefix = events_uri(settings)
    storage = storage_for(prefix)
    events = []
    for uri in storage.list_uris(prefix):
        if uri.endswith(".json"):
            events.extend(
                json.loads(line) for line in storage.read_bytes(uri).splitlines() if line.strip()
            )
    return events
