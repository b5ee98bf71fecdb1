"""The training loop proper: device and mixed-precision choice, batches from resident tensors,
and one epoch of optimizer steps that can start at any step.

Batches are slices of tensors built once (never a per-sample ``DataLoader``): on CPU and on a GPU
the whole standardized dataset fits on, a batch is an ``index_select`` from the resident tensor;
on a GPU it does not fit on, rows are gathered into pinned host buffers and copied asynchronously.
The row order of an epoch is a permutation drawn from a generator seeded by ``(seed, epoch)``, so a
resumed job regenerates the order and skips the steps it already took.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger("headrace.training")

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
# Share of free GPU memory the resident dataset may take; the rest is the model's and the
# optimizer's working memory.
GPU_RESIDENT_FRACTION = 0.5


@dataclass(frozen=True)
class AmpPlan:
    """What autocast does in the training step: ``dtype`` None means full float32."""

    dtype: torch.dtype | None
    grad_scaler: bool
    reason: str

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "off")


def choose_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX); elsewhere bf16 is emulated."""
    # torch's own probes are private API: fall back to the kernel's flags when they are gone.
    probes = [
        getattr(torch.cpu, name, None)
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    with contextlib.suppress(Exception):
        if any(probes):
            return any(probe() for probe in probes if probe is not None)
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(
    requested: str, *, device_type: str, cuda_bf16: bool = False, cpu_bf16: bool = False
) -> AmpPlan:
    """The autocast plan for ``--amp`` on a device (pure: the caller probes the hardware).

    CUDA: ``auto`` is bf16 where the GPU supports it (Ampere and later), else fp16 with a gradient
    scaler (fp16's narrow exponent underflows small gradients without one). CPU: ``auto`` is bf16
    only with native bf16 instructions (AVX512-BF16 or AMX), where ``bench/training.py`` measured
    it faster than float32 at the same test AUC; without them bf16 is emulated, so ``auto`` stays
    float32. fp16 autocast is a GPU feature.
    """
    if requested not in AMP_CHOICES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {requested!r}")
    if requested == "off":
        return AmpPlan(None, False, "--amp off")
    if device_type == "cuda":
        if requested == "fp16" or (requested == "auto" and not cuda_bf16):
            return AmpPlan(
                torch.float16, True, f"--amp {requested}: fp16 autocast with a gradient scaler"
            )
        if cuda_bf16:
            return AmpPlan(torch.bfloat16, False, f"--amp {requested}: the GPU supports bf16")
        return AmpPlan(
            torch.float16, True, "--amp bf16: the GPU lacks bf16, fp16 with a gradient scaler"
        )
    if requested == "bf16":
        native = "natively" if cpu_bf16 else "by emulation (slow: no AVX512-BF16/AMX)"
        return AmpPlan(torch.bfloat16, False, f"--amp bf16: bf16 autocast on CPU, {native}")
    if requested == "fp16":
        return AmpPlan(None, False, "--amp fp16: fp16 autocast needs CUDA; float32 on CPU")
    if cpu_bf16:
        return AmpPlan(
            torch.bfloat16, False, "--amp auto: the CPU has native bf16 (AVX512-BF16/AMX)"
        )
    return AmpPlan(None, False, "--amp auto: the CPU lacks native bf16, float32")


@dataclass
class TrainingTensors:
    """The standardized training rows where the step reads them from."""

    features: torch.Tensor
    labels: torch.Tensor
    device: torch.device
    # False only on CUDA when the rows stay in pinned host memory.
    resident: bool

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])


def place_training_tensors(
    features: np.ndarray, labels: np.ndarray, device: torch.device
) -> TrainingTensors:
    """Put the rows on ``device`` when they fit, else in pinned host memory (CUDA only)."""
    host_features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    host_labels = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))
    if device.type != "cuda":
        return TrainingTensors(host_features, host_labels, device, resident=True)
    needed = host_features.nbytes + host_labels.nbytes
    free, _ = torch.cuda.mem_get_info(device)
    if needed <= GPU_RESIDENT_FRACTION * free:
        log.info("dataset resident on %s (%.1f MiB)", device, needed / 2**20)
        return TrainingTensors(
            host_features.to(device), host_labels.to(device), device, resident=True
        )
    log.info(
        "dataset (%.1f MiB) exceeds %.0f%% of free GPU memory: pinned host memory, async copies",
        needed / 2**20,
        GPU_RESIDENT_FRACTION * 100,
    )
    return TrainingTensors(
        host_features.pin_memory(), host_labels.pin_memory(), device, resident=False
    )


