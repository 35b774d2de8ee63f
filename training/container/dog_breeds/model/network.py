"""The classifier: torchvision ResNet50 with a two-layer head, for training and serving alike.

- ``pretrained=True``: ImageNet weights (``ResNet50_Weights.IMAGENET1K_V2``, downloaded by
  torchvision), backbone frozen, only the head trains; ``unfreeze_stages=N`` also trains the top N
  residual stages (layer4, then layer3, ...).
- ``pretrained=False``: random init and the *whole* network trains. A frozen random backbone gives
  chance-level accuracy (measured: BatchNorm in train mode on random features carries nothing).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models

ARCHITECTURE = "resnet50"
FEATURES = 2048  # ResNet50's pooled feature width
# Residual stages from the top down: unfreeze_stages=N unfreezes the first N of these.
STAGES = ("layer4", "layer3", "layer2", "layer1")
IMAGENET_WEIGHTS = models.ResNet50_Weights.IMAGENET1K_V2


class PretrainedWeightsUnavailable(RuntimeError):
    """torchvision could not download or read the ImageNet weights (offline, blocked, corrupt)."""


def cached_weights_path(weights: models.WeightsEnum = IMAGENET_WEIGHTS) -> Path:
    """Where torchvision keeps (and first looks for) downloaded weights: $TORCH_HOME/hub/..."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _resnet50(weights: models.WeightsEnum | None) -> nn.Module:
    try:
        return models.resnet50(weights=weights)
    except Exception as exc:
        if weights is None:
            raise
        cached = cached_weights_path(weights)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        if cached.is_file():
            problem = f"cannot read the cached ImageNet weights {cached} ({reason}): delete it"
        else:
            problem = (
                f"cannot download the ImageNet weights {weights} from {weights.url} "
                f"to {cached} ({reason}): allow that download or put the file there"
            )
        # One line for the user (train.py prints it); the cause stays chained for debugging.
        raise PretrainedWeightsUnavailable(
            f"{problem}, or train from random init with --pretrained false"
        ) from exc


class DogBreedNet(nn.Module):
    """ResNet50 backbone (its ``fc`` replaced by the head) whose frozen parts stay in eval mode."""

    def __init__(
        self, num_classes: int, hidden_size: int = 256, dropout: float = 0.3, weights=None
    ):
        super().__init__()
        self.backbone = _resnet50(weights)
        self.backbone.fc = nn.Sequential(
            nn.Linear(FEATURES, hidden_size),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def train(self, mode: bool = True) -> DogBreedNet:
        super().train(mode)
        if mode:
            # A frozen BatchNorm must not keep updating its running statistics either.
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                    p.requires_grad for p in module.parameters()
                ):
                    module.eval()
        return self


def check_unfreeze_stages(unfreeze_stages: int) -> None:
    if not 0 <= unfreeze_stages <= len(STAGES):
        raise ValueError(f"unfreeze_stages must be 0..{len(STAGES)}, got {unfreeze_stages}")


def configure_trainable(
    model: DogBreedNet, freeze_backbone: bool, unfreeze_stages: int = 0
) -> None:
    """Freeze the backbone (head and the top ``unfreeze_stages`` stages stay trainable) or not."""
    check_unfreeze_stages(unfreeze_stages)
    for param in model.backbone.parameters():
        param.requires_grad = not freeze_backbone
    if freeze_backbone:
        trainable = [
            model.backbone.fc,
            *(getattr(model.backbone, s) for s in STAGES[:unfreeze_stages]),
        ]
        for module in trainable:
            for param in module.parameters():
                param.requires_grad = True
    model.train(model.training)  # re-apply the BatchNorm rule above


def build_model(
    num_classes: int,
    hidden_size: int = 256,
    dropout: float = 0.3,
    pretrained: bool = False,
    unfreeze_stages: int = 0,
) -> DogBreedNet:
    """The network for training (``pretrained`` downloads ImageNet weights, or raises
    PretrainedWeightsUnavailable) or for serving (``pretrained=False``, then load a state_dict)."""
    check_unfreeze_stages(unfreeze_stages)  # before a 100 MB download, not after
    weights = IMAGENET_WEIGHTS if pretrained else None
    model = DogBreedNet(num_classes, hidden_size, dropout, weights=weights)
    configure_trainable(model, freeze_backbone=pretrained, unfreeze_stages=unfreeze_stages)
    return model


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in trainable_parameters(model)), total
