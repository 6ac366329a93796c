"""Head-tuning: the backbone is frozen and a new linear head trains (the paper's baseline 2).

The paper's wording ("fine-tunes the last layers ... while freezing the remaining layers")
also allows unfreezing the last block(s): ``unfreeze_blocks=N`` trains the last N entries of the
backbone's block sequence as well (timm's ``stages``/``layers``/``blocks``). Off by default, so
the default row is the classic linear probe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lionbench.errors import ConfigError
from lionbench.settings import setting

from . import register_method
from .base import MethodConfig, PetlModel


@dataclass
class HeadTuningConfig(MethodConfig):
    unfreeze_blocks: int = setting(0, low=0, high=64, help="also train the backbone's last N "
                                   "blocks (0: the linear probe)")


def get_blocks(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's top-level sequence of blocks, as timm names it per family."""
    for attr in ("blocks", "stages", "layers"):
        blocks = getattr(backbone, attr, None)
        if isinstance(blocks, nn.Sequential | nn.ModuleList):
            return list(blocks)
    resnet_layers = [getattr(backbone, f"layer{i}", None) for i in range(1, 5)]
    if all(isinstance(m, nn.Module) for m in resnet_layers):
        return [block for layer in resnet_layers for block in layer]
    raise ConfigError(f"cannot find the blocks of {type(backbone).__name__} to unfreeze; "
                      "use unfreeze_blocks=0")


class HeadTuning(PetlModel):
    """Frozen backbone in eval mode; only the head (and optionally the last blocks) train."""

    config_class = HeadTuningConfig

    def __init__(self, backbone: nn.Module, config: HeadTuningConfig):
        super().__init__(backbone, config)
        # A plain list, not a ModuleList: the blocks stay registered once, inside the backbone.
        self.unfrozen: list[nn.Module] = []
        if config.unfreeze_blocks:
            self.unfrozen = get_blocks(self.backbone)[-config.unfreeze_blocks:]
        self.train_only_head(*(block.parameters() for block in self.unfrozen))

    def train(self, mode: bool = True) -> HeadTuning:
        super().train(mode)  # backbone to eval ...
        for module in self.unfrozen:  # ... except the blocks that train
            module.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


register_method("head-tuning", HeadTuning, paper_name="Head-tuning", source="baseline",
                description="frozen backbone, new linear head (optionally the last blocks)")
