"""Tests of the equilibrium solvers and implicit gradients (lionbench.deq). Tiny, float64 mostly."""

from __future__ import annotations

import pytest
import torch

from lionbench.deq import (
    SolverConfig,
    SolverStatsTracker,
    deq_fixed_point,
    relative_residual,
    solve_fixed_point,
)

D = torch.float64


def contractive(n: int, norm: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=D)
    return a * (norm / torch.linalg.matrix_norm(a, ord=2))


def tanh_map(W: torch.Tensor, x: torch.Tensor):
    return lambda z: torch.tanh(z @ W.T + x)


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    W = contractive(8, 0.8, 1)
    x = torch.randn(4, 8, generator=g, dtype=D)
    return W, x


def test_config_validation_names_field_and_values():
    with pytest.raises(ValueError, match="solver.*anderson, fixed_point"):
        SolverConfig(solver="broyden")
    with pytest.raises(ValueError, match="backward.*implicit, one_step, phantom"):
        SolverConfig(backward="ift")
    for bad in ({"max_iter": 0}, {"tol": -1.0}, {"anderson_m": 1.5}, {"phantom_damping": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SolverConfig(**bad)


@pytest.mark.parametrize("solver", ["anderson", "fixed_point"])
def test_per_sample_relative_residual_under_tol(problem, solver):
    W, x = problem
    f = tanh_map(W, x * torch.tensor([1e-3, 1.0, 10.0, 100.0], dtype=D)[:, None])  # mixed scales
    cfg = SolverConfig(solver=solver, tol=1e-6, max_iter=200)
    z, st = solve_fixed_point(f, torch.zeros_like(x), cfg)
    res = relative_residual(f(z), z)
    assert st.converged.all() and (res <= 1e-6).all()
    torch.testing.assert_close(res, st.residual)
    assert ((st.iterations >= 1) & (st.iterations < 200)).all()


def test_anderson_and_plain_agree_and_anderson_is_faster(problem):
    W, x = problem
    f = tanh_map(W, x)
    za, sa = solve_fixed_point(f, torch.zeros_like(x), SolverConfig(tol=1e-11, max_iter=300))
    zp, sp = solve_fixed_point(f, torch.zeros_like(x),
                               SolverConfig(solver="fixed_point", tol=1e-11, max_iter=300))
    torch.testing.assert_close(za, zp, atol=1e-9, rtol=0)
    assert sa.iterations.float().mean() < sp.iterations.float().mean()


def test_result_independent_of_start(problem):
    W, x = problem
    f = tanh_map(W, x)
    cfg = SolverConfig(tol=1e-11, max_iter=300)
    z1, _ = solve_fixed_point(f, torch.zeros_like(x), cfg)
    z2, _ = solve_fixed_point(f, 5 * torch.randn_like(x), cfg)
    torch.testing.assert_close(z1, z2, atol=1e-9, rtol=0)


@pytest.mark.parametrize("solver", ["anderson", "fixed_point"])
def test_linear_map_matches_closed_form(solver):
    n, k = 6, 3
    A0 = contractive(n, 0.7, 2)
    B0 = torch.randn(n, k, dtype=D)
    c = torch.randn(n, dtype=D)
    x0 = torch.randn(5, k, dtype=D)
    w = torch.randn(5, n, dtype=D)
    cfg = SolverConfig(solver=solver, tol=1e-12, max_iter=500, backward_tol=1e-12,
                       backward_max_iter=500)

    def grads(closed: bool):
        A, B, x = (t.clone().requires_grad_() for t in (A0, B0, x0))
        if closed:  # z = (I - A)^{-1} (B x + c), row-wise
            z = torch.linalg.solve(torch.eye(n, dtype=D) - A, (x @ B.T + c).T).T
        else:
            z, _ = deq_fixed_point(lambda z: z @ A.T + x @ B.T + c, torch.zeros(5, n, dtype=D), cfg)
        (w * z).sum().backward()
        return z.detach(), A.grad, B.grad, x.grad

    for got, want in zip(grads(False), grads(True), strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


def test_nonlinear_gradient_matches_unrolled_and_finite_differences(problem):
    W0, x0 = problem
    w = torch.randn_like(x0)
    cfg = SolverConfig(tol=1e-12, max_iter=300, backward_tol=1e-12, backward_max_iter=300)

    def loss_implicit(W, x):
        z, _ = deq_fixed_point(tanh_map(W, x), torch.zeros_like(x), cfg)
        return (w * z).sum()

    def loss_unrolled(W, x):
        z = torch.zeros_like(x)
        for _ in range(200):
            z = tanh_map(W, x)(z)
        return (w * z).sum()

    W, x = W0.clone().requires_grad_(), x0.clone().requires_grad_()
    gi = torch.autograd.grad(loss_implicit(W, x), (W, x))
    gu = torch.autograd.grad(loss_unrolled(W, x), (W, x))
    for a, b in zip(gi, gu, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-8)
    # central finite differences along random directions
    h = 1e-5
    for _ in range(3):
        dW, dx = torch.randn_like(W0), torch.randn_like(x0)
        with torch.no_grad():
            fd = (loss_implicit(W0 + h * dW, x0 + h * dx)
                  - loss_implicit(W0 - h * dW, x0 - h * dx)) / (2 * h)
        an = (gi[0] * dW).sum() + (gi[1] * dx).sum()
        torch.testing.assert_close(an, fd, atol=1e-7, rtol=1e-6)


def test_gradcheck():
    W = contractive(4, 0.6, 3).requires_grad_()
    x = torch.randn(2, 4, dtype=D, requires_grad=True)
    cfg = SolverConfig(tol=1e-13, max_iter=400, backward_tol=1e-13, backward_max_iter=400)

    def fn(W, x):
        return deq_fixed_point(tanh_map(W, x), torch.zeros_like(x), cfg)[0]

    assert torch.autograd.gradcheck(fn, (W, x), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("solver", ["anderson", "fixed_point"])
def test_gradient_scales_exactly_with_loss(problem, solver):
    """An absolute tolerance anywhere would make the small-loss gradient stop early."""
    W0, x0 = problem
    cfg = SolverConfig(solver=solver)  # default tolerances
    grads = []
    for scale in (1.0, 1e-6):
        W = W0.clone().requires_grad_()
        z, _ = deq_fixed_point(tanh_map(W, x0), torch.zeros_like(x0), cfg)
        (scale * z.square().sum()).backward()
        grads.append(W.grad)
    torch.testing.assert_close(grads[1], grads[0] * 1e-6, rtol=1e-6, atol=0)


def saved_bytes(fn) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_saved_memory_independent_of_iterations(problem):
    W0, x0 = problem
    W = W0.clone().requires_grad_()

    def run(iters: int, unrolled: bool = False):
        if unrolled:
            z = torch.zeros_like(x0)
            for _ in range(iters):
                z = tanh_map(W, x0)(z)
            return z
        cfg = SolverConfig(tol=0.0, max_iter=iters)  # tol 0: every iteration runs
        z, st = deq_fixed_point(tanh_map(W, x0), torch.zeros_like(x0), cfg)
        assert int(st.iterations.max()) == iters
        return z

    m5, m50 = saved_bytes(lambda: run(5)), saved_bytes(lambda: run(50))
    assert m5 == m50 > 0
    assert saved_bytes(lambda: run(50, unrolled=True)) > 5 * m50  # the measure does see iterates


@pytest.mark.parametrize("solver,f,iters", [
    ("fixed_point", lambda z: 10 * z + 1, 300),  # overflows float32 without the guards
    ("fixed_point", lambda z: 2 * z + 1, 300),
    # no fixed point, and ||f(z) - z|| >= ||f(z)|| everywhere: no extrapolation can meet tol
    ("anderson", lambda z: -z - torch.sign(z), 30),
    ("fixed_point", lambda z: -z - torch.sign(z), 30),
])
def test_non_contractive_reported_not_converged_without_nan(solver, f, iters):
    x = torch.zeros(3, 16, requires_grad=True)
    cfg = SolverConfig(solver=solver, max_iter=iters, backward_max_iter=iters)
    tracker = SolverStatsTracker()
    z, st = deq_fixed_point(lambda z: f(z) + x, torch.randn(3, 16), cfg, tracker)
    z.sum().backward()
    assert not st.converged.any() and (st.iterations == iters).all()
    for t in (z, st.residual, x.grad, st.backward_residual):
        assert torch.isfinite(t).all()
    s = tracker.summary()
    assert s["fwd_not_converged"] == 3 and all(v == v for v in s.values())  # no NaN


def test_one_step_and_phantom_run_and_differ_from_exact(problem):
    W0, x0 = problem
    W0 = W0 * (0.95 / 0.8)  # a slowly contracting map: the approximations are visibly off
    out = {}
    for backward in ("implicit", "one_step", "phantom"):
        W = W0.clone().requires_grad_()
        cfg = SolverConfig(tol=1e-10, max_iter=300, backward=backward, backward_tol=1e-10,
                           backward_max_iter=300)
        z, st = deq_fixed_point(tanh_map(W, x0), torch.zeros_like(x0), cfg)
        z.square().sum().backward()
        assert torch.isfinite(W.grad).all()
        assert (st.backward_iterations is None) == (backward != "implicit")
        out[backward] = W.grad
    exact = out["implicit"]
    for approx in ("one_step", "phantom"):
        rel = (out[approx] - exact).norm() / exact.norm()
        assert rel > 1e-3, approx


def test_backward_twice_and_tracker(problem):
    W0, x0 = problem
    W = W0.clone().requires_grad_()
    tracker = SolverStatsTracker()
    z, st = deq_fixed_point(tanh_map(W, x0), torch.zeros_like(x0), SolverConfig(), tracker)
    loss = z.square().sum()
    g1 = torch.autograd.grad(loss, W, retain_graph=True)[0]
    g2 = torch.autograd.grad(loss, W)[0]  # a second backward neither hangs nor differs
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    with torch.no_grad():  # eval: forward statistics only
        deq_fixed_point(tanh_map(W, x0), torch.zeros_like(x0), SolverConfig(), tracker)
    s = tracker.summary()
    assert s["solves"] == 2 and s["fwd_iterations_mean"] >= 1 and s["bwd_iterations_mean"] >= 1
    assert s["fwd_residual_mean"] <= 1e-3 and s["bwd_residual_mean"] <= 1e-4
    assert s["fwd_not_converged"] == 0 == s["bwd_not_converged"]
    assert st.backward_converged.all()
    tracker.reset()
    assert tracker.summary() == {}
