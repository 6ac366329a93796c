"""Tests of the LION method (methods/lion.py) on timm's tiny test backbones at 32 px."""

from __future__ import annotations

import pytest
import timm
import torch
from lionbench.methods import count_parameters, create_model, get_method
from lionbench.methods.lion import ConvBranch, EquilibriumPrompt, Lion, _blend

from lionbench.deq import SolverConfig
from lionbench.errors import ConfigError
from lionbench.robust import RobustOptimizer

BACKBONES = ["test_resnet", "test_vit"]


def backbone(name: str, num_classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {"img_size": 32} if "vit" in name else {}
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)


def batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % 5


def lion(name: str = "test_resnet", method: str = "lion", **overrides) -> Lion:
    model = create_model(method, backbone(name), overrides)
    assert isinstance(model, Lion)
    return model


def frozen_state(model: Lion) -> dict[str, torch.Tensor]:
    """Backbone parameters and buffers (BatchNorm statistics included), without the head."""
    head = {id(t) for t in model.head().parameters()}
    params = {k: v.detach().clone() for k, v in model.backbone.named_parameters()
              if id(v) not in head}
    buffers = {k: v.clone() for k, v in model.backbone.named_buffers()}
    return {**params, **buffers}


def test_blend_coefficients_sum_to_one():
    model = lion(blend_logit_alpha=0.7, blend_logit_beta=-1.2)
    for logits in (model.blend1, model.blend2):
        a, b = _blend(logits)
        assert 0 < a < 1 and 0 < b < 1
        torch.testing.assert_close(a + b, torch.tensor(1.0))


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("p2_input", ["raw", "prompted"])
def test_identity_branch_reproduces_frozen_backbone(name, p2_input):
    model = lion(name, p2_input=p2_input).eval()
    with torch.no_grad():
        for logits in (model.blend1, model.blend2):
            logits.copy_(torch.tensor([1e4, -1e4]))  # a = 1, b = 0
        x, _ = batch()
        torch.testing.assert_close(model(x), model.backbone(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", BACKBONES)
def test_gradients_reach_p1_through_frozen_backbone_and_never_the_backbone(name):
    model = lion(name).train()
    x, y = batch()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for p in model.p1.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    for p in [*model.head().parameters(), model.blend1, model.blend2, *model.mlp.parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0
    head = {id(p) for p in model.head().parameters()}
    assert all(p.grad is None for p in model.backbone.parameters() if id(p) not in head)
    m = model.extra_metrics()
    assert m["p1_fwd_not_converged"] == 0 and m["p1_bwd_iterations_mean"] >= 1
    assert m["p2_fwd_iterations_mean"] >= 1
    model.reset_metrics()
    assert "p1_solves" not in model.extra_metrics()


@pytest.mark.parametrize("name", BACKBONES)
def test_training_lowers_loss_and_leaves_backbone_and_bn_stats_unchanged(name):
    model = lion(name).train()
    assert not model.backbone.training and model.p1.training
    before = frozen_state(model)
    start = {k: [p.detach().clone() for p in v] for k, v in model.parameter_groups().items()}
    opt = model.create_optimizer(lr=1e-2)
    assert isinstance(opt, RobustOptimizer)
    x, y = batch()
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for group in ("p1", "p2", "mlp", "coefficients", "head"):
        for p, p0 in zip(model.parameter_groups()[group], start[group], strict=True):
            assert not torch.equal(p.detach(), p0), group
    after = frozen_state(model)
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert model.extra_metrics()["robust_noncrucial_fraction"] == pytest.approx(0.4, abs=1e-3)


def test_no_exact_zero_in_prompt_parameters_at_init():
    """Robust training would keep a zero at zero for ever: criticality 0, sign(0) = 0."""
    groups = lion("test_vit").parameter_groups()  # timm zero-initialises the ViT head's bias
    for name in ("p1", "p2", "mlp", "coefficients", "head"):
        assert all((p != 0).all() for p in groups[name]), name


def test_variants_remove_exactly_the_named_part():
    counts = {m: count_parameters(lion(method=m)).by_component
              for m in ("lion", "lion-p1", "lion-p2", "lion-r")}
    full = counts["lion"]
    assert set(full) == {"p1", "p2", "mlp", "coefficients", "head"} and full["coefficients"] == 4
    assert counts["lion-r"] == full
    assert counts["lion-p1"] == {k: (2 if k == "coefficients" else v)
                                 for k, v in full.items() if k != "p1"}
    assert counts["lion-p2"] == {k: (2 if k == "coefficients" else v)
                                 for k, v in full.items() if k not in ("p2", "mlp")}
    assert not isinstance(lion(method="lion-r").create_optimizer(1e-3), RobustOptimizer)
    assert get_method("lion-p1").paper_name == "LION-P1"
    # the ablations run and train their remaining parts
    x, y = batch(2)
    for m in ("lion-p1", "lion-p2"):
        model = lion(method=m).train()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        assert all(p.grad is not None for p in model.trainable_parameters())


def test_raw_p2_input_runs_a_second_backbone_pass_without_grad():
    x, _ = batch(2)
    for p2_input, grad_modes in (("raw", [True, False]), ("prompted", [True])):
        model = lion(p2_input=p2_input).train()
        seen: list[bool] = []
        forward_features = model.backbone.forward_features

        def counting(t, original=forward_features, seen=seen):
            seen.append(torch.is_grad_enabled())
            return original(t)

        model.backbone.forward_features = counting
        model(x)
        assert seen == grad_modes, p2_input


def test_resnet50_trainable_without_head_within_paper_budget():
    torch.manual_seed(0)
    bb = timm.create_model("resnet50", pretrained=False, num_classes=10)
    for layers in (1, 4):
        n = count_parameters(create_model("lion", bb, {"deq_layers": layers}))
        assert n.trainable_without_head <= 100_000, n


@pytest.mark.parametrize("bad,match", [
    ({"p2_input": "both"}, "p2_input"), ({"deq_layers": 5}, "deq_layers"),
    ({"solver": "broyden"}, "solver"), ({"tau": 1.0}, "tau"), ({"p2_width": 2.5}, "p2_width"),
])
def test_config_validation(bad, match):
    with pytest.raises(ConfigError, match=match):
        get_method("lion").make_config(bad)


def test_p1_implicit_gradient_matches_unrolled_iteration():
    """The equilibrium prompt's exact gradient (eqs. 5-6) equals backprop through 200 steps."""
    torch.manual_seed(0)
    solver = SolverConfig(tol=1e-12, max_iter=200, backward_tol=1e-12, backward_max_iter=200)
    p1 = EquilibriumPrompt([ConvBranch(3, 4), ConvBranch(3, 4)], 0.5, solver).double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    params = [*p1.parameters(), x]
    implicit = torch.autograd.grad((w * p1(x)).sum(), params)
    gs = [b.functional() for b in p1.branches]
    z = x
    for _ in range(200):
        for g in gs:
            z = x + 0.5 * torch.tanh(g(z))
    unrolled = torch.autograd.grad((w * z).sum(), params)
    for a, b in zip(implicit, unrolled, strict=True):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_bf16_autocast_solves_in_float32_and_converges():
    """Under bf16 the residual would floor near 1e-3 and every solve would hit max_iter."""
    model = lion().train()
    x, y = batch(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        feats = model.features(x)
    assert feats.dtype == torch.bfloat16  # autocast is really on for the backbone
    torch.nn.functional.cross_entropy(logits.float(), y).backward()
    m = model.extra_metrics()
    for block in ("p1", "p2"):
        assert m[f"{block}_fwd_not_converged"] == 0 and m[f"{block}_fwd_iterations_mean"] < 30
    assert all(torch.isfinite(p.grad).all() for p in model.p1.parameters())
