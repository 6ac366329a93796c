"""LION: implicit vision prompt tuning (Wang et al., Sec. 3), and its ablations.

Two equilibrium prompt blocks around a frozen backbone ``F`` (eqs. 1-3):

- eq. 1: ``x~ = a1 x + b1 P1(x)``; ``P1`` is an equilibrium layer over the image;
- eq. 2: ``z~ = a2 F(x~) + b2 MLP(P2(z))``; ``P2`` is an equilibrium layer on the pooled features
  ``z = F(x)`` of the raw image (``p2_input="raw"``: a second backbone pass without gradient, the
  literal eq. 2) or of the prompted image (``"prompted"``: one pass, ``z = F(x~)``);
- eq. 3: ``(a_i, b_i) = softmax(g_a_i, g_b_i)``, two learnable logits per blend;
- the head classifies ``z~`` (eq. 12); robust training (eqs. 7-11) wraps Adam.

Each equilibrium layer solves ``z* = f(z*)`` with ``f = unit_L o ... o unit_1`` (``deq_layers``
units, the paper's layer-stacking study) and ``unit(z) = u + gamma * tanh(g(z))``: the injection
``u`` (the image for P1, a projection of the features for P2) plus a residual branch ``g``
(conv-ReLU-conv for P1, the paper's "ResNet layer"; linear for P2). A plain ``z + g(z)`` is not
contractive and never meets a 1e-3 tolerance (project notes), so every weight in ``g`` has its
Lipschitz bound clipped to 1 (power iteration, sqrt(k*k) for a k x k conv) and ``gamma < 1``:
``f`` is then a contraction, its solve converges and the implicit gradient (eqs. 5-6) is exact.
No BatchNorm (its statistics would move at every solver step) and no dropout inside ``f``.

Initialisation starts near the frozen backbone: P1's output conv and the MLP (the
up-projections) are small, so P1(x) ~ x, x~ ~ x and z~ ~ a2 F(x~). They are small but never zero:
robust training's criticality |g theta| (eq. 7) is 0 for a zero, so a zero-initialised tensor is
always non-crucial and eq. 11 (sign(0) = 0) would keep it at zero for ever.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lionbench.deq import SolverConfig, SolverStatsTracker, deq_fixed_point
from lionbench.errors import ConfigError
from lionbench.robust import RobustOptimizer, check_tau

from . import register_method
from .base import MethodConfig, PetlModel, check_choice, check_range

_SOLVER_FIELDS = [f.name for f in dataclasses.fields(SolverConfig)]


@dataclass
class LionConfig(MethodConfig):
    use_p1: bool = True
    use_p2: bool = True
    robust: bool = True
    tau: float = 0.4  # robust training: fraction of non-crucial elements (see lionbench.robust)
    tau_mode: str = "quantile"
    deq_layers: int = 1  # units stacked inside each equilibrium layer (paper Fig. 3: 1-4)
    p1_channels: int = 8  # hidden channels of P1's residual conv branch
    p2_width: int = 22  # m; the widest keeping ResNet-50 under 0.1 M without head (paper 0.097 M)
    p2_input: str = "raw"  # raw: z = F(x), literal eq. 2 | prompted: z = F(x~), one pass
    contraction: float = 0.5  # gamma: Lipschitz bound of each unit
    # initial (g_a, g_b) of both blends (eq. 3); equal: a = b = 0.5. Not 0: robust training
    # never moves a weight that is exactly 0 (see the module docstring)
    blend_logit_alpha: float = 1.0
    blend_logit_beta: float = 1.0
    # equilibrium solver (lionbench.deq.SolverConfig)
    solver: str = "anderson"
    max_iter: int = 30
    tol: float = 1e-3
    anderson_m: int = 5
    anderson_lam: float = 1e-4
    anderson_beta: float = 1.0
    backward: str = "implicit"
    backward_max_iter: int = 30
    backward_tol: float = 1e-4
    phantom_steps: int = 5
    phantom_damping: float = 0.5

    def validate(self) -> None:
        for name in ("use_p1", "use_p2", "robust"):
            check_choice(name, getattr(self, name), [True, False])
        check_tau(self.tau, self.tau_mode)
        for name, low, high in (("deq_layers", 1, 4), ("p1_channels", 1, 256),
                                ("p2_width", 1, 4096)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"invalid {name}={value!r}; must be an integer "
                                  f"in [{low}, {high}]")
            check_range(name, value, low, high)
        check_choice("p2_input", self.p2_input, ["raw", "prompted"])
        check_range("contraction", self.contraction, 1e-3, 0.99)
        try:
            self.solver_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def solver_config(self) -> SolverConfig:
        return SolverConfig(**{name: getattr(self, name) for name in _SOLVER_FIELDS})


def lipschitz_clipped(weight: Tensor, u: Tensor, bound_factor: float, training: bool) -> Tensor:
    """``weight`` scaled so that ``bound_factor * sigma_max <= 1`` (no change when already so).

    ``sigma_max`` comes from one power-iteration step per call on the persistent vector ``u``
    (updated in training only), as in spectral normalisation; gradients flow through sigma.
    """
    mat = weight.flatten(1)
    with torch.no_grad():
        if training:
            u.copy_(F.normalize(mat @ F.normalize(mat.t() @ u, dim=0), dim=0))
        u = u.clone()  # the buffer may move again before this graph's backward
        v = F.normalize(mat.t() @ u, dim=0)
    sigma = torch.dot(u, mat @ v)
    return weight / (bound_factor * sigma).clamp_min(1.0)


class _Clipped(nn.Module):
    """A conv or linear layer whose weight is Lipschitz-clipped when read via ``weights()``."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, init_std: float | None = None):
        super().__init__()
        self.layer = layer
        if init_std is not None:  # small, not zero (see the module docstring)
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.normal_(layer.bias, std=init_std / 10)
        self.register_buffer("u", F.normalize(torch.randn(layer.weight.shape[0]), dim=0))
        # ||conv|| <= sqrt(k*k) * ||weight as a matrix|| for a stride-1 k x k conv
        self.bound_factor = float(layer.weight[0, 0].numel()) ** 0.5
        for _ in range(10):  # start from a converged estimate (as torch's spectral_norm does)
            lipschitz_clipped(layer.weight.detach(), self.u, self.bound_factor, training=True)

    def weights(self) -> tuple[Tensor, Tensor | None]:
        w = lipschitz_clipped(self.layer.weight, self.u, self.bound_factor, self.training)
        return w, self.layer.bias


