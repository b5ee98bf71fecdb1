"""Channel reading and preprocessing: parquet files at any depth into float32 matrices, the
feature list from the columns, errors naming the channel, file, row and column, and the
standardization saved as JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.data import ChannelError, load_channel, parquet_files
from training.preprocessing import PreprocessingError, Standardizer

IDS = ["customer_id", "snapshot_date"]


def write(path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def small_frame(rows: int = 4, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"C{offset + i:09d}" for i in range(rows)],
            "snapshot_date": pd.Timestamp("2026-01-07").date(),
            "tenure_months": np.arange(rows, dtype=float) + offset,
            "region__eu_west": [1.0, 0.0] * (rows // 2),
            "churned": [0, 1] * (rows // 2),
        }
    )


def test_channel_reads_every_parquet_file_in_path_order(feature_channels):
    channel = load_channel("train", feature_channels["train"], label="churned", id_columns=IDS)
    frames = [pd.read_parquet(path) for path in channel.files]
    assert [p.name for p in channel.files] == ["part-00000.parquet", "part-00001.parquet"]
    expected = pd.concat(frames, ignore_index=True)
    assert channel.feature_names == [c for c in expected.columns if c not in (*IDS, "churned")]
    assert channel.features.dtype == np.float32 and channel.labels.dtype == np.float32
    np.testing.assert_array_equal(
        channel.features, expected[channel.feature_names].to_numpy(np.float32)
    )
    np.testing.assert_array_equal(channel.labels, expected["churned"].to_numpy(np.float32))
    # The hive directory names (ds=…, split=…) are not read as columns.
    assert "split" not in channel.feature_names and "ds" not in channel.feature_names


def test_parquet_files_recurses_and_skips_markers(tmp_path):
    write(tmp_path / "a" / "part-1.parquet", small_frame())
    write(tmp_path / "part-0.parquet", small_frame())
    write(tmp_path / "_temporary" / "part-9.parquet", small_frame())
    write(tmp_path / ".hidden.parquet", small_frame())
    (tmp_path / "_SUCCESS").write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in parquet_files(tmp_path)] == [
        "a/part-1.parquet",
        "part-0.parquet",
    ]


def test_split_column_is_dropped_and_other_channels_follow_train_features(tmp_path):
    write(tmp_path / "train" / "p.parquet", small_frame().assign(split="train"))
    validation = small_frame()
    write(tmp_path / "validation" / "p.parquet", validation[list(reversed(validation.columns))])
    train = load_channel("train", tmp_path / "train", label="churned", id_columns=IDS)
    assert train.feature_names == ["tenure_months", "region__eu_west"]
    other = load_channel(
        "validation",
        tmp_path / "validation",
        label="churned",
        id_columns=IDS,
        feature_names=train.feature_names,
    )
    np.testing.assert_array_equal(other.features, train.features)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda f: f.drop(columns="tenure_months"),
            "channel validation: p.parquet lacks feature columns ['tenure_months']",
        ),
        (
            lambda f: f.assign(extra=1.0),
            "channel validation: p.parquet has columns ['extra'] that are not features",
        ),
        (
            lambda f: f.assign(tenure_months=["1", "2", "x", "4"]),
            "column 'tenure_months' is string, not numeric",
        ),
        (
            lambda f: f.assign(tenure_months=[1.0, None, 3.0, 4.0]),
            "channel validation: p.parquet row 1 column 'tenure_months' is null",
        ),
        (
            lambda f: f.assign(tenure_months=[1.0, 2.0, np.inf, 4.0]),
            "row 2 column 'tenure_months' is inf, not finite",
        ),
        (lambda f: f.assign(churned=[0, 1, 2, 1]), "row 2 column 'churned' is 2.0, not 0 or 1"),
        (lambda f: f.drop(columns="churned"), "p.parquet has no label column 'churned'"),
    ],
)
def test_bad_channel_data_is_named(tmp_path, mutate, message):
    write(tmp_path / "validation" / "p.parquet", mutate(small_frame()))
    with pytest.raises(ChannelError) as error:
        load_channel(
            "validation",
            tmp_path / "validation",
            label="churned",
            id_columns=IDS,
            feature_names=["tenure_months", "region__eu_west"],
        )
    assert message in str(error.value)


def test_null_in_an_integer_column_and_empty_channels(tmp_path):
    table = pa.table({"customer_id": ["a", "b"], "sessions": pa.array([3, None], pa.int64()),
                      "churned": [0, 1]})  # fmt: skip
    (tmp_path / "train").mkdir()
    pq.write_table(table, tmp_path / "train" / "p.parquet")
    with pytest.raises(ChannelError, match="row 1 column 'sessions' is null"):
        load_channel("train", tmp_path / "train", label="churned", id_columns=IDS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ChannelError, match=r"channel test: no \*\.parquet files under"):
        load_channel("test", tmp_path / "empty", label="churned", id_columns=IDS)
    with pytest.raises(ChannelError, match=r"channel test: directory .* does not exist"):
        load_channel("test", tmp_path / "absent", label="churned", id_columns=IDS)


def test_standardizer_fits_mean_and_std_and_holds_constant_columns_at_zero(tmp_path):
    matrix = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 0.0], [5.0, 5.0, 1.0], [7.0, 5.0, 1.0]])
    standardizer = Standardizer.fit(["a", "b", "c"], matrix)
    np.testing.assert_allclose(standardizer.mean, [4.0, 5.0, 0.5])
    np.testing.assert_allclose(standardizer.scale, [np.sqrt(5.0), 1.0, 0.5])
    assert standardizer.constant_features == ["b"]
    out = standardizer.transform(matrix)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], (matrix[:, 0] - 4) / np.sqrt(5), rtol=1e-6)
    np.testing.assert_array_equal(out[:, 1], 0.0)
    # Later values of the constant column are held at its training input, the others move.
    later = matrix + np.array([1.0, 3.0, 0.0])
    np.testing.assert_array_equal(standardizer.transform(later)[:, 1], 0.0)
    np.testing.assert_allclose(
        standardizer.transform(later)[:, 0], (later[:, 0] - 4) / np.sqrt(5), atol=1e-6
    )

    standardizer.save(tmp_path)
    assert json.loads((tmp_path / "preprocessing.json").read_text())["constant_features"] == ["b"]
    loaded = Standardizer.load(tmp_path)
    assert loaded.features == ("a", "b", "c")
    np.testing.assert_array_equal(loaded.transform(later), standardizer.transform(later))
    with pytest.raises(PreprocessingError, match="expected 3 feature columns"):
        loaded.transform(matrix[:, :2])


def test_version_1_preprocessing_holds_nothing(tmp_path):
    """A model saved before constant features were held keeps scoring as it always did."""
    data = Standardizer.fit(["a", "b"], np.array([[1.0, 5.0], [3.0, 5.0]])).to_dict()
    del data["constant_features"]
    (tmp_path / "preprocessing.json").write_text(json.dumps({**data, "version": 1}))
    loaded = Standardizer.load(tmp_path)
    assert loaded.constant_features == []
    np.testing.assert_array_equal(loaded.transform(np.array([[1.0, 7.0]])), [[-1.0, 2.0]])


def test_broken_preprocessing_json_is_named(tmp_path):
    data = Standardizer.fit(["a", "b"], np.eye(2)).to_dict()
    data["scale"] = [1.0]
    (tmp_path / "preprocessing.json").write_text(json.dumps(data))
    with pytest.raises(PreprocessingError, match=r"preprocessing\.json: 'scale' must list 2"):
        Standardizer.load(tmp_path)
    data = {**Standardizer.fit(["a", "b"], np.eye(2)).to_dict(), "constant_features": ["c"]}
    (tmp_path / "preprocessing.json").write_text(json.dumps(data))
    with pytest.raises(
        PreprocessingError, match=r"'constant_features' must list names of 'features', got \['c'\]"
    ):
        Standardizer.load(tmp_path)
    del data["constant_features"]
    (tmp_path / "preprocessing.json").write_text(json.dumps(data))
    with pytest.raises(PreprocessingError, match="'constant_features' must list names"):
        Standardizer.load(tmp_path)
    with pytest.raises(PreprocessingError, match="is missing"):
        Standardizer.load(tmp_path / "nowhere")
