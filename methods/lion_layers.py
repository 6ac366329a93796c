"""LION's equilibrium prompt layers (paper Sec. 3.2, eq. 4), with a contraction bound that holds.

Each layer outputs the fixed point ``z* = f(z*)`` of ``f = unit_L o ... o unit_1`` (``deq_layers``
units, the paper's layer-stacking study, Figure 3), where

    unit(z) = u + contraction * tanh(g(z))

``u`` is the injection (the image for P1, a projection of the features for P2) and ``g`` the
residual branch: conv-ReLU-conv, 3x3, for P1 (the paper's "ResNet layer"); linear for P2.

**The contraction bound.** Every weight of ``g`` is spectrally normalised: divided by the norm
of the *operator* it applies, so ``g`` is 1-Lipschitz (ReLU and the product of two norm-1
operators), ``tanh`` is 1-Lipschitz, and each unit is a contraction with Lipschitz constant at
most ``contraction`` in the l2 norm. Then the solve converges (Banach) and the implicit gradient
(eqs. 5-6) exists. The weights meet their bound with equality, so ``contraction`` is what it
says. lionbench's first version only *clipped* weights whose bound exceeded 1, estimated as
``sqrt(k*k) * ||W||`` for a k x k conv (1.7-2.1x the conv's true norm) on each conv separately;
from a small initialisation P1's Jacobian stayed at 0.02-0.07, the solve ended in 2-3 iterations
and the "equilibrium" was one explicit step in disguise.

A convolution's norm is that of the operator, not of its weight as a matrix: a stride-1 conv is
a Fourier multiplier, so on any input size with zero padding its norm is at most
``max_w ||W^(w)||_2`` over frequencies ``w``, the kernel's 2-D DFT being a small (out x in)
matrix per frequency, and equal to it in the limit of large inputs (0.2 % above the exact norm
of a 3->8 conv on 40 x 40 inputs, measured). lionbench takes that maximum on a 32 x 32 frequency
grid (within about 0.2 % of the supremum, measured against a 256 x 256 grid), every forward,
with its gradient. No state: unlike power iteration on the conv (the i-ResNet recipe), which
needed 300 steps from a random start to come within 3e-4 of the norm on 16 x 16 inputs (30
steps: up to 1.8 % low), nothing depends on the input size or on past steps.

No BatchNorm (its statistics would move at every solver step) and no dropout inside ``f``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lionbench.deq import SolverConfig, SolverStatsTracker, deq_fixed_point

FREQUENCY_GRID = 32  # DFT points per axis on which a conv's symbol is maximised


def conv_operator_norm(weight: Tensor, grid: int = FREQUENCY_GRID) -> Tensor:
    """Largest singular value of a stride-1 conv's symbol over a ``grid`` x ``grid`` set of
    frequencies: the conv's operator norm on large inputs, an upper bound (up to the grid) on
    every input size. Differentiable in ``weight``."""
    cout, cin = weight.shape[:2]
    symbol = torch.fft.fft2(weight, s=(grid, grid))  # (out, in, grid, grid), complex
    mats = symbol.permute(2, 3, 0, 1).reshape(-1, cout, cin)
    gram = mats.mH @ mats if cin <= cout else mats @ mats.mH  # the smaller Gram matrix
    return torch.linalg.eigvalsh(gram)[:, -1].max().clamp_min(0).sqrt()


def operator_norm(layer: nn.Conv2d | nn.Linear) -> Tensor:
    """The norm of the linear map a conv (stride 1) or linear layer applies, bias aside."""
    if isinstance(layer, nn.Conv2d):
        return conv_operator_norm(layer.weight)
    return torch.linalg.matrix_norm(layer.weight, ord=2)


class SpectralNormalised(nn.Module):
    """A conv (stride 1, undilated, ungrouped) or linear layer whose weight is read divided by
    the norm of its operator: ``weights()`` is ``(weight / ||op||, bias)``, gradients flowing
    through the norm as in spectral normalisation."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, bias_std: float | None = None):
        super().__init__()
        if isinstance(layer, nn.Conv2d) and (layer.stride != (1, 1) or layer.dilation != (1, 1)
                                             or layer.groups != 1):
            raise ValueError("SpectralNormalised supports stride-1, undilated, ungrouped convs")
        self.layer = layer
        if bias_std is not None:  # small, not zero: robust training never moves an exact zero
            nn.init.normal_(layer.bias, std=bias_std)

    def weights(self) -> tuple[Tensor, Tensor | None]:
        norm = operator_norm(self.layer).clamp_min(torch.finfo(self.layer.weight.dtype).tiny)
        return self.layer.weight / norm, self.layer.bias


class ConvBranch(nn.Module):
    """P1's residual branch g(z) = conv(relu(conv(z))), 3x3, channels -> hidden -> channels,
    1-Lipschitz."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.conv1 = SpectralNormalised(nn.Conv2d(channels, hidden, 3, padding=1))
        self.conv2 = SpectralNormalised(nn.Conv2d(hidden, channels, 3, padding=1),
                                        bias_std=1e-3)

    def functional(self) -> Callable[[Tensor], Tensor]:
        (w1, b1), (w2, b2) = self.conv1.weights(), self.conv2.weights()
        return lambda z: F.conv2d(F.relu(F.conv2d(z, w1, b1, padding=1)), w2, b2, padding=1)


class LinearBranch(nn.Module):
    """P2's residual branch g(h) = W h + b in width m, ``W`` of spectral norm 1."""

    def __init__(self, width: int):
        super().__init__()
        self.fc = SpectralNormalised(nn.Linear(width, width))

    def functional(self) -> Callable[[Tensor], Tensor]:
        w, b = self.fc.weights()
        return lambda h: F.linear(h, w, b)


class EquilibriumPrompt(nn.Module):
    """Fixed point of ``f = unit_L o ... o unit_1``, ``unit(z) = u + c tanh(g(z))`` (eq. 4)."""

    def __init__(self, branches: list[nn.Module], contraction: float, solver: SolverConfig):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.contraction, self.solver = contraction, solver
        self.tracker = SolverStatsTracker()

    def map(self, u: Tensor) -> Callable[[Tensor], Tensor]:
        """``f`` for injection ``u`` in the layout of ``u`` (weights read once)."""
        gs = [b.functional() for b in self.branches]
        c = self.contraction

        def f(z: Tensor) -> Tensor:
            for g in gs:
                z = u + c * torch.tanh(g(z))
            return z
        return f

    def forward(self, u: Tensor) -> Tensor:
        with torch.autocast(u.device.type, enabled=False):  # float32: see deq_fixed_point
            if u.dtype in (torch.float16, torch.bfloat16):
                u = u.float()
            if u.dim() == 4:
                return self._solve_images(u)
            z, _ = deq_fixed_point(self.map(u), u, self.solver, self.tracker)  # start at u
        return z

    def _solve_images(self, u: Tensor) -> Tensor:
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
        f_nchw = self.map(u_cl)

        def f(zp: Tensor) -> Tensor:  # zp: (N, H, W, C)
            return f_nchw(zp.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

        z, _ = deq_fixed_point(f, u_cl.permute(0, 2, 3, 1), self.solver, self.tracker)
        return z.permute(0, 3, 1, 2).contiguous(memory_format=fmt)
