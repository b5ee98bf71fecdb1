"""SageMaker script-mode entry point: train the churn model on the train/validation/test channels.

Hyperparameters are ``--name value`` flags (SageMaker passes every value as a string; ``SM_HPS``
supplies defaults for flags not given). Paths come from ``SM_CHANNEL_TRAIN``/``_VALIDATION``/
``_TEST``, ``SM_MODEL_DIR`` and ``SM_OUTPUT_DATA_DIR``, with defaults under ``.local/sagemaker/``
of the working directory so the script runs outside a container too. Checkpoints go to
``/opt/ml/checkpoints`` or ``HEADRACE_CHECKPOINT_DIR``; a restarted job resumes from the last one.
An optional ``champion`` channel (``SM_CHANNEL_CHAMPION``) holds the approved model's
``model.tar.gz``: the job scores it on the same test rows as the new model, so the registration
compares the two on identical rows (``champion_comparison`` in ``evaluation.json``).

Metric lines on stdout (what the job's ``MetricDefinitions`` regexes read), one per epoch and one
at the end::

    epoch=3 train:loss=0.412345 validation:loss=0.398765 validation:auc=0.812345 validation:logloss=0.398765
    final validation:auc=0.812345 test:auc=0.804321 test:logloss=0.410000 test:f1=0.550000

The model directory gets ``model.pt`` (the best epoch's state_dict), ``model_config.json``,
``preprocessing.json``, ``evaluation.json`` (test split) and ``code/`` (the serving handlers, so
``model.tar.gz`` serves on its own).

    python training/train.py --epochs 20 --batch-size 4096 --learning-rate 0.001
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

if __name__ == "__main__" and not __package__:
    # Run as a file (`python training/train.py`, or SageMaker's `python train.py` in
    # /opt/ml/code): load this folder as a package under a private name (the folder may be called
    # "code", a stdlib module) and run the package's copy of this module, where relative imports
    # work. SystemExit ends this copy here.
    def _run_as_package() -> int:
        here = os.path.dirname(os.path.abspath(__file__))
        name = "_headrace_training"
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(here, "__init__.py"), submodule_search_locations=[here]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
        return importlib.import_module(f"{name}.train").main()

    sys.exit(_run_as_package())

import argparse
import json
import logging
import math
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpointing import (
    CHECKPOINT_FILE,
    CheckpointError,
    StopRequest,
    capture_rng_state,
    checkpoint_dir_from_env,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .data import ChannelData, ChannelError, load_channel
from .loop import (
    AMP_CHOICES,
    EpochProgress,
    choose_device,
    cpu_has_native_bf16,
    place_training_tensors,
    resolve_amp,
    train_epoch,
)
from .model import (
    MODEL_CONFIG_FILE,
    MODEL_CONFIG_VERSION,
    MODEL_FILE,
    architecture_config,
    build_model,
    predict_scores,
)
from .preprocessing import PreprocessingError, Standardizer

log = logging.getLogger("headrace.training")

CHANNELS = ("train", "validation", "test")
# The approved model's model.tar.gz, when there is one (include/training_jobs.py adds the channel).
CHAMPION_CHANNEL = "champion"
CHAMPION_MODEL_FILE = "model.tar.gz"
# The files of a model.tar.gz the champion is scored from: its weights, architecture, features and
# preprocessing; nothing else is extracted (no code from the archive runs here).
CHAMPION_MEMBERS = ("model.pt", "model_config.json", "preprocessing.json")
LOCAL_ROOT = Path(".local") / "sagemaker"
EVALUATION_FILE = "evaluation.json"
HISTORY_FILE = "history.json"
# Every row of the three channels with its ids, its split and the final model's score
# (SM_OUTPUT_DATA_DIR, so output.tar.gz on SageMaker): the prediction-score half of the monitoring
# baseline, scored here because the Airflow worker has no torch. The baseline takes the score's
# distribution from the validation and test rows only (a model scores its own training rows more
# confidently than new data); the training rows are here so that it can tell a training row from
# a curated row that was never scored.
BASELINE_SCORES_FILE = "baseline_scores.parquet"
SCORE_COLUMN = "score"
# Permutation importance re-scores the test rows once per feature and repeat: a sample bounds it.
IMPORTANCE_MAX_ROWS = 20_000
# The files that serve the model, copied to <model dir>/code/ (the PyTorch serving container
# loads code/inference.py from model.tar.gz). Nothing here needs pandas, pyarrow or sklearn.
SERVING_FILES = ("__init__.py", "inference.py", "serving.py", "model.py", "preprocessing.py")
# SIGTERM (a stop, or a spot interruption) ends the process after a checkpoint with this status:
# SageMaker sets the job's status itself, and no model directory is written, so nothing
# mistakes a stopped run for a finished one.
EXIT_CODE_AFTER_STOP = 0
# Hyperparameters that shape the trajectory of the weights: a checkpoint written under other
# values is not this run's (epochs, patience and the checkpoint interval may change on resume).
TRAJECTORY_HYPERPARAMETERS = (
    "batch_size",
    "learning_rate",
    "weight_decay",
    "hidden_width",
    "num_layers",
    "dropout",
    "seed",
    "label",
    "amp",
)


class TrainingError(RuntimeError):
    """The job cannot train; the message names the input, parameter or file at fault."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number, got {text}")
    return value


