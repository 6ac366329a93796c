"""Deep-equilibrium machinery: fixed-point solvers and implicit gradients (paper Sec. 3.2).

An equilibrium layer outputs the fixed point ``z* = f(z*)`` of a map ``f`` that closes over its
parameters and input (eq. 4). The forward pass solves for ``z*`` under ``torch.no_grad`` (plain
iteration or Anderson acceleration), so no iterate is kept for backward: memory is that of one
evaluation of ``f`` whatever the iteration count. The exact gradient (eqs. 5-6) needs
``u = (I - J)^{-T} g`` with ``J = df/dz`` at ``z*``; it is solved as the fixed point
``u = J^T u + g`` by the same solver, through vector-Jacobian products of the one evaluation
``f(z*)`` (at a detached ``z*`` that requires grad) whose graph also carries ``u`` on to the
parameters.

Design points (see the project's notes on deep equilibrium layers):

- every tolerance is **relative and per sample**, ``||f(z) - z|| / ||f(z)||``: an absolute
  tolerance never triggers on images and makes gradients depend on the loss scale;
- Anderson's regularisation is relative to the residuals' scale, so the solve (and with it the
  backward solve) is invariant to scaling the loss;
- a non-contractive ``f`` is reported as not converged; the solver returns the iterate with the
  lowest residual and never NaN (a failing least-squares solve falls back to a plain step, a
  sample whose iterate overflows is frozen at its best iterate);
- the backward is an ``autograd.Function`` created per call, so it can run several times
  (``retain_graph=True``) and leaves no hook behind. Double backward is not supported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from lionbench.settings import check_settings, setting

SOLVERS = ("anderson", "fixed_point")
BACKWARDS = ("implicit", "one_step", "phantom")


@dataclass
class SolverConfig:
    """Forward solver and backward (gradient) settings of an equilibrium layer (declared in the
    settings vocabulary, lionbench.settings: a bad value is a ConfigError, a ValueError)."""

    solver: str = setting("anderson", choices=SOLVERS, help="forward fixed-point solver")
    max_iter: int = setting(30, low=1, high=10_000, help="forward solver iterations at most")
    tol: float = setting(1e-3, low=0.0, high=1.0, help="forward tolerance: relative per-sample "
                         "residual ||f(z)-z|| / ||f(z)||")
    anderson_m: int = setting(5, low=1, high=100, help="Anderson: iterates in the history")
    anderson_lam: float = setting(1e-4, low=0.0, high=1e6, help="Anderson: regularisation, "
                                  "relative to the smallest squared residual in the history")
    anderson_beta: float = setting(1.0, low=0.0, high=1.0, low_open=True,
                                   help="Anderson: mixing (1: no damping)")
    backward: str = setting("implicit", choices=BACKWARDS, help="gradient: implicit (exact, "
                            "eqs. 5-6), one_step or phantom")
    backward_max_iter: int = setting(30, low=1, high=10_000, help="implicit backward: solver "
                                     "iterations at most")
    backward_tol: float = setting(1e-4, low=0.0, high=1.0, help="implicit backward: relative "
                                  "tolerance, as tol")
    phantom_steps: int = setting(5, low=1, high=10_000, help="phantom gradient: unrolled steps")
    phantom_damping: float = setting(0.5, low=0.0, high=1.0, low_open=True,
                                     help="phantom gradient: damping of each step")

    def __post_init__(self) -> None:
        check_settings(self)

    def for_backward(self) -> SolverConfig:
        """The settings of the adjoint solve ``u = J^T u + g``."""
        return dataclasses.replace(self, max_iter=self.backward_max_iter, tol=self.backward_tol)


@dataclass
class SolveStats:
    """Per-sample outcome of one equilibrium solve; the backward fields fill in at backward."""

    iterations: Tensor  # (batch,) f-evaluations until the residual met tol, else max_iter
    residual: Tensor  # (batch,) relative residual of the returned iterate
    converged: Tensor  # (batch,) bool
    backward_iterations: Tensor | None = None
    backward_residual: Tensor | None = None
    backward_converged: Tensor | None = None

    @property
    def num_not_converged(self) -> int:
        return int((~self.converged).sum())


def relative_residual(fz: Tensor, z: Tensor) -> Tensor:
    """Per-sample ``||f(z) - z|| / ||f(z)||`` (dim 0 is the batch); inf where not finite."""
    fz, z = fz.reshape(fz.shape[0], -1), z.reshape(z.shape[0], -1)
    tiny = torch.finfo(fz.dtype).tiny  # guards 0/0 only: any fixed scale would break invariance
    # Divide by the largest entry first: squares of large iterates would overflow the norms
    # (a diverging iterate would then read as residual 0).
    scale = torch.maximum(fz.abs().amax(1), z.abs().amax(1)).clamp_min(tiny)[:, None]
    fz, z = fz / scale, z / scale
    res = (fz - z).norm(dim=1) / (fz.norm(dim=1) + tiny)
    return torch.where(torch.isfinite(res), res, torch.full_like(res, float("inf")))


# Norms of f(z) inside these bounds are computed exactly without rescaling (no square under- or
# overflows float32 in a way that moves the ratio); outside, the rescaled path above is used.
_PLAIN_NORM_RANGE = (1e-10, 1e18)


def _residual_and_finite(fx: Tensor, x: Tensor, diff: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample relative residual and whether ``x`` and ``fx`` are finite (flat, dim 0 batch);
    ``diff`` is ``fx - x``, which the solver keeps for Anderson anyway.

    The common case costs two norms: non-finite entries make a norm non-finite, so finite norms
    in a safe range prove both iterates finite and the plain ratio exact. Only samples outside
    that range (overflow, tiny or zero ``f(z)``) take the rescaled :func:`relative_residual` and
    an elementwise finiteness check: the same answers, with 2 passes over the iterates instead
    of about 17 (results/perf/NOTES.md).
    """
    num = torch.linalg.vector_norm(diff, dim=1)
    den = torch.linalg.vector_norm(fx, dim=1)
    low, high = _PLAIN_NORM_RANGE
    plain = torch.isfinite(num) & (den >= low) & (den <= high)
    if bool(plain.all()):
        return num / den, plain
    finite = torch.isfinite(x).all(1) & torch.isfinite(fx).all(1)
    res = torch.where(plain, num / den.clamp_min(low), relative_residual(fx, x))
    return res, finite


