"""Train the dog-breed classifier.

Train the dog-breed classifier: what the SageMaker entry point ``train.py`` runs, and the same
on a laptop.

    python training/container/train.py --data-dir dogImages --model-dir model --epochs 10 \
        --pretrained true

Hyperparameters arrive as SageMaker passes them (``--name value``); the data comes from the
``training`` channel (SM_CHANNEL_TRAINING, holding train/ valid/ test/), the artifact goes to
SM_MODEL_DIR (see ``dog_breeds.artifact.store``). stdout carries one metric line per epoch, a test
line, and last of all one JSON summary line.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dog_breeds import contract
from dog_breeds.artifact import store
from dog_breeds.data import folders
from dog_breeds.model import network
from dog_breeds.training import cpu_export, debugger, metrics, quantize
from dog_breeds.training.checkpoints import (
    SAGEMAKER_CHECKPOINT_DIR,
    Checkpoints,
    TrainingState,
    checkpoint_signature,
)

# The hook's switch and factory stay reachable here, as trainer.SMDEBUG_CONFIG_ENV and so on.
from dog_breeds.training.debugger import SMDEBUG_CONFIG_ENV as SMDEBUG_CONFIG_ENV
from dog_breeds.training.debugger import create_debug_hook

log = logging.getLogger("train")


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "y"):
        return True
    if lowered in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train the dog-breed classifier (ResNet50 + head).")
    env = os.environ.get
    p.add_argument(
        "--data-dir",
        type=Path,
        default=env("SM_CHANNEL_TRAINING"),
        help="holds train/ valid/ test/ (default $SM_CHANNEL_TRAINING)",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=env("SM_MODEL_DIR"),
        help="where the artifact goes (default $SM_MODEL_DIR)",
    )
    # Hyperparameters: names are the tuner's and the estimator's.
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight_decay", type=float, default=1e-2)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument(
        "--pretrained",
        type=str2bool,
        default=True,
        help="ImageNet weights + frozen backbone; false trains all of it from scratch",
    )
    p.add_argument(
        "--unfreeze_stages",
        type=int,
        default=0,
        choices=range(len(network.STAGES) + 1),
        help="with --pretrained, also train the top N residual stages (layer4 first)",
    )
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument(
        "--patience",
        type=int,
        default=3,
        help="stop after this many epochs without a lower valid loss (0: never)",
    )
    p.add_argument(
        "--class_weights",
        type=str2bool,
        default=False,
        help="weight the loss by inverse class frequency",
    )
    p.add_argument(
        "--num_workers", type=int, default=min(4, int(env("SM_NUM_CPUS", os.cpu_count() or 1)))
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", type=str2bool, default=True, help="mixed precision (GPU only)")
    p.add_argument("--model_name", default=store.DEFAULT_MODEL_NAME)
    p.add_argument(
        "--cpu_form",
        type=str2bool,
        default=True,
        help="also export the CPU-optimised serving form (cpu_export.export_cpu_form)",
    )
    p.add_argument(
        "--int8",
        type=str2bool,
        default=True,
        help="with --cpu_form, also ship an NNCF int8 form when it passes the accuracy guard",
    )
    p.add_argument(
        "--int8_max_drop",
        "--int8-max-drop",
        dest="int8_max_drop",
        type=float,
        default=quantize.DEFAULT_MAX_DROP_POINTS,
        help="largest validation top-1 loss (percentage points) int8 may cost vs fp32",
    )
    p.add_argument(
        "--smdebug-dir",
        type=Path,
        default=None,
        help="record losses with an smdebug hook here (SageMaker's config also does)",
    )
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="save/resume checkpoints here (default /opt/ml/checkpoints if it exists)",
    )
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args, unknown = get_args_parser().parse_known_args(argv)
    if unknown:  # SageMaker and tuners may pass hyperparameters this script does not use
        log.warning("ignoring unknown arguments: %s", " ".join(unknown))
    if args.data_dir is None or args.model_dir is None:
        raise SystemExit("--data-dir and --model-dir are required outside SageMaker")
    if args.unfreeze_stages and not args.pretrained:
        log.warning("--unfreeze_stages has no effect with --pretrained false: everything trains")
    if args.checkpoint_dir is None and SAGEMAKER_CHECKPOINT_DIR.is_dir():
        args.checkpoint_dir = SAGEMAKER_CHECKPOINT_DIR
    return args


# ---------------------------------------------------------------------------- loops
@dataclass
class EpochResult:
    loss: float
    accuracy: float


def progress(iterable: Iterable, desc: str, total: int) -> Iterable:
    """tqdm bars in a terminal; plain iteration in SageMaker's logs."""
    if not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr)


