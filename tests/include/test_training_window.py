"""Training on a window of validated days (the spec's ``training:`` block): which files each
channel lists, the window document that is the model's data version, the card's window, and the
monitoring baseline over every day of the window.

Features partitions are planted in the features job's layout (``ds=D/split=S/part-*.parquet``
and a ``_manifest.json`` listing them with rows and label rate per split); the spec is churn's
with its ``training:`` block replaced.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scoring_helpers as helpers

from include.config import DATASETS_DIR

D1, D2, D3 = "2026-01-05", "2026-01-06", "2026-01-07"
ROWS = {"train": 7, "validation": 2, "test": 3}


def write_day(lake: Path, ds: str, rows: dict[str, int] = ROWS, label: int = 1) -> None:
    """A committed features partition of ``ds``: one file per split, a manifest with ``splits``."""
    partition = lake / "features" / "churn" / f"ds={ds}"
    files = []
    for split, count in rows.items():
        folder = partition / f"split={split}"
        folder.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(count)], "churned": label})
        frame.to_parquet(folder / "part-00000.parquet", index=False)
        files.append({"path": f"split={split}/part-00000.parquet"})
    manifest = {
        "dataset": "churn", "ds": ds, "label": "churned", "features": ["x"],
        "outputs": {"uri": partition.as_uri(), "files": files},
        "splits": {split: {"rows": count, "label_mean": float(label)}
                   for split, count in rows.items()},
    }  # fmt: skip
    (partition / "_manifest.json").write_text(json.dumps(manifest, sort_keys=True))


@pytest.fixture
def lake(tmp_path, monkeypatch):
    """Local settings over a temporary lake; ``spec(training)`` writes churn's spec with that
    ``training:`` block where the training code reads specs."""
    from include.config import load_settings

    specs = tmp_path / "specs"
    specs.mkdir()
    monkeypatch.setattr("include.ingestion.DATASETS_DIR", specs)

    def spec(training: dict | None) -> None:
        raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
        raw.pop("training", None)
        if training is not None:
            raw["training"] = training
        (specs / "churn.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        (specs / "churn.monitoring.yaml").write_text(
            (DATASETS_DIR / "churn.monitoring.yaml").read_text()
        )

    lake = tmp_path / "lake"
    settings = load_settings(
        {"HEADRACE_LAKE_ROOT": lake.as_uri(), "HEADRACE_LOCAL_RUNS_DIR": str(tmp_path / "runs")}
    )
    return {"path": lake, "settings": settings, "spec": spec, "root": tmp_path}


def channel(uri: str) -> list:
    return json.loads(Path(uri.removeprefix("file://")).read_text())


def test_a_window_with_a_missing_day_trains_on_the_days_present(lake):
    from include.training_jobs import WINDOW_FILE, write_training_channels

    lake["spec"]({"window_days": 3, "split": "random"})
    write_day(lake["path"], D1)
    write_day(lake["path"], D3)  # D2 was never validated: no features partition
    channels = write_training_channels(lake["settings"], "churn", D3)

    features = f"{lake['path'].as_uri()}/features/churn/"
    for split in ("train", "validation", "test"):
        assert channel(channels[split]) == [
            {"prefix": features},
            f"ds={D1}/split={split}/part-00000.parquet",
            f"ds={D3}/split={split}/part-00000.parquet",
        ]
    folder = channels["train"].rsplit("/", 1)[0]
    assert folder.startswith(f"{lake['path'].as_uri()}/models/churn/input/ds={D3}/")
    window = json.loads(Path(f"{folder}/{WINDOW_FILE}".removeprefix("file://")).read_text())
    assert window["window"]["days_asked"] == [D1, D2, D3]
    assert window["window"]["days_used"] == [D1, D3]
    assert window["window"]["days_missing"] == [D2]
    assert [m["uri"] for m in window["manifests"]] == [
        f"{features}ds={day}/_manifest.json" for day in (D1, D3)
    ]
    # Rows per channel summed over the two days.
    assert {name: split["rows"] for name, split in window["splits"].items()} == {
        "train": 14, "validation": 4, "test": 6,
    }  # fmt: skip


def test_a_one_day_window_keeps_the_one_partition_layout(lake):
    from include.training_jobs import write_training_channels

    lake["spec"](None)
    write_day(lake["path"], D2)
    write_day(lake["path"], D3)
    channels = write_training_channels(lake["settings"], "churn", D3)
    partition = f"{lake['path'].as_uri()}/features/churn/ds={D3}"
    assert channel(channels["test"]) == [
        {"prefix": f"{partition}/split=test/"},
        "part-00000.parquet",
    ]


def test_the_time_split_tests_on_the_latest_day_and_trains_on_the_earlier(lake):
    from include.training_jobs import write_training_channels

    lake["spec"]({"window_days": 3, "split": "time"})
    for day in (D1, D2, D3):
        write_day(lake["path"], day)
    channels = write_training_channels(lake["settings"], "churn", D3)
    keys = {name: channel(uri)[1:] for name, uri in channels.items()}
    assert keys["train"] == [
        f"ds={day}/split={split}/part-00000.parquet"
        for day in (D1, D2) for split in ("test", "train", "validation")
    ]  # fmt: skip
    assert keys["validation"] == [f"ds={D3}/split=validation/part-00000.parquet"]
    assert keys["test"] == [f"ds={D3}/split=test/part-00000.parquet"]


def test_a_time_split_without_an_earlier_day_is_refused(lake):
    from include.training_jobs import write_training_channels

    lake["spec"]({"window_days": 3, "split": "time"})
    write_day(lake["path"], D3)
    with pytest.raises(ValueError, match=r"training.split is 'time'.*no day of 2026-01-05"):
        write_training_channels(lake["settings"], "churn", D3)


def test_the_run_day_must_be_committed(lake):
    from include.training_jobs import write_training_channels

    lake["spec"]({"window_days": 3})
    write_day(lake["path"], D1)
    with pytest.raises(FileNotFoundError, match=rf"ds={D3}/_manifest\.json does not exist"):
        write_training_channels(lake["settings"], "churn", D3)


def test_the_data_version_changes_when_any_days_manifest_changes(lake):
    from include.registry import data_version
    from include.training_jobs import job_window_uri

    lake["spec"]({"window_days": 3})
    write_day(lake["path"], D1)
    write_day(lake["path"], D3)
    first = data_version(job_window_uri(lake["settings"], "churn", D3, {}))
    assert data_version(job_window_uri(lake["settings"], "churn", D3, {})) == first
    write_day(lake["path"], D1, rows={"train": 8, "validation": 2, "test": 3})  # a re-commit
    second = data_version(job_window_uri(lake["settings"], "churn", D3, {}))
    assert second != first
    write_day(lake["path"], D2)  # a late day joins the window
    third = data_version(job_window_uri(lake["settings"], "churn", D3, {}))
    assert third not in (first, second)
    # The job's own channels name its window, whatever the lake holds now.
    channels = {"train": f"{first.split('@')[0].rsplit('/', 1)[0]}/train.manifest.json"}
    assert (
        job_window_uri(lake["settings"], "churn", D3, {"channels": channels}) == first.split("@")[0]
    )


def test_the_card_states_the_window_and_the_missing_day(lake):
    from include.model_card import build_model_card, render_markdown
    from include.registry import ModelVersion
    from include.training_jobs import job_window_uri

    lake["spec"]({"window_days": 3})
    write_day(lake["path"], D1, label=0)
    write_day(lake["path"], D3, label=1)
    uri = job_window_uri(lake["settings"], "churn", D3, {})
    version = ModelVersion(
        dataset="churn", version="1", model_uri="m", approval="Approved", data_version=uri
    )
    card = build_model_card(
        version=version,
        manifest=json.loads(Path(uri.removeprefix("file://")).read_text()),
        evaluation={"metrics": {"rows": 6, "threshold": 0.5}},
    )
    data = card["training_data"]
    assert (data["window"]["days_asked"], data["window"]["days_used"]) == ([D1, D2, D3], [D1, D3])
    assert data["window"]["days_missing"] == [D2]
    assert data["rows_per_split"] == {"train": 14, "validation": 4, "test": 6}
    assert data["class_balance"]["train"] == {"positive_rate": 0.5, "positives": 7}
    assert any(f"left out: {D2}" in note for note in card["limitations"])
    assert any(f"Trained on 2 days ({D1}..{D3}" in note for note in card["limitations"])
    markdown = render_markdown(card)
    assert f"days used: {D1}, {D3}; missing: {D2}" in markdown


def test_the_baseline_covers_every_day_of_the_window(lake):
    """Two days of the same customers: the real baseline job joins each day's rows to that
    day's scores, although every customer_id is on both days."""
    from include.monitoring.baseline import load_baseline

    lake["spec"]({"window_days": 2})
    landing = helpers.generate_days(lake["root"] / "landing", seed=3, days=2, rows=400)
    scores = []
    for ds, path in landing.items():
        curated = helpers.read_landing(path)
        helpers.write_curated_partition(lake["path"] / "curated", ds, curated)
        features = helpers.feature_rows(curated)
        helpers.write_features_partition(lake["path"] / "features", ds, features)
        split = helpers._split_of(features["customer_id"])
        scores.append(features[list(helpers.ID_COLUMNS)].assign(
            split=split, score=0.25 if ds == min(landing) else 0.75
        ))  # fmt: skip
    days = sorted(landing)
    assert set(scores[0]["customer_id"]) & set(scores[1]["customer_id"])
    model_dir = lake["root"] / "job"
    (model_dir / "out").mkdir(parents=True)
    pd.concat(scores).to_parquet(model_dir / "out" / "baseline_scores.parquet", index=False)
    output = lake["path"] / "models" / "churn" / "jobs" / "w" / "output"
    helpers.package_model(model_dir / "out", output / "output.tar.gz")
    job = {"job_name": "w", "model_uri": f"file://{output / 'model.tar.gz'}"}

    baseline = load_baseline(
        helpers.write_training_baseline(lake["settings"], "churn", days[1], job)
    )
    assert baseline.item_count == 800
    reference = baseline.profile["metadata"]["score_reference"]
    held_out = sum(int((s["split"] != "train").sum()) for s in scores)
    assert (reference["rows"], reference["unscored_rows"]) == (held_out, 0)
    assert baseline.profile["metadata"]["days"] == days
    # Half the held-out scores are each day's: the mean sits between the two days' scores.
    first = int((scores[0]["split"] != "train").sum())
    mean = (0.25 * first + 0.75 * (held_out - first)) / held_out
    statistics = {f["name"]: f for f in baseline.statistics["features"]}
    assert statistics["score"]["numerical_statistics"]["mean"] == pytest.approx(mean)