def solve_fixed_point(f: Callable[[Tensor], Tensor], z0: Tensor, config: SolverConfig
                      ) -> tuple[Tensor, SolveStats]:
    """Solve ``z = f(z)`` from ``z0`` without gradient; dim 0 of ``z0`` is the batch.

    Each sample stops (is frozen at the iterate that met ``tol``) as soon as its own relative
    residual is under ``tol``; the loop ends when every sample is frozen or at ``max_iter``.
    Samples never meeting ``tol`` return their lowest-residual iterate.
    """
    with torch.no_grad():
        return _solve(f, z0, config)


def _solve(f: Callable[[Tensor], Tensor], z0: Tensor, cfg: SolverConfig
           ) -> tuple[Tensor, SolveStats]:
    shape, bsz = z0.shape, z0.shape[0]
    dev = z0.device

    def fflat(v: Tensor) -> Tensor:
        return f(v.reshape(shape)).reshape(bsz, -1)

    m = cfg.anderson_m if cfg.solver == "anderson" else 0
    x0 = x = z0.reshape(bsz, -1)  # iterates are never modified in place: no copies needed
    # Anderson's history, a ring of the last m values of f(x) and g = f(x) - x; Anderson needs
    # no iterate itself (x = f(x) - g). Slots are read only once written.
    F = x.new_empty(bsz, m, x.shape[1])
    G = x.new_empty(bsz, m, x.shape[1])
    best = x
    best_res = torch.full((bsz,), float("inf"), device=dev, dtype=x.dtype)
    iters = torch.full((bsz,), cfg.max_iter, device=dev, dtype=torch.long)
    converged = torch.zeros(bsz, dtype=torch.bool, device=dev)
    frozen = torch.zeros_like(converged)

    fx = x  # f of the last iterate (the plain fixed-point step), set at k = 0
    for k in range(cfg.max_iter):  # k + 1 evaluations of f after this iteration
        if k > 0:
            x = _next_iterate(F, G, min(k, m), fx, cfg)
            if bool(frozen.any()):
                x = torch.where(frozen[:, None], best, x)
        fx = fflat(x)
        if m:
            F[:, k % m] = fx
            diff = torch.sub(fx, x, out=G[:, k % m])
        else:
            diff = fx - x
        res, finite = _residual_and_finite(fx, x, diff)
        diverged = ~finite
        improve = ~frozen & ~diverged & (res < best_res)
        # x is never modified in place, so ``best`` may alias it (saves a copy per iteration)
        best = x if bool(improve.all()) else torch.where(improve[:, None], x, best)
        best_res = torch.where(improve, res, best_res)
        newly = ~frozen & ~diverged & (res <= cfg.tol)
        iters = torch.where(newly, torch.full_like(iters, k + 1), iters)
        converged |= newly
        frozen |= newly | diverged
        if bool(frozen.all()):
            break
    if best is x0:  # never hand back a view of the caller's start
        best = best.clone()
    return best.reshape(shape), SolveStats(iters, best_res, converged)