def _dropout(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _decision_threshold(text: str) -> str | float:
    """``f1`` or ``youden`` (chosen on the validation split), or a fixed number in (0, 1)."""
    from .evaluation import THRESHOLD_METHODS

    if text.strip() in THRESHOLD_METHODS:
        return text.strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"must be {' or '.join(THRESHOLD_METHODS)} or a number in (0, 1), got {text!r}"
        )
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description="Train the churn MLP (SageMaker script mode)."
    )
    add = parser.add_argument
    add("--epochs", type=_positive_int, default=20, help="maximum epochs")
    add("--batch-size", type=_positive_int, default=4096, help="rows per optimizer step")
    add("--learning-rate", type=_positive_float, default=1e-3, help="AdamW learning rate")
    add("--weight-decay", type=_non_negative_float, default=1e-4, help="AdamW weight decay")
    add("--hidden-width", type=_positive_int, default=256, help="units per hidden layer")
    add("--num-layers", type=_positive_int, default=2, help="hidden layers")
    add("--dropout", type=_dropout, default=0.1, help="dropout after each hidden layer")
    add("--patience", type=_positive_int, default=3, help="epochs without a better validation:auc")
    add("--seed", type=_non_negative_int, default=42, help="seed of every random generator")
    add(
        "--checkpoint-every-steps",
        type=_non_negative_int,
        default=500,
        help="checkpoint every N optimizer steps (0: only at epoch ends and on SIGTERM)",
    )
    add("--label", default="churned", help="label column (0/1)")
    add("--id-columns", type=_name_list, default="customer_id,snapshot_date", help="comma list")
    add(
        "--sensitive-groups",
        type=_name_list,
        default="region",
        help="comma list of categorical prefixes (one-hot <prefix>__<value>) for group metrics",
    )
    add(
        "--audit-attributes",
        type=_name_list,
        default="",
        help="comma list of columns the files carry for the fairness audit only (never inputs)",
    )
    add(
        "--decision-threshold",
        type=_decision_threshold,
        default="f1",
        help="f1 or youden (maximised on the validation split), or a fixed number in (0, 1)",
    )
    add(
        "--min-group-rows",
        type=_positive_int,
        default=30,
        help="groups with fewer test rows (or one label class) are too small to judge",
    )
    add(
        "--max-group-difference",
        type=_fraction,
        default=0.1,
        help="the model card names a gap between groups above this as a limitation",
    )
    add(
        "--min-disparate-impact",
        type=_fraction,
        default=0.8,
        help="the model card names a disparate impact below this as a limitation",
    )
    add("--amp", choices=AMP_CHOICES, default="auto", help="autocast: auto, bf16, fp16 or off")
    return parser


