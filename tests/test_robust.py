"""Tests of the robust-training optimizer wrapper (lionbench.robust, paper eqs. 7-11)."""

from __future__ import annotations

import pytest
import torch

from lionbench.robust import RobustOptimizer

D = torch.float64


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(3, 4, generator=g, dtype=D)
    a[0, 0] = 0.0  # sign(0) = 0: a zero weight has criticality 0 and must stay exactly 0
    b = torch.randn(5, generator=g, dtype=D)
    return [torch.nn.Parameter(a), torch.nn.Parameter(b)]


def set_grads(params, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=D)


def expected_masks(params, tau: float, mode: str, scope: str = "tensor") -> list[torch.Tensor]:
    crit = [(p.grad * p).abs() for p in params]  # eq. 7 by hand
    if mode == "absolute":
        return [c < tau for c in crit]
    if scope == "tensor":  # the int(tau * n) smallest of each tensor (no ties here)
        return [c < c.flatten().sort().values[int(tau * c.numel())] for c in crit]
    flat = torch.cat([c.flatten() for c in crit])
    k = int(tau * flat.numel())
    threshold = flat.sort().values[k]  # the k smallest are strictly below (no ties here)
    return [c < threshold for c in crit]


@pytest.mark.parametrize("mode,tau,scope", [("quantile", 0.4, "tensor"),
                                            ("quantile", 0.4, "pooled"),
                                            ("absolute", 0.3, "tensor")])
def test_sgd_rule_element_by_element(mode, tau, scope):
    params = make_params()
    opt = RobustOptimizer(torch.optim.SGD(params, lr=0.1), tau=tau, tau_mode=mode,
                          tau_scope=scope)
    for step in range(3):
        set_grads(params, step)
        old = [p.detach().clone() for p in params]
        masks = expected_masks(params, tau, mode, scope)
        opt.step()
        for p, o, m in zip(params, old, masks, strict=True):
            want = torch.where(m, o - 0.1 * torch.sign(o), o - 0.1 * p.grad)
            torch.testing.assert_close(p.detach(), want, rtol=0, atol=1e-15)
        assert params[0][0, 0].item() == 0.0 and masks[0][0, 0]
        n = sum(m.sum().item() for m in masks)
        assert opt.last_noncrucial_fraction == n / 17


def test_tensor_scope_takes_the_share_of_every_tensor_whatever_its_scale():
    """Ranked per tensor ([43]: per layer), a tensor of small |g theta| gives up only its tau
    share; ranked pooled, it would absorb the whole shrink."""
    g = torch.Generator().manual_seed(5)
    small = torch.nn.Parameter(torch.randn(50, generator=g, dtype=D) * 1e-3)
    large = torch.nn.Parameter(torch.randn(30, generator=g, dtype=D))
    small.grad, large.grad = torch.randn_like(small), torch.randn_like(large)
    named = {"small": [small], "large": [large]}
    per_tensor = RobustOptimizer(torch.optim.SGD([small, large], lr=0.1), tau=0.4,
                                 components=named)
    masks = [m for _, _, m in per_tensor.noncrucial_masks()]
    assert [int(m.sum()) for m in masks] == [20, 12]
    pooled = RobustOptimizer(torch.optim.SGD([small, large], lr=0.1), tau=0.4,
                             tau_scope="pooled")
    assert [int(m.sum()) for _, _, m in pooled.noncrucial_masks()] == [32, 0]
    per_tensor.step()
    set_grads([small, large], 9)
    per_tensor.step()
    assert per_tensor.noncrucial_fractions() == {"small": 0.4, "large": 0.4}
    per_tensor.reset_statistics()
    assert per_tensor.noncrucial_fractions() == {}


def test_adam_rule_and_moments_by_hand():
    params = make_params(1)
    lr, (b1, b2), eps = 0.01, (0.9, 0.999), 1e-8
    opt = RobustOptimizer(torch.optim.Adam(params, lr=lr, betas=(b1, b2), eps=eps), tau=0.5)
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t in range(1, 5):
        set_grads(params, 10 + t)
        old = [p.detach().clone() for p in params]
        masks = expected_masks(params, 0.5, "quantile")
        opt.step()
        for i, p in enumerate(params):
            g = p.grad
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            adam = old[i] - lr * (m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + eps)
            want = torch.where(masks[i], old[i] - lr * torch.sign(old[i]), adam)
            torch.testing.assert_close(p.detach(), want, rtol=1e-12, atol=1e-14)
            # documented: Adam's moments track the true gradient of every element
            torch.testing.assert_close(opt.state[p]["exp_avg"], m[i])
            torch.testing.assert_close(opt.state[p]["exp_avg_sq"], v[i])


