"""Tests of the LION method (methods/lion.py) on timm's tiny test backbones: eqs. 1-3 by hand,
the ablations, robust training's scope, the parameter budget. The equilibrium layers' own tests
(contraction, fixed point, gradients) are in test_lion_equilibrium.py."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F
from lionbench.methods import count_parameters, create_model, get_method
from lionbench.methods.lion import PAPER_BUDGETS, Lion, blend

from lionbench.errors import ConfigError
from lionbench.robust import RobustOptimizer
from lionbench.train.params import count_method_parameters

BACKBONES = ["test_resnet", "test_vit"]
TIGHT = {"tol": 1e-9, "max_iter": 300}  # forward solves to (float32) convergence


def backbone(name: str, num_classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {"img_size": 32} if "vit" in name else {}
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)


def batch(n: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 5


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


def fixed_point(block, u: torch.Tensor, steps: int = 300) -> torch.Tensor:
    """The equilibrium of a prompt block by plain iteration of its own map (no solver)."""
    f = block.map(u)
    z = u
    for _ in range(steps):
        z = f(z)
    return z


def test_blend_is_eq3_with_alpha_first():
    """a = e^{g_a} / (e^{g_a} + e^{g_b}) from the first logit, b from the second."""
    a, b = blend(torch.tensor([0.7, -1.2]))
    want_a = math.exp(0.7) / (math.exp(0.7) + math.exp(-1.2))
    assert a.item() == pytest.approx(want_a, rel=1e-6)
    assert b.item() == pytest.approx(1 - want_a, rel=1e-6) and a > b


@pytest.mark.parametrize("p2_input", ["raw", "prompted"])
def test_eq1_and_eq2_by_hand(p2_input):
    """x~ = a1 x + b1 P1(x) enters the backbone and z~ = a2 F(x~) + b2 MLP(P2(z)) the head,
    with blend weights far from 1/2 and the equilibria computed here by plain iteration."""
    model = lion(p2_input=p2_input, **TIGHT).eval()
    with torch.no_grad():
        model.blend1.copy_(torch.tensor([0.3, -0.9]))
        model.blend2.copy_(torch.tensor([-0.4, 0.8]))
    into_backbone, into_head = [], []
    forward_features = model.backbone.forward_features
    model.backbone.forward_features = lambda t: (into_backbone.append(t), forward_features(t))[1]
    model.head().register_forward_hook(lambda m, i, o: into_head.append(i[0]))
    x, _ = batch()
    with torch.no_grad():
        model(x)
        a1 = math.exp(0.3) / (math.exp(0.3) + math.exp(-0.9))
        x_t = a1 * x + (1 - a1) * fixed_point(model.p1, x)
        torch.testing.assert_close(into_backbone[0], x_t, rtol=1e-4, atol=1e-4)
        feats = model.features(x_t)
        z = feats if p2_input == "prompted" else model.features(x)
        a2 = math.exp(-0.4) / (math.exp(-0.4) + math.exp(0.8))
        z_t = a2 * feats + (1 - a2) * model.mlp(fixed_point(model.p2, model.proj(z)))
        torch.testing.assert_close(into_head[0], z_t, rtol=1e-4, atol=1e-4)


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
    F.cross_entropy(model(x), y).backward()
    for p in model.p1.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    for p in [*model.head().parameters(), model.blend1, model.blend2, *model.mlp.parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0
    head = {id(p) for p in model.head().parameters()}
    assert all(p.grad is None for p in model.backbone.parameters() if id(p) not in head)
    m = model.extra_metrics()
    assert m["p1_fwd_not_converged"] == 0 and m["p1_bwd_iterations_mean"] >= 1
    assert m["p2_fwd_iterations_mean"] >= 1 and m["p1_fwd_not_converged_share"] == 0
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
        loss = F.cross_entropy(model(x), y)
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


def test_robust_training_ranks_each_prompt_tensor_and_steps_head_and_blends_normally():
    """Layer-wise rule: the tau share of *each* P1, P2 and MLP tensor is shrunk (eq. 11); the
    head and blend logits take Adam's step, exactly as without robust training."""
    x, y = batch()
    models = {robust: lion(robust=robust, tau=0.4).train() for robust in (True, False)}
    optimizers = [model.create_optimizer(lr=1e-2) for model in models.values()]  # kept alive
    for model, opt in zip(models.values(), optimizers, strict=True):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    robust, plain = (models[True].parameter_groups(), models[False].parameter_groups())
    for group in ("head", "coefficients"):
        for p, q in zip(robust[group], plain[group], strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    for group in ("p1", "p2", "mlp"):
        assert any(not torch.equal(p, q) for p, q in zip(robust[group], plain[group],
                                                         strict=True)), group
    m = models[True].extra_metrics()
    for group in ("p1", "p2", "mlp"):
        params = robust[group]
        want = sum(int(0.4 * p.numel()) for p in params) / sum(p.numel() for p in params)
        assert m[f"robust_noncrucial_{group}"] == pytest.approx(want), group
    assert "robust_noncrucial_head" not in m and "robust_noncrucial_coefficients" not in m
    everything = lion(robust_scope="all", tau_scope="pooled").train()
    opt = everything.create_optimizer(lr=1e-2)
    F.cross_entropy(everything(x), y).backward()
    opt.step()
    assert {"robust_noncrucial_head", "robust_noncrucial_coefficients"} <= set(
        everything.extra_metrics())


def test_no_exact_zero_in_prompt_parameters_at_init():
    """Robust training would keep a zero at zero for ever: criticality 0, sign(0) = 0."""
    groups = lion("test_vit", robust_scope="all").parameter_groups()  # ViT head bias: timm's 0
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
        F.cross_entropy(model(x), y).backward()
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


def test_p2_width_auto_meets_the_papers_budget_on_its_four_backbones():
    """`lionbench params`' counts (meta device): within 5 % of 0.097 / 0.097 / 0.124 / 0.242 M
    without the head; the ablations keep LION's width; a number overrides; other backbones 22."""
    records = count_method_parameters(["lion", "lion-p1"], list(PAPER_BUDGETS), 10)
    lion_rows = {r["backbone"]: r for r in records if r["method"] == "lion"}
    for name, budget in PAPER_BUDGETS.items():
        got = lion_rows[name]["trainable_without_head"]
        assert abs(got - budget) <= 0.05 * budget, (name, got, budget)
        assert abs(got - budget) <= 0.01 * budget, (name, got, budget)  # the nearest width
    assert PAPER_BUDGETS == {"resnet50": 97_000, "resnet101": 97_000,
                             "vit_base_patch16_224": 124_000,
                             "swin_base_patch4_window7_224": 242_000}
    p1_rows = {r["backbone"]: r for r in records if r["method"] == "lion-p1"}
    for name in PAPER_BUDGETS:
        assert p1_rows[name]["by_component"]["p2"] == lion_rows[name]["by_component"]["p2"]
    fixed = count_method_parameters(["lion"], ["resnet50"], 10, {"p2_width": 22})[0]
    assert fixed["trainable_without_head"] == 93_135  # lionbench v1's ResNet-50 count
    assert lion().p2_width == 22 and lion().extra_metrics()["p2_width"] == 22


@pytest.mark.parametrize("bad,match", [
    ({"p2_input": "both"}, "p2_input"), ({"deq_layers": 5}, "deq_layers"),
    ({"solver": "broyden"}, "solver"), ({"tau": 1.0}, "tau"), ({"p2_width": 2.5}, "p2_width"),
    ({"p2_width": "wide"}, "p2_width"), ({"tau_scope": "layer"}, "tensor, pooled"),
    ({"robust_scope": "head"}, "prompts, all"), ({"contraction": 1.0}, "contraction"),
])
def test_config_validation(bad, match):
    with pytest.raises(ConfigError, match=match):
        get_method("lion").make_config(bad)


def test_bf16_autocast_solves_in_float32_and_converges():
    """Under bf16 the residual would floor near 1e-3 and every solve would hit max_iter."""
    model = lion().train()
    x, y = batch(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        feats = model.features(x)
    assert feats.dtype == torch.bfloat16  # autocast is really on for the backbone
    F.cross_entropy(logits.float(), y).backward()
    m = model.extra_metrics()
    for block in ("p1", "p2"):
        assert m[f"{block}_fwd_not_converged"] == 0 and m[f"{block}_fwd_iterations_mean"] < 30
    assert all(torch.isfinite(p.grad).all() for p in model.p1.parameters())
