"""Tests of every registered method on a tiny CNN, ViT and Swin, and of Bias, Adapter and VPT.

Generic contract (all methods): exactly the parameters a method declares in
``parameter_groups()`` receive gradients, everything else keeps ``grad is None`` and stays
bit-identical through optimizer steps, and a few steps lower the loss on a fixed batch.
Reference counts: ViT-B/16 without head (reference notes): BitFit 102,912, Houlsby-8 313,536,
VPT-deep p=5 46,080, VPT-shallow p=5 3,840.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from lionbench.methods import count_parameters, create_model, list_methods
from lionbench.methods.vpt import _prompted_window_attention
from timm.models.swin_transformer import window_partition

from lionbench.backbones import create_backbone
from lionbench.errors import ConfigError
from lionbench.train.params import count_method_parameters

BACKBONES = ["test_resnet", "test_vit", "test_swin"]
REFUSED = {("vpt-shallow", "test_resnet")}  # test_vpt_shallow_is_refused_on_cnns checks these
PAIRS = [(m, b) for b in BACKBONES for m in list_methods() if (m, b) not in REFUSED]


def batch(n: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 10


def build(method: str, backbone: str, overrides: dict | None = None):
    torch.manual_seed(0)
    return create_model(method, create_backbone(backbone, 10, "none"), overrides)


# --- every method in the registry -------------------------------------------------------------
@pytest.mark.parametrize(("method", "backbone"), PAIRS)
def test_declared_parameters_train_and_nothing_else(method: str, backbone: str) -> None:
    model = build(method, backbone).train()
    groups = model.parameter_groups()
    assert "head" in groups and groups["head"], "every method trains a head"
    declared = {id(p) for p in model.trainable_parameters()}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in declared}
    buffers = {n: b.clone() for n, b in model.backbone.named_buffers()}
    optimizer = model.create_optimizer(lr=1e-2)
    x, y = batch()
    losses = []
    for step in range(3):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if step == 0:
            got = {n for n, p in model.named_parameters() if p.grad is not None}
            want = {n for n, p in model.named_parameters() if id(p) in declared}
            assert got == want
        optimizer.step()
        losses.append(loss.item())
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), f"frozen {name} changed"
    if model.frozen_backbone:  # BatchNorm statistics of a frozen backbone never move
        for name, b in model.backbone.named_buffers():
            assert torch.equal(b, buffers[name]), f"buffer {name} changed"
    with torch.no_grad():
        final = F.cross_entropy(model(x), y).item()
    assert math.isfinite(final) and final < losses[0], (losses, final)


# --- Bias ---------------------------------------------------------------------------------------
def test_bias_trains_batchnorm_shifts_on_cnns_and_all_biases_on_transformers() -> None:
    model = build("bias", "test_resnet")
    names = {id(p): n for n, p in model.backbone.named_parameters()}
    trained = {names[id(p)] for p in model.parameter_groups()["bias"]}
    bn_shifts = {f"{n}.bias" for n, m in model.backbone.named_modules()
                 if isinstance(m, torch.nn.BatchNorm2d)}
    assert trained == bn_shifts  # the convolutions carry no bias: the shifts are the biases
    swin = build("bias", "test_swin")
    names = {id(p): n for n, p in swin.backbone.named_parameters()}
    trained = {names[id(p)] for p in swin.parameter_groups()["bias"]}
    assert "layers.0.blocks.0.attn.qkv.bias" in trained and "norm.bias" in trained
    assert not any("relative_position_bias_table" in n for n in trained)
    assert not any(n.startswith("head") for n in trained)


# --- Adapter ------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", BACKBONES)
def test_adapter_at_init_reproduces_the_frozen_backbone(backbone: str) -> None:
    torch.manual_seed(0)
    bb = create_backbone(backbone, 10, "none").eval()
    x, _ = batch(2)
    with torch.no_grad():
        logits = bb(x)
        feats = bb.forward_head(bb.forward_features(x), pre_logits=True)
    model = create_model("adapter", bb).eval()
    with torch.no_grad():
        assert torch.equal(model(x), logits)
        assert torch.equal(model.features(x), feats)
    for adapter in model.adapters:
        assert not adapter.up.weight.any() and not adapter.up.bias.any()
        assert adapter.down.weight.abs().sum() > 0  # never both projections at zero


def test_adapter_placement_and_width() -> None:
    vit = build("adapter", "test_vit", {"bottleneck": 4})
    assert len(vit.adapters) == 2 * len(vit.backbone.blocks)  # after attention and after MLP
    assert all(a.down.out_features == 4 for a in vit.adapters)
    swin = build("adapter", "test_swin")
    assert len(swin.adapters) == 2 * sum(len(s.blocks) for s in swin.backbone.layers)
    cnn = build("adapter", "test_resnet", {"cnn_fraction": 0.25})
    blocks = [b for i in range(1, 5) for b in getattr(cnn.backbone, f"layer{i}")]
    assert len(cnn.adapters) == len(blocks)
    assert [a.down.out_channels for a in cnn.adapters] == [
        max(1, round(a.down.in_channels * 0.25)) for a in cnn.adapters]
    with pytest.raises(ConfigError, match="bottleneck"):
        build("adapter", "test_vit", {"bottleneck": 0})


# --- VPT ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [1, 3])
def test_vpt_cnn_input_grows_by_the_frame(p: int) -> None:
    model = build("vpt", "test_resnet", {"prompt_length": p, "pad_size": 32}).eval()
    seen = []
    model.backbone.conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    x, _ = batch(2)
    model(x)
    assert seen == [torch.Size([2, 3, 32 + 2 * p, 32 + 2 * p])]
    assert count_parameters(model).by_component["prompt"] == 12 * p * 32 + 12 * p * p
    other = build("vpt", "test_resnet", {"prompt_length": p})  # frame learned at 160 px
    seen.clear()
    other.backbone.conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    other.eval()(x)  # resampled to the 32 px input
    assert seen == [torch.Size([2, 3, 32 + 2 * p, 32 + 2 * p])]


@pytest.mark.parametrize("deep", [True, False])
def test_vpt_vit_token_count(deep: bool) -> None:
    p = 3
    model = build("vpt", "test_vit", {"prompt_length": p, "deep": deep}).eval()
    bb = model.backbone
    assert len(model.prompts) == (len(bb.blocks) if deep else 1)
    tokens: list[int] = []
    for block in bb.blocks:
        block.register_forward_pre_hook(lambda m, a: tokens.append(a[0].shape[1]))
    normed: list[int] = []
    bb.norm.register_forward_pre_hook(lambda m, a: normed.append(a[0].shape[1]))
    model(batch(2)[0])
    patches = (32 // 16) ** 2
    assert tokens == [1 + p + patches] * len(bb.blocks)
    assert normed == [1 + patches]  # prompt outputs dropped before the head
    bound = math.sqrt(6 / (3 * 16 * 16 + bb.embed_dim))
    assert all(t.abs().max() <= bound for t in model.prompts)


@pytest.mark.parametrize("backbone", ["test_vit", "test_swin"])
@pytest.mark.parametrize("method", ["vpt", "vpt-shallow"])
def test_vpt_forward_without_prompts_is_the_backbone(method: str, backbone: str) -> None:
    model = build(method, backbone, {"prompt_length": 0}).eval()
    x, _ = batch(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.backbone(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_vpt_prompts_reach_the_loss_and_dropout_trains(backbone: str) -> None:
    model = build("vpt", backbone).train()
    assert not any(m.training for m in model.backbone.modules())  # frozen backbone in eval
    assert model.prompt_dropout.training
    x, y = batch(2)
    F.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.prompts)


def test_vpt_shallow_is_refused_on_cnns() -> None:
    """On a CNN, VPT's prompt is the pad frame whatever ``deep`` says: vpt-shallow would be a
    second row of the very same model. Refused when built and, one line, at planning."""
    from lionbench.train.configs import create_run_config

    assert {(m, b) for m, b in REFUSED} == {("vpt-shallow", "test_resnet")}
    for method, overrides in (("vpt-shallow", {}), ("vpt", {"deep": False})):
        with pytest.raises(ConfigError, match="no CNN variant of its own"):
            build(method, "test_resnet", overrides)
    with pytest.raises(ConfigError, match="method 'vpt-shallow' on backbone 'test_resnet': "
                                          "deep=false"):
        create_run_config("vpt-shallow", "test_resnet", "digits", weights="none")
    for backbone in ("test_vit", "test_swin"):  # a distinct model on transformers
        assert create_run_config("vpt-shallow", backbone, "digits", weights="none")
    assert create_run_config("vpt", "test_resnet", "digits", weights="none")


def test_vpt_swin_head_pools_prompts_with_patches_as_vpt_does() -> None:
    """VPT's reference head: final norm over prompts and patches, one average over both."""
    for method in ("vpt", "vpt-shallow"):
        model = build(method, "test_swin", {"prompt_length": 3}).eval()
        bb = model.backbone
        normed: list[tuple[int, ...]] = []
        bb.norm.register_forward_hook(lambda m, a, out, seen=normed: seen.append(tuple(out.shape)))
        x, _ = batch(2)
        with torch.no_grad():
            logits = model(x)
            tokens, prompt = normed[-2], normed[-1]
            assert prompt == (2, 3, bb.num_features)  # the last block's prompt outputs
            patches, prompts = model._swin_features(x)
            expected = torch.cat([prompts, patches.flatten(1, 2)], 1).mean(1)
            torch.testing.assert_close(model.features(x), expected)
            torch.testing.assert_close(logits, bb.head.fc(expected))
            only_patches = bb.head.fc(patches.mean((1, 2)))
            assert not torch.allclose(logits, only_patches, atol=1e-4)  # prompts do count
            if method == "vpt":  # outputs of the last block, not its input prompt set
                raw = bb.norm(model.prompts[-1]).expand_as(prompts)
                assert not torch.allclose(prompts, raw, atol=1e-4)
        assert tokens[0] == 2