class ConvBranch(nn.Module):
    """P1's residual branch g(z) = conv(relu(conv(z))), 3x3, channels -> hidden -> channels."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.conv1 = _Clipped(nn.Conv2d(channels, hidden, 3, padding=1))
        self.conv2 = _Clipped(nn.Conv2d(hidden, channels, 3, padding=1), init_std=1e-2)

    def functional(self) -> Callable[[Tensor], Tensor]:
        (w1, b1), (w2, b2) = self.conv1.weights(), self.conv2.weights()
        return lambda z: F.conv2d(F.relu(F.conv2d(z, w1, b1, padding=1)), w2, b2, padding=1)


class LinearBranch(nn.Module):
    """P2's residual branch g(h) = W h + b in width m."""

    def __init__(self, width: int):
        super().__init__()
        self.fc = _Clipped(nn.Linear(width, width))

    def functional(self) -> Callable[[Tensor], Tensor]:
        w, b = self.fc.weights()
        return lambda h: F.linear(h, w, b)


class EquilibriumPrompt(nn.Module):
    """Fixed point of ``f = unit_L o ... o unit_1``, ``unit(z) = u + gamma tanh(g(z))`` (eq. 4)."""

    def __init__(self, branches: list[nn.Module], gamma: float, solver: SolverConfig):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.gamma, self.solver = gamma, solver
        self.tracker = SolverStatsTracker()

    def forward(self, u: Tensor) -> Tensor:
        with torch.autocast(u.device.type, enabled=False):  # float32: see deq_fixed_point
            if u.dtype in (torch.float16, torch.bfloat16):
                u = u.float()
            gs = [b.functional() for b in self.branches]  # weights read once per forward
            if u.dim() == 4:
                return self._solve_images(u, gs)

            def f(z: Tensor) -> Tensor:
                for g in gs:
                    z = u + self.gamma * torch.tanh(g(z))
                return z

            z, _ = deq_fixed_point(f, u, self.solver, self.tracker)  # start at the injection
        return z

    def _solve_images(self, u: Tensor, gs: list[Callable[[Tensor], Tensor]]) -> Tensor:
        """The same solve for images, with every iterate stored channels-last (NHWC).

        The 3-channel convolutions of P1 run 2-3x faster forward and 5x faster backward on
        channels-last tensors on CPU (results/perf/NOTES.md). The solver flattens iterates per
        sample; it sees NHWC-shaped contiguous tensors, so the flattening is a view and the
        convolutions get channels-last views (no copies per iteration). Only the element order
        of the flat vectors changes, which the solver's per-sample norms ignore. The output is
        returned in the input's memory format, so the backbone sees what it would without P1.
        """
        fmt = (torch.channels_last if u.is_contiguous(memory_format=torch.channels_last)
               and not u.is_contiguous() else torch.contiguous_format)
        u_cl = u.contiguous(memory_format=torch.channels_last)

        def f(zp: Tensor) -> Tensor:  # zp: (N, H, W, C)
            z = zp.permute(0, 3, 1, 2)
            for g in gs:
                z = u_cl + self.gamma * torch.tanh(g(z))
            return z.permute(0, 2, 3, 1)

        z, _ = deq_fixed_point(f, u_cl.permute(0, 2, 3, 1), self.solver, self.tracker)
        return z.permute(0, 3, 1, 2).contiguous(memory_format=fmt)