def parse_args(argv: Sequence[str] | None, environ=os.environ) -> argparse.Namespace:
    """Flags first; ``SM_HPS`` (JSON) gives the defaults of flags the command line lacks."""
    parser = build_parser()
    if hps_text := environ.get("SM_HPS"):
        try:
            hps = json.loads(hps_text)
        except json.JSONDecodeError as error:
            parser.error(f"SM_HPS is not valid JSON: {error}")
        known = {action.dest for action in parser._actions}
        # String defaults go through each flag's type, exactly like a command-line value.
        parser.set_defaults(
            **{
                key.replace("-", "_"): str(value)
                for key, value in hps.items()
                if key.replace("-", "_") in known
            }
        )
    args, unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if unknown:
        # SageMaker tuning adds its own (e.g. --_tuning_objective_metric); they are not ours.
        log.info("ignoring arguments this trainer does not define: %s", " ".join(unknown))
    return args


@dataclass(frozen=True)
class JobPaths:
    channels: dict[str, Path]
    model_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    # The champion channel's folder; None when the job has no champion channel.
    champion: Path | None = None

    @classmethod
    def from_env(cls, environ=os.environ) -> JobPaths:
        return cls(
            channels={
                name: Path(
                    environ.get(f"SM_CHANNEL_{name.upper()}")
                    or LOCAL_ROOT / "input" / "data" / name
                )
                for name in CHANNELS
            },
            model_dir=Path(environ.get("SM_MODEL_DIR") or LOCAL_ROOT / "model"),
            output_data_dir=Path(
                environ.get("SM_OUTPUT_DATA_DIR") or LOCAL_ROOT / "output" / "data"
            ),
            checkpoint_dir=checkpoint_dir_from_env(),
            champion=Path(champion) if (champion := environ.get("SM_CHANNEL_CHAMPION")) else None,
        )


@dataclass
class TrainingState:
    """Everything a resumed job needs besides the model, optimizer and RNG states."""

    epoch: int = 0
    step: int = 0  # optimizer steps taken in ``epoch``
    rows_seen: int = 0
    loss_sum: float = 0.0
    global_step: int = 0
    best_auc: float = -math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    finished: bool = False  # all epochs run, or stopped early
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_fingerprint(args: argparse.Namespace, train: ChannelData) -> dict:
    return {
        **{name: getattr(args, name) for name in TRAJECTORY_HYPERPARAMETERS},
        "features": list(train.feature_names),
        "train_rows": train.rows,
    }


def _validation_metrics(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    scores = scores.astype(np.float64)
    return float(roc_auc_score(labels, scores)), float(log_loss(labels, scores, labels=[0, 1]))


def _require_both_classes(channel: ChannelData) -> None:
    if np.unique(channel.labels).size < 2:
        raise TrainingError(
            f"channel {channel.name} ({channel.directory}) holds only label "
            f"{int(channel.labels[0])}: validation:auc, the early-stopping metric, needs both"
        )


def _weights_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}


def _metric_line(prefix: str, metrics: dict[str, float | None]) -> str:
    # A metric that is undefined (e.g. AUC of a one-class split) is left out, never printed as nan.
    tokens = [f"{name}={value:.6f}" for name, value in metrics.items() if value is not None]
    return " ".join([prefix, *tokens])


