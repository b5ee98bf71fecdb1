"""The local SageMaker runtime honours the training and tuning request bodies the builders make.

The entry point here is a small fixture trainer written by the tests (it reads the SM_*
environment, prints metric lines in the training contract's format and writes a model), so the
runtime's own behaviour is what is checked: layout, environment, metrics, packaging, stopping,
re-attaching and the tuning search. One test runs a tiny real tuning job through training/train.py.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
import os
import signal
import statistics
import tarfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from include import local_sagemaker as runtime
from include import sagemaker_requests as requests
from include.config import load_settings
from include.local_state import process_matches

# Slow (runs real local training and tuning jobs): left out of `make test-fast`.
pytestmark = pytest.mark.slow

FIXTURE_TRAINER = r'''
"""A fixture trainer for the local runtime's tests: SM_* in, contract metric lines out."""
import argparse, json, math, os, signal, sys, time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--learning-rate", type=float, default=0.01)
parser.add_argument("--epoch-seconds", type=float, default=0.0)
parser.add_argument("--fail", default="false")
parser.add_argument("--marker", required=True)
args = parser.parse_args()

marker = Path(args.marker)
model_dir = Path(os.environ["SM_MODEL_DIR"])
job = os.environ["TRAINING_JOB_NAME"]
with open(marker / "invocations.txt", "a") as log:
    log.write(f"{job} {os.getpid()} start {time.time()}\n")

def on_sigterm(signum, frame):
    # What a real trainer does in SageMaker's grace period: save what it has.
    (model_dir / "stopped.txt").write_text("stopped early\n")
    print("caught SIGTERM", flush=True)
    sys.exit(143)

signal.signal(signal.SIGTERM, on_sigterm)

seen = {k: v for k, v in os.environ.items() if k.startswith("SM_")}
seen.update({k: os.environ.get(k) for k in ("HEADRACE_CHECKPOINT_DIR", "PYTHONPATH", "OMP_NUM_THREADS")})
seen["argv"] = sys.argv[1:]
seen["cwd"] = os.getcwd()
seen["channel_files"] = {
    name: sorted(p.relative_to(os.environ[f"SM_CHANNEL_{name.upper()}"]).as_posix()
                 for p in Path(os.environ[f"SM_CHANNEL_{name.upper()}"]).rglob("*.parquet"))
    for name in json.loads(os.environ["SM_CHANNELS"])
}
Path(os.environ["SM_OUTPUT_DATA_DIR"], "env.json").write_text(json.dumps(seen))

checkpoints = Path(os.environ["HEADRACE_CHECKPOINT_DIR"])
resumed = (checkpoints / "last_epoch.txt").exists()
print(f"resumed={resumed}", flush=True)

# The objective peaks at learning-rate 10**-2.5, so a search has something to find.
score = 0.9 - 0.1 * abs(math.log10(args.learning_rate) + 2.5)
for epoch in range(1, args.epochs + 1):
    auc = score  # every epoch the same: the early stopping test's running averages are the scores
    print(f"epoch={epoch} train:loss={1 - auc:.6f} validation:loss={1.1 - auc:.6f} "
          f"validation:auc={auc:.6f} validation:logloss={1.1 - auc:.6f}", flush=True)
    (checkpoints / "last_epoch.txt").write_text(str(epoch))
    time.sleep(args.epoch_seconds)

(model_dir / "model.pt").write_bytes(b"weights")
(model_dir / "model_config.json").write_text(json.dumps({"learning_rate": args.learning_rate}))
print(f"final validation:auc={score:.6f} test:auc={score - 0.01:.6f} test:logloss=0.41 test:f1=0.55")
with open(marker / "invocations.txt", "a") as log:
    log.write(f"{job} {os.getpid()} end {time.time()}\n")
if args.fail == "true":
    print("Traceback: the fixture was told to fail", file=sys.stderr)
    sys.exit(3)
