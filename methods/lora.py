"""LoRA (Hu et al. 2022) through Hugging Face PEFT, and the base of every PEFT tuner here.

LoRA adds a trainable low-rank update to frozen weights: ``W x + (alpha / r) B A x``, with ``A``
(r x in) initialised randomly and ``B`` (out x r) at zero, so the model computes exactly the
frozen backbone at step 0. lionbench does not implement LoRA itself: PEFT's
``inject_adapter_in_model`` replaces each targeted ``nn.Linear`` / ``nn.Conv2d`` of the timm
model in place by PEFT's LoRA layer, which keeps the original module as ``base_layer`` (same
tensors, never copied) and adds ``lora_A`` / ``lora_B``. On a convolution, PEFT's Conv2d LoRA
makes ``A`` a convolution with the base layer's kernel, stride and padding into ``r`` channels
and ``B`` a 1x1 convolution back to the output channels (peft ``tuners/lora/layer.py``,
``Conv2d.update_layer``), so a 3x3 conv of ``c_in -> c_out`` gets ``r (9 c_in + c_out)``
parameters.

Where LoRA goes (``target_modules``):

- ``auto`` (default): the fused ``qkv`` projection of every attention block on timm
  transformers (ViT, DeiT, Swin), and every 3x3 convolution (``groups=1``) inside the residual
  blocks of a CNN (the 3x3 conv of each ResNet bottleneck; both convs of a basic block).
  ViT-B/16 at r=8: ``8 (768 + 2304) 12 = 294,912`` parameters, the "0.29 M" of the VTAB tables
  (which adapt q and v with two separate rank-8 pairs: the same count, but a separate update
  per projection, where one pair on the fused qkv shares ``A`` between q, k and v);
- a comma-separated list of module names such as ``qkv,proj,fc1,fc2``: every module inside
  the transformer or residual blocks whose dotted name ends with one of them (``proj`` is
  ``attn.proj``, never the patch embedding's ``proj``, which lies outside the blocks).

The classifier stays a normal trainable head. PEFT freezes everything but its adapters; the
head is unfrozen again afterwards. The frozen backbone is kept in eval mode as for every
method, except PEFT's own layers, which follow ``train()`` so LoRA dropout is active in training.

:class:`PeftTuning` is the shared base: a PEFT tuner is one subclass with its config dataclass
and a ``peft_config(targets)`` method (see ``ia3.py``, ``loha.py``, ``lokr.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from lionbench.errors import ConfigError
from lionbench.settings import setting

from . import register_method
from .adapter import cnn_blocks, transformer_blocks
from .base import MethodConfig, PetlModel

ADAPTER_NAME = "lionbench"  # PEFT's adapter name inside each layer (lora_A.lionbench, ...)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


def normalise_targets(value: Any) -> str:
    """``auto`` or the sorted, deduplicated module names of ``qkv, fc2`` / ``[qkv, fc2]``: one
    spelling per set of targets, so equal settings give one run identity."""
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"invalid target_modules={value!r}; valid: auto, or module names "
                          "such as qkv or qkv,proj,fc1,fc2")
    names = sorted({n.strip() for n in value.split(",") if n.strip()})
    if names == ["auto"]:
        return "auto"
    bad = [n for n in names if not _NAME.match(n) or n == "auto"]
    if bad:
        raise ConfigError(f"invalid target_modules entry {bad[0]!r}; valid: auto, or module "
                          "names such as qkv or qkv,proj,fc1,fc2")
    return ",".join(names)


def block_modules(backbone: nn.Module) -> tuple[str, list[tuple[str, nn.Module]]]:
    """(family, [(dotted name, module)]) of every module inside the backbone's transformer
    blocks (family ``transformer``) or, failing that, its residual blocks (``cnn``)."""
    names = {id(m): n for n, m in backbone.named_modules()}
    blocks = transformer_blocks(backbone)
    family = "transformer"
    if not blocks:
        blocks, family = cnn_blocks(backbone), "cnn"
    found: dict[str, nn.Module] = {}
    for block in blocks:
        prefix = names[id(block)]
        for sub, module in block.named_modules():
            if sub:
                found[f"{prefix}.{sub}"] = module
    return family, list(found.items())


def resolve_targets(backbone: nn.Module, targets: str,
                    default_transformer: tuple[str, ...] = ("qkv",)) -> list[str]:
    """The dotted names of the modules a PEFT tuner adapts (see the module docstring)."""
    family, modules = block_modules(backbone)
    if targets == "auto" and family == "cnn":
        chosen = [n for n, m in modules if isinstance(m, nn.Conv2d) and m.groups == 1
                  and tuple(m.kernel_size) == (3, 3)]
        what = "3x3 convolutions (groups=1) in the residual blocks"
    else:
        wanted = default_transformer if targets == "auto" else tuple(targets.split(","))
        chosen = [n for n, m in modules if isinstance(m, nn.Linear | nn.Conv2d)
                  and any(n == w or n.endswith(f".{w}") for w in wanted)]
        missing = [w for w in wanted if not any(n.endswith(f".{w}") for n in chosen)]
        if missing:
            raise ConfigError(f"target_modules: no linear or convolution layer named "
                              f"{', '.join(missing)} inside the {family} blocks of "
                              f"{type(backbone).__name__}; valid: names such as "
                              f"{example_names(modules)}")
        what = ", ".join(wanted)
    if not chosen:
        raise ConfigError(f"target_modules=auto finds no {what} in {type(backbone).__name__}; "
                          "name the modules, e.g. --set target_modules=conv2")
    return chosen


def example_names(modules: list[tuple[str, nn.Module]]) -> str:
    """A few distinct last names of linear/conv layers inside the blocks, for error messages."""
    names = dict.fromkeys(n.rsplit(".", 1)[-1] for n, m in modules
                          if isinstance(m, nn.Linear | nn.Conv2d))
    return ", ".join(list(names)[:6]) or "(none)"


class PeftTuning(PetlModel):
    """A PEFT tuner injected into the frozen timm backbone; its adapters and the head train.

    Subclasses set ``config_class`` and ``group`` (the component name in parameter counts) and
    implement :meth:`peft_config`; ``default_targets`` are the transformer defaults of
    ``target_modules=auto``.
    """

    group: ClassVar[str] = "peft"
    default_targets: ClassVar[tuple[str, ...]] = ("qkv",)

    @classmethod
    def check_backbone(cls, backbone: nn.Module, config: MethodConfig) -> None:
        resolve_targets(backbone, config.target_modules, cls.default_targets)  # type: ignore

    def peft_config(self, targets: list[str]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __init__(self, backbone: nn.Module, config: MethodConfig):
        super().__init__(backbone, config)
        from peft import inject_adapter_in_model

        self.targets = resolve_targets(backbone, config.target_modules,  # type: ignore
                                       self.default_targets)
        inject_adapter_in_model(self.peft_config(self.targets), self.backbone, ADAPTER_NAME)
        # PEFT left exactly its adapter weights trainable: those are this method's parameters
        self.adapter_params = [p for p in self.backbone.parameters() if p.requires_grad]
        self.train_only_head(self.adapter_params)

    def peft_layers(self) -> list[nn.Module]:
        """PEFT's layers in the backbone (each wraps one targeted module)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        return [m for m in self.backbone.modules() if isinstance(m, BaseTunerLayer)]

    def train(self, mode: bool = True) -> PeftTuning:
        super().train(mode)  # the frozen backbone in eval mode ...
        for layer in self.peft_layers():  # ... but PEFT's layers follow mode (their dropout)
            layer.train(mode)
        return self

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"head": list(self.head().parameters()), self.group: list(self.adapter_params)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