def train(args: argparse.Namespace, paths: JobPaths) -> int:
    seed_everything(args.seed)
    device = choose_device()
    amp = resolve_amp(
        args.amp,
        device_type=device.type,
        cuda_bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(),
        cpu_bf16=device.type == "cpu" and cpu_has_native_bf16(),
    )
    log.info(
        "host %s, device %s (SM_NUM_GPUS=%s), autocast %s: %s",
        os.environ.get("SM_CURRENT_HOST", "local"),
        device,
        os.environ.get("SM_NUM_GPUS", "-"),
        amp.name,
        amp.reason,
    )

    if both := sorted(set(args.audit_attributes) & set(args.sensitive_groups)):
        raise TrainingError(
            f"--audit-attributes and --sensitive-groups both name {both}: a sensitive group is a "
            "categorical model input, an audit attribute is kept out of the model"
        )
    train_data = load_channel(
        "train",
        paths.channels["train"],
        label=args.label,
        id_columns=args.id_columns,
        audit_columns=args.audit_attributes,
    )
    features = train_data.feature_names
    validation, test = (
        load_channel(
            name,
            paths.channels[name],
            label=args.label,
            id_columns=args.id_columns,
            feature_names=features,
            audit_columns=args.audit_attributes,
        )
        for name in ("validation", "test")
    )
    _require_both_classes(validation)
    for prefix in args.sensitive_groups:
        if not any(name.startswith(f"{prefix}__") for name in features):
            raise TrainingError(
                f"--sensitive-groups {prefix!r}: no one-hot feature {prefix}__<value> in the "
                f"train channel"
            )
    log.info(
        "rows: train %d, validation %d, test %d; %d features",
        train_data.rows,
        validation.rows,
        test.rows,
        len(features),
    )

    standardizer = Standardizer.fit(features, train_data.features)
    if standardizer.constant_features:
        # Typical of the first day of data (days_present_<N>d is 1 for everyone): the model
        # learns nothing from these, so serving holds them at their training value.
        log.warning(
            "constant on the train split, held at their training value when scoring: %s",
            ", ".join(standardizer.constant_features),
        )
    tensors = place_training_tensors(
        standardizer.transform(train_data.features), train_data.labels, device
    )
    validation_features = standardizer.transform(validation.features)
    config = architecture_config(len(features), args.hidden_width, args.num_layers, args.dropout)
    model = build_model(config).to(device)
    # Fused: one kernel for every parameter's update, on CPU and CUDA (torch >= 2.4; the image
    # has 2.5.1). On this project's 2-core machine, one thread, a step of the 454-wide, 4-layer
    # network spent 3.5 ms in the for-each AdamW's update and 1.4 ms in the fused one.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay, fused=True
    )
    scaler = torch.amp.GradScaler(device.type) if amp.grad_scaler else None

    fingerprint = run_fingerprint(args, train_data)
    state = TrainingState()
    best_weights = _weights_copy(model)
    checkpoints = _checkpoint_dir_or_none(paths.checkpoint_dir)
    saved = load_checkpoint(checkpoints) if checkpoints else None
    if saved is not None:
        _require_same_run(saved["fingerprint"], fingerprint, checkpoints)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scaler is not None and saved["scaler"] is not None:
            scaler.load_state_dict(saved["scaler"])
        best_weights = saved["best_weights"]
        state = TrainingState(**saved["state"])
        restore_rng_state(saved["rng"])
        message = (
            f"resumed from checkpoint epoch={state.epoch} step={state.step} "
            f"global_step={state.global_step}"
        )
        log.info("%s (%s)", message, checkpoints)
        print(message, flush=True)

    def checkpoint(progress: EpochProgress | None) -> None:
        if checkpoints is None:
            return
        if progress is not None:
            state.step, state.rows_seen, state.loss_sum = (
                progress.step,
                progress.rows_seen,
                progress.loss_sum,
            )
        save_checkpoint(
            checkpoints,
            {
                "fingerprint": fingerprint,
                "state": asdict(state),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "best_weights": best_weights,
                "rng": capture_rng_state(),
            },
        )
        log.info(
            "checkpoint saved: epoch=%d step=%d global_step=%d",
            state.epoch,
            state.step,
            state.global_step,
        )

    with StopRequest() as stop:

        def after_step(progress: EpochProgress) -> bool:
            state.global_step += 1
            if stop.requested:
                return True
            every = args.checkpoint_every_steps
            if every and state.global_step % every == 0:
                checkpoint(progress)
            return False

        while not state.finished:
            if state.epoch >= args.epochs:
                state.finished = True
                break
            progress = EpochProgress(
                epoch=state.epoch,
                step=state.step,
                rows_seen=state.rows_seen,
                loss_total=state.loss_sum,
            )
            if not stop.requested:
                train_epoch(
                    model,
                    optimizer,
                    tensors,
                    batch_size=args.batch_size,
                    seed=args.seed,
                    progress=progress,
                    amp=amp,
                    scaler=scaler,
                    after_step=after_step,
                )
            if stop.requested:
                checkpoint(progress)
                log.warning(
                    "%s: stopped at epoch=%d step=%d with a checkpoint; a restarted job resumes there",
                    stop.received,
                    state.epoch,
                    state.step,
                )
                return EXIT_CODE_AFTER_STOP

            validation_auc, validation_loss = _validation_metrics(
                validation.labels, predict_scores(model, validation_features, device)
            )
            epoch_metrics = {
                "train:loss": progress.mean_loss,
                "validation:loss": validation_loss,
                "validation:auc": validation_auc,
                "validation:logloss": validation_loss,
            }
            print(_metric_line(f"epoch={state.epoch}", epoch_metrics), flush=True)
            state.history.append({"epoch": state.epoch, **epoch_metrics})
            if validation_auc > state.best_auc:
                state.best_auc, state.best_epoch = validation_auc, state.epoch
                state.epochs_without_improvement = 0
                best_weights = _weights_copy(model)
            else:
                state.epochs_without_improvement += 1
            state.epoch, state.step, state.rows_seen, state.loss_sum = state.epoch + 1, 0, 0, 0.0
            if state.epochs_without_improvement >= args.patience:
                log.info(
                    "early stop after epoch %d: validation:auc has not beaten %.6f (epoch %d) "
                    "for %d epochs",
                    state.epoch - 1,
                    state.best_auc,
                    state.best_epoch,
                    args.patience,
                )
                state.finished = True
            checkpoint(None)

    model.load_state_dict(best_weights)
    evaluation = evaluate_model(model, standardizer, test, args, device, validation=validation)
    test_metrics = evaluation["metrics"]
    evaluation["validation"] = {"roc_auc": state.best_auc, "best_epoch": state.best_epoch}
    if paths.champion is not None:
        challenger_scores = predict_scores(model, standardizer.transform(test.features), device)
        evaluation["champion_comparison"] = compare_with_champion(
            paths.champion, test, challenger_scores, args
        )
    print(
        _metric_line(
            "final",
            {
                "validation:auc": state.best_auc,
                "test:auc": test_metrics["roc_auc"],
                "test:logloss": test_metrics["log_loss"],
                "test:f1": test_metrics["f1"],
            },
        ),
        flush=True,
    )
    write_model_dir(
        paths.model_dir,
        model=model,
        config={
            "version": MODEL_CONFIG_VERSION,
            **config,
            "features": list(features),
            "label": args.label,
            "id_columns": list(args.id_columns),
            "hyperparameters": vars(args),
            "best_epoch": state.best_epoch,
            "epochs_trained": len(state.history),
            "autocast": amp.name,
            "torch_version": torch.__version__,
        },
        standardizer=standardizer,
        evaluation=evaluation,
    )
    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    (paths.output_data_dir / HISTORY_FILE).write_text(json.dumps(state.history, indent=2) + "\n")
    write_baseline_scores(
        paths.output_data_dir / BASELINE_SCORES_FILE,
        model,
        standardizer,
        (train_data, validation, test),
        device,
    )
    log.info("model written to %s (best epoch %d)", paths.model_dir, state.best_epoch)
    return 0