def test_one_training_per_cause_the_second_event_of_a_window_finds_the_first(lake):
    """A features event trained the window of D2; the drift event of D2 asks for the same window
    with the same code and parameters: it finds that training. Another window, other parameters
    or a changed day's manifest are another cause."""
    from include.training_pipeline import previous_training, record_training, training_cause

    lake["spec"]({"window_days": 2, "split": "random"})
    write_day(lake["path"], D1)
    write_day(lake["path"], D2)
    settings = lake["settings"]
    params = {"epochs": 20, "max_trials": 4, "parallel_trials": 2, "approval_margin": 0.005}

    features_run = training_cause(settings, "churn", D2, params)
    assert previous_training(settings, features_run) is None
    record_training(
        settings, features_run, {"version": "3", "approval": "PendingManualApproval"}, "run-a"
    )

    drift_run = training_cause(settings, "churn", D2, {**params, "approval_margin": 0.01})
    assert drift_run["key"] == features_run["key"]
    earlier = previous_training(settings, drift_run)
    assert (earlier["run_id"], earlier["version"], earlier["reproduced"]) == ("run-a", "3", False)
    assert earlier["data_version"] == features_run["data_version"]
    # The window document the tuning job's channels sit beside, pinned by its digest.
    assert f"/models/churn/input/ds={D2}/" in earlier["data_version"]
    folder, sha = earlier["data_version"].rsplit("/window.json@sha256:", 1)
    assert folder.endswith(f"/{sha[:16]}")  # a window's inputs folder is its document's digest

    more_epochs = training_cause(settings, "churn", D2, {**params, "epochs": 30})
    assert previous_training(settings, more_epochs) is None
    write_day(lake["path"], D3)
    assert previous_training(settings, training_cause(settings, "churn", D3, params)) is None
    write_day(lake["path"], D1, rows={"train": 9, "validation": 2, "test": 3})  # D1 re-ingested
    changed = training_cause(settings, "churn", D2, params)
    assert changed["data_version"] != features_run["data_version"]
    assert previous_training(settings, changed) is None
