"""LION's equilibrium layers (methods/lion_layers.py): the contraction bound holds and is tight,
the fixed point is more than one explicit step on real images, and every gradient is the exact
one (float64 against unrolled autograd and against P2's closed form)."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from lionbench.methods import create_model, lion_layers
from lionbench.methods.lion_layers import (
    ConvBranch,
    EquilibriumPrompt,
    LinearBranch,
    conv_operator_norm,
)

from lionbench.data import get_dataset
from lionbench.data.pipeline import Pipeline
from lionbench.deq import SolverConfig

D = torch.float64
EXACT = {"tol": 1e-12, "max_iter": 300, "backward_tol": 1e-12, "backward_max_iter": 300}


def conv_matrix(weight: torch.Tensor, size: int) -> torch.Tensor:
    """The matrix of a 3x3, padding-1 conv on size x size inputs (column i: the image of the
    i-th basis vector)."""
    n = weight.shape[1] * size * size
    basis = torch.eye(n, dtype=D).view(n, weight.shape[1], size, size)
    return F.conv2d(basis, weight.double(), padding=1).reshape(n, -1).T


def digit_images(n: int = 8, size: int = 32) -> torch.Tensor:
    """Real images: scikit-learn's 8x8 digit scans, as a run at ``size`` px normalises them."""
    images = get_dataset("digits").load(None, "test").images[:n]
    return Pipeline(size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "none")(images, False)


def test_conv_norm_is_the_operator_norm_not_the_weight_matrix_norm():
    torch.manual_seed(0)
    for cin, cout in ((3, 8), (8, 3)):
        w = torch.nn.Conv2d(cin, cout, 3, padding=1).weight.detach().double()
        exact = torch.linalg.matrix_norm(conv_matrix(w, 12), ord=2)
        bound = conv_operator_norm(w)
        assert exact <= bound * (1 + 2e-3)  # a bound on every input size (up to the grid) ...
        assert bound <= exact * 1.05  # ... and tight: lionbench v1's sqrt(9) ||W|| was not
        assert 3 * torch.linalg.matrix_norm(w.flatten(1), ord=2) > 1.3 * bound


def test_normalised_branches_are_1_lipschitz_and_tight():
    """Each weight of g is divided by its operator norm: the maps have norm 1 (so each unit's
    Lipschitz constant is `contraction`), for P1's convs and P2's linear layer alike."""
    torch.manual_seed(0)
    p1, p2 = ConvBranch(3, 8).double(), LinearBranch(6).double()
    for conv in (p1.conv1, p1.conv2):
        w, _ = conv.weights()
        norm = torch.linalg.matrix_norm(conv_matrix(w, 12), ord=2)
        assert 0.95 <= norm <= 1 + 1e-3
    w, _ = p2.fc.weights()
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
def test_unit_is_a_contraction_with_the_set_constant(layers):
    torch.manual_seed(0)
    block = EquilibriumPrompt([ConvBranch(3, 8) for _ in range(layers)], 0.7,
                              SolverConfig()).double()
    with torch.no_grad():  # weights far from their init: the bound must not depend on it
        for p in block.parameters():
            p.mul_(5).add_(torch.randn_like(p))
    u = torch.randn(2, 3, 10, 10, dtype=D)
    f = block.map(u)
    ratios = []
    for _ in range(20):
        z1, z2 = torch.randn_like(u), torch.randn_like(u)
        d = z2 - z1
        ratios.append(((f(z1 + 1e-3 * d) - f(z1)).norm() / (1e-3 * d.norm())).item())
        ratios.append(((f(z2) - f(z1)).norm() / d.norm()).item())
    assert max(ratios) <= 0.7 ** layers * (1 + 2e-3)