def test_vpt_swin_prompt_sets_follow_the_stages() -> None:
    deep = build("vpt", "test_swin", {"prompt_length": 2})
    widths = [blk.dim for s in deep.backbone.layers for blk in s.blocks]
    assert [tuple(t.shape) for t in deep.prompts] == [(2, w) for w in widths]
    shallow = build("vpt-shallow", "test_swin", {"prompt_length": 2})
    assert [tuple(t.shape) for t in shallow.prompts] == [(2, widths[0])]


def test_swin_prompted_window_attention_matches_a_naive_loop() -> None:
    torch.manual_seed(0)
    block = create_backbone("test_swin", 10, "none").eval().layers[0].blocks[1]  # shifted
    attn, mask = block.attn, block.attn_mask
    b, p, c, windows = 2, 3, 16, mask.shape[0]
    x = window_partition(torch.randn(b, 8, 8, c), (4, 4)).view(b * windows, 16, c)
    prompt = torch.randn(b, p, c)
    state = SimpleNamespace(prompt=prompt, prompt_out=None)
    with torch.no_grad():
        out = _prompted_window_attention(attn, state, x, mask)
        heads, rel = attn.num_heads, attn._get_rel_pos_bias()[0]
        for i in range(b * windows):
            t = torch.cat([prompt[i // windows], x[i]])
            q, k, v = attn.qkv(t).view(p + 16, 3, heads, -1).unbind(1)
            logits = torch.einsum("nhd,mhd->hnm", q, k) * attn.scale
            logits[:, p:, p:] += rel + mask[i % windows]
            o = attn.proj(torch.einsum("hnm,mhd->nhd", logits.softmax(-1), v).reshape(p + 16, c))
            torch.testing.assert_close(out[i], o[p:], rtol=1e-5, atol=1e-6)


# --- parameter counts ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vit_b_counts() -> dict[str, dict]:
    """One ViT-B/16 build (random init, no download), wrapped by each method's copy."""
    records = count_method_parameters(["bias", "adapter", "vpt", "vpt-shallow", "head-tuning"],
                                      ["vit_base_patch16_224"], 10)
    return {r["method"]: r for r in records}


@pytest.mark.parametrize("method, expected", [
    ("bias", 102_912), ("adapter", 313_536), ("vpt", 46_080), ("vpt-shallow", 3_840),
    ("head-tuning", 0)])
def test_vit_b_reference_counts(vit_b_counts: dict, method: str, expected: int) -> None:
    record = vit_b_counts[method]
    assert record["trainable_without_head"] == expected
    assert record["head"] == 768 * 10 + 10
    assert record["trainable"] == expected + record["head"]
    assert record["by_component"]["head"] == record["head"]


def test_counts_on_meta_equal_counts_on_cpu() -> None:
    methods = [m for m in list_methods() if (m, "test_resnet") not in REFUSED]
    records = count_method_parameters(methods, ["test_resnet"], 10)
    for name, record in zip(methods, records, strict=True):
        cpu = count_parameters(build(name, "test_resnet"))
        assert (record["trainable"], record["total"]) == (cpu.trainable, cpu.total), name
        assert record["by_component"] == cpu.by_component, name


def test_count_overrides_route_per_method() -> None:
    records = count_method_parameters(["bias", "vpt"], ["test_vit"], 10,
                                      {"vpt.prompt_length": 2, "deep": False, "epochs": 3})
    vpt = records[1]
    assert vpt["config"]["deep"] is False and vpt["config"]["prompt_length"] == 2
    assert vpt["trainable_without_head"] == 2 * 64
    with pytest.raises(ConfigError, match="no_such"):
        count_method_parameters(["bias"], ["test_vit"], 10, {"no_such": 1})