'''

POLL = 0.1


def commit_features_manifest(features: Path) -> list[str]:
    """The features job's ``_manifest.json`` listing every parquet file now in the partition."""
    listed = sorted(path.relative_to(features).as_posix() for path in features.rglob("*.parquet"))
    manifest = {"outputs": {"uri": f"file://{features}", "files": [{"path": p} for p in listed]}}
    (features / "_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return listed


@pytest.fixture
def local(tmp_path):
    """Local settings, a small committed feature partition, the fixture trainer and a work root."""
    lake = tmp_path / "lake"
    settings = load_settings({"HEADRACE_LAKE_ROOT": lake.as_uri()})
    features = lake / "features" / "churn" / "ds=2026-01-07"
    for index, split in enumerate(requests.TRAINING_CHANNELS):
        folder = features / f"split={split}"
        folder.mkdir(parents=True)
        frame = pd.DataFrame(
            {
                "customer_id": [f"c{index}-{row}" for row in range(4)],
                "tenure_days": [1.0, 2.0, 3.0, 4.0],
                "churned": [0, 1, 0, 1],
            }
        )
        frame.to_parquet(folder / "part-00000.parquet", index=False)
    commit_features_manifest(features)
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(FIXTURE_TRAINER)
    marker = tmp_path / "marker"
    marker.mkdir()
    return {
        "settings": settings,
        "lake": settings.lake_root,
        "features": features,
        "code": code,
        "marker": marker,
        "work_root": tmp_path / "work",
    }


def build_request(local, job_name="headrace-test-train-0123456789abcdef", settings=None, **hps):
    lake = local["lake"]
    return requests.build_training_job_request(
        settings or local["settings"],
        job_name=job_name,
        hyperparameters={
            "epochs": 2,
            "learning-rate": 0.001,
            "marker": str(local["marker"]),
            **hps,
        },
        channels={
            split: f"{local['lake']}/features/churn/ds=2026-01-07/split={split}"
            for split in requests.TRAINING_CHANNELS
        },
        output_uri=f"{lake}/models/churn/training",
        checkpoint_uri=f"{lake}/models/churn/checkpoints/{job_name}",
    )


def with_training(settings, **changes):
    return dataclasses.replace(settings, training=dataclasses.replace(settings.training, **changes))


def invocations(local) -> list[list[str]]:
    path = local["marker"] / "invocations.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(path.read_bytes()))) as archive:
        return {
            member.name: archive.extractfile(member).read()
            for member in archive.getmembers()
            if member.isfile()
        }


def run(local, request, **kwargs):
    return runtime.run_training_job(
        request,
        work_root=local["work_root"],
        entry_point_dir=local["code"],
        poll_interval=POLL,
        **kwargs,
    )


def test_a_training_job_honours_the_request(local):
    request = build_request(local)
    name = request["TrainingJobName"]
    described = run(local, request)

    assert described["TrainingJobStatus"] == "Completed"
    job_dir = local["work_root"] / "training-jobs" / name
    seen = json.loads((job_dir / "output" / "data" / "env.json").read_text())

    # Channels: every split's parquet files, under input/data/<channel>.
    assert json.loads(seen["SM_CHANNELS"]) == ["test", "train", "validation"]
    for split in requests.TRAINING_CHANNELS:
        assert seen[f"SM_CHANNEL_{split.upper()}"] == str(job_dir / "input" / "data" / split)
        assert seen["channel_files"][split] == ["part-00000.parquet"]
    # Hyperparameters: flags for the entry point, decoded in SM_HPS; script mode's own are hidden.
    assert seen["argv"] == [
        "--epochs",
        "2",
        "--learning-rate",
        "0.001",
        "--marker",
        str(local["marker"]),
    ]
    assert json.loads(seen["SM_HPS"]) == {
        "epochs": 2,
        "learning-rate": 0.001,
        "marker": str(local["marker"]),
    }
    assert seen["SM_HP_LEARNING_RATE"] == "0.001"
    assert seen["SM_MODEL_DIR"] == str(job_dir / "model")
    assert seen["SM_OUTPUT_DATA_DIR"] == str(job_dir / "output" / "data")
    assert (seen["SM_CURRENT_HOST"], json.loads(seen["SM_HOSTS"])) == ("algo-1", ["algo-1"])
    assert seen["SM_NUM_GPUS"].isdigit()
    assert seen["HEADRACE_CHECKPOINT_DIR"] == str(job_dir / "checkpoints")
    # The entry point runs from its source folder and cannot import the repository's packages.
    assert seen["cwd"] == str(local["code"].resolve())
    assert seen["PYTHONPATH"] is None

    # Metrics: the final value of each definition's regex.
    metrics = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    score = 0.9 - 0.1 * abs(math.log10(0.001) + 2.5)
    assert metrics["validation:auc"] == pytest.approx(round(score, 6))
    assert metrics["train:loss"] == pytest.approx(round(1 - score, 6))  # epoch 2 of 2
    assert metrics["test:f1"] == 0.55
    assert set(metrics) == set(requests.TRAINING_METRICS)

    # The model folder is packaged where SageMaker puts it, through the lake storage.
    model_uri = f"{local['lake']}/models/churn/training/{name}/output/model.tar.gz"
    assert described["ModelArtifacts"] == {"S3ModelArtifacts": model_uri}
    members = tar_members(Path(model_uri.removeprefix("file://")))
    assert members["model.pt"] == b"weights"
    assert json.loads(members["model_config.json"]) == {"learning_rate": 0.001}
    assert "env.json" in tar_members(Path(described["OutputDataUri"].removeprefix("file://")))
    # Checkpoints are kept where CheckpointConfig.S3Uri says, beyond the job folder.
    kept = Path(request["CheckpointConfig"]["S3Uri"].removeprefix("file://"))
    assert (kept / "last_epoch.txt").read_text() == "2"


def manifest_request(local, job_name="headrace-test-manifest-train", settings=None, **hps):
    """A training request whose channels are the manifest files training_jobs writes."""
    from include.training_jobs import write_training_channels

    settings = settings or local["settings"]
    lake = local["lake"]
    return requests.build_training_job_request(
        settings,
        job_name=job_name,
        hyperparameters={"marker": str(local["marker"]), **hps},
        channels=write_training_channels(settings, "churn", "2026-01-07"),
        channel_data_type="ManifestFile",
        output_uri=f"{lake}/models/churn/training",
        checkpoint_uri=f"{lake}/models/churn/checkpoints/{job_name}",
    )


def test_a_manifest_channel_holds_exactly_the_files_the_manifest_lists(local):
    features = local["features"]
    # A second committed file, in a subfolder, and a stale file the manifest does not list.
    nested = features / "split=train" / "bucket=1"
    nested.mkdir()
    (nested / "part-00001.parquet").write_bytes(
        (features / "split=train" / "part-00000.parquet").read_bytes()
    )
    commit_features_manifest(features)
    stale = features / "split=train" / "part-00009-stale.parquet"
    stale.write_bytes(b"left by an earlier commit")

    request = manifest_request(local)
    described = run(local, request)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    job_dir = local["work_root"] / "training-jobs" / request["TrainingJobName"]
    seen = json.loads((job_dir / "output" / "data" / "env.json").read_text())

    # Each file by its key relative to the split's folder; the stale one is not there.
    assert seen["channel_files"] == {
        "train": ["bucket=1/part-00001.parquet", "part-00000.parquet"],
        "validation": ["part-00000.parquet"],
        "test": ["part-00000.parquet"],
    }
    assert seen["SM_CHANNEL_TRAIN"] == str(job_dir / "input" / "data" / "train")
    # The channel is a snapshot: the job's files outlive a re-commit that deletes the lake's.
    channel_file = job_dir / "input" / "data" / "validation" / "part-00000.parquet"
    (features / "split=validation" / "part-00000.parquet").unlink()
    assert pd.read_parquet(channel_file)["churned"].tolist() == [0, 1, 0, 1]


def test_a_manifest_naming_a_missing_file_stops_the_start_and_a_retry_recovers(local):
    features = local["features"]
    request = manifest_request(local)
    missing = features / "split=test" / "part-00000.parquet"
    missing.rename(missing.with_suffix(".moved"))

    with pytest.raises(FileNotFoundError) as raised:
        runtime.start_training_job(
            request, work_root=local["work_root"], entry_point_dir=local["code"]
        )
    assert "channel 'test': manifest file" in str(raised.value)
    assert f"entry 1 names {missing}, which does not exist" in str(raised.value)
    assert (
        runtime.find_training_job(request["TrainingJobName"], work_root=local["work_root"]) is None
    )

    # The channels linked before the failure do not stand in the way of the retry.
    missing.with_suffix(".moved").rename(missing)
    assert run(local, request)["TrainingJobStatus"] == "Completed"


def test_a_finished_job_is_returned_not_run_again(local):
    request = build_request(local)
    first = run(local, request)
    again, started = runtime.start_training_job(
        request, work_root=local["work_root"], entry_point_dir=local["code"]
    )

    assert started is False
    assert again["TrainingJobStatus"] == "Completed"
    assert again["FinalMetricDataList"] == first["FinalMetricDataList"]
    assert [line[2] for line in invocations(local)] == ["start", "end"]


def test_a_retry_reattaches_to_the_running_job(local):
    request = build_request(local, epochs=3, **{"epoch-seconds": 0.5})
    first, started = runtime.start_training_job(
        request, work_root=local["work_root"], entry_point_dir=local["code"]
    )
    second, started_again = runtime.start_training_job(
        request, work_root=local["work_root"], entry_point_dir=local["code"]
    )

    assert (started, started_again) == (True, False)
    assert second["TrainingJobStatus"] == "InProgress"
    assert second["Pid"] == first["Pid"]
    done = runtime.wait_for_training_job(
        request["TrainingJobName"], work_root=local["work_root"], poll_interval=POLL, timeout=60
    )
    assert done["TrainingJobStatus"] == "Completed"
    assert len([line for line in invocations(local) if line[2] == "start"]) == 1


def test_a_failed_job_names_its_log_tail_and_a_retry_runs_it_again(local):
    request = build_request(local, fail="true")
    with pytest.raises(runtime.LocalTrainingJobError) as raised:
        run(local, request)
    reason = raised.value.description["FailureReason"]
    assert reason.startswith("AlgorithmError: train.py exited with code 3")
    assert "Traceback: the fixture was told to fail" in reason
    assert len(reason) <= 1024
    # Metrics printed before the failure are still reported, as on SageMaker.
    assert raised.value.description["FinalMetricDataList"]

    # A retry starts afresh; the first try's files are kept, and it resumes from its checkpoint.
    with pytest.raises(runtime.LocalTrainingJobError):
        run(local, request)
    job_dir = local["work_root"] / "training-jobs" / request["TrainingJobName"]
    assert (job_dir / "history" / "1" / "output.log").exists()
    assert "resumed=True" in (job_dir / "output.log").read_text()
    assert len([line for line in invocations(local) if line[2] == "start"]) == 2


def test_max_runtime_stops_the_job_and_keeps_what_it_saved(local):
    settings = with_training(local["settings"], max_runtime_s=2, use_spot=False)
    request = build_request(local, settings=settings, epochs=60, **{"epoch-seconds": 0.5})
    started = time.monotonic()
    with pytest.raises(runtime.LocalTrainingJobError) as raised:
        run(local, request, stop_grace_s=5)
    elapsed = time.monotonic() - started
    described = raised.value.description

    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == (
        "Stopped",
        "MaxRuntimeExceeded",
    )
    assert "MaxRuntimeInSeconds=2" in described["FailureReason"]
    assert elapsed < 20
    members = tar_members(Path(described["ModelArtifacts"]["S3ModelArtifacts"][len("file://") :]))
    assert members == {"stopped.txt": b"stopped early\n"}
    assert "caught SIGTERM" in Path(described["LogPath"]).read_text()


def test_stop_training_job_ends_the_trainer_by_its_recorded_pid(local):
    request = build_request(local, epochs=600, **{"epoch-seconds": 0.5})
    description, _ = runtime.start_training_job(
        request, work_root=local["work_root"], entry_point_dir=local["code"], stop_grace_s=5
    )
    name = request["TrainingJobName"]
    deadline = time.monotonic() + 30
    while not invocations(local) and time.monotonic() < deadline:
        time.sleep(POLL)
    trainer_pid = int(invocations(local)[0][1])

    assert runtime.stop_training_job(name, work_root=local["work_root"], grace_period=5) is True
    stopped = runtime.describe_training_job(name, work_root=local["work_root"])
    assert (stopped["TrainingJobStatus"], stopped["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert not psutil.pid_exists(trainer_pid) or psutil.Process(trainer_pid).status() == (
        psutil.STATUS_ZOMBIE
    )
    assert (
        not psutil.pid_exists(description["Pid"])
        or psutil.Process(description["Pid"]).status() == psutil.STATUS_ZOMBIE
    )
    # Stopping a finished job is a no-op.
    assert runtime.stop_training_job(name, work_root=local["work_root"]) is False


def tuning_request(local, *, max_jobs=4, parallel=2, early_stopping=False):
    settings = with_training(
        local["settings"], tuning_max_jobs=max_jobs, tuning_max_parallel_jobs=parallel
    )
    training = build_request(local, settings=settings, epochs=2, **{"epoch-seconds": 0.3})
    return requests.build_tuning_job_request(
        settings,
        tuning_job_name="headrace-tune-0123456789abcdef",
        training_request=training,
        parameter_ranges={
            "ContinuousParameterRanges": [
                {
                    "Name": "learning-rate",
                    "MinValue": "0.0001",
                    "MaxValue": "0.1",
                    "ScalingType": "Logarithmic",
                }
            ],
            "IntegerParameterRanges": [{"Name": "epochs", "MinValue": "1", "MaxValue": "3"}],
        },
        early_stopping=early_stopping,
        random_seed=3,
    )


def test_a_tuning_job_runs_its_trials_two_at_a_time_and_picks_the_best(local):
    request = tuning_request(local)
    result = runtime.run_tuning_job(
        request, work_root=local["work_root"], entry_point_dir=local["code"], poll_interval=POLL
    )

    assert result["HyperParameterTuningJobStatus"] == "Completed"
    assert result["TrainingJobStatusCounters"]["Completed"] == 4
    summaries = result["TrainingJobSummaries"]
    assert [s["TrainingJobName"] for s in summaries] == [
        f"headrace-tune-0123456789abcdef-00{n}" for n in (1, 2, 3, 4)
    ]
    # Each trial's objective is what the fixture printed last for its sampled learning rate.
    for summary in summaries:
        learning_rate = float(summary["TunedHyperParameters"]["learning-rate"])
        assert 0.0001 <= learning_rate <= 0.1
        assert 1 <= int(summary["TunedHyperParameters"]["epochs"]) <= 3
        expected = round(0.9 - 0.1 * abs(math.log10(learning_rate) + 2.5), 6)
        assert summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(
            expected
        )
    values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries]
    best = result["BestTrainingJob"]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"] == {
        "Type": "Maximize",
        "MetricName": "validation:auc",
        "Value": max(values),
    }
    assert best["TrainingJobName"] == summaries[values.index(max(values))]["TrainingJobName"]
    assert best["ModelArtifacts"]["S3ModelArtifacts"].endswith(
        f"/{best['TrainingJobName']}/output/model.tar.gz"
    )

    # Never more than MaxParallelTrainingJobs trainers at once.
    events = sorted(
        (float(line[3]), 1 if line[2] == "start" else -1) for line in invocations(local)
    )
    running, peak = 0, 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    assert peak == 2
    # The trial jobs carry SageMaker's tuning hyperparameter, which the entry point never sees.
    trial_dir = local["work_root"] / "training-jobs" / best["TrainingJobName"]
    trial_request = json.loads((trial_dir / "request.json").read_text())
    assert trial_request["HyperParameters"]["_tuning_objective_metric"] == "validation:auc"
    seen = json.loads((trial_dir / "output" / "data" / "env.json").read_text())
    assert "--_tuning_objective_metric" not in seen["argv"]
    # Two trainers share the two cores instead of each taking both.
    assert seen["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))


def test_a_retried_tuning_job_resumes_its_study_instead_of_starting_over(local):
    request = tuning_request(local, max_jobs=3, parallel=1)
    first = runtime.run_tuning_job(
        request, work_root=local["work_root"], entry_point_dir=local["code"], poll_interval=POLL
    )
    # As if the task died after its trials finished but before it recorded the result. Once
    # the supervisor has exited: it writes status.json just before it does, and one still alive
    # would make the retry wait on it instead of resuming (seen on a loaded machine).
    job_dir = local["work_root"] / "tuning-jobs" / request["HyperParameterTuningJobName"]
    supervisor = json.loads((job_dir / "process.json").read_text())
    wait_until(lambda: not process_matches(supervisor["pid"], supervisor["create_time"]))
    (job_dir / "status.json").unlink()
    started_before = len([line for line in invocations(local) if line[2] == "start"])

    again = runtime.run_tuning_job(
        request, work_root=local["work_root"], entry_point_dir=local["code"], poll_interval=POLL
    )

    assert started_before == 3
    assert len([line for line in invocations(local) if line[2] == "start"]) == 3
    assert again["BestTrainingJob"] == first["BestTrainingJob"]
    assert again["TrainingJobStatusCounters"]["Completed"] == 3


def test_early_stopping_stops_a_trial_below_the_median_of_the_earlier_ones(local):
    request = tuning_request(local, max_jobs=5, parallel=1, early_stopping=True)
    # Slow epochs so a poor trial is caught mid-run.
    hyperparameters = request["TrainingJobDefinition"]["StaticHyperParameters"]
    hyperparameters["epoch-seconds"] = "0.4"
    ranges = request["HyperParameterTuningJobConfig"]["ParameterRanges"]
    del ranges["IntegerParameterRanges"]
    hyperparameters["epochs"] = "6"
    result = runtime.run_tuning_job(
        request, work_root=local["work_root"], entry_point_dir=local["code"], poll_interval=POLL
    )
    summaries = result["TrainingJobSummaries"]
    counters = result["TrainingJobStatusCounters"]
    assert counters["Completed"] + counters["Stopped"] == 5

    # SageMaker's rule: stopped when worse than the median of the earlier trials' running
    # averages. The fixture reports its score at every epoch, so those averages are the scores.
    def score(summary):
        return 0.9 - 0.1 * abs(
            math.log10(float(summary["TunedHyperParameters"]["learning-rate"])) + 2.5
        )

    scores = [score(summary) for summary in summaries]
    expected = [n > 0 and scores[n] < statistics.median(scores[:n]) for n in range(5)]
    assert any(expected), "the seeded search samples a poor learning rate after better ones"
    assert [bool(s.get("EarlyStopped")) for s in summaries] == expected
    for summary, stopped in zip(summaries, expected, strict=True):
        if stopped:
            assert (summary["TrainingJobStatus"], summary["ObjectiveStatus"]) == (
                "Stopped",
                "Failed",
            )
        else:
            assert summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == (
                pytest.approx(round(score(summary), 6))
            )
    best = result["BestTrainingJob"]
    assert best["TrainingJobName"] == summaries[scores.index(max(scores))]["TrainingJobName"]


def start_tuning(local, request, **kwargs):
    return runtime.start_tuning_job(
        request,
        work_root=local["work_root"],
        entry_point_dir=local["code"],
        poll_interval=POLL,
        **kwargs,
    )


def slow_tuning_request(local, *, max_jobs, parallel, epochs):
    """Trials of ``epochs`` half-second epochs each: still running when the test acts."""
    request = tuning_request(local, max_jobs=max_jobs, parallel=parallel)
    del request["HyperParameterTuningJobConfig"]["ParameterRanges"]["IntegerParameterRanges"]
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    static.update({"epochs": str(epochs), "epoch-seconds": "0.5"})
    return request


def trials_started(local) -> list[str]:
    return [line[0] for line in invocations(local) if line[2] == "start"]


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(POLL)


def test_the_search_runs_in_a_job_of_its_own_and_a_second_start_reattaches(local):
    request = tuning_request(local, max_jobs=2, parallel=1)
    name = request["HyperParameterTuningJobName"]
    first, started = start_tuning(local, request)
    second, started_again = start_tuning(local, request)

    # The caller is back while the search runs, under the job's supervisor, not in the caller.
    assert (started, started_again) == (True, False)
    assert first["HyperParameterTuningJobStatus"] == "InProgress"
    assert second["HyperParameterTuningJobStatus"] == "InProgress"
    assert second["Pid"] == first["Pid"] != os.getpid()
    job_dir = local["work_root"] / "tuning-jobs" / name
    assert json.loads((job_dir / "process.json").read_text())["pid"] == first["Pid"]
    supervisor = psutil.Process(first["Pid"])
    wait_until(lambda: supervisor.children())
    (search,) = supervisor.children()
    assert search.cmdline()[1:5] == ["-m", "include.local_sagemaker", "tune", str(job_dir)]

    done = runtime.wait_for_tuning_job(
        name, work_root=local["work_root"], poll_interval=POLL, timeout=120
    )
    assert done["HyperParameterTuningJobStatus"] == "Completed"
    assert done["TrainingJobStatusCounters"]["Completed"] == 2
    # One search: each trial was started once.
    assert trials_started(local) == [f"{name}-001", f"{name}-002"]
    # A finished tuning job is returned as it is.
    again, started_after = start_tuning(local, request)
    assert started_after is False
    assert again["BestTrainingJob"] == done["BestTrainingJob"]


def test_stopping_a_tuning_job_stops_its_running_trials(local):
    request = slow_tuning_request(local, max_jobs=4, parallel=2, epochs=600)
    name = request["HyperParameterTuningJobName"]
    start_tuning(local, request, stop_grace_s=5)
    wait_until(lambda: len(trials_started(local)) == 2)
    trainer_pids = [int(line[1]) for line in invocations(local)]

    assert runtime.stop_tuning_job(name, work_root=local["work_root"], grace_period=5) is True
    stopped = runtime.describe_tuning_job(name, work_root=local["work_root"])
    assert stopped["HyperParameterTuningJobStatus"] == "Stopped"
    trials = [f"{name}-001", f"{name}-002"]
    # Its trials were stopped (not failed, not left running), and the search recorded them so
    # before it ended; it started no other.
    for trial in trials:
        described = runtime.describe_training_job(trial, work_root=local["work_root"])
        assert described["TrainingJobStatus"] == "Stopped", described.get("FailureReason")
    assert [s["TrainingJobName"] for s in stopped["TrainingJobSummaries"]] == trials
    assert stopped["TrainingJobStatusCounters"]["Stopped"] == 2
    # Each once; the two start together, so either may log its start first (seen in CI).
    assert sorted(trials_started(local)) == trials
    for pid in trainer_pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    # Stopping it again is a no-op.
    assert runtime.stop_tuning_job(name, work_root=local["work_root"]) is False


def test_a_lost_search_restarts_and_reattaches_to_its_running_trial(local):
    request = slow_tuning_request(local, max_jobs=2, parallel=1, epochs=10)
    name = request["HyperParameterTuningJobName"]
    first, _ = start_tuning(local, request)
    wait_until(lambda: len(trials_started(local)) == 1)
    # The search is lost (its supervisor's process group killed); its trial has a group of its own.
    os.killpg(first["Pid"], signal.SIGKILL)

    def tuning_status() -> str:
        described = runtime.describe_tuning_job(name, work_root=local["work_root"])
        return described["HyperParameterTuningJobStatus"]

    wait_until(lambda: tuning_status() == "Failed")
    trial = runtime.describe_training_job(f"{name}-001", work_root=local["work_root"])
    assert trial["TrainingJobStatus"] == "InProgress"

    restarted, started = start_tuning(local, request)
    assert started is True and restarted["Pid"] != first["Pid"]
    done = runtime.wait_for_tuning_job(
        name, work_root=local["work_root"], poll_interval=POLL, timeout=120
    )
    assert done["TrainingJobStatusCounters"]["Completed"] == 2
    # The running trial was waited on, not started again.
    assert trials_started(local) == [f"{name}-001", f"{name}-002"]


def test_a_tiny_real_tuning_job_through_training_train_py(local, repo_root):
    """The real trainer on a few rows, through manifest channels: two trials, the contract's
    metrics and model files."""
    import numpy as np

    from include.training_jobs import write_training_channels

    rng = np.random.default_rng(0)
    for split, rows in (("train", 64), ("validation", 32), ("test", 32)):
        folder = local["features"] / f"split={split}"
        for old in folder.glob("*.parquet"):
            old.unlink()
        x = rng.normal(size=rows)
        pd.DataFrame(
            {
                "customer_id": [f"{split}-{row}" for row in range(rows)],
                "snapshot_date": pd.Timestamp("2026-01-07"),
                "tenure_days": x,
                "region__eu_west": (x > 0).astype(float),
                "region__us_east": (x <= 0).astype(float),
                "churned": (x + rng.normal(scale=0.5, size=rows) > 0).astype(int),
                "split": split,
            }
        ).to_parquet(folder / "part-00000.parquet", index=False)
    commit_features_manifest(local["features"])
    for split in requests.TRAINING_CHANNELS:
        # Not parquet: the trainer fails if its channel holds this file the manifest leaves out.
        stale = local["features"] / f"split={split}" / "part-00009-stale.parquet"
        stale.write_bytes(b"half-written by a killed commit")
    settings = with_training(local["settings"], tuning_max_jobs=2, tuning_max_parallel_jobs=1)
    training = requests.build_training_job_request(
        settings,
        job_name="headrace-real-train",
        hyperparameters={"epochs": 2, "batch-size": 16, "patience": 2, "hidden-width": 8},
        channels=write_training_channels(settings, "churn", "2026-01-07"),
        channel_data_type="ManifestFile",
        output_uri=f"{local['lake']}/models/churn/training",
        checkpoint_uri=f"{local['lake']}/models/churn/checkpoints/real",
    )
    request = requests.build_tuning_job_request(
        settings,
        tuning_job_name="headrace-real-tune",
        training_request=training,
        parameter_ranges={
            "ContinuousParameterRanges": [
                requests.DEFAULT_PARAMETER_RANGES["ContinuousParameterRanges"][0]
            ]
        },
        early_stopping=False,
    )
    result = runtime.run_tuning_job(
        request,
        work_root=local["work_root"],
        entry_point_dir=repo_root / "training",
        poll_interval=0.5,
    )
    assert result["HyperParameterTuningJobStatus"] == "Completed", result
    best = result["BestTrainingJob"]
    assert 0.0 <= best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] <= 1.0
    members = tar_members(Path(best["ModelArtifacts"]["S3ModelArtifacts"][len("file://") :]))
    assert {"model.pt", "model_config.json", "preprocessing.json", "evaluation.json"} <= set(
        members
    )
