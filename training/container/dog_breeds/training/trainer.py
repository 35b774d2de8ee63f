"""Train the dog-breed classifier: what the SageMaker entry point ``train.py`` runs, and the same
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
import copy
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dog_breeds.artifact import store
from dog_breeds.data import folders
from dog_breeds.model import network
from dog_breeds.serving import runtimes
from dog_breeds.training import metrics

log = logging.getLogger("train")

SAGEMAKER_CHECKPOINT_DIR = Path("/opt/ml/checkpoints")
SMDEBUG_CONFIG_ENV = "SMDEBUG_CONFIG_FILE_PATH"
SMDEBUG_DEFAULT_CONFIG = "/opt/ml/input/config/debughookconfig.json"
CHECKPOINT_FILE = "last.pt"
BEST_FILE = "best.pt"


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
        help="also export the CPU-optimised serving form (runtimes.export_cpu_form)",
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


# ---------------------------------------------------------------------------- Debugger hook
def create_debug_hook(smdebug_dir: Path | None):
    """An smdebug hook when asked for (``--smdebug-dir``) or configured by SageMaker; else None."""
    config_path = os.environ.get(SMDEBUG_CONFIG_ENV, SMDEBUG_DEFAULT_CONFIG)
    if smdebug_dir is None and not Path(config_path).is_file():
        log.info("smdebug hook off: no --smdebug-dir and no %s", config_path)
        return None
    # smdebug logs every registered parameter at INFO to stdout, which carries the metric lines.
    os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
    try:
        import smdebug.pytorch as smd
    except ImportError as exc:
        log.warning("smdebug hook off: smdebug is not importable (%s)", exc)
        return None
    if smdebug_dir is not None:
        hook = smd.Hook(
            out_dir=str(smdebug_dir),
            save_config=smd.SaveConfig(save_interval=1),
            include_collections=[smd.CollectionKeys.LOSSES],
        )
    else:
        hook = smd.Hook.create_from_json_file()
    log.info("smdebug hook on: writing to %s", hook.out_dir)
    return hook


def set_hook_mode(hook, mode_name: str) -> None:
    if hook is not None:
        import smdebug.pytorch as smd

        hook.set_mode(getattr(smd.modes, mode_name))


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


def autocast(device: torch.device, use_amp: bool):
    if use_amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return nullcontext()


# ---------------------------------------------------------------------------- checkpoints
def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def checkpoint_signature(args: argparse.Namespace, num_classes: int) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed (not lr/epochs: those may change)."""
    return {
        "num_classes": num_classes,
        "hidden_size": args.hidden_size,
        "pretrained": args.pretrained,
        "unfreeze_stages": args.unfreeze_stages,
    }


