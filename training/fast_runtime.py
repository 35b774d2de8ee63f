"""CPU serving runtimes for the classifier: which engine runs the network at the endpoint.

Interface (used by endpoint_inference.model_fn and by train.py's packaging step):
- ``select_runtime(model_dir, build_torch_model) -> Runtime``
- ``export_cpu_form(model, model_dir) -> Path | None``
A Runtime takes a float32 NCHW batch, already normalised, and returns float32 logits (N, classes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

log = logging.getLogger(__name__)


class Runtime(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchRuntime:
    """Plain eager PyTorch fp32 on the CPU: the fallback that always works."""

    name = "pytorch"

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).float().numpy()


def export_cpu_form(model: torch.nn.Module, model_dir: Path) -> Path | None:
    """Write the CPU-optimised form of ``model`` into ``model_dir``; None when not available."""
    return None


def select_runtime(model_dir: Path, build_torch_model: Callable[[], torch.nn.Module]) -> Runtime:
    """The fastest runtime that ``model_dir`` and this environment support."""
    runtime = TorchRuntime(build_torch_model())
    log.info("serving runtime: %s", runtime.name)
    return runtime
