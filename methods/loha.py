"""LoHa (Hyeon-Woo et al. 2022, FedPara) through Hugging Face PEFT: a low-rank Hadamard update.

The update is ``(B1 A1) * (B2 A2)`` (elementwise product of two rank-r factorisations, scaled
by ``alpha / r``); PEFT initialises one factor at zero, so step 0 computes the frozen backbone.
Same targets as ``lora`` (``target_modules=auto``: the fused ``qkv`` on transformers, the 3x3
convolutions of the residual blocks on CNNs); twice LoRA's parameters at the same rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lionbench.settings import setting

from . import register_method
from .base import MethodConfig
from .lora import TARGETS_HELP, PeftTuning, alpha_setting, normalise_targets, rank_setting


@dataclass
class LohaConfig(MethodConfig):
    rank: int = rank_setting()
    alpha: float = alpha_setting()
    target_modules: str = setting("auto", help=TARGETS_HELP)

    def validate(self) -> None:
        self.target_modules = normalise_targets(self.target_modules)


class LohaTuning(PeftTuning):
    """LoHa through PEFT: a Hadamard product of two low-rank factors, zero at init."""

    config_class = LohaConfig
    group = "loha"

    def peft_config(self, targets: list[str]) -> Any:
        import peft

        c: LohaConfig = self.config  # type: ignore[assignment]
        return peft.LoHaConfig(r=c.rank, alpha=c.alpha, target_modules=targets)


register_method("loha", LohaTuning, paper_name="LoHa",
                source="Hyeon-Woo et al. 2022 (FedPara); library: Hugging Face PEFT (LoHaConfig)",
                description="low-rank Hadamard-product updates on the same layers as lora; "
                            "through PEFT")