def autocast(device: torch.device, use_amp: bool):
    if use_amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def train_one_epoch(
    model, loader, loss_fn, optimizer, scaler, device, use_amp, desc
) -> EpochResult:
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in progress(loader, desc, len(loader)):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, use_amp):
            outputs = model(images)
            loss = loss_fn(outputs, labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total_loss += loss.item() * labels.size(0)
        correct += (outputs.argmax(1) == labels).sum().item()
        seen += labels.size(0)
    return EpochResult(total_loss / seen, correct / seen)


@torch.no_grad()
def evaluate(model, loader, loss_fn, device, use_amp, desc) -> EpochResult:
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in progress(loader, desc, len(loader)):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast(device, use_amp):
            outputs = model(images)
            loss = loss_fn(outputs, labels)
        total_loss += loss.item() * labels.size(0)
        correct += (outputs.argmax(1) == labels).sum().item()
        seen += labels.size(0)
    return EpochResult(total_loss / seen, correct / seen)


# ---------------------------------------------------------------------------- setup
@dataclass
class Learner:
    """The model and what trains it, on one device."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    use_amp: bool
    trainable_parameters: int

    def train_on(self, loader: DataLoader, desc: str) -> EpochResult:
        return train_one_epoch(
            self.model,
            loader,
            self.loss_fn,
            self.optimizer,
            self.scaler,
            self.device,
            self.use_amp,
            desc,
        )

    def evaluate_on(self, loader: DataLoader, desc: str) -> EpochResult:
        # The module's evaluate, looked up at call time (tests replace it).
        return evaluate(self.model, loader, self.loss_fn, self.device, self.use_amp, desc)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(args: argparse.Namespace, device: torch.device, use_amp: bool) -> folders.DataSplits:
    data = folders.load_splits(args.data_dir, args.image_size)
    log.info(
        "%d classes; %d/%d/%d train/valid/test images; device %s, amp %s",
        len(data.classes),
        len(data.train),
        len(data.valid),
        len(data.test),
        device,
        use_amp,
    )
    return data


def make_loaders(args: argparse.Namespace, data: folders.DataSplits) -> dict[str, DataLoader]:
    """One loader per split; only the training one shuffles."""
    return {
        split: folders.make_loader(
            getattr(data, split), args.batch_size, split == "train", args.num_workers
        )
        for split in folders.SPLITS
    }


@contextlib.contextmanager
def worker_loaders(args: argparse.Namespace, data: folders.DataSplits):
    """The loaders for the block; their worker processes (``--num_workers``, persistent across
    epochs) are stopped and reaped when it ends, so none outlives training into the export."""
    loaders = make_loaders(args, data)
    try:
        yield loaders
    finally:
        # The loaders are the only owners of their iterators: dropping them runs each iterator's
        # shutdown now, which tells its workers to stop and joins them.
        loaders.clear()
        leftover = multiprocessing.active_children()
        if leftover:
            log.warning("data loader workers still running after training: %s", leftover)


def create_learner(
    args: argparse.Namespace, data: folders.DataSplits, device: torch.device, use_amp: bool
) -> Learner:
    """ResNet50 + head, cross-entropy (optionally class-weighted), AdamW and the AMP scaler."""
    num_classes = len(data.classes)
    model = network.build_model(
        num_classes, args.hidden_size, args.dropout, args.pretrained, args.unfreeze_stages
    ).to(device)
    trainable, total = network.count_parameters(model)
    log.info("parameters: %d trainable of %d", trainable, total)
    weights = folders.class_weights(data.train.targets, num_classes) if args.class_weights else None
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None)
    optimizer = torch.optim.AdamW(
        network.trainable_parameters(model),
        lr=args.lr,
        eps=args.eps,
        weight_decay=args.weight_decay,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    return Learner(model, loss_fn, optimizer, scaler, device, use_amp, trainable)


# ---------------------------------------------------------------------------- training
@dataclass
class FitResult:
    stopped_early: bool
    seconds: float


def run_epoch(
    epoch: int, epochs: int, learner: Learner, loaders: dict[str, DataLoader], hook
) -> dict[str, Any]:
    """Train one epoch, validate, print the metric line; returns the epoch's history entry."""
    started = time.perf_counter()
    debugger.set_hook_mode(hook, "TRAIN")
    train = learner.train_on(loaders["train"], f"epoch {epoch} train")
    debugger.set_hook_mode(hook, "EVAL")
    valid = learner.evaluate_on(loaders["valid"], f"epoch {epoch} valid")
    seconds = time.perf_counter() - started
    print(
        metrics.epoch_line(
            epoch, epochs, train.loss, train.accuracy, valid.loss, valid.accuracy, seconds
        ),
        flush=True,
    )
    return {
        "epoch": epoch,
        "train_loss": train.loss,
        "train_acc": train.accuracy,
        "valid_loss": valid.loss,
        "valid_acc": valid.accuracy,
        "seconds": round(seconds, 3),
    }


def track_best(state: TrainingState, epoch: int, valid_loss: float, model: nn.Module) -> bool:
    """Early stopping's bookkeeping: a lower valid loss keeps a copy of the weights and resets
    the count of stale epochs. True when this epoch is the new best."""
    if valid_loss < state.best_loss:
        state.best_loss, state.best_epoch, state.stale = valid_loss, epoch, 0
        state.best_state = copy.deepcopy(
            {k: v.detach().cpu() for k, v in model.state_dict().items()}
        )
        return True
    state.stale += 1
    return False


def fit(
    args: argparse.Namespace,
    learner: Learner,
    loaders: dict[str, DataLoader],
    hook,
    saved: Checkpoints,
    state: TrainingState,
) -> FitResult:
    """The epoch loop from where ``state`` stands, until ``--epochs`` or ``--patience``."""
    started = time.perf_counter()
    stopped_early = False
    for epoch in range(state.start_epoch, args.epochs + 1):
        if args.patience and state.stale >= args.patience:
            stopped_early = True
            break
        entry = run_epoch(epoch, args.epochs, learner, loaders, hook)
        state.history.append(entry)
        if track_best(state, epoch, entry["valid_loss"], learner.model):
            saved.save_best(state.best_state)
        saved.save_last(epoch, learner.model, learner.optimizer, learner.scaler, state)
    return FitResult(stopped_early, time.perf_counter() - started)


def test_best(
    learner: Learner, loader: DataLoader, best_state: dict[str, torch.Tensor] | None, hook
) -> EpochResult:
    """Test the epoch with the lowest validation loss, not merely the last one (its weights stay
    in the model, to be shipped); prints the test line."""
    if best_state is not None:
        learner.model.load_state_dict(best_state)
    debugger.set_hook_mode(hook, "PREDICT")
    test = learner.evaluate_on(loader, "test")
    debugger.close(hook)
    print(metrics.test_line(test.loss, test.accuracy), flush=True)
    return test


# ---------------------------------------------------------------------------- outputs
def save_artifact(
    args: argparse.Namespace,
    model: nn.Module,
    classes: list[str],
    best_epoch: int,
    test: EpochResult,
) -> dict[str, Any]:
    """Weights, classes and config into ``--model-dir``; returns the config."""
    return store.save_artifact(
        model,
        args.model_dir,
        classes,
        hidden_size=args.hidden_size,
        dropout=args.dropout,
        image_size=args.image_size,
        mean=contract.IMAGENET_MEAN,
        std=contract.IMAGENET_STD,
        model_name=args.model_name,
        extra={
            "trained": {
                "pretrained": args.pretrained,
                "unfreeze_stages": args.unfreeze_stages,
                "lr": args.lr,
                "batch_size": args.batch_size,
                "best_epoch": best_epoch,
                "test_accuracy": test.accuracy,
            }
        },
    )


def summarize(
    args: argparse.Namespace,
    data: folders.DataSplits,
    learner: Learner,
    state: TrainingState,
    fitted: FitResult,
    test: EpochResult,
    *,
    seconds: float,
    smdebug: str | None,
    config: dict[str, Any],
    cpu_form: Path | None,
) -> dict[str, Any]:
    """The run in one JSON-able dict: the last stdout line."""
    history, best_epoch = state.history, state.best_epoch
    return {
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "epochs": len(history),
        "seconds": round(seconds, 2),
        "train_seconds": round(fitted.seconds, 2),
        "best_epoch": best_epoch,
        "best_valid_loss": state.best_loss,
        "valid_accuracy": next((h["valid_acc"] for h in history if h["epoch"] == best_epoch), None),
        "stopped_early": fitted.stopped_early,
        "resumed_from_epoch": state.resumed_from_epoch,
        "num_classes": len(data.classes),
        "images": {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)},
        "trainable_parameters": learner.trainable_parameters,
        "device": learner.device.type,
        "amp": learner.use_amp,
        "num_workers": args.num_workers,
        "smdebug": smdebug,
        "model_dir": str(args.model_dir),
        "model_version": config["model_version"],
        "cpu_form": str(cpu_form) if cpu_form else None,
    }


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, test, write the artifact; returns the summary printed as the last stdout line."""
    started = time.perf_counter()
    args = parse_args(argv)
    seed_everything(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_amp = args.amp and device.type == "cuda"

    data = load_data(args, device, use_amp)
    learner = create_learner(args, data, device, use_amp)
    hook = create_debug_hook(args.smdebug_dir)
    debugger.register(hook, learner.model, learner.loss_fn)
    saved = Checkpoints(args.checkpoint_dir, checkpoint_signature(args, len(data.classes)))
    state = saved.resume(learner.model, learner.optimizer, learner.scaler)

    with worker_loaders(args, data) as loaders:
        fitted = fit(args, learner, loaders, hook, saved, state)
        test = test_best(learner, loaders["test"], state.best_state, hook)

    model = learner.model.cpu().eval()
    config = save_artifact(args, model, data.classes, state.best_epoch, test)
    cpu_form = cpu_export.export_cpu_form(model, Path(args.model_dir)) if args.cpu_form else None
    if cpu_form and args.int8:
        quantize.export_int8_form(Path(args.model_dir), data, args.int8_max_drop)
    elif cpu_form:
        quantize.disabled(Path(args.model_dir), "disabled (--int8 false)")

    summary = summarize(
        args,
        data,
        learner,
        state,
        fitted,
        test,
        seconds=time.perf_counter() - started,
        smdebug=debugger.out_dir(hook),
        config=config,
        cpu_form=cpu_form,
    )
    print(json.dumps(summary), flush=True)
    return summary


def cli(argv: list[str] | None = None) -> None:
    """The script: what the user can fix (no ImageNet weights offline, a dataset in another
    layout) ends it with one line on stderr, not a traceback."""
    try:
        main(argv)
    except (network.PretrainedWeightsUnavailable, folders.DatasetError) as exc:
        raise SystemExit(f"train.py: error: {exc}") from None