TARGETS_HELP = ("auto (the fused qkv of transformers, the 3x3 convs of CNN blocks) or "
                "comma-separated layer names inside the blocks, e.g. qkv,proj,fc1,fc2")


def rank_setting() -> Any:
    return setting(8, low=1, high=4096, help="r, the rank of the update")


def alpha_setting() -> Any:
    return setting(8.0, low=0.0, high=1e6, low_open=True, help="the update is scaled by "
                   "alpha / rank")


@dataclass
class LoraConfig(MethodConfig):
    rank: int = rank_setting()
    alpha: float = alpha_setting()
    dropout: float = setting(0.0, low=0.0, high=1.0, high_open=True, help="dropout on the "
                             "LoRA branch's input (PEFT's lora_dropout)")
    target_modules: str = setting("auto", help=TARGETS_HELP)

    def validate(self) -> None:
        self.target_modules = normalise_targets(self.target_modules)


class LoraTuning(PeftTuning):
    """LoRA through PEFT: ``W x + (alpha / r) B A x``, ``B`` zero at initialisation."""

    config_class = LoraConfig
    group = "lora"

    def peft_config(self, targets: list[str]) -> Any:
        import peft

        c: LoraConfig = self.config  # type: ignore[assignment]
        return peft.LoraConfig(r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout,
                               target_modules=targets, bias="none")


register_method("lora", LoraTuning, paper_name="LoRA",
                source="Hu et al. 2022 (LoRA); library: Hugging Face PEFT (LoraConfig)",
                description="low-rank updates B A (B zero at init) on the fused qkv of "
                            "transformers, the 3x3 convs of CNN blocks; through PEFT")
