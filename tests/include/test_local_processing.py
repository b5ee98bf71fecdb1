"""The processing job kind, locally: the CreateProcessingJob body built for AWS runs its entry point
from the source tarball in the training environment, sees exactly its inputs, and its outputs
reach the lake only when it completed."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from include import local_jobs, local_processing
from include import sagemaker_requests as requests
from include.config import load_settings
from include.local_envs import training_python

ENTRY = """
import json, os, sys
from pathlib import Path

root = Path(os.environ["HEADRACE_PROCESSING_ROOT"])
inputs = root / "input"
if "--fail" in sys.argv:
    raise ValueError("curated file part-1.parquet, row 3: score is NaN")
if "--sleep" in sys.argv:
    import time
    (root / "output" / "report" / "partial.json").write_text("{}")
    time.sleep(120)
summary = {
    "arguments": sys.argv[1:],
    "python": sys.executable,
    "features": sorted(p.name for p in (inputs / "features").iterdir()),
    "curated": sorted(str(p.relative_to(inputs / "curated")) for p in (inputs / "curated").rglob("*") if p.is_file()),
}
(root / "output" / "report" / "sub").mkdir(parents=True)
(root / "output" / "report" / "summary.json").write_text(json.dumps(summary))
(root / "output" / "report" / "sub" / "note.txt").write_text("nested")
"""


@pytest.fixture
def lake(tmp_path):
    """A local lake with a features folder, three curated files and a manifest listing two."""
    root = tmp_path / "lake"
    features = root / "features" / "churn" / "ds=2026-01-07"
    features.mkdir(parents=True)
    (features / "part-0.parquet").write_bytes(b"features")
    curated = root / "curated" / "churn" / "ds=2026-01-07"
    curated.mkdir(parents=True)
    for name in ("part-0.parquet", "part-1.parquet", "stale.parquet"):
        (curated / name).write_bytes(name.encode())
    manifest = root / "models" / "churn" / "input" / "curated.manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(
        requests.channel_manifest(curated.as_uri() + "/", ["part-0.parquet", "part-1.parquet"])
    )
    package = tmp_path / "package"
    package.mkdir()
    (package / "train.py").write_text("")
    (package / "monitor.py").write_text(ENTRY)
    tarball = requests.build_source_tarball("package", repo_root=tmp_path, shared_modules=())
    digest = hashlib.sha256(tarball).hexdigest()[:16]
    source = root / "artifacts" / "training" / digest / requests.SOURCE_TARBALL
    source.parent.mkdir(parents=True)
    source.write_bytes(tarball)
    return root, source.as_uri()


def processing_request(lake, name: str, *arguments: str, max_runtime_s: int = 600) -> dict:
    root, source = lake
    settings = load_settings({"HEADRACE_LAKE_ROOT": root.as_uri()})
    return requests.build_processing_job_request(
        settings,
        job_name=name,
        entry_point="monitor.py",
        source_uri=source,
        inputs={"features": (root / "features" / "churn" / "ds=2026-01-07").as_uri()},
        manifest_inputs={
            "curated": (root / "models" / "churn" / "input" / "curated.manifest.json").as_uri()
        },
        outputs={"report": (root / "monitoring" / "churn" / "report").as_uri()},
        arguments=["--ds", "2026-01-07", *arguments],
        max_runtime_s=max_runtime_s,
    )


def test_the_entry_point_runs_in_the_training_environment_on_exactly_its_inputs(lake, tmp_path):
    work = tmp_path / "work"
    request = processing_request(lake, "headrace-churn-baseline-0123456789abcdef")

    _, started = local_processing.start_processing_job(request, work_root=work)
    assert started
    done = local_processing.wait_for_processing_job(
        "headrace-churn-baseline-0123456789abcdef", work_root=work, timeout=120
    )

    assert done["ProcessingJobStatus"] == "Completed"
    report = lake[0] / "monitoring" / "churn" / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["arguments"] == ["--ds", "2026-01-07"]
    assert summary["features"] == ["part-0.parquet"]
    # The manifest's two files, not the stale one beside them.
    assert summary["curated"] == ["part-0.parquet", "part-1.parquet"]
    assert Path(summary["python"]).parent == Path(training_python()).parent
    assert (report / "sub" / "note.txt").read_text() == "nested"
    assert done["UploadedOutputs"] == [
        {"OutputName": "report", "S3Uri": report.as_uri(), "Files": 2}
    ]
    # A retried task asking for the same job gets this one back; nothing runs again.
    again, started_again = local_processing.start_processing_job(request, work_root=work)
    assert not started_again
    assert again["ProcessingEndTime"] == done["ProcessingEndTime"]


def test_a_failing_entry_point_fails_with_its_error_and_uploads_nothing(lake, tmp_path):
    work = tmp_path / "work"
    name = "headrace-churn-drift-0123456789abcdef"
    local_processing.start_processing_job(processing_request(lake, name, "--fail"), work_root=work)
    with pytest.raises(local_jobs.LocalJobError) as failure:
        local_processing.wait_for_processing_job(name, work_root=work, timeout=120)

    description = local_processing.describe_processing_job(name, work_root=work)
    assert description["ProcessingJobStatus"] == "Failed"
    assert "score is NaN" in description["FailureReason"]
    assert "command step exited with code 1" in str(failure.value)
    assert not (lake[0] / "monitoring").exists()


def test_stop_ends_the_job_and_its_partial_outputs_stay_local(lake, tmp_path):
    work = tmp_path / "work"
    name = "headrace-churn-stop-0123456789abcdef"
    local_processing.start_processing_job(processing_request(lake, name, "--sleep"), work_root=work)
    partial = local_jobs.job_dir(work, "processing", name) / "processing/output/report/partial.json"
    deadline = time.monotonic() + 60
    while not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert partial.exists()

    assert local_processing.stop_processing_job(name, work_root=work, grace_period=2)
    description = local_processing.describe_processing_job(name, work_root=work)
    assert description["ProcessingJobStatus"] == "Stopped"
    assert not (lake[0] / "monitoring").exists()


def test_max_runtime_stops_the_job(lake, tmp_path):
    work = tmp_path / "work"
    name = "headrace-churn-slow-0123456789abcdef"
    request = processing_request(lake, name, "--sleep", max_runtime_s=2)
    local_processing.start_processing_job(request, work_root=work, stop_grace_s=1)
    with pytest.raises(local_jobs.LocalJobError, match="MaxRuntimeExceeded"):
        local_processing.wait_for_processing_job(name, work_root=work, timeout=60)
