"""Checkpoints that let a killed or interrupted training job resume where it stopped.

A checkpoint is one file, ``checkpoint.pt``, in the checkpoint directory: ``/opt/ml/checkpoints``
(what SageMaker's CheckpointConfig syncs with S3 and restores before a restarted job starts), or
``HEADRACE_CHECKPOINT_DIR`` where the local runtime names another. It is written aside and then
renamed over the previous one (``os.replace``), so a job killed mid-write leaves the last complete
checkpoint. SIGTERM (what SageMaker sends on a spot interruption or a stop) only sets a flag;
the training loop checks it after each step, saves a checkpoint and exits.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
SAGEMAKER_CHECKPOINT_DIR = "/opt/ml/checkpoints"
CHECKPOINT_DIR_ENV = "HEADRACE_CHECKPOINT_DIR"


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be resumed from; the message names the file and why."""


def checkpoint_dir_from_env() -> Path:
    return Path(os.environ.get(CHECKPOINT_DIR_ENV) or SAGEMAKER_CHECKPOINT_DIR)


def save_checkpoint(directory: str | Path, state: dict) -> Path:
    """Write ``state`` atomically as ``<directory>/checkpoint.pt``; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / CHECKPOINT_FILE
    # Dot-prefixed and per process: a half-written file is never taken for a checkpoint.
    staging = directory / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
    with open(staging, "wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, final)
    # The rename is durable only once the directory entry is on disk too.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return final


def load_checkpoint(directory: str | Path) -> dict | None:
    """The saved state, or None when the directory holds no checkpoint."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        # weights_only: a checkpoint synced from S3 must not be able to run code when loaded.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} cannot be loaded: {error}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a format-{CHECKPOINT_FORMAT} headrace checkpoint")
    return state


def capture_rng_state() -> dict:
    """Every random number generator the training step can draw from (dropout uses torch's)."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": random.getstate(),
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            saved["keys"].numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached_gaussian"],
        )
    )
    random.setstate(state["python"])


class StopRequest:
    """Turns SIGTERM into a flag the training loop polls, while installed (a context manager)."""

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)):
        self.signals = signals
        self.received: str | None = None
        self._previous: dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum, _frame) -> None:
        # Only a flag: saving from inside a signal handler could interleave with a half-done step.
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
