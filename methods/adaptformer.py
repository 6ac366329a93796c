"""AdaptFormer (Chen et al. 2022): a scaled bottleneck in parallel with each MLP block.

The reference code (ShoufaChen/AdaptFormer, ``models/custom_modules.py``, ``Block.forward``,
with ``models/adapter.py``, ``Adapter``, configured in ``main_image.py``) computes, in every
transformer block, ``x' = x + attn(norm1(x))`` and then

    out = x' + mlp(norm2(x')) + s * up(dropout(relu(down(x'))))

The adapter reads the block's stream ``x'`` itself (not ``norm2(x')``) and its output is added
beside the MLP's, scaled by ``s = 0.1`` (``ffn_adapter_scalar``), with no LayerNorm of its own
(``ffn_adapter_layernorm_option="none"``) and dropout 0.1. Initialisation ``"lora"``: ``down``
Kaiming-uniform, ``up`` and both biases zero, so step 0 computes the frozen backbone exactly.
ViT-B/16 with bottleneck 8: ``12 (768 * 8 + 8 + 8 * 768 + 768) = 156,768`` parameters (the
"0.16 M" of the VTAB tables).

On timm ViT/DeiT/Swin blocks the adapter is attached with hooks: a forward pre-hook on
``norm2`` keeps ``x'`` and a forward hook on the block adds the scaled adapter output (reshaped
to the block's output; Swin's MLP runs on flattened tokens). timm's LayerScale and drop-path
apply to the MLP branch only, as in the reference.

CNNs have no MLP block; AdaptFormer has no CNN variant. lionbench's own analogue: the same
scaled bottleneck (1x1 convolutions, ReLU) in parallel with every residual block, from the
block's input to its output (``down`` takes the block's stride), added after the block:
``out = block(x) + s * up(relu(down(x)))``, ``up`` zero at initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from timm.models.swin_transformer import SwinTransformerBlock
from timm.models.vision_transformer import Block
from torch import nn

from lionbench.errors import ConfigError
from lionbench.settings import setting

from . import register_method
from .adapter import cnn_blocks, transformer_blocks
from .base import MethodConfig, PetlModel


@dataclass
class AdaptFormerConfig(MethodConfig):
    bottleneck: int = setting(8, low=1, high=4096, help="the adapter's hidden width (channels "
                              "on CNNs)")
    scale: float = setting(0.1, low=0.0, high=100.0, help="s: the adapter's output is "
                           "multiplied by it")
    dropout: float = setting(0.1, low=0.0, high=1.0, high_open=True, help="inside the adapter, "
                             "after the ReLU")


class ParallelAdapter(nn.Module):
    """``s * up(dropout(relu(down(x))))``; ``down`` Kaiming-uniform, ``up`` and biases zero."""

    def __init__(self, down: nn.Linear | nn.Conv2d, up: nn.Linear | nn.Conv2d, scale: float,
                 dropout: float):
        super().__init__()
        self.down, self.up, self.scale = down, up, scale
        self.act, self.drop = nn.ReLU(), nn.Dropout(dropout)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        for tensor in (self.down.bias, self.up.weight, self.up.bias):
            nn.init.zeros_(tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.drop(self.act(self.down(x)))) * self.scale


class TransformerSlot:
    """Hooks of one transformer block: keep the input of ``norm2``, add the adapter after."""

    def __init__(self, adapter: ParallelAdapter):
        self.adapter = adapter
        self.stream: torch.Tensor | None = None

    def keep(self, module: nn.Module, args: tuple) -> None:
        self.stream = args[0]

    def add(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        stream, self.stream = self.stream, None
        return output + self.adapter(stream).reshape(output.shape)


def block_io(backbone: nn.Module, blocks: list[nn.Module], size: int = 64
             ) -> list[tuple[int, int, int]]:
    """(input channels, output channels, stride) of each CNN block, from one small dry run."""
    seen: dict[int, tuple[torch.Size, torch.Size]] = {}

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen[id(module)] = (args[0].shape, output.shape)

    handles = [b.register_forward_hook(record) for b in blocks]
    param = next(backbone.parameters())
    was_training = backbone.training
    try:
        backbone.eval()
        with torch.no_grad():
            backbone(torch.zeros(1, 3, size, size, device=param.device, dtype=param.dtype))
    finally:
        backbone.train(was_training)
        for h in handles:
            h.remove()
    out = []
    for b in blocks:
        shape_in, shape_out = seen[id(b)]
        out.append((shape_in[1], shape_out[1], max(1, shape_in[-1] // shape_out[-1])))
    return out


class AdaptFormerTuning(PetlModel):
    """Frozen backbone in eval mode; parallel scaled bottlenecks and the head train."""

    config_class = AdaptFormerConfig

    @classmethod
    def check_backbone(cls, backbone: nn.Module, config: MethodConfig) -> None:
        blocks = transformer_blocks(backbone)
        odd = [type(b).__name__ for b in blocks
               if not isinstance(b, Block | SwinTransformerBlock)]
        if odd:
            raise ConfigError(f"adaptformer supports timm's ViT/DeiT Block and Swin blocks "
                              f"(pre-norm MLP), not {odd[0]}")
        if not blocks:
            cnn_blocks(backbone)  # a ConfigError naming the supported CNN layouts

    def __init__(self, backbone: nn.Module, config: AdaptFormerConfig):
        super().__init__(backbone, config)
        self.check_backbone(backbone, config)
        self.train_only_head()
        b, s, p = config.bottleneck, config.scale, config.dropout
        self.adapters = nn.ModuleList()
        self._handles = []
        blocks = transformer_blocks(self.backbone)
        if blocks:
            for block in blocks:
                dim = block.mlp.fc2.out_features
                adapter = ParallelAdapter(nn.Linear(dim, b), nn.Linear(b, dim), s, p)
                slot = TransformerSlot(adapter)
                self.adapters.append(adapter)
                self._handles += [block.norm2.register_forward_pre_hook(slot.keep),
                                  block.register_forward_hook(slot.add)]
        else:
            blocks = cnn_blocks(self.backbone)
            for block, (c_in, c_out, stride) in zip(blocks, block_io(self.backbone, blocks),
                                                    strict=True):
                adapter = ParallelAdapter(nn.Conv2d(c_in, b, 1, stride=stride),
                                          nn.Conv2d(b, c_out, 1), s, p)
                self.adapters.append(adapter)
                self._handles.append(block.register_forward_hook(
                    lambda m, args, out, a=adapter: out + a(args[0])))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"head": list(self.head().parameters()),
                "adaptformer": list(self.adapters.parameters())}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


register_method("adaptformer", AdaptFormerTuning, paper_name="AdaptFormer",
                source="Chen et al. 2022 (AdaptFormer); reference code ShoufaChen/AdaptFormer",
                description="a scaled bottleneck in parallel with each MLP block (each residual "
                            "block on CNNs), up-projection zero-initialised")