def test_quantile_marks_fraction_pooled_across_groups_with_group_lr():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(40, dtype=D))
    b = torch.nn.Parameter(torch.randn(60, dtype=D) * 10)  # larger: fewer non-crucial here
    inner = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}], lr=1.0)
    opt = RobustOptimizer(inner, tau=0.25, tau_scope="pooled")
    a.grad, b.grad = torch.randn_like(a), torch.randn_like(b)
    crit = torch.cat([(a.grad * a).abs(), (b.grad * b).abs()]).detach()
    masks = [m for _, _, m in opt.noncrucial_masks()]
    pooled = torch.cat(masks)
    assert pooled.sum() == 25
    assert crit[pooled].max() < crit[~pooled].min()
    old_a, old_b = a.detach().clone(), b.detach().clone()
    opt.step()
    assert opt.last_noncrucial_fraction == 0.25
    torch.testing.assert_close(a[masks[0]], old_a[masks[0]] - 0.1 * old_a[masks[0]].sign())
    torch.testing.assert_close(b[masks[1]], old_b[masks[1]] - 0.01 * old_b[masks[1]].sign())


def test_tau_zero_is_the_inner_optimizer_and_exclude_and_missing_grads():
    p1, p2 = make_params(2)
    q1, q2 = (torch.nn.Parameter(p.detach().clone()) for p in (p1, p2))
    robust = RobustOptimizer(torch.optim.Adam([p1, p2], lr=0.1), tau=0.0)
    plain = torch.optim.Adam([q1, q2], lr=0.1)
    for t in range(3):
        set_grads([p1, p2], t)
        set_grads([q1, q2], t)
        robust.step()
        plain.step()
    torch.testing.assert_close(p1, q1, rtol=0, atol=0)
    # excluded parameters and parameters without a gradient are left to the inner optimizer
    p1, p2 = make_params(3)
    opt = RobustOptimizer(torch.optim.SGD([p1, p2], lr=0.1), tau=0.9, exclude=[p2])
    old1, old2 = p1.detach().clone(), p2.detach().clone()
    set_grads([p1, p2], 7)
    opt.step()
    torch.testing.assert_close(p2.detach(), old2 - 0.1 * p2.grad)
    assert opt.last_noncrucial_fraction == int(0.9 * 12) / 12
    p1.grad = None
    opt.step()
    assert not torch.equal(p2.detach(), old2) and not torch.equal(p1.detach(), old1)


def test_generic_optimizer_interface():
    model = torch.nn.Linear(4, 2)
    opt = RobustOptimizer(torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1))
    assert isinstance(opt, torch.optim.Optimizer)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x = torch.randn(8, 4)
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        sched.step()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-3)
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    sd = opt.state_dict()
    assert sd["state"][0]["step"] == 2 and sd == opt.optimizer.state_dict()
    model2 = torch.nn.Linear(4, 2)
    opt2 = RobustOptimizer(torch.optim.AdamW(model2.parameters(), lr=1.0))
    opt2.load_state_dict(sd)
    assert opt2.state is opt2.optimizer.state and opt2.param_groups[0]["lr"] == 2.5e-3
    torch.testing.assert_close(opt2.state[model2.weight]["exp_avg"],
                               opt.state[model.weight]["exp_avg"])
    extra = torch.nn.Parameter(torch.zeros(3))
    opt2.add_param_group({"params": [extra]})
    assert len(opt2.optimizer.param_groups) == 2
    assert opt2.param_groups is opt2.optimizer.param_groups


@pytest.mark.parametrize("kwargs,match", [
    ({"tau": 1.0}, "tau"), ({"tau": -0.1}, "tau"), ({"tau_mode": "topk"}, "quantile, absolute"),
    ({"tau": -1.0, "tau_mode": "absolute"}, "tau"), ({"tau_scope": "layer"}, "tensor, pooled"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RobustOptimizer(torch.optim.SGD(make_params(), lr=0.1), **kwargs)