def _next_iterate(F: Tensor, G: Tensor, n: int, plain: Tensor, cfg: SolverConfig) -> Tensor:
    """Next iterate: ``plain`` (f of the last iterate), or Anderson's mix of the ``n`` stored
    pairs: ``sum_i a_i (f_i - (1 - beta) g_i)`` with ``a`` minimising ``||sum_i a_i g_i||``
    subject to ``sum_i a_i = 1`` (since ``x_i = f_i - g_i``, this is ``beta sum a f + (1 - beta)
    sum a x``). Works on views of the history: no (batch, n, d) temporaries."""
    if cfg.solver != "anderson" or n < 2:
        return plain
    Gn, Fn = G[:, :n], F[:, :n]
    GG = Gn @ Gn.transpose(1, 2)
    scale = GG.diagonal(dim1=1, dim2=2).amin(1).clamp_min(torch.finfo(F.dtype).tiny)
    bsz = F.shape[0]
    H = F.new_zeros(bsz, n + 1, n + 1)
    H[:, 0, 1:] = H[:, 1:, 0] = 1
    eye = torch.eye(n, dtype=F.dtype, device=F.device)
    H[:, 1:, 1:] = GG + cfg.anderson_lam * scale[:, None, None] * eye
    y = F.new_zeros(bsz, n + 1, 1)
    y[:, 0] = 1
    sol, info = torch.linalg.solve_ex(H, y)  # min ||G^T a|| s.t. sum(a) = 1
    alpha = sol[:, None, 1:, 0]  # (batch, 1, n)
    mixed = (alpha @ Fn).squeeze(1)
    if cfg.anderson_beta != 1.0:
        mixed = mixed - (1 - cfg.anderson_beta) * (alpha @ Gn).squeeze(1)
    # a norm is non-finite when an entry is (or on overflow, where the plain step is as good)
    ok = ((info == 0) & torch.isfinite(alpha).all(2).squeeze(1)
          & torch.isfinite(torch.linalg.vector_norm(mixed, dim=1)))
    return mixed if bool(ok.all()) else torch.where(ok[:, None], mixed, plain)


