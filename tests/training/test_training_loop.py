"""The training loop's parts: the autocast decision per device, the per-epoch row order, an epoch
stopped at a step and resumed from saved state (bit-identical to an unbroken epoch), atomic
checkpoints, and SIGTERM as a flag."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpointing import (
    CHECKPOINT_FILE,
    CheckpointError,
    StopRequest,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from training.loop import (
    EpochProgress,
    cpu_has_native_bf16,
    epoch_permutation,
    place_training_tensors,
    resolve_amp,
    train_epoch,
)
from training.model import architecture_config, build_model


@pytest.mark.parametrize(
    ("requested", "device", "cuda_bf16", "cpu_bf16", "dtype", "scaler"),
    [
        ("auto", "cuda", True, False, torch.bfloat16, False),
        ("auto", "cuda", False, False, torch.float16, True),  # e.g. a T4 or V100
        ("bf16", "cuda", False, False, torch.float16, True),
        ("fp16", "cuda", True, False, torch.float16, True),
        ("off", "cuda", True, False, None, False),
        ("auto", "cpu", False, True, torch.bfloat16, False),  # AVX512-BF16 / AMX
        ("auto", "cpu", False, False, None, False),
        ("bf16", "cpu", False, False, torch.bfloat16, False),  # asked for explicitly
        ("fp16", "cpu", False, True, None, False),
        ("off", "cpu", False, True, None, False),
    ],
)
def test_autocast_decision(requested, device, cuda_bf16, cpu_bf16, dtype, scaler):
    plan = resolve_amp(requested, device_type=device, cuda_bf16=cuda_bf16, cpu_bf16=cpu_bf16)
    assert (plan.dtype, plan.grad_scaler, plan.enabled) == (dtype, scaler, dtype is not None)
    assert plan.reason.startswith(f"--amp {requested}")


def test_autocast_rejects_unknown_modes():
    with pytest.raises(ValueError, match="--amp must be one of auto, bf16, fp16, off"):
        resolve_amp("int8", device_type="cpu")


def test_cpu_bf16_probe_agrees_with_the_kernel_flags():
    flags = Path("/proc/cpuinfo").read_text().split()
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    first = epoch_permutation(1000, seed=3, epoch=0)
    assert torch.equal(first, epoch_permutation(1000, seed=3, epoch=0))
    assert torch.equal(torch.sort(first).values, torch.arange(1000))
    assert not torch.equal(first, epoch_permutation(1000, seed=3, epoch=1))
    assert not torch.equal(first, epoch_permutation(1000, seed=4, epoch=0))


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(architecture_config(8, 32, 2, 0.3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, optimizer


def test_an_epoch_stopped_and_resumed_from_saved_state_matches_an_unbroken_one(tmp_path):
    generator = np.random.default_rng(1)
    features = generator.normal(size=(1000, 8)).astype(np.float32)
    labels = (features[:, 0] + generator.normal(size=1000) > 0).astype(np.float32)
    data = place_training_tensors(features, labels, torch.device("cpu"))
    plan = resolve_amp("off", device_type="cpu")
    run = {"batch_size": 64, "seed": 5, "amp": plan}

    unbroken_model, optimizer = _setup()
    unbroken = train_epoch(unbroken_model, optimizer, data, progress=EpochProgress(epoch=2), **run)
    assert (unbroken.step, unbroken.rows_seen, unbroken.stopped) == (16, 1000, False)

    model, optimizer = _setup()
    stopped = train_epoch(
        model, optimizer, data, progress=EpochProgress(epoch=2),
        after_step=lambda progress: progress.step == 7, **run,
    )  # fmt: skip
    assert (stopped.step, stopped.rows_seen, stopped.stopped) == (7, 448, True)
    save_checkpoint(
        tmp_path,
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
         "rng": capture_rng_state(), "loss_sum": stopped.loss_sum},
    )  # fmt: skip
    torch.manual_seed(999)  # the restarted process's generator is elsewhere until restored

    saved = load_checkpoint(tmp_path)
    model, optimizer = _setup(seed=123)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    restore_rng_state(saved["rng"])
    resumed = train_epoch(
        model, optimizer, data,
        progress=EpochProgress(epoch=2, step=7, rows_seen=448, loss_total=saved["loss_sum"]),
        **run,
    )  # fmt: skip
    assert (resumed.step, resumed.rows_seen) == (16, 1000)
    assert resumed.loss_sum == unbroken.loss_sum
    for name, tensor in unbroken_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_bf16_autocast_on_cpu_trains():
    generator = np.random.default_rng(2)
    features = generator.normal(size=(2048, 8)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(np.float32)
    data = place_training_tensors(features, labels, torch.device("cpu"))
    plan = resolve_amp("bf16", device_type="cpu")
    model, optimizer = _setup()
    losses = [
        train_epoch(
            model, optimizer, data, batch_size=256, seed=0, amp=plan,
            progress=EpochProgress(epoch=epoch),
        ).mean_loss
        for epoch in range(3)
    ]  # fmt: skip
    assert losses[-1] < 0.5 * losses[0]


def test_checkpoint_is_replaced_atomically_and_garbage_is_named(tmp_path):
    save_checkpoint(tmp_path, {"value": torch.tensor([1.0])})
    save_checkpoint(tmp_path, {"value": torch.tensor([2.0])})
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]
    assert torch.equal(load_checkpoint(tmp_path)["value"], torch.tensor([2.0]))
    assert load_checkpoint(tmp_path / "none") is None
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"{tmp_path / CHECKPOINT_FILE} cannot be loaded"):
        load_checkpoint(tmp_path)


def test_rng_state_round_trips_torch_numpy_and_python():
    import random

    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    state = capture_rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())  # noqa: S311
    torch.manual_seed(2)
    np.random.seed(2)
    random.seed(2)
    restore_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())  # noqa: S311
    assert torch.equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_sigterm_only_sets_a_flag_while_installed():
    previous = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.received == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is previous
