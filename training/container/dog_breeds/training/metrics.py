"""The training log's metric lines: written by train.py, read by SageMaker's metric definitions.

One place for both sides, so the tuner's objective regex can never drift from what train.py prints.
"""

from __future__ import annotations

# A float as Python prints it, including exponents and nan/inf.
_FLOAT = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))"

# SageMaker metric definitions (Estimator(metric_definitions=...)); names: the tuner objectives.
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": "train:loss", "Regex": r"train_loss=" + _FLOAT},
    {"Name": "train:accuracy", "Regex": r"train_acc=" + _FLOAT},
    {"Name": "valid:loss", "Regex": r"valid_loss=" + _FLOAT},
    {"Name": "valid:accuracy", "Regex": r"valid_acc=" + _FLOAT},
    {"Name": "test:loss", "Regex": r"test_loss=" + _FLOAT},
    {"Name": "test:accuracy", "Regex": r"test_acc=" + _FLOAT},
]

OBJECTIVE_METRIC = "valid:loss"
OBJECTIVE_TYPE = "Minimize"


def epoch_line(
    epoch: int,
    epochs: int,
    train_loss: float,
    train_acc: float,
    valid_loss: float,
    valid_acc: float,
    seconds: float,
) -> str:
    """The per-epoch line, e.g. ``epoch 3/10 train_loss=0.412 train_acc=0.871 ...``."""
    return (
        f"epoch {epoch}/{epochs} train_loss={train_loss:.6f} train_acc={train_acc:.4f} "
        f"valid_loss={valid_loss:.6f} valid_acc={valid_acc:.4f} seconds={seconds:.1f}"
    )


def test_line(test_loss: float, test_acc: float) -> str:
    """The line after training, e.g. ``test_loss=0.377 test_acc=0.9167``."""
    return f"test_loss={test_loss:.6f} test_acc={test_acc:.4f}"
