"""The serving handlers on a model trained by train.py: CSV (with and without a header) and JSON
lines round-trip to the same scores as predict_fn on the whole frame, ids are kept, and bad
requests name the record, line and column. Also loads code/inference.py from the model directory
as the SageMaker PyTorch serving container does (a top-level module)."""

from __future__ import annotations

import csv
import importlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.inference import input_fn, model_fn, output_fn, predict_fn
from training.model import predict_scores
from training.serving import InferenceInputError, _numeric_csv_matrix


@pytest.fixture(scope="module")
def served(trained_run):
    assert trained_run["code"] == 0
    return model_fn(str(trained_run["model_dir"]))


@pytest.fixture(scope="module")
def test_frame(feature_channels) -> pd.DataFrame:
    return pd.read_parquet(feature_channels["test"]).head(50).reset_index(drop=True)


@pytest.fixture(scope="module")
def expected_scores(served, test_frame) -> np.ndarray:
    """Scores computed directly: standardize with the saved preprocessing, run the network."""
    matrix = test_frame[served.features].to_numpy(dtype=np.float64)
    return predict_scores(served.model, served.standardizer.transform(matrix))


def invoke(served, body: str, content_type: str, accept: str):
    return output_fn(predict_fn(input_fn(body, content_type), served), accept)


def test_predict_fn_on_a_frame_keeps_ids_and_scores_like_the_network(
    served, test_frame, expected_scores
):
    prediction = predict_fn(test_frame, served)
    np.testing.assert_array_equal(prediction.scores, expected_scores)
    assert list(prediction.ids) == ["customer_id", "snapshot_date"]
    assert prediction.ids["customer_id"] == test_frame["customer_id"].tolist()
    assert ((expected_scores > 0) & (expected_scores < 1)).all()


def test_csv_with_header_round_trips_to_the_frame_scores(served, test_frame, expected_scores):
    # Columns shuffled and the label included: a header names them, extras are ignored.
    shuffled = test_frame[list(reversed(test_frame.columns))]
    body, content_type = invoke(
        served, shuffled.to_csv(index=False), "text/csv", "text/csv;header=present"
    )
    assert content_type == "text/csv;header=present"
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["customer_id", "snapshot_date", "score"]
    assert [row[0] for row in rows[1:]] == test_frame["customer_id"].tolist()
    assert rows[1][1] == "2026-01-07"
    scores = np.array([float(row[2]) for row in rows[1:]], dtype=np.float32)
    np.testing.assert_array_equal(scores, expected_scores)


def test_headerless_csv_holds_features_in_model_order_optionally_after_the_ids(
    served, test_frame, expected_scores
):
    features_only = test_frame[served.features].to_csv(index=False, header=False)
    body, _ = invoke(served, features_only, "text/csv", "text/csv")
    np.testing.assert_array_equal(np.array(body.split(), dtype=np.float32), expected_scores)
    # That body is batch transform's: pandas' C reader takes it, to the values the csv module reads.
    matrix = _numeric_csv_matrix(input_fn(features_only, "text/csv"), served)
    np.testing.assert_array_equal(matrix, test_frame[served.features].to_numpy(dtype=np.float64))

    with_ids = test_frame[[*served.id_columns, *served.features]].to_csv(index=False, header=False)
    body, _ = invoke(served, with_ids, "text/csv", "text/csv")
    lines = body.splitlines()
    assert lines[0].startswith(f"{test_frame['customer_id'][0]},2026-01-07,")
    np.testing.assert_array_equal(
        np.array([line.split(",")[2] for line in lines], dtype=np.float32), expected_scores
    )


