"""SSF (Lian et al. 2022, "Scaling & Shifting Your Features"): a learned per-channel scale and
shift after every operation of the frozen backbone, merged away for inference.

After each linear layer, convolution and normalisation layer of the backbone (the classifier
excepted) SSF computes ``y = gamma * x + beta`` per output channel. This is the placement of
the reference code (dongzelian/SSF, ``models/vision_transformer.py``: ``ssf_ada`` after the patch
embedding's convolution, ``qkv``, ``proj``, ``norm1``, ``norm2``, ``fc1``, ``fc2`` and the final
``norm``), taken as one rule so it covers every timm family: on ViT-B/16 it gives the
reference's 205,824 parameters (0.21 M without the head; SSF's paper reports 0.24 M for VTAB,
which includes the VTAB tasks' mean classifier head), on ResNets a scale and shift after every
convolution and every BatchNorm.

Initialisation as in the reference (``init_ssf_scale_shift``): ``gamma ~ N(1, init_std)``,
``beta ~ N(0, init_std)`` with ``init_std = 0.02``; ``init_std=0`` starts exactly at the frozen
backbone (gamma 1, beta 0).

Merging (:meth:`SsfTuning.merge`): a scale and shift after a linear map is a linear map, so it
folds into the preceding layer: ``W' = diag(gamma) W``, ``b' = gamma b + beta`` for a linear
layer or convolution (a bias is created where the layer had none), ``w' = gamma w``,
``b' = gamma b + beta`` for a normalisation layer's affine part. The merged backbone is the
plain timm model again, with no extra operation at inference.

The scales and shifts are applied by forward hooks on the backbone's own modules, so the
backbone is neither copied nor restructured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import LayerNorm2d
from torch import nn

from lionbench.errors import ConfigError
from lionbench.settings import setting

from . import register_method
from .base import MethodConfig, PetlModel

NORMS = (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)
LAYERS = (nn.Linear, nn.Conv2d, *NORMS)


@dataclass
class SsfConfig(MethodConfig):
    init_std: float = setting(0.02, low=0.0, high=1.0, help="gamma ~ N(1, init_std), beta ~ "
                              "N(0, init_std), as the reference code; 0: the identity")


def channels_of(module: nn.Module) -> int:
    """The number of output channels a scale and shift act on."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1])
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    return module.num_features  # BatchNorm


def channel_dim(module: nn.Module) -> int:
    """Where the channels are in the module's output: last for linear layers and token
    LayerNorms, 1 for convolutions and image norms (BatchNorm, GroupNorm, LayerNorm2d)."""
    if isinstance(module, nn.Linear) or (isinstance(module, nn.LayerNorm)
                                         and not isinstance(module, LayerNorm2d)):
        return -1
    return 1


def ssf_targets(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every linear, convolution and normalisation layer outside the classifier, in order."""
    head = {id(m) for m in backbone.get_classifier().modules()}
    found = [(n, m) for n, m in backbone.named_modules()
             if isinstance(m, LAYERS) and id(m) not in head]
    if not found:
        raise ConfigError(f"ssf: {type(backbone).__name__} has no linear, convolution or "
                          "normalisation layer outside its classifier")
    return found


class ScaleShift(nn.Module):
    """``gamma * x + beta`` over one channel dimension; a forward hook of the layer before."""

    def __init__(self, channels: int, dim: int, init_std: float):
        super().__init__()
        self.dim = dim
        self.scale = nn.Parameter(torch.empty(channels).normal_(1.0, init_std))
        self.shift = nn.Parameter(torch.empty(channels).normal_(0.0, init_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[self.dim] = -1
        return x * self.scale.view(shape).to(x.dtype) + self.shift.view(shape).to(x.dtype)

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return self(output)


@torch.no_grad()
def fold(module: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Fold ``scale * module(x) + shift`` into ``module``'s own weight and bias."""
    weight = module.weight
    if weight is None:  # a norm without affine part: gain scale, bias shift
        module.weight = nn.Parameter(scale.clone(), requires_grad=False)
        module.bias = nn.Parameter(shift.clone(), requires_grad=False)
        return
    view = [-1] + [1] * (weight.dim() - 1)  # output channels first, for every kind here
    weight.mul_(scale.view(view).to(weight.dtype))
    if module.bias is None:
        module.bias = nn.Parameter(shift.clone().to(weight.dtype), requires_grad=False)
    else:
        module.bias.mul_(scale.to(weight.dtype)).add_(shift.to(weight.dtype))


class SsfTuning(PetlModel):
    """Frozen backbone in eval mode; per-channel scales and shifts after every layer, and the
    head, train. :meth:`merge` folds them into the backbone for inference."""

    config_class = SsfConfig

    def __init__(self, backbone: nn.Module, config: SsfConfig):
        super().__init__(backbone, config)
        self.train_only_head()
        self.targets = [m for _, m in ssf_targets(self.backbone)]
        self.ssf = nn.ModuleList(ScaleShift(channels_of(m), channel_dim(m), config.init_std)
                                 for m in self.targets)
        self._handles = [m.register_forward_hook(s.hook)
                         for m, s in zip(self.targets, self.ssf, strict=True)]
        self.merged = False

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        if self.merged:
            return {"head": list(self.head().parameters())}
        return {"head": list(self.head().parameters()), "ssf": list(self.ssf.parameters())}

    @torch.no_grad()
    def merge(self) -> None:
        """Fold every scale and shift into the layer before it and remove the hooks: the
        backbone then computes the same function with no extra operation (for inference;
        the scales and shifts no longer train)."""
        if self.merged:
            return
        for handle in self._handles:
            handle.remove()
        for module, ss in zip(self.targets, self.ssf, strict=True):
            fold(module, ss.scale, ss.shift)
            ss.scale.requires_grad_(False)
            ss.shift.requires_grad_(False)
        self._handles = []
        self.merged = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


register_method("ssf", SsfTuning, paper_name="SSF",
                source="Lian et al. 2022 (SSF); reference code dongzelian/SSF",
                description="a learned scale and shift after every linear, conv and norm "
                            "layer; merge() folds them into the weights")