def _require_same_run(saved: dict, current: dict, checkpoints: Path) -> None:
    if saved == current:
        return
    changed = sorted(
        key for key in saved.keys() | current.keys() if saved.get(key) != current.get(key)
    )
    raise CheckpointError(
        f"{checkpoints / CHECKPOINT_FILE} was written by a run with other {changed}; "
        f"resume with the same hyperparameters and data, or empty {checkpoints}"
    )


def _checkpoint_dir_or_none(directory: Path) -> Path | None:
    """The checkpoint directory, or None (no checkpoints) where it cannot be created: outside a
    container /opt/ml is usually not writable, and a local run without checkpoints still trains."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        log.warning("checkpoints off: cannot create %s (%s)", directory, error)
        return None
    return directory


def evaluate_model(
    model: torch.nn.Module,
    standardizer: Standardizer,
    test: ChannelData,
    args: argparse.Namespace,
    device: torch.device,
    *,
    validation: ChannelData,
) -> dict:
    """The test split's metrics and fairness audit at the decision threshold, and permutation
    importance.

    The threshold is ``--decision-threshold`` when it is a number, else the validation score
    that maximises F1 (or Youden's J) on the validation rows: chosen on rows the test metrics
    never see. The audit groups the test rows by each ``--sensitive-groups`` attribute (from
    its one-hot inputs) and each ``--audit-attributes`` column (which the model never sees).
    """
    from .evaluation import (
        GAP_METRICS,
        choose_threshold,
        evaluate_binary_classifier,
        group_metrics,
        groups_from_one_hot,
        permutation_importance,
    )

    def score(raw_features: np.ndarray) -> np.ndarray:
        return predict_scores(model, standardizer.transform(raw_features), device).astype(
            np.float64
        )

    if isinstance(args.decision_threshold, float):
        threshold = args.decision_threshold
        how = {"method": "fixed", "description": "fixed by --decision-threshold (the spec)"}
    else:
        method = args.decision_threshold
        threshold = choose_threshold(validation.labels, score(validation.features), method=method)
        objective = "F1" if method == "f1" else "Youden's J (TPR - FPR)"
        how = {
            "method": method,
            "description": f"the validation score that maximises {objective} on the "
            f"{validation.rows} validation rows (ties: the highest such score)",
        }
    scores = score(test.features)
    groups = groups_from_one_hot(test.features, test.feature_names, args.sensitive_groups)
    groups.update(test.audit)
    sample = np.arange(test.rows)
    if test.rows > IMPORTANCE_MAX_ROWS:
        sample = np.sort(
            np.random.default_rng(args.seed).choice(test.rows, IMPORTANCE_MAX_ROWS, replace=False)
        )
    importance = None
    if np.unique(test.labels[sample]).size == 2:
        importance = permutation_importance(
            score, test.features[sample], test.labels[sample], test.feature_names, seed=args.seed
        )
    return {
        "split": "test",
        "decision_threshold": {"value": threshold, **how},
        "metrics": evaluate_binary_classifier(test.labels, scores, threshold=threshold),
        "groups": group_metrics(
            test.labels,
            scores,
            groups,
            threshold=threshold,
            min_group_rows=args.min_group_rows,
        ),
        "fairness": {
            "sensitive_groups": list(args.sensitive_groups),
            "audit_attributes": list(args.audit_attributes),
            "min_group_rows": args.min_group_rows,
            "max_group_difference": args.max_group_difference,
            "min_disparate_impact": args.min_disparate_impact,
            "metrics": GAP_METRICS,
        },
        "permutation_importance": importance,
        "permutation_importance_rows": int(sample.size),
    }


def _extract_champion(tarball: Path, target: Path) -> None:
    """Extract the files a model is scored from (:data:`CHAMPION_MEMBERS`) into ``target``."""
    import tarfile

    with tarfile.open(tarball, mode="r:gz") as archive:
        members = {member.name.lstrip("./"): member for member in archive.getmembers()}
        for name in CHAMPION_MEMBERS:
            member = members.get(name)
            if member is None or not member.isfile():
                raise TrainingError(
                    f"champion channel: {tarball} has no {name}; it is not a model.tar.gz "
                    "written by train.py"
                )
            (target / name).write_bytes(archive.extractfile(member).read())


def compare_with_champion(
    champion_dir: Path,
    test: ChannelData,
    challenger_scores: np.ndarray,
    args: argparse.Namespace,
) -> dict:
    """Score the champion's ``model.tar.gz`` on this job's test rows and compare the AUCs.

    The champion is scored with its own weights, architecture, features and standardizer
    (from its archive) by this job's scoring code, on the very rows the challenger's test
    metrics come from, so the difference is paired row by row
    (:func:`evaluation.paired_auc_comparison`). When the champion reads other features or
    another label, it cannot score these rows: the result says so (``paired`` False, with a
    ``reason``) and the registration falls back to a comparison it labels as not paired.
    ``champion_sha256`` lets the registration check that the champion it compares with is the
    one scored here.
    """
    import hashlib
    import tempfile

    from .data import load_channel
    from .evaluation import paired_auc_comparison
    from .serving import model_fn

    tarball = champion_dir / CHAMPION_MODEL_FILE
    if not tarball.is_file():
        raise TrainingError(
            f"champion channel {champion_dir} has no {CHAMPION_MODEL_FILE}: the channel names "
            "the approved model's archive"
        )
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    try:
        with tempfile.TemporaryDirectory() as folder:
            _extract_champion(tarball, Path(folder))
            served = model_fn(folder)
            config = json.loads((Path(folder) / MODEL_CONFIG_FILE).read_text())
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        # A champion this code cannot load (an older model format) must not stop a new model:
        # the registration compares without pairing and says why.
        log.warning("champion channel: cannot score %s: %s", tarball, error)
        return {"champion_sha256": digest, "paired": False, "reason": f"cannot load it: {error}"}
    champion_label = config.get("label")
    result = {
        "champion_sha256": digest,
        "champion_features": len(served.features),
        "challenger_features": len(test.feature_names),
    }
    if champion_label != args.label:
        return {
            **result,
            "paired": False,
            "reason": f"the champion predicts label {champion_label!r}, this model {args.label!r}",
        }
    features = test.features
    if list(served.features) != list(test.feature_names):
        only_champion = sorted(set(served.features) - set(test.feature_names))
        only_challenger = sorted(set(test.feature_names) - set(served.features))
        try:
            # Same files, same row order: the champion's columns of the very same rows.
            features = load_channel(
                test.name,
                test.directory,
                label=args.label,
                id_columns=args.id_columns,
                feature_names=served.features,
                audit_columns=args.audit_attributes,
            ).features
        except ChannelError:
            return {
                **result,
                "paired": False,
                "reason": "the champion was trained on other features (only the champion: "
                f"{only_champion or 'none'}; only the challenger: {only_challenger or 'none'}), "
                "which the test rows do not carry",
            }
    champion_scores = predict_scores(
        served.model, served.standardizer.transform(features), served.device
    )
    comparison = paired_auc_comparison(test.labels, challenger_scores, champion_scores)
    log.info(
        "champion on the same %d test rows: auc %.6f vs challenger %.6f, difference %+.6f "
        "(%.0f%% interval %+.6f to %+.6f)",
        comparison["rows"],
        comparison["champion_auc"],
        comparison["challenger_auc"],
        comparison["difference"],
        comparison["confidence"] * 100,
        *comparison["interval"],
    )
    return {**result, "paired": True, **comparison}


def write_baseline_scores(
    path: Path,
    model: torch.nn.Module,
    standardizer: Standardizer,
    channels: Sequence[ChannelData],
    device: torch.device,
) -> int:
    """The final model's score of every row of ``channels``, beside the row's ids and split.

    Scored with the same computation the served model runs (standardize, then
    :func:`predict_scores`), so the baseline's score distribution (from the held-out splits) is
    the one batch scoring produces on data like the training partition's. Returns the rows
    written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for channel in channels:
        if channel.ids is None:
            raise TrainingError(
                f"channel {channel.name}: the files hold none of the --id-columns, so scores "
                f"cannot be keyed for the monitoring baseline"
            )
        scores = predict_scores(model, standardizer.transform(channel.features), device)
        tables.append(
            channel.ids.append_column(
                "split", pa.array([channel.name] * channel.rows)
            ).append_column(SCORE_COLUMN, pa.array(scores.astype(np.float64)))
        )
    table = pa.concat_tables(tables, promote_options="permissive")
    pq.write_table(table, path)
    return table.num_rows


def write_model_dir(
    model_dir: Path,
    *,
    model: torch.nn.Module,
    config: dict,
    standardizer: Standardizer,
    evaluation: dict,
) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(_weights_copy(model), model_dir / MODEL_FILE)
    (model_dir / MODEL_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    standardizer.save(model_dir)
    (model_dir / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
    code_dir = model_dir / "code"
    code_dir.mkdir(exist_ok=True)
    here = Path(__file__).resolve().parent
    for name in SERVING_FILES:
        shutil.copyfile(here / name, code_dir / name)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args = parse_args(argv)
    try:
        return train(args, JobPaths.from_env())
    except (ChannelError, CheckpointError, PreprocessingError, TrainingError) as error:
        log.error("%s", error)
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