class SolverStatsTracker:
    """Running statistics of the solves of one module, reported per run (a health signal).

    Sums stay on the solves' device (no synchronisation per call) until :meth:`summary`.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, Tensor | float] = {}

    def _add(self, key: str, value: Tensor | float) -> None:
        self._sums[key] = self._sums.get(key, 0.0) + value

    def record_forward(self, stats: SolveStats) -> None:
        self._add("solves", 1.0)
        self._add("fwd_samples", float(stats.iterations.numel()))
        self._add("fwd_iter", stats.iterations.sum().float())
        self._add("fwd_res", stats.residual.sum().float())
        self._add("fwd_nc", (~stats.converged).sum().float())

    def record_backward(self, stats: SolveStats) -> None:
        assert stats.backward_iterations is not None and stats.backward_residual is not None
        self._add("bwd_samples", float(stats.backward_iterations.numel()))
        self._add("bwd_iter", stats.backward_iterations.sum().float())
        self._add("bwd_res", stats.backward_residual.sum().float())
        self._add("bwd_nc", (~stats.backward_converged).sum().float())

    def summary(self) -> dict[str, float]:
        """Means per sample, counts and shares of non-converged sample solves (the health
        signal runs are flagged by); backward keys only once a backward solve ran (none for eval
        or for the one-step / phantom gradients)."""
        s = {k: float(v) for k, v in self._sums.items()}
        out: dict[str, float] = {}
        if s.get("fwd_samples"):
            n = s["fwd_samples"]
            out.update(solves=s["solves"], fwd_samples=n, fwd_iterations_mean=s["fwd_iter"] / n,
                       fwd_residual_mean=s["fwd_res"] / n, fwd_not_converged=s["fwd_nc"],
                       fwd_not_converged_share=s["fwd_nc"] / n)
        if s.get("bwd_samples"):
            n = s["bwd_samples"]
            out.update(bwd_samples=n, bwd_iterations_mean=s["bwd_iter"] / n,
                       bwd_residual_mean=s["bwd_res"] / n, bwd_not_converged=s["bwd_nc"],
                       bwd_not_converged_share=s["bwd_nc"] / n)
        return out


@dataclass
class _BackwardState:
    f_at_star: Tensor  # f(z_leaf), a separate graph used only for vector-Jacobian products
    z_leaf: Tensor
    config: SolverConfig
    stats: SolveStats
    tracker: SolverStatsTracker | None


class _ImplicitGradient(torch.autograd.Function):
    """Identity forward; backward maps g to ``u = (I - J^T)^{-1} g`` (eq. 6)."""

    @staticmethod
    def forward(ctx, z: Tensor, state: _BackwardState) -> Tensor:  # type: ignore[override]
        ctx.state = state
        return z.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        st: _BackwardState = ctx.state

        def adjoint(u: Tensor) -> Tensor:
            (jtu,) = torch.autograd.grad(st.f_at_star, st.z_leaf, u, retain_graph=True,
                                         allow_unused=True)
            return grad if jtu is None else jtu + grad

        u, bstats = solve_fixed_point(adjoint, grad, st.config.for_backward())
        st.stats.backward_iterations = bstats.iterations
        st.stats.backward_residual = bstats.residual
        st.stats.backward_converged = bstats.converged
        if st.tracker is not None:
            st.tracker.record_backward(st.stats)
        return u, None


def deq_fixed_point(f: Callable[[Tensor], Tensor], z0: Tensor, config: SolverConfig,
                    tracker: SolverStatsTracker | None = None) -> tuple[Tensor, SolveStats]:
    """Equilibrium layer output for use inside ``nn.Module.forward``.

    ``f`` closes over the module's parameters and input; gradients reach both. Returns the
    layer output and the solve's statistics (recorded in ``tracker`` too). With gradients
    enabled the output is one differentiable step ``f(z*)`` (equal to ``z*`` to within ``tol``)
    whose gradient is corrected per ``config.backward``: ``implicit`` (exact, eqs. 5-6),
    ``one_step`` (Jacobian-free: ``J`` taken as 0) or ``phantom`` (damped unrolled steps).

    The layer runs in float32 outside autocast: under bf16 the relative residual floors near
    1e-3, so a solve would always run to ``max_iter`` (a half-precision ``z0`` is upcast; ``f``
    must accept float32 ``z``).
    """
    with torch.autocast(z0.device.type, enabled=False):
        if z0.dtype in (torch.float16, torch.bfloat16):
            z0 = z0.float()
        return _deq(f, z0, config, tracker)


def _deq(f: Callable[[Tensor], Tensor], z0: Tensor, config: SolverConfig,
         tracker: SolverStatsTracker | None) -> tuple[Tensor, SolveStats]:
    z_star, stats = solve_fixed_point(f, z0.detach(), config)
    if tracker is not None:
        tracker.record_forward(stats)
    if not torch.is_grad_enabled():
        return z_star, stats
    if config.backward == "phantom":
        z = z_star
        for _ in range(config.phantom_steps):
            z = (1 - config.phantom_damping) * z + config.phantom_damping * f(z)
        return z, stats
    if config.backward == "one_step":
        return f(z_star), stats
    # One evaluation serves both the output's gradient (to the parameters and the injection)
    # and the adjoint's vector-Jacobian products (to z_leaf): the backward solves for u on this
    # graph (re-entrant autograd.grad, graph retained), then autograd carries u through it.
    z_leaf = z_star.detach().requires_grad_()
    z_out = f(z_leaf)
    if not _reaches_other_than(z_out, z_leaf):  # nothing but z requires grad: a constant
        return z_out.detach(), stats
    state = _BackwardState(z_out, z_leaf, config, stats, tracker)
    return _ImplicitGradient.apply(z_out, state), stats


def _reaches_other_than(out: Tensor, leaf: Tensor) -> bool:
    """Whether ``out``'s graph reaches a tensor requiring grad other than ``leaf``."""
    stack, seen = [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf
        if variable is not None:
            if variable is not leaf:
                return True
            continue
        stack.extend(n for n, _ in node.next_functions)
    return False
