"""Adapter (Houlsby et al. 2019): residual bottlenecks inserted into a frozen backbone.

An adapter maps ``u -> u + up(act(down(u)))``. The up-projection (weight and bias) starts at zero
and the down-projection at its default (Kaiming) init, so at step 0 every adapter is the identity
and the model computes exactly the frozen backbone, while the up-projection still receives a
gradient at the first step. (VPT's reference code zero-initialises *both* projections, so only one
bias ever trains; we avoid that.)

Where adapters go:

- **Transformers** (every timm block with ``attn`` and ``mlp``: ViT, DeiT, Swin, ...): one after
  the attention and one after the MLP of every block, applied to the sub-layer's output before the
  residual addition, as in Houlsby. Bottleneck width ``bottleneck`` (8, as in NOAH and V-PETL
  Bench: 313,536 parameters on ViT-B/16). GELU inside. On Swin the attention adapter acts on the
  windowed tokens, which is the same thing because the adapter is token-wise.
- **CNNs** (timm ResNets' ``layer1..4``, ``stages[i].blocks``, or EfficientNet-style ``blocks``):
  a residual 1x1-conv bottleneck after every residual block, of width ``cnn_fraction`` of the
  block's output channels (at least 1). The default 1/64 is near the transformer ratio (8/768)
  and gives ResNet-50 about 0.64 M adapter parameters. ReLU inside, as the backbone uses.

Adapters are attached with forward hooks on the backbone's own blocks and live in
``self.adapters``; the backbone is neither copied nor restructured, so its state-dict keys do not
change and its pretrained weights load as usual.
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
class AdapterConfig(MethodConfig):
    bottleneck: int = setting(8, low=1, high=4096, help="transformers: hidden width of each "
                              "adapter")
    cnn_fraction: float = setting(1 / 64, low=1e-6, high=1.0, help="CNNs: hidden width as a "
                                  "fraction of the block's output channels (at least 1)")


class Bottleneck(nn.Module):
    """``u + up(act(down(u)))`` with ``up`` zero-initialised: the identity at step 0."""

    def __init__(self, down: nn.Module, act: nn.Module, up: nn.Linear | nn.Conv2d):
        super().__init__()
        self.down, self.act, self.up = down, act, up
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.up(self.act(self.down(u)))

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook: replace the hooked module's output by the adapted one."""
        return self(output)


def linear_adapter(dim: int, width: int) -> Bottleneck:
    return Bottleneck(nn.Linear(dim, width), nn.GELU(), nn.Linear(width, dim))


def conv_adapter(channels: int, width: int) -> Bottleneck:
    return Bottleneck(nn.Conv2d(channels, width, 1), nn.ReLU(), nn.Conv2d(width, channels, 1))


def transformer_blocks(backbone: nn.Module) -> list[nn.Module]:
    """Every block with an attention and an MLP sub-layer, in forward order."""
    return [m for m in backbone.modules()
            if isinstance(getattr(m, "attn", None), nn.Module)
            and isinstance(getattr(m, "mlp", None), nn.Module)]


def cnn_blocks(backbone: nn.Module) -> list[nn.Module]:
    """The residual blocks of a timm CNN, in forward order."""
    layers = [getattr(backbone, f"layer{i}", None) for i in range(1, 5)]
    if all(isinstance(m, nn.Sequential) for m in layers):  # ResNet family
        return [block for layer in layers for block in layer]
    stages = getattr(backbone, "stages", None)
    if isinstance(stages, nn.Sequential) and all(hasattr(s, "blocks") for s in stages):
        return [block for stage in stages for block in stage.blocks]  # ResNetV2, ConvNeXt, ...
    blocks = getattr(backbone, "blocks", None)
    if isinstance(blocks, nn.Sequential) and all(isinstance(s, nn.Sequential) for s in blocks):
        return [block for stage in blocks for block in stage]  # EfficientNet, MobileNet
    raise ConfigError(f"adapter: cannot find the blocks of {type(backbone).__name__}; supported: "
                      "timm transformers (blocks with attn and mlp) and ResNet/ConvNeXt/"
                      "EfficientNet-style CNNs")


@torch.no_grad()
def output_channels(backbone: nn.Module, blocks: list[nn.Module], size: int = 64) -> list[int]:
    """Each block's output channels, from one small dry run (robust to every block layout)."""
    channels: dict[int, int] = {}

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        channels[id(module)] = output.shape[1]

    handles = [b.register_forward_hook(record) for b in blocks]
    was_training = backbone.training
    param = next(backbone.parameters())
    try:
        backbone.eval()
        backbone(torch.zeros(1, 3, size, size, device=param.device, dtype=param.dtype))
    finally:
        backbone.train(was_training)
        for h in handles:
            h.remove()
    return [channels[id(b)] for b in blocks]


class AdapterTuning(PetlModel):
    """Frozen backbone in eval mode; hooked bottleneck adapters and the head train."""

    config_class = AdapterConfig

    def __init__(self, backbone: nn.Module, config: AdapterConfig):
        super().__init__(backbone, config)
        self.train_only_head()
        self.adapters = nn.ModuleList()
        hooked: list[nn.Module] = []  # the sub-module each adapter follows, in order
        blocks = transformer_blocks(self.backbone)
        if blocks:
            for block in blocks:
                dim = block.mlp.fc2.out_features
                for sub in (block.attn, block.mlp):
                    self.adapters.append(linear_adapter(dim, config.bottleneck))
                    hooked.append(sub)
        else:
            blocks = cnn_blocks(self.backbone)
            for block, channels in zip(blocks, output_channels(self.backbone, blocks),
                                       strict=True):
                width = max(1, round(channels * config.cnn_fraction))
                self.adapters.append(conv_adapter(channels, width))
                hooked.append(block)
        self._handles = [sub.register_forward_hook(adapter.hook)
                         for sub, adapter in zip(hooked, self.adapters, strict=True)]

    def remove(self) -> None:
        """Detach the adapters from the backbone, which then computes its frozen self again."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"head": list(self.head().parameters()), "adapter": list(self.adapters.parameters())}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


register_method("adapter", AdapterTuning, paper_name="Adapter",
                source="Houlsby et al. 2019; lionbench (placement and CNN variant its own)",
                description="Houlsby bottleneck adapters (after attention and MLP; after CNN "
                            "blocks), up-projection zero-initialised")
