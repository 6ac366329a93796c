"""LoKr (Yeh et al. 2024, LyCORIS) through Hugging Face PEFT: a Kronecker-product update.

The update is ``C kron (B A)``: a small full block ``C`` Kronecker-multiplied with a rank-r
factorisation (scaled by ``alpha / r``); PEFT initialises ``B`` at zero, so step 0 computes the
frozen backbone. Same targets as ``lora`` (``target_modules=auto``: the fused ``qkv`` on
transformers, the 3x3 convolutions of the residual blocks on CNNs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lionbench.settings import setting

from . import register_method
from .base import MethodConfig
from .lora import TARGETS_HELP, PeftTuning, alpha_setting, normalise_targets, rank_setting


@dataclass
class LokrConfig(MethodConfig):
    rank: int = rank_setting()
    alpha: float = alpha_setting()
    target_modules: str = setting("auto", help=TARGETS_HELP)

    def validate(self) -> None:
        self.target_modules = normalise_targets(self.target_modules)


class LokrTuning(PeftTuning):
    """LoKr through PEFT: a Kronecker product with a low-rank factor, zero at init."""

    config_class = LokrConfig
    group = "lokr"

    def peft_config(self, targets: list[str]) -> Any:
        import peft

        c: LokrConfig = self.config  # type: ignore[assignment]
        return peft.LoKrConfig(r=c.rank, alpha=c.alpha, target_modules=targets)


register_method("lokr", LokrTuning, paper_name="LoKr",
                source="Yeh et al. 2024 (LyCORIS); library: Hugging Face PEFT (LoKrConfig)",
                description="Kronecker-product updates on the same layers as lora; through PEFT")
