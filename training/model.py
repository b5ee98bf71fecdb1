"""The churn network: an MLP over the standardized feature vector, and its saved configuration.

The features job already one-hot encodes every categorical (``region__eu_west``…), so an embedding
per categorical would be a linear layer over those one-hots: the MLP's first layer is exactly that.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODEL_FILE = "model.pt"
MODEL_CONFIG_FILE = "model_config.json"
MODEL_CONFIG_VERSION = 1
ARCHITECTURE = "mlp"
# Rows per forward pass when scoring. A batch's activations should stay in the CPU's cache: on
# this project's 2-core machine, one thread, 40,000 rows took 0.44 s in batches of 4,096 and
# 0.65 s in batches of 65,536 (a 454-wide, 4-layer network), 0.020 s and 0.038 s (128 x 2).
# The scores came out the same bit for bit. A GPU pays a few more small kernel launches.
SCORING_BATCH_ROWS = 4_096


class ModelConfigError(ValueError):
    """A saved model configuration is unusable; the message names the file and the field."""


class MaskDropout(nn.Module):
    """Dropout as ``nn.Dropout`` computes it: in training, each value is zeroed with probability
    ``p`` and the others are scaled by ``1 / (1 - p)``; in eval mode, the identity.

    Ours because torch's CPU dropout draws its mask with ``bernoulli_``, which is slow: on this
    project's 2-core machine, one thread, forward and backward through a 1,024 x 454 bf16
    activation took 6.2 ms with ``nn.Dropout`` and 2.9 ms with a uniform draw compared with
    ``p``; with ``nn.Dropout``, dropout was half of a training step of the 454-wide, 4-layer
    network (batch 1,024, bf16). The draw comes from the same torch generator, so a seed and a
    checkpointed generator state still replay the same masks.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return values
        keep = torch.rand(values.shape, device=values.device) >= self.p  # P(keep) = 1 - p
        return values * (keep.to(values.dtype) * (1.0 / (1.0 - self.p)))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class TabularMLP(nn.Module):
    """``num_layers`` x (Linear, ReLU, Dropout) of ``hidden_width`` units, then one logit."""

    def __init__(self, n_features: int, hidden_width: int, num_layers: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        width_in = n_features
        for _ in range(num_layers):
            layers += [nn.Linear(width_in, hidden_width), nn.ReLU()]
            if dropout > 0:
                layers.append(MaskDropout(dropout))
            width_in = hidden_width
        layers.append(nn.Linear(width_in, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of P(label = 1), shape ``(rows,)``."""
        return self.net(features).squeeze(-1)


def architecture_config(
    n_features: int, hidden_width: int, num_layers: int, dropout: float
) -> dict:
    return {
        "architecture": ARCHITECTURE,
        "n_features": n_features,
        "hidden_width": hidden_width,
        "num_layers": num_layers,
        "dropout": dropout,
    }


def build_model(config: dict, source: str = "model config") -> TabularMLP:
    """The (untrained) network a config describes."""
    if config.get("architecture") != ARCHITECTURE:
        raise ModelConfigError(
            f"{source}: architecture {config.get('architecture')!r} is not {ARCHITECTURE!r}"
        )
    for key in ("n_features", "hidden_width", "num_layers"):
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise ModelConfigError(f"{source}: {key!r} must be a positive integer")
    dropout = config.get("dropout")
    if not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ModelConfigError(f"{source}: 'dropout' must be a number in [0, 1)")
    return TabularMLP(
        config["n_features"], config["hidden_width"], config["num_layers"], float(dropout)
    )


def read_model_config(model_dir: str | Path) -> dict:
    path = Path(model_dir) / MODEL_CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelConfigError(f"{path} is missing: the model directory is incomplete") from None
    except json.JSONDecodeError as error:
        raise ModelConfigError(f"{path} is not valid JSON: {error}") from None
    if config.get("version") != MODEL_CONFIG_VERSION:
        raise ModelConfigError(
            f"{path}: version {config.get('version')!r}, this code reads {MODEL_CONFIG_VERSION}"
        )
    features = config.get("features")
    if not isinstance(features, list) or len(features) != config.get("n_features"):
        raise ModelConfigError(f"{path}: 'features' must list 'n_features' feature names")
    return config


def load_trained_model(model_dir: str | Path, map_location: str | torch.device = "cpu"):
    """``(model in eval mode, config)`` from a model directory written by ``train.py``."""
    config = read_model_config(model_dir)
    model = build_model(config, source=str(Path(model_dir) / MODEL_CONFIG_FILE))
    state = torch.load(Path(model_dir) / MODEL_FILE, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.eval(), config


@torch.no_grad()
def predict_scores(
    model: torch.nn.Module, features: np.ndarray, device: torch.device | str = "cpu"
) -> np.ndarray:
    """P(label = 1) per row of standardized ``features``, in float32 (training's validation
    and test scores and the served predictions are the same computation)."""
    model.eval()
    scores = []
    for start in range(0, features.shape[0], SCORING_BATCH_ROWS):
        batch = torch.from_numpy(
            np.ascontiguousarray(features[start : start + SCORING_BATCH_ROWS], dtype=np.float32)
        ).to(device, non_blocking=True)
        scores.append(torch.sigmoid(model(batch).float()).cpu().numpy())
    return np.concatenate(scores) if scores else np.empty(0, dtype=np.float32)
