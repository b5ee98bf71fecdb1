"""Resume: a train.py process killed with SIGKILL mid-epoch, or stopped with SIGTERM (a spot
interruption), and restarted, ends with bit-identical weights to an uninterrupted run, having
lost at most one checkpoint interval (none on SIGTERM)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from training_helpers import (
    run_train_in_process,
    sagemaker_env,
    subprocess_env,
    train_command,
    write_feature_channels,
)

EVERY = 40
# float32 (--amp off) on one thread: a deterministic CPU run. About 330 steps per epoch, so the
# first checkpoint (step 40) comes long before the end of the first epoch.
FLAGS = [
    "--epochs", "2", "--batch-size", "64", "--hidden-width", "256", "--dropout", "0.2",
    "--patience", "5", "--checkpoint-every-steps", str(EVERY), "--amp", "off", "--seed", "7",
]  # fmt: skip


@pytest.fixture(scope="module")
def channels(tmp_path_factory) -> dict[str, Path]:
    return write_feature_channels(tmp_path_factory.mktemp("resume_features"), rows=30000, seed=5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, channels) -> dict:
    """The uninterrupted run: final weights and stdout."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    env = sagemaker_env(run_dir, channels)
    code, stdout = run_train_in_process(env, FLAGS)
    assert code == 0, stdout
    weights = torch.load(Path(env["SM_MODEL_DIR"]) / "model.pt", weights_only=True)
    return {"weights": weights, "stdout": stdout}


def interrupt_after_first_checkpoint(env: dict[str, str], sig: signal.Signals):
    """Start train.py as SageMaker does; send ``sig`` once the first checkpoint exists."""
    checkpoint = Path(env["HEADRACE_CHECKPOINT_DIR"]) / "checkpoint.pt"
    process = subprocess.Popen(
        train_command(*FLAGS),
        env=subprocess_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    try:
        while not checkpoint.exists():
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"train.py ended before its first checkpoint:\n{out}\n{err}")
            if time.monotonic() > deadline:
                pytest.fail("train.py wrote no checkpoint in 240 s")
            time.sleep(0.002)
        process.send_signal(sig)
        out, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err, torch.load(checkpoint, weights_only=True)


def assert_same_weights(model_dir: Path, expected: dict[str, torch.Tensor]) -> None:
    weights = torch.load(model_dir / "model.pt", weights_only=True)
    assert weights.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(weights[name], expected[name])]
    assert not different, f"tensors differ from the uninterrupted run: {different}"


def resume_line(stdout: str) -> tuple[int, int, int]:
    match = re.search(r"resumed from checkpoint epoch=(\d+) step=(\d+) global_step=(\d+)", stdout)
    assert match, stdout
    return tuple(int(group) for group in match.groups())


def test_sigkill_mid_epoch_then_restart_gives_the_uninterrupted_weights(
    tmp_path, channels, reference
):
    env = sagemaker_env(tmp_path, channels)
    code, _, err, saved = interrupt_after_first_checkpoint(env, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not (tmp_path / "model" / "model.pt").exists()
    state = saved["state"]
    # Killed mid-epoch: the last checkpoint is a periodic one inside an epoch.
    assert state["step"] > 0
    assert state["global_step"] % EVERY == 0
    logged = [int(g) for g in re.findall(r"checkpoint saved: .* global_step=(\d+)", err)]
    # The file on disk is the newest checkpoint; the kill may land before its log line is
    # written, so the log can only lag behind it.
    assert all(step <= state["global_step"] for step in logged)

    restarted = subprocess.run(
        train_command(*FLAGS),
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert restarted.returncode == 0, restarted.stderr
    # It resumed from that checkpoint: the steps lost are those after it, fewer than EVERY.
    assert resume_line(restarted.stdout) == (
        state["epoch"],
        state["step"],
        state["global_step"],
    )
    assert_same_weights(tmp_path / "model", reference["weights"])
    final = [line for line in restarted.stdout.splitlines() if line.startswith("final ")]
    assert final == [line for line in reference["stdout"].splitlines() if line.startswith("final ")]
    # The epochs after the resumed one print the same metric lines as the uninterrupted run.
    reference_epochs = [x for x in reference["stdout"].splitlines() if x.startswith("epoch=")]
    resumed_epochs = [x for x in restarted.stdout.splitlines() if x.startswith("epoch=")]
    assert resumed_epochs == reference_epochs[state["epoch"] :]


def test_sigterm_saves_at_the_current_step_and_exits_then_resumes(tmp_path, channels, reference):
    env = sagemaker_env(tmp_path, channels)
    code, _, err, saved = interrupt_after_first_checkpoint(env, signal.SIGTERM)
    assert code == 0
    assert not (tmp_path / "model" / "model.pt").exists()
    state = saved["state"]
    match = re.search(r"SIGTERM: stopped at epoch=(\d+) step=(\d+) with a checkpoint", err)
    assert match, err
    # Saved at the step it stopped on, not at the last periodic checkpoint: nothing lost.
    assert (int(match[1]), int(match[2])) == (state["epoch"], state["step"])
    assert state["global_step"] >= EVERY

    code, stdout = run_train_in_process(env, FLAGS)
    assert code == 0
    assert resume_line(stdout) == (state["epoch"], state["step"], state["global_step"])
    assert_same_weights(tmp_path / "model", reference["weights"])


def test_a_checkpoint_of_other_hyperparameters_is_refused(tmp_path, channels, caplog):
    env = sagemaker_env(tmp_path, channels)
    flags = ["--epochs", "1", "--batch-size", "4096", "--amp", "off"]
    assert run_train_in_process(env, flags)[0] == 0
    code, _ = run_train_in_process(env, [*flags[:-4], "--batch-size", "2048", "--amp", "off"])
    assert code == 2
    assert "was written by a run with other ['batch_size']" in caplog.text
