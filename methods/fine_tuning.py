"""Fine-tuning: every weight trains, starting from the pretrained backbone, with a new head.

The paper's baseline 3 (Sec. 4.2). Retraining (``methods/retraining.py``) is the same model
started from random weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import register_method
from .base import MethodConfig, PetlModel, unfreeze


@dataclass
class FullTuningConfig(MethodConfig):
    """No hyperparameters of its own: the optimizer settings live in the training config."""


class FullTuning(PetlModel):
    """All parameters of the backbone and head are trainable; BatchNorm statistics update."""

    config_class = FullTuningConfig
    frozen_backbone = False

    def __init__(self, backbone: torch.nn.Module, config: FullTuningConfig):
        super().__init__(backbone, config)
        unfreeze(self.backbone.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


register_method("fine-tuning", FullTuning, paper_name="Fine-tuning", source="baseline",
                description="all weights train from the pretrained init, new head")
