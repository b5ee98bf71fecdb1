"""Feature standardization, fitted on the train split and saved beside the model as JSON.

numpy only: this module ships in ``model.tar.gz`` for the serving container, which need not have
pandas or pyarrow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PREPROCESSING_FILE = "preprocessing.json"
PREPROCESSING_VERSION = 1
# A feature with a smaller spread on the train split (a one-hot value train never saw) is only
# centred: dividing by ~0 would turn any later value into a huge input.
MIN_SCALE = 1e-12


class PreprocessingError(ValueError):
    """Saved preprocessing is unusable, or an input does not fit it; the message names the part."""


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / scale`` per feature, in the model's feature order."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, features: Sequence[str], matrix: np.ndarray) -> Standardizer:
        """Mean and standard deviation of each column of ``matrix`` (rows x features)."""
        if matrix.ndim != 2 or matrix.shape[1] != len(features):
            raise PreprocessingError(
                f"cannot fit {len(features)} features on a matrix of shape {matrix.shape}"
            )
        if matrix.shape[0] == 0:
            raise PreprocessingError("cannot fit preprocessing on zero rows")
        # Fitted in float64: a float32 sum over millions of rows loses digits.
        mean = matrix.mean(axis=0, dtype=np.float64)
        std = matrix.std(axis=0, dtype=np.float64)
        scale = np.where(std > MIN_SCALE, std, 1.0)
        return cls(tuple(features), mean, scale)

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """The standardized float32 matrix (float32 arithmetic: training and serving agree)."""
        if matrix.ndim != 2 or matrix.shape[1] != len(self.features):
            raise PreprocessingError(
                f"expected {len(self.features)} feature columns, got a matrix of shape {matrix.shape}"
            )
        out = np.asarray(matrix, dtype=np.float32) - self.mean.astype(np.float32)
        out /= self.scale.astype(np.float32)
        return out

    def to_dict(self) -> dict:
        return {
            "version": PREPROCESSING_VERSION,
            "method": "standardize",
            "features": list(self.features),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "preprocessing") -> Standardizer:
        if data.get("version") != PREPROCESSING_VERSION or data.get("method") != "standardize":
            raise PreprocessingError(
                f"{source}: expected version {PREPROCESSING_VERSION} method 'standardize', got "
                f"version {data.get('version')!r} method {data.get('method')!r}"
            )
        features = data.get("features")
        mean, scale = data.get("mean"), data.get("scale")
        if not isinstance(features, list) or not features:
            raise PreprocessingError(f"{source}: 'features' must be a non-empty list")
        for key, values in (("mean", mean), ("scale", scale)):
            if not isinstance(values, list) or len(values) != len(features):
                raise PreprocessingError(
                    f"{source}: '{key}' must list {len(features)} numbers, one per feature"
                )
        scale_array = np.asarray(scale, dtype=np.float64)
        if not np.all(np.isfinite(scale_array)) or np.any(scale_array <= 0):
            raise PreprocessingError(f"{source}: every 'scale' must be a positive number")
        return cls(tuple(features), np.asarray(mean, dtype=np.float64), scale_array)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / PREPROCESSING_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Standardizer:
        path = Path(directory) / PREPROCESSING_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise PreprocessingError(
                f"{path} is missing: the model directory is incomplete"
            ) from None
        except json.JSONDecodeError as error:
            raise PreprocessingError(f"{path} is not valid JSON: {error}") from None
        return cls.from_dict(data, source=str(path))