class _PinnedBatches:
    """Gathers a batch's rows into one of two pinned buffers and copies it to the GPU without
    blocking; a buffer is refilled only after the event recorded behind its last copy."""

    def __init__(self, data: TrainingTensors, batch_size: int):
        self.data = data
        width = data.features.shape[1]
        self.features = [torch.empty((batch_size, width)).pin_memory() for _ in range(2)]
        self.labels = [torch.empty(batch_size).pin_memory() for _ in range(2)]
        self.copied: list[torch.cuda.Event | None] = [None, None]
        self.slot = 0

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slot, count = self.slot, rows.shape[0]
        self.slot = 1 - slot
        if self.copied[slot] is not None:
            self.copied[slot].synchronize()
        features = self.features[slot][:count]
        labels = self.labels[slot][:count]
        torch.index_select(self.data.features, 0, rows, out=features)
        torch.index_select(self.data.labels, 0, rows, out=labels)
        on_device = (
            features.to(self.data.device, non_blocking=True),
            labels.to(self.data.device, non_blocking=True),
        )
        event = torch.cuda.Event()
        event.record()
        self.copied[slot] = event
        return on_device


def epoch_permutation(rows: int, *, seed: int, epoch: int) -> torch.Tensor:
    """The row order of ``epoch``: the same on every run and every resume of the same seed."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return torch.randperm(rows, generator=generator)


def steps_per_epoch(rows: int, batch_size: int) -> int:
    return -(-rows // batch_size)


@dataclass
class EpochProgress:
    """Where an epoch stands: what a checkpoint saves and a resume starts from."""

    epoch: int
    step: int = 0  # optimizer steps taken in this epoch (the next batch's index)
    rows_seen: int = 0
    # Sum over the rows seen of the batch-mean training loss; during the epoch a device tensor,
    # read (a GPU sync) only when someone asks: a checkpoint or the epoch's log line.
    loss_total: torch.Tensor | float = 0.0
    stopped: bool = False  # the step callback asked to stop before the epoch's end

    @property
    def loss_sum(self) -> float:
        return float(self.loss_total)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.rows_seen if self.rows_seen else float("nan")


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TrainingTensors,
    *,
    batch_size: int,
    seed: int,
    progress: EpochProgress,
    amp: AmpPlan,
    scaler: torch.amp.GradScaler | None = None,
    after_step: Callable[[EpochProgress], bool] | None = None,
) -> EpochProgress:
    """Run the rest of ``progress.epoch``, from batch ``progress.step`` on, updating ``progress``.

    ``after_step`` is called after every optimizer step with the up-to-date progress; returning
    True stops the epoch there (``progress.stopped``), e.g. to checkpoint and exit on SIGTERM.
    """
    model.train()
    order = epoch_permutation(data.rows, seed=seed, epoch=progress.epoch)
    pinned = None if data.resident else _PinnedBatches(data, batch_size)
    if data.resident:
        order = order.to(data.device)
    device_type = data.device.type
    # The running loss stays a device tensor: reading it every step would sync a GPU each time.
    loss_total = torch.tensor(progress.loss_sum, dtype=torch.float64, device=data.device)
    progress.loss_total = loss_total
    total_steps = steps_per_epoch(data.rows, batch_size)
    for step in range(progress.step, total_steps):
        rows = order[step * batch_size : (step + 1) * batch_size]
        if pinned is None:
            features = data.features.index_select(0, rows)
            labels = data.labels.index_select(0, rows)
        else:
            features, labels = pinned.batch(rows)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=amp.dtype, enabled=amp.enabled):
            logits = model(features)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        loss_total += loss.detach().double() * rows.shape[0]
        progress.step = step + 1
        progress.rows_seen += int(rows.shape[0])
        if after_step is not None and after_step(progress):
            progress.stopped = True
            break
    return progress
