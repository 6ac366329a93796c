"""(IA)^3 (Liu et al. 2022) through Hugging Face PEFT: learned vectors that rescale activations.

PEFT's ``IA3Config`` multiplies the output of each targeted layer by a learned vector
(initialised to ones, so step 0 computes the frozen backbone), or, for a "feed-forward" target,
its input. (IA)^3 rescales keys, values and the feed-forward's inner activation; on timm's
fused ``qkv`` projection the vector rescales queries as well (one vector over the 3 d
outputs). ``target_modules=auto``: ``qkv`` and ``fc2`` (feed-forward: its input, the MLP's inner
activation, is rescaled) on transformers; the 3x3 convolutions of the residual blocks on CNNs
(their output channels). ViT-B/16: ``12 (2304 + 3072) = 64,512`` parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lionbench.settings import setting

from . import register_method
from .base import MethodConfig
from .lora import TARGETS_HELP, PeftTuning, normalise_targets


@dataclass
class Ia3Config(MethodConfig):
    target_modules: str = setting("auto", help=TARGETS_HELP)
    feedforward_modules: str = setting("fc2", help="targets whose input (not output) is "
                                       "rescaled: the MLP's fc2, so its inner activation")

    def validate(self) -> None:
        self.target_modules = normalise_targets(self.target_modules)
        self.feedforward_modules = normalise_targets(self.feedforward_modules)


class Ia3Tuning(PeftTuning):
    """(IA)^3 through PEFT: learned rescaling vectors, ones at initialisation."""

    config_class = Ia3Config
    group = "ia3"
    default_targets = ("qkv", "fc2")

    def peft_config(self, targets: list[str]) -> Any:
        import peft

        feedforward = self.config.feedforward_modules.split(",")  # type: ignore[attr-defined]
        ff = [t for t in targets if any(t.endswith(f".{f}") for f in feedforward)]
        return peft.IA3Config(target_modules=targets, feedforward_modules=ff)


register_method("ia3", Ia3Tuning, paper_name="IA3",
                source="Liu et al. 2022 ((IA)^3); library: Hugging Face PEFT (IA3Config)",
                description="learned vectors rescaling qkv outputs and the MLP's inner "
                            "activation (3x3 conv outputs on CNNs); through PEFT")