def test_json_lines_round_trip_with_ids(served, test_frame, expected_scores):
    body = test_frame.to_json(orient="records", lines=True, date_format="iso")
    out, content_type = invoke(
        served, body.encode(), "application/jsonlines", "application/jsonlines"
    )
    assert content_type == "application/jsonlines"
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["customer_id"] for r in records] == test_frame["customer_id"].tolist()
    np.testing.assert_array_equal(
        np.array([r["score"] for r in records], dtype=np.float32), expected_scores
    )
    # application/json (the serving container's default accept) wraps the same records.
    out, content_type = invoke(served, body, "application/x-jsonlines", "application/json")
    assert content_type == "application/json"
    assert json.loads(out)["predictions"] == records


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("a,b\n1,2\n", "text/csv;header=present", "the input lacks feature columns ["),
        ("{FEATURES}\n{ROW}\n{ROW_BAD}\n", "text/csv", "record 2 (line 3) column 'sessions': 'many'"),
        ("{FEATURES}\n{ROW_EMPTY}\n", "text/csv", "record 1 (line 2) column 'sessions' has no value"),
        ("1,2,3\n", "text/csv", "CSV line 1 has 3 fields"),
        # Headerless bodies the C reader refuses or reads as NaN: the csv module names the cell.
        ("{ROW}\n{ROW_BAD}\n", "text/csv", "record 2 (line 2) column 'sessions': 'many'"),
        ("{ROW}\n{ROW_EMPTY}\n", "text/csv", "record 2 (line 2) column 'sessions' has no value"),
        ("{ROW}\n{ROW_NAN}\n", "text/csv", "record 2 (line 2) column 'sessions': 'nan' is not a finite"),
        # A column all true reads as 1.0 in pandas' C reader, never here.
        ("{ROW_TRUE}\n{ROW_TRUE}\n", "text/csv", "record 1 (line 1) column 'sessions': 'true' is not a finite"),
        ("{ROW}\n\n{ROW},7\n", "text/csv", "CSV line 2 has"),
        ('{"tenure_months": 1}\n', "application/jsonlines", "lacks feature columns"),
        ("{JSON}\n{JSON_MISSING}\n", "application/jsonlines", "record 2 (line 2) column 'sessions' has no value"),
        ('{"a": 1}\nnot json\n', "application/jsonlines", "line 2 is not valid JSON"),
        ("x", "application/x-npy", "content type 'application/x-npy' is not supported"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_record_line_and_column(
    served, test_frame, body, content_type, message
):
    frame = test_frame[served.features]
    row = frame.iloc[0].astype(str).tolist()
    bad = dict(zip(served.features, row, strict=True)) | {"sessions": "many"}
    empty = dict(zip(served.features, row, strict=True)) | {"sessions": ""}
    record = {name: float(value) for name, value in frame.iloc[0].items()}
    body = (
        body.replace("{FEATURES}", ",".join(served.features))
        .replace("{ROW}", ",".join(row))
        .replace("{ROW_BAD}", ",".join(bad.values()))
        .replace("{ROW_EMPTY}", ",".join(empty.values()))
        .replace("{ROW_NAN}", ",".join((empty | {"sessions": "nan"}).values()))
        .replace("{ROW_TRUE}", ",".join((empty | {"sessions": "true"}).values()))
        .replace("{JSON}", json.dumps(record))
        .replace("{JSON_MISSING}", json.dumps({k: v for k, v in record.items() if k != "sessions"}))
    )
    with pytest.raises(InferenceInputError) as error:
        predict_fn(input_fn(body, content_type), served)
    assert message in str(error.value)


def test_unsupported_accept_type_is_an_error(served, test_frame):
    prediction = predict_fn(test_frame, served)
    with pytest.raises(InferenceInputError, match="accept type 'image/png' is not supported"):
        output_fn(prediction, "image/png")


def test_code_dir_of_the_model_serves_as_a_top_level_module(
    trained_run, test_frame, expected_scores, monkeypatch
):
    """What the serving container does: code/ on sys.path, `import inference`."""
    code_dir = trained_run["model_dir"] / "code"
    monkeypatch.syspath_prepend(str(code_dir))
    # A fresh interpreter, as the container's: no handlers loaded by an earlier test.
    for name in [n for n in sys.modules if n == "inference" or n.startswith("_headrace_serving")]:
        monkeypatch.delitem(sys.modules, name)
    try:
        inference = importlib.import_module("inference")
        assert inference.__file__ == str(code_dir / "inference.py")
        model = inference.model_fn(str(trained_run["model_dir"]))
        body = test_frame.to_json(orient="records", lines=True, date_format="iso")
        out, _ = inference.output_fn(
            inference.predict_fn(inference.input_fn(body, "application/jsonlines"), model),
            "application/jsonlines",
        )
        scores = np.array([json.loads(line)["score"] for line in out.splitlines()])
        np.testing.assert_array_equal(scores.astype(np.float32), expected_scores)
        # The handlers came from the copy in code/, not from the repository's package.
        assert sys.modules["_headrace_serving.serving"].__file__ == str(code_dir / "serving.py")
    finally:
        for name in [
            n for n in sys.modules if n == "inference" or n.startswith("_headrace_serving")
        ]:
            del sys.modules[name]


def test_model_fn_rejects_preprocessing_that_does_not_match_the_model(trained_run, tmp_path):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(trained_run["model_dir"], model_dir)
    preprocessing = json.loads((model_dir / "preprocessing.json").read_text())
    preprocessing["features"] = list(reversed(preprocessing["features"]))
    (model_dir / "preprocessing.json").write_text(json.dumps(preprocessing))
    with pytest.raises(ValueError, match="list different features"):
        model_fn(str(model_dir))


def test_baseline_scores_cover_every_channel_row_and_match_the_served_model(
    trained_run, feature_channels, served
):
    """output/data/baseline_scores.parquet: every row of the three channels, keyed by its ids,
    with the score the served model gives the same row (the monitoring baseline's score half)."""
    output_dir = Path(trained_run["env"]["SM_OUTPUT_DATA_DIR"])
    baseline = pd.read_parquet(output_dir / "baseline_scores.parquet")
    assert list(baseline.columns) == ["customer_id", "snapshot_date", "split", "score"]
    for split in ("train", "validation", "test"):
        frame = pd.read_parquet(feature_channels[split])
        rows = baseline[baseline["split"] == split].reset_index(drop=True)
        assert len(rows) == len(frame)
        assert rows["customer_id"].tolist() == frame["customer_id"].tolist()
        served_scores = predict_fn(frame, served).scores
        np.testing.assert_allclose(rows["score"].to_numpy(), served_scores, rtol=0, atol=1e-7)
    assert baseline["customer_id"].is_unique
