"""LoHa (Hyeon-Woo et al. 2022, FedPara) through Hugging Face PEFT: a low-rank Hadamard update.

The update is ``(B1 A1) * (B2 A2)`` (elementwise product of two rank-r factorisations, scaled
by ``alpha / r``); PEFT initialises one factor at zero, so step 0 computes the frozen backbone.
Same targets as ``lora`` (``target_modules=auto``: the fused ``qkv`` on transformers, the 3x3
convolutions of the residual blocks on CNNs); twice LoRA's parameters at the same rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import register_method
from .base import MethodConfig, check_range
from .lora import PeftTuning, check_int, normalise_targets


@dataclass
class LohaConfig(MethodConfig):
    rank: int = 8
    alpha: float = 8.0  # the update is scaled by alpha / rank
    target_modules: str = "auto"

    def validate(self) -> None:
        self.rank = check_int("rank", self.rank, 1, 4096)
        check_range("alpha", self.alpha, 1e-6, 1e6)
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
