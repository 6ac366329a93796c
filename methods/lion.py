"""LION: implicit vision prompt tuning (Wang et al., Sec. 3), and its ablations.

Two equilibrium prompt blocks around a frozen backbone ``F`` (eqs. 1-3):

- eq. 1: ``x~ = a1 x + b1 P1(x)``; ``P1`` is an equilibrium layer over the image;
- eq. 2: ``z~ = a2 F(x~) + b2 MLP(P2(z))``; ``P2`` is an equilibrium layer on the pooled features
  ``z = F(x)`` of the raw image (``p2_input="raw"``: a second backbone pass without gradient, the
  literal eq. 2) or of the prompted image (``"prompted"``: one pass, ``z = F(x~)``);
- eq. 3: ``(a_i, b_i) = softmax(g_a_i, g_b_i)``, two learnable logits per blend;
- the head classifies ``z~`` (eq. 12); robust training (eqs. 7-11) wraps Adam and ranks the
  prompt layers' tensors (``robust_scope``), each on its own (``tau_scope``).

The equilibrium layers and their contraction bound are in ``methods/lion_layers.py``.

Initialisation starts near the frozen backbone on the feature side: the MLP (P2's
up-projection) is small, so z~ ~ a2 F(x~). Small but never zero: robust training's criticality
|g theta| (eq. 7) is 0 for a zero, so a zero-initialised tensor is always non-crucial and eq. 11
(sign(0) = 0) would keep it at zero for ever.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lionbench.deq import SolverConfig
from lionbench.robust import TAU_MODES, TAU_SCOPES, RobustOptimizer
from lionbench.settings import inherit, setting, when

from . import register_method
from .base import MethodConfig, PetlModel
from .lion_layers import ConvBranch, EquilibriumPrompt, LinearBranch

__all__ = ["ConvBranch", "EquilibriumPrompt", "LinearBranch", "Lion", "LionConfig",
           "PAPER_BUDGETS", "blend", "p2_width_for"]

_SOLVER_FIELDS = [f.name for f in dataclasses.fields(SolverConfig)]

# LION's trainable parameters without the head in the paper (Tables 1-2, "Params", M), by timm
# architecture; p2_width="auto" sizes P2 to meet them.
PAPER_BUDGETS = {"resnet50": 97_000, "resnet101": 97_000, "vit_base_patch16_224": 124_000,
                 "swin_base_patch4_window7_224": 242_000}
FALLBACK_P2_WIDTH = 22  # backbones the paper did not use: lionbench's first (ResNet-50) width
PROMPT_COMPONENTS = ("p1", "p2", "mlp")  # the paper's "two layers" robust training prunes


@dataclass
class LionConfig(MethodConfig):
    """LION's settings. Defaults and why (measurements in README "LION, equation by equation"):

    - ``tau=0.4``: the paper's default (Sec. 4.6). ``tau_mode="quantile"``: tau is a share of
      elements (an absolute threshold would mark all of them; see lionbench.robust).
    - ``tau_scope="tensor"``: the share is taken within each tensor, as the paper's source [43]
      ranks criticality per layer; ``"pooled"`` ranks all tensors together (lionbench v1).
    - ``robust_scope="prompts"``: robust training ranks P1, P2 and the MLP ("we prune the
      parameters in these two layers", Sec. 1); the head and blend logits take the normal step.
      ``"all"`` ranks every trainable tensor (lionbench v1).
    - ``contraction``: the Lipschitz bound of every equilibrium unit (weights spectrally
      normalised, methods/lion_layers.py); 0.9 from the contraction study (README): the fixed
      point is then measurably not one explicit step, at a step cost within budget.
    - ``p2_width="auto"``: P2's width m sized so that LION's trainable parameters without the
      head match the paper's Params (PAPER_BUDGETS); 22 on other backbones; a number overrides.
    - ``tol=1e-3``, ``backward_tol=1e-4``: measured against the exact gradient
      (results/lion-backward-tol.md): a tighter backward tolerance does not move the gradient
      error, which the forward tolerance sets (and which is 40x below minibatch noise); it only
      costs iterations.
    """

    use_p1: bool = setting(True, help="the input prompt P1 (eq. 1); false: x~ = x (LION-P1)")
    use_p2: bool = setting(True, help="the representation prompt P2 and its MLP (eq. 2); "
                           "false: LION-P2")
    robust: bool = setting(True, help="robust training (eqs. 7-11) around Adam; false: LION-R")
    tau: float = setting(0.4, low=0.0, help="robust training: share of non-crucial elements "
                         "(tau_mode=quantile) or a threshold (absolute)")
    tau_mode: str = setting("quantile", choices=TAU_MODES, help="tau as a share of elements "
                            "(quantile) or an absolute criticality threshold")
    tau_scope: str = setting("tensor", choices=TAU_SCOPES, help="rank criticality within each "
                             "tensor, or pooled over all")
    robust_scope: str = setting("prompts", choices=("prompts", "all"), help="what robust "
                                "training ranks: P1, P2 and the MLP, or every trainable tensor")
    deq_layers: int = setting(1, low=1, high=4, help="units stacked inside each equilibrium "
                              "layer (paper Fig. 3: 1-4)")
    p1_channels: int = setting(8, low=1, high=256, help="hidden channels of P1's residual "
                               "conv branch")
    p2_width: int | str = setting("auto", kind="int", low=1, high=4096, also=("auto",),
                                  help="P2's width m; auto: the paper's parameter budget per "
                                  "backbone (22 on others)")
    p2_input: str = setting("raw", choices=("raw", "prompted"), help="P2 reads F(x), the "
                            "literal eq. 2 (raw), or F(x~) in one pass (prompted)")
    contraction: float = setting(0.9, low=1e-3, high=0.99, help="Lipschitz bound of each "
                                 "equilibrium unit")
    # initial (g_a, g_b) of both blends (eq. 3); equal: a = b = 0.5. Not 0: robust training
    # never moves a weight that is exactly 0 (see the module docstring)
    blend_logit_alpha: float = setting(1.0, low=-100.0, high=100.0, help="initial blend logit "
                                       "g_a of both blends (eq. 3)")
    blend_logit_beta: float = setting(1.0, low=-100.0, high=100.0, help="initial blend logit "
                                      "g_b of both blends (eq. 3)")
    # equilibrium solver (lionbench.deq.SolverConfig): the same declarations
    solver: str = inherit(SolverConfig, "solver")
    max_iter: int = inherit(SolverConfig, "max_iter")
    tol: float = inherit(SolverConfig, "tol")
    anderson_m: int = inherit(SolverConfig, "anderson_m")
    anderson_lam: float = inherit(SolverConfig, "anderson_lam")
    anderson_beta: float = inherit(SolverConfig, "anderson_beta")
    backward: str = inherit(SolverConfig, "backward")
    backward_max_iter: int = inherit(SolverConfig, "backward_max_iter")
    backward_tol: float = inherit(SolverConfig, "backward_tol")
    phantom_steps: int = inherit(SolverConfig, "phantom_steps")
    phantom_damping: float = inherit(SolverConfig, "phantom_damping")

    rules = (when("tau_mode", "quantile", tau={"high": 1.0, "high_open": True}),)

    def solver_config(self) -> SolverConfig:
        return SolverConfig(**{name: getattr(self, name) for name in _SOLVER_FIELDS})


def lion_parameter_count(num_features: int, width: int, p1_channels: int = 8) -> int:
    """Trainable parameters of LION (deq_layers=1, both blocks) without the head: P1's two
    3x3 convs, P2's projection d -> m and branch m -> m, the MLP m -> d, four blend logits."""
    d, m, h = num_features, width, p1_channels
    p1 = (3 * h * 9 + h) + (h * 3 * 9 + 3)
    return p1 + (d * m + m) + (m * m + m) + (m * d + d) + 4


def p2_width_for(backbone: nn.Module, config: LionConfig) -> int:
    """P2's width m: the number given, or (``"auto"``) the m whose full LION (both blocks, one
    unit each) comes closest to the paper's budget for this architecture; the ablations and the
    deeper variants (``deq_layers``) keep that m."""
    if config.p2_width != "auto":
        return int(config.p2_width)
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    budget = PAPER_BUDGETS.get(str(cfg.get("architecture", "")))
    if budget is None:
        return FALLBACK_P2_WIDTH
    d = backbone.num_features
    # count(m) = m^2 + (2d + 2) m + rest: the positive root, then the nearer whole neighbour
    rest = lion_parameter_count(d, 0, config.p1_channels)
    root = (-(2 * d + 2) + math.sqrt((2 * d + 2) ** 2 + 4 * (budget - rest))) / 2
    candidates = [m for m in (math.floor(root), math.ceil(root)) if m >= 1] or [1]
    return min(candidates, key=lambda m: abs(lion_parameter_count(d, m, config.p1_channels)
                                             - budget))


def blend(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 3: ``a = e^{g_a} / (e^{g_a} + e^{g_b})``, ``b = e^{g_b} / (e^{g_a} + e^{g_b})``."""
    a, b = torch.softmax(logits, dim=0)
    return a, b


class Lion(PetlModel):
    """Frozen backbone (eval mode) with LION's prompt blocks P1, P2 (+ MLP) and a new head."""

    config_class = LionConfig

    def __init__(self, backbone: nn.Module, config: LionConfig):
        super().__init__(backbone, config)
        self.train_only_head()
        head = self.head()
        if (isinstance(head, nn.Linear) and head.bias is not None and not head.bias.is_meta
                and not head.bias.any()):
            # timm zero-initialises some heads' bias (ViT): under robust_scope="all" an all-zero
            # bias would never move, so it gets torch's default nn.Linear bias init instead.
            bound = head.in_features ** -0.5
            with torch.no_grad():
                head.bias.uniform_(-bound, bound)
        solver = config.solver_config()
        init = torch.tensor([config.blend_logit_alpha, config.blend_logit_beta])
        self.p1 = self.p2 = self.mlp = self.proj = None
        self.blend1 = self.blend2 = None
        self.p2_width = p2_width_for(backbone, config)
        if config.use_p1:
            channels = 3  # the image
            self.p1 = EquilibriumPrompt([ConvBranch(channels, config.p1_channels)
                                         for _ in range(config.deq_layers)],
                                        config.contraction, solver)
            self.blend1 = nn.Parameter(init.clone())
        if config.use_p2:
            d, m = backbone.num_features, self.p2_width
            self.proj = nn.Linear(d, m)  # P2's injection: d -> m
            self.p2 = EquilibriumPrompt([LinearBranch(m) for _ in range(config.deq_layers)],
                                        config.contraction, solver)
            self.mlp = nn.Linear(m, d)  # back to the feature size
            nn.init.normal_(self.mlp.weight, std=1e-2 / m**0.5)
            nn.init.normal_(self.mlp.bias, std=1e-3)
            self.blend2 = nn.Parameter(init.clone())
        self._optimizer: weakref.ref | None = None

    def forward(self, x: Tensor) -> Tensor:
        x_t = x
        if self.p1 is not None:
            a1, b1 = blend(self.blend1)
            x_t = a1 * x + b1 * self.p1(x)  # eq. 1
        feats = self.features(x_t)
        if self.p2 is None:
            return self.classify(feats)
        if self.config.p2_input == "prompted":
            z = feats
        elif self.p1 is None:
            z = feats.detach()  # x~ = x: the raw features are already at hand
        else:
            with torch.no_grad():
                z = self.features(x)
        a2, b2 = blend(self.blend2)
        z_t = a2 * feats + b2 * self.mlp(self.p2(self.proj(z)))  # eq. 2
        return self.classify(z_t)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups: dict[str, list[nn.Parameter]] = {}
        if self.p1 is not None:
            groups["p1"] = list(self.p1.parameters())
        if self.p2 is not None:
            groups["p2"] = [*self.proj.parameters(), *self.p2.parameters()]
            groups["mlp"] = list(self.mlp.parameters())
        coefficients = [p for p in (self.blend1, self.blend2) if p is not None]
        if coefficients:
            groups["coefficients"] = coefficients
        groups["head"] = [p for p in self.head().parameters() if p.requires_grad]
        return groups

    def create_optimizer(self, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """Adam (paper Sec. 4.3), wrapped by robust training (eqs. 7-11) unless robust=False."""
        opt = torch.optim.Adam(self.trainable_parameters(), lr=lr, weight_decay=weight_decay)
        if self.config.robust:
            groups = self.parameter_groups()
            ranked = (PROMPT_COMPONENTS if self.config.robust_scope == "prompts"
                      else tuple(groups))
            exclude = [p for name, ps in groups.items() if name not in ranked for p in ps]
            opt = RobustOptimizer(opt, tau=self.config.tau, tau_mode=self.config.tau_mode,
                                  tau_scope=self.config.tau_scope, exclude=exclude,
                                  components=groups)
            self._optimizer = weakref.ref(opt)
        return opt

    def extra_metrics(self) -> dict[str, float]:
        """Solver health per prompt block (means per sample, non-converged counts and shares),
        P2's width, and robust training's non-crucial share per component (mean over steps)."""
        out: dict[str, float] = {}
        for name, block in (("p1", self.p1), ("p2", self.p2)):
            if block is not None:
                out.update({f"{name}_{k}": v for k, v in block.tracker.summary().items()})
        if self.p2 is not None:
            out["p2_width"] = float(self.p2_width)
        opt = self._optimizer() if self._optimizer is not None else None
        if opt is not None:
            out["robust_noncrucial_fraction"] = opt.last_noncrucial_fraction
            out.update({f"robust_noncrucial_{k}": v
                        for k, v in opt.noncrucial_fractions().items()})
        return out

    def reset_metrics(self) -> None:
        for block in (self.p1, self.p2):
            if block is not None:
                block.tracker.reset()
        opt = self._optimizer() if self._optimizer is not None else None
        if opt is not None:
            opt.reset_statistics()


register_method("lion", Lion, paper_name="LION",
                description="implicit equilibrium prompts before and after the frozen backbone")
register_method("lion-p1", Lion, defaults={"use_p1": False}, paper_name="LION-P1",
                description="LION without the input prompt P1 (x~ = x)")
register_method("lion-p2", Lion, defaults={"use_p2": False}, paper_name="LION-P2",
                description="LION without the representation prompt P2 and its MLP")
register_method("lion-r", Lion, defaults={"robust": False}, paper_name="LION-R",
                description="LION trained with plain Adam (no robust training)")