def test_unit_attains_its_bound_where_tanh_is_linear():
    """`contraction` is the Lipschitz constant itself, not a loose bound: where P2's
    pre-activation W z + b is 0, the unit's Jacobian is c W / ||W||, of norm exactly c."""
    torch.manual_seed(0)
    block = EquilibriumPrompt([LinearBranch(6)], 0.7, SolverConfig()).double()
    layer = block.branches[0].fc.layer
    with torch.no_grad():
        layer.weight.mul_(3)
    w_hat = (layer.weight / torch.linalg.svdvals(layer.weight)[0]).detach()
    z0 = torch.linalg.solve(w_hat, -layer.bias.detach())  # W z0 / ||W|| + b = 0
    u = torch.randn(1, 6, dtype=D)
    jac = torch.autograd.functional.jacobian(block.map(u), z0[None]).reshape(6, 6)
    assert torch.linalg.matrix_norm(jac, ord=2).item() == pytest.approx(0.7, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_point_is_measurably_not_one_explicit_step_on_real_images(seed):
    """With LION's default contraction, P1's equilibrium on digit scans differs from one step
    of its map from the image (what a plain residual block would output) by over 10 % of that
    step (100x the solver's tolerance), and the solver needs more than two iterations. (At
    contraction 0.5 the same measure is 7-9 %; at 0.1 the solve stops after one step: 0.)"""
    torch.manual_seed(seed)
    model = create_model("lion", timm.create_model("test_resnet", num_classes=10))
    x = digit_images()
    with torch.no_grad():
        z_star = model.p1(x)
        one_step = model.p1.map(x)(x)
    moved = (one_step - x).flatten(1).norm(dim=1)
    beyond = (z_star - one_step).flatten(1).norm(dim=1)
    assert (beyond > 0.1 * moved).all(), (beyond / moved)
    assert model.extra_metrics()["p1_fwd_iterations_mean"] > 2
    residual = (model.p1.map(x)(z_star) - z_star).flatten(1).norm(dim=1)
    assert (residual <= 1e-3 * z_star.flatten(1).norm(dim=1) * 1.01).all()


def test_p1_implicit_gradient_matches_unrolled_iteration():
    """The equilibrium prompt's exact gradient (eqs. 5-6) equals backprop through 200 steps."""
    torch.manual_seed(0)
    solver = SolverConfig(tol=1e-12, max_iter=200, backward_tol=1e-12, backward_max_iter=200)
    p1 = EquilibriumPrompt([ConvBranch(3, 4), ConvBranch(3, 4)], 0.9, solver).double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=D, requires_grad=True)
    w = torch.randn(2, 3, 6, 6, dtype=D)
    params = [*p1.parameters(), x]
    implicit = torch.autograd.grad((w * p1(x)).sum(), params)
    f = p1.map(x)
    z = x
    for _ in range(200):
        z = f(z)
    unrolled = torch.autograd.grad((w * z).sum(), params)
    for a, b in zip(implicit, unrolled, strict=True):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def _unrolled(f, z0, config, tracker=None):
    """deq_fixed_point's stand-in: autograd through 200 plain steps from the same start."""
    z = z0
    for _ in range(200):
        z = f(z)
    return z, None


@pytest.mark.parametrize("p2_input", ["raw", "prompted"])
def test_whole_lion_gradient_matches_unrolled_autograd(monkeypatch, p2_input):
    """Every trainable tensor's gradient (P1, P2, MLP, blend logits, head) through the frozen
    backbone, in float64, equals autograd through unrolled equilibrium iterations."""
    torch.manual_seed(0)
    bb = timm.create_model("test_resnet", num_classes=5)
    model = create_model("lion", bb, {**EXACT, "p2_input": p2_input}).double().eval()
    with torch.no_grad():
        model.blend1.copy_(torch.tensor([0.2, -0.5]))
        model.blend2.copy_(torch.tensor([-0.3, 0.4]))
        model.mlp.weight.mul_(30)  # make P2's contribution to the loss sizeable
    x = torch.randn(2, 3, 16, 16, dtype=D)
    y = torch.tensor([1, 3])
    params = model.trainable_parameters()

    def grads():
        return torch.autograd.grad(F.cross_entropy(model(x), y), params)

    implicit = grads()
    monkeypatch.setattr(lion_layers, "deq_fixed_point", _unrolled)
    unrolled = grads()
    names = [n for n, ps in model.parameter_groups().items() for _ in ps]
    for name, a, b in zip(names, implicit, unrolled, strict=True):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-11, msg=name)


def test_p2_closed_form():
    """P2 alone, by hand: z* = u + c tanh(W z* / ||W||_2 + b) holds, and the gradient to the
    injection is eq. 6 solved as a linear system, (I - J)^{-T} g, J = c diag(tanh') W/||W||."""
    torch.manual_seed(0)
    c, m = 0.9, 5
    p2 = EquilibriumPrompt([LinearBranch(m)], c, SolverConfig(**EXACT)).double()
    with torch.no_grad():
        p2.branches[0].fc.layer.weight.mul_(4)  # the normalisation, not the init, sets the scale
    u = torch.randn(3, m, dtype=D, requires_grad=True)
    g = torch.randn(3, m, dtype=D)
    z = p2(u)
    (grad_u,) = torch.autograd.grad((g * z).sum(), u)
    layer = p2.branches[0].fc.layer
    w_hat = (layer.weight / torch.linalg.svdvals(layer.weight)[0]).detach()
    z, u = z.detach(), u.detach()
    pre = z @ w_hat.T + layer.bias.detach()
    torch.testing.assert_close(z, u + c * torch.tanh(pre), rtol=0, atol=1e-10)
    for i in range(3):
        jac = c * (1 - torch.tanh(pre[i]) ** 2)[:, None] * w_hat
        want = torch.linalg.solve((torch.eye(m, dtype=D) - jac).T, g[i])
        torch.testing.assert_close(grad_u[i], want, rtol=1e-9, atol=1e-12)