def _blend(logits: Tensor) -> tuple[Tensor, Tensor]:
    a, b = torch.softmax(logits, dim=0)  # eq. 3
    return a, b


class Lion(PetlModel):
    """Frozen backbone (eval mode) with LION's prompt blocks P1, P2 (+ MLP) and a new head."""

    config_class = LionConfig

    def __init__(self, backbone: nn.Module, config: LionConfig):
        super().__init__(backbone, config)
        self.train_only_head()
        head = self.head()
        if isinstance(head, nn.Linear) and head.bias is not None and not head.bias.any():
            # timm zero-initialises some heads' bias (ViT): under robust training an all-zero
            # bias would never move, so it gets torch's default nn.Linear bias init instead.
            bound = head.in_features ** -0.5
            with torch.no_grad():
                head.bias.uniform_(-bound, bound)
        solver = config.solver_config()
        init = torch.tensor([config.blend_logit_alpha, config.blend_logit_beta])
        self.p1 = self.p2 = self.mlp = self.proj = None
        self.blend1 = self.blend2 = None
        if config.use_p1:
            channels = 3  # the image
            self.p1 = EquilibriumPrompt([ConvBranch(channels, config.p1_channels)
                                         for _ in range(config.deq_layers)],
                                        config.contraction, solver)
            self.blend1 = nn.Parameter(init.clone())
        if config.use_p2:
            d, m = backbone.num_features, config.p2_width
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
            a1, b1 = _blend(self.blend1)
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
        a2, b2 = _blend(self.blend2)
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
            opt = RobustOptimizer(opt, tau=self.config.tau, tau_mode=self.config.tau_mode)
            self._optimizer = weakref.ref(opt)
        return opt

    def extra_metrics(self) -> dict[str, float]:
        """Solver health per prompt block (means per sample, non-converged counts)."""
        out: dict[str, float] = {}
        for name, block in (("p1", self.p1), ("p2", self.p2)):
            if block is not None:
                out.update({f"{name}_{k}": v for k, v in block.tracker.summary().items()})
        opt = self._optimizer() if self._optimizer is not None else None
        if opt is not None:
            out["robust_noncrucial_fraction"] = opt.last_noncrucial_fraction
        return out

    def reset_metrics(self) -> None:
        for block in (self.p1, self.p2):
            if block is not None:
                block.tracker.reset()


register_method("lion", Lion, paper_name="LION",
                description="implicit equilibrium prompts before and after the frozen backbone")
register_method("lion-p1", Lion, defaults={"use_p1": False}, paper_name="LION-P1",
                description="LION without the input prompt P1 (x~ = x)")
register_method("lion-p2", Lion, defaults={"use_p2": False}, paper_name="LION-P2",
                description="LION without the representation prompt P2 and its MLP")
register_method("lion-r", Lion, defaults={"robust": False}, paper_name="LION-R",
                description="LION trained with plain Adam (no robust training)")
