"""Feature standardization, fitted on the train split and saved beside the model as JSON.

A feature that is constant on the train split (``days_present_7d`` on the first day of data, a
one-hot value the train split never saw) taught the model nothing: its input was 0 at every
step, so the weights it feeds kept their random initial values. Any other value later would move
the scores through those untrained weights, so such a feature is held at 0 (its training input)
whatever it becomes; ``preprocessing.json`` names it in ``constant_features``.

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
PREPROCESSING_VERSION = 2
# Version 1 has no constant_features; its models still load and score as they always did.
READABLE_VERSIONS = (1, 2)
# A feature whose standard deviation on the train split is at most this is constant there (a
# float64 std of equal values can be a rounding error above 0).
MIN_SCALE = 1e-12


class PreprocessingError(ValueError):
    """Saved preprocessing is unusable, or an input does not fit it; the message names the part."""


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / scale`` per feature, in the model's feature order; 0 for a feature that
    was constant on the train split (``constant``, a boolean per feature)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    constant: np.ndarray

    @property
    def constant_features(self) -> list[str]:
        return [name for name, held in zip(self.features, self.constant, strict=True) if held]

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
        constant = std <= MIN_SCALE
        return cls(tuple(features), mean, np.where(constant, 1.0, std), constant)

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """The standardized float32 matrix (float32 arithmetic: training and serving agree)."""
        if matrix.ndim != 2 or matrix.shape[1] != len(self.features):
            raise PreprocessingError(
                f"expected {len(self.features)} feature columns, got a matrix of shape {matrix.shape}"
            )
        out = np.asarray(matrix, dtype=np.float32) - self.mean.astype(np.float32)
        out /= self.scale.astype(np.float32)
        out[:, self.constant] = 0.0
        return out

    def to_dict(self) -> dict:
        return {
            "version": PREPROCESSING_VERSION,
            "method": "standardize",
            "features": list(self.features),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "constant_features": self.constant_features,
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "preprocessing") -> Standardizer:
        version = data.get("version")
        if version not in READABLE_VERSIONS or data.get("method") != "standardize":
            raise PreprocessingError(
                f"{source}: expected version {' or '.join(map(str, READABLE_VERSIONS))} method "
                f"'standardize', got version {version!r} method {data.get('method')!r}"
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
        # Version 1 predates holding constant features: none is held, so its scores do not change.
        held = data.get("constant_features") if version >= 2 else []
        if not isinstance(held, list) or not all(name in features for name in held):
            raise PreprocessingError(
                f"{source}: 'constant_features' must list names of 'features', got {held!r}"
            )
        constant = np.array([name in held for name in features], dtype=bool)
        return cls(tuple(features), np.asarray(mean, dtype=np.float64), scale_array, constant)

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
