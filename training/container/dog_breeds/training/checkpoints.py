"""Checkpoints for spot training: a job restarted with the same folder continues, not restarts.

The folder (``--checkpoint-dir``, on SageMaker /opt/ml/checkpoints, synced with S3) holds
``last.pt`` (written after every epoch: weights, optimiser, scaler, early-stopping state, history)
and ``best.pt`` (the weights with the lowest valid loss so far).
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger("train")

SAGEMAKER_CHECKPOINT_DIR = Path("/opt/ml/checkpoints")
CHECKPOINT_FILE = "last.pt"
BEST_FILE = "best.pt"


@dataclass
class TrainingState:
    """How far training has come: what ``last.pt`` carries over to a restarted job."""

    best_loss: float = float("inf")
    best_epoch: int = 0
    stale: int = 0  # epochs since the last lower valid loss
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    resumed_from_epoch: int | None = None

    @property
    def start_epoch(self) -> int:
        return (self.resumed_from_epoch or 0) + 1


def checkpoint_signature(args: argparse.Namespace, num_classes: int) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed (not lr/epochs: those may change)."""
    return {
        "num_classes": num_classes,
        "hidden_size": args.hidden_size,
        "pretrained": args.pretrained,
        "unfreeze_stages": args.unfreeze_stages,
    }


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


class Checkpoints:
    """The checkpoint folder of one run; without a folder nothing is resumed or saved."""

    def __init__(self, directory: Path | None, signature: dict[str, Any]) -> None:
        self.directory = directory
        self.signature = signature
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def resume(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
    ) -> TrainingState:
        """Load ``last.pt`` into model, optimiser and scaler when it is for this model; returns
        where training goes on (a fresh ``TrainingState`` when there is nothing to resume)."""
        last = load_checkpoint(self.directory, self.signature)
        if last is None:
            return TrainingState()
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        scaler.load_state_dict(last["scaler"])
        log.info("resumed from %s after epoch %d", self.directory, last["epoch"])
        best_state = None
        if (self.directory / BEST_FILE).is_file():
            best_state = torch.load(
                self.directory / BEST_FILE, map_location="cpu", weights_only=True
            )
        return TrainingState(
            best_loss=last["best_loss"],
            best_epoch=last["best_epoch"],
            stale=last["stale"],
            history=last["history"],
            best_state=best_state,
            resumed_from_epoch=last["epoch"],
        )

    def save_best(self, best_state: dict[str, torch.Tensor]) -> None:
        if self.directory is not None:
            _atomic_save(best_state, self.directory / BEST_FILE)

    def save_last(
        self,
        epoch: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        state: TrainingState,
    ) -> None:
        if self.directory is not None:
            _atomic_save(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "best_loss": state.best_loss,
                    "best_epoch": state.best_epoch,
                    "stale": state.stale,
                    "history": state.history,
                    "signature": self.signature,
                },
                self.directory / CHECKPOINT_FILE,
            )
