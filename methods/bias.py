"""Bias (BitFit, Ben Zaken et al. 2021): only the bias terms of the backbone and the new head train.

Every parameter whose name ends in ``bias`` trains: the biases of linear and convolution layers
and the shifts (``beta``) of the normalisation layers (LayerNorm, BatchNorm, GroupNorm), plus
``q_bias``/``v_bias`` where a family splits them. Swin's ``relative_position_bias_table`` is an
attention table, not a bias term, and stays frozen.

On CNNs whose convolutions carry no bias (every timm ResNet: ``conv(..., bias=False)`` followed by
BatchNorm), the BatchNorm shifts *are* the biases: BatchNorm's ``bias`` is the additive term of
the affine map that follows each convolution, so training it is BitFit for that network
(ResNet-50: 26,560 shifts). VPT's reference code reaches no bias at all on ResNet (it looks for
convolution biases); naming the shifts explicitly avoids that bug.

The frozen backbone stays in eval mode, so BatchNorm running statistics never change: only the
learned shift moves, which keeps the "only biases change" promise literal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import register_method
from .base import MethodConfig, PetlModel


@dataclass
class BiasConfig(MethodConfig):
    """No hyperparameters: which parameters train is fixed by the method's definition."""


def is_bias(name: str) -> bool:
    """A parameter name that denotes an additive bias term (``bias``, ``q_bias``, ``v_bias``)."""
    return name.rsplit(".", 1)[-1].endswith("bias")


def bias_parameters(backbone: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The backbone's bias terms outside its classifier, by name, in registration order."""
    head_ids = {id(p) for p in backbone.get_classifier().parameters()}
    return [(n, p) for n, p in backbone.named_parameters()
            if is_bias(n) and id(p) not in head_ids]


class BiasTuning(PetlModel):
    """Frozen backbone in eval mode; its bias terms and the head train."""

    config_class = BiasConfig

    def __init__(self, backbone: nn.Module, config: BiasConfig):
        super().__init__(backbone, config)
        # Plain list, not a ParameterList: the biases stay registered once, inside the backbone.
        self.biases: list[nn.Parameter] = [p for _, p in bias_parameters(self.backbone)]
        self.train_only_head(self.biases)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"head": list(self.head().parameters()), "bias": list(self.biases)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


register_method("bias", BiasTuning, paper_name="Bias", source="Ben Zaken et al. 2021 (BitFit)",
                description="BitFit: only bias terms (BatchNorm shifts on CNNs) and the head train")