def load_checkpoint(checkpoint_dir: Path | None, signature: dict[str, Any]) -> dict | None:
    if checkpoint_dir is None or not (checkpoint_dir / CHECKPOINT_FILE).is_file():
        return None
    state = torch.load(checkpoint_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    if state.get("signature") != signature:
        log.warning(
            "checkpoint in %s is for another model (%s); starting fresh",
            checkpoint_dir,
            state.get("signature"),
        )
        return None
    return state


# ---------------------------------------------------------------------------- main
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, test, write the artifact; returns the summary printed as the last stdout line."""
    started = time.perf_counter()
    args = parse_args(argv)
    seed_everything(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_amp = args.amp and device.type == "cuda"

    data = folders.load_splits(args.data_dir, args.image_size)
    num_classes = len(data.classes)
    log.info(
        "%d classes; %d/%d/%d train/valid/test images; device %s, amp %s",
        num_classes,
        len(data.train),
        len(data.valid),
        len(data.test),
        device,
        use_amp,
    )
    loaders = {
        "train": folders.make_loader(data.train, args.batch_size, True, args.num_workers),
        "valid": folders.make_loader(data.valid, args.batch_size, False, args.num_workers),
        "test": folders.make_loader(data.test, args.batch_size, False, args.num_workers),
    }

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

    hook = create_debug_hook(args.smdebug_dir)
    if hook is not None:
        hook.register_module(model)
        hook.register_loss(loss_fn)

    signature = checkpoint_signature(args, num_classes)
    checkpoint_dir = args.checkpoint_dir
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    start_epoch, best_loss, best_epoch, stale, history = 1, float("inf"), 0, 0, []
    resumed = load_checkpoint(checkpoint_dir, signature)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scaler.load_state_dict(resumed["scaler"])
        start_epoch = resumed["epoch"] + 1
        best_loss, best_epoch, stale = resumed["best_loss"], resumed["best_epoch"], resumed["stale"]
        history = resumed["history"]
        log.info("resumed from %s after epoch %d", checkpoint_dir, resumed["epoch"])
    best_state = None
    if checkpoint_dir is not None and (checkpoint_dir / BEST_FILE).is_file() and resumed:
        best_state = torch.load(checkpoint_dir / BEST_FILE, map_location="cpu", weights_only=True)

    train_started = time.perf_counter()
    stopped_early = False
    for epoch in range(start_epoch, args.epochs + 1):
        if args.patience and stale >= args.patience:
            stopped_early = True
            break
        epoch_started = time.perf_counter()
        set_hook_mode(hook, "TRAIN")
        train = train_one_epoch(
            model,
            loaders["train"],
            loss_fn,
            optimizer,
            scaler,
            device,
            use_amp,
            f"epoch {epoch} train",
        )
        set_hook_mode(hook, "EVAL")
        valid = evaluate(model, loaders["valid"], loss_fn, device, use_amp, f"epoch {epoch} valid")
        seconds = time.perf_counter() - epoch_started
        print(
            metrics.epoch_line(
                epoch, args.epochs, train.loss, train.accuracy, valid.loss, valid.accuracy, seconds
            ),
            flush=True,
        )
        history.append(
            {
                "epoch": epoch,
                "train_loss": train.loss,
                "train_acc": train.accuracy,
                "valid_loss": valid.loss,
                "valid_acc": valid.accuracy,
                "seconds": round(seconds, 3),
            }
        )
        if valid.loss < best_loss:
            best_loss, best_epoch, stale = valid.loss, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            if checkpoint_dir is not None:
                _atomic_save(best_state, checkpoint_dir / BEST_FILE)
        else:
            stale += 1
        if checkpoint_dir is not None:
            _atomic_save(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "best_loss": best_loss,
                    "best_epoch": best_epoch,
                    "stale": stale,
                    "history": history,
                    "signature": signature,
                },
                checkpoint_dir / CHECKPOINT_FILE,
            )
    train_seconds = time.perf_counter() - train_started

    # Test and ship the epoch with the lowest validation loss, not merely the last one.
    if best_state is not None:
        model.load_state_dict(best_state)
    set_hook_mode(hook, "PREDICT")
    test = evaluate(model, loaders["test"], loss_fn, device, use_amp, "test")
    if hook is not None:
        hook.close()
    print(metrics.test_line(test.loss, test.accuracy), flush=True)

    model = model.cpu().eval()
    config = store.save_artifact(
        model,
        args.model_dir,
        data.classes,
        hidden_size=args.hidden_size,
        dropout=args.dropout,
        image_size=args.image_size,
        mean=folders.IMAGENET_MEAN,
        std=folders.IMAGENET_STD,
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
    cpu_form = runtimes.export_cpu_form(model, Path(args.model_dir)) if args.cpu_form else None

    summary = {
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "epochs": len(history),
        "seconds": round(time.perf_counter() - started, 2),
        "train_seconds": round(train_seconds, 2),
        "best_epoch": best_epoch,
        "best_valid_loss": best_loss,
        "valid_accuracy": next((h["valid_acc"] for h in history if h["epoch"] == best_epoch), None),
        "stopped_early": stopped_early,
        "resumed_from_epoch": start_epoch - 1 if resumed is not None else None,
        "num_classes": num_classes,
        "images": {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)},
        "trainable_parameters": trainable,
        "device": device.type,
        "amp": use_amp,
        "smdebug": str(hook.out_dir) if hook is not None else None,
        "model_dir": str(args.model_dir),
        "model_version": config["model_version"],
        "cpu_form": str(cpu_form) if cpu_form else None,
    }
    print(json.dumps(summary), flush=True)
    return summary


def cli(argv: list[str] | None = None) -> None:
    """The script: what the user can fix (no ImageNet weights offline, a dataset in another
    layout) ends it with one line on stderr, not a traceback."""
    try:
        main(argv)
    except (network.PretrainedWeightsUnavailable, folders.DatasetError) as exc:
        raise SystemExit(f"train.py: error: {exc}") from None
