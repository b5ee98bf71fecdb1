"""Benchmark: training samples/s of the trainer's epoch loop against a bare PyTorch loop, same tensors.

Both train the same MLP (30 features, two hidden layers of 256, dropout 0.1, one logit) with fused
AdamW at batch 4096 on the same standardized float32 tensors, in this process, on CPU:

- ``trainer``: ``training.loop.train_epoch``, the function ``train.py`` runs each epoch (seeded
  per-epoch order, resumable step position, running loss, a per-step callback like train.py's);
- ``bare``: the loop anyone would write: ``randperm``, ``index_select``, forward, loss,
  backward, step.

Each is run in float32 and in bf16 autocast (what ``--amp auto`` picks on a CPU with AVX512-BF16
or AMX), one untimed warm-up epoch each, then ``--repeat`` timed epochs taken in turns so that
load from other processes hits every variant alike; the median is reported. Target: trainer at
least 0.9x the bare loop's samples/s. Then a short accuracy check: ``--accuracy-epochs`` epochs
of the trainer in float32 and in bf16 on data with a planted signal, and the held-out ROC AUC of
each (bf16 is only worth its speed where the AUC holds).

    python bench/training.py [--rows 524288] [--repeat 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from training.loop import (  # noqa: E402
    AmpPlan,
    EpochProgress,
    cpu_has_native_bf16,
    place_training_tensors,
    resolve_amp,
    train_epoch,
)
from training.model import architecture_config, build_model, predict_scores  # noqa: E402

FEATURES = 30
WIDTH = 256
LAYERS = 2
DROPOUT = 0.1
BATCH = 4096
LEARNING_RATE = 1e-3
TARGET_RATIO = 0.9


def planted_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardized features; the label depends on five of them through a nonlinear logit."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, FEATURES), dtype=np.float32)
    logit = (
        1.2 * features[:, 0]
        - 0.8 * features[:, 1]
        + 0.9 * features[:, 2] * features[:, 3]
        + 0.6 * np.abs(features[:, 4])
        - 1.0
    )
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return features, labels


def fresh_model(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = build_model(architecture_config(FEATURES, WIDTH, LAYERS, DROPOUT))
    # Fused, as train.py builds it.
    return model, torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, fused=True)


def bare_epoch(model, optimizer, features, labels, *, seed: int, amp: AmpPlan) -> None:
    model.train()
    order = torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(seed))
    for start in range(0, features.shape[0], BATCH):
        rows = order[start : start + BATCH]
        x, y = features.index_select(0, rows), labels.index_select(0, rows)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=amp.dtype, enabled=amp.enabled):
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        loss.backward()
        optimizer.step()


def trainer_epoch(model, optimizer, tensors, *, seed: int, amp: AmpPlan) -> None:
    steps = {"global": 0}

    # What train.py's callback does every step: count, check the stop flag and the interval.
    def after_step(progress: EpochProgress) -> bool:
        steps["global"] += 1
        return steps["global"] % 10**9 == 0

    train_epoch(
        model,
        optimizer,
        tensors,
        batch_size=BATCH,
        seed=seed,
        progress=EpochProgress(epoch=0),
        amp=amp,
        after_step=after_step,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=524_288, help="training rows per epoch")
    parser.add_argument("--repeat", type=int, default=5, help="timed epochs per variant")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--accuracy-epochs", type=int, default=3)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    features, labels = planted_data(args.rows, seed=0)
    tensors = place_training_tensors(features, labels, torch.device("cpu"))
    fp32 = resolve_amp("off", device_type="cpu")
    bf16 = resolve_amp("bf16", device_type="cpu", cpu_bf16=cpu_has_native_bf16())
    auto = resolve_amp("auto", device_type="cpu", cpu_bf16=cpu_has_native_bf16())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16: {cpu_has_native_bf16()}; --amp auto -> {auto.name}"
    )
    print(
        f"{args.rows} rows x {FEATURES} features, MLP {FEATURES}-{WIDTH}-{WIDTH}-1, "
        f"batch {BATCH}, AdamW; 1 warm-up + {args.repeat} timed epochs per variant"
    )

    variants = {
        "bare fp32": (bare_epoch, fp32),
        "trainer fp32": (trainer_epoch, fp32),
        "bare bf16": (bare_epoch, bf16),
        "trainer bf16": (trainer_epoch, bf16),
    }
    state = {name: fresh_model(seed=1) for name in variants}

    def run(name: str, epoch: int) -> float:
        epoch_fn, amp = variants[name]
        model, optimizer = state[name]
        data = (
            {"tensors": tensors}
            if epoch_fn is trainer_epoch
            else {"features": tensors.features, "labels": tensors.labels}
        )
        start = time.perf_counter()
        epoch_fn(model, optimizer, **data, seed=epoch, amp=amp)
        return time.perf_counter() - start

    for name in variants:
        run(name, epoch=0)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for epoch in range(1, args.repeat + 1):
        for name in variants:
            seconds[name].append(run(name, epoch))

    print()
    # The fastest epoch beside the median: on a shared machine, the least disturbed sample.
    print(f"{'':14} {'median s':>9} {'samples/s':>11} {'best/s':>11}   all epochs (s)")
    rate, best = {}, {}
    for name, times in seconds.items():
        rate[name], best[name] = args.rows / statistics.median(times), args.rows / min(times)
        print(
            f"{name:14} {statistics.median(times):9.3f} {rate[name]:11,.0f} {best[name]:11,.0f}   "
            + " ".join(f"{t:.3f}" for t in times)
        )
    print()
    for label, a, b in (
        ("trainer / bare, fp32", "trainer fp32", "bare fp32"),
        ("trainer / bare, bf16", "trainer bf16", "bare bf16"),
        ("trainer bf16 / trainer fp32", "trainer bf16", "trainer fp32"),
    ):
        target = f"  (target >= {TARGET_RATIO}x)" if label.startswith("trainer / bare") else ""
        print(f"{label}: {rate[a] / rate[b]:.2f}x median, {best[a] / best[b]:.2f}x best{target}")

    # Accuracy: the same trainer, float32 vs bf16, scored in float32 on held-out rows.
    held_out, held_out_labels = planted_data(65_536, seed=1)
    from sklearn.metrics import roc_auc_score

    print()
    for plan in (fp32, bf16):
        model, optimizer = fresh_model(seed=2)
        for epoch in range(args.accuracy_epochs):
            trainer_epoch(model, optimizer, tensors, seed=100 + epoch, amp=plan)
        auc = roc_auc_score(held_out_labels, predict_scores(model, held_out))
        print(f"held-out ROC AUC after {args.accuracy_epochs} epochs, {plan.name:>4}: {auc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
