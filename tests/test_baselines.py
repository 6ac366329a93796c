"""The field's current baselines: LoRA and its PEFT kin (IA3, LoHa, LoKr), SSF, AdaptFormer.

Written as specifications: each method's published placement, initialisation and parameter
count (ViT-B/16 without the head: LoRA r=8 on the fused qkv 294,912 = "0.29 M", SSF 205,824 =
"0.21 M" (V-PETL Bench; SSF's own 0.24 M adds the VTAB tasks' mean head), AdaptFormer with
bottleneck 8 156,768 = "0.16 M"), SSF's merge, AdaptFormer's parallel branch computed by hand.
The generic contract (only declared parameters train, a step lowers the loss) runs for every
method in tests/test_methods.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lionbench.methods import count_parameters, create_model
from lionbench.methods.lora import normalise_targets
from torch import nn

from lionbench.backbones import create_backbone
from lionbench.errors import ConfigError
from lionbench.train.params import count_method_parameters

BACKBONES = ["test_resnet", "test_vit", "test_swin"]
PEFT_METHODS = ["lora", "ia3", "loha", "lokr"]
# the mean number of classes of VTAB-1k's 19 tasks (VPT's tune_vtab.py, DATA2CLS): 940 / 19
VTAB_MEAN_CLASSES = 940 / 19


def batch(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def backbone(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_backbone(name, 10, "none").eval()


# --- counts against the field's tables ----------------------------------------------------------
@pytest.fixture(scope="module")
def vit_b() -> dict[str, dict]:
    methods = ["lora", "ssf", "adaptformer", "ia3"]
    return {r["method"]: r for r in count_method_parameters(methods,
                                                            ["vit_base_patch16_224"], 10)}


@pytest.mark.parametrize("method, exact, published_m", [
    ("lora", 8 * (768 + 3 * 768) * 12, 0.29),  # r (d_in + d_out) per fused qkv, 12 blocks
    ("ssf", 2 * (768 + 12 * (3 * 768 + 768 + 768 + 768 + 4 * 768 + 768) + 768), 0.21),
    ("adaptformer", 12 * (768 * 8 + 8 + 8 * 768 + 768), 0.16),
    ("ia3", 12 * (3 * 768 + 4 * 768), None)])
def test_vit_b_counts_match_the_papers(vit_b: dict, method: str, exact: int,
                                       published_m: float | None) -> None:
    record = vit_b[method]
    assert record["trainable_without_head"] == exact
    assert record["head"] == 7_690
    if published_m is not None:
        assert abs(exact / 1e6 - published_m) / published_m <= 0.05


def test_ssf_paper_count_includes_the_mean_vtab_head(vit_b: dict) -> None:
    """SSF's own table says 0.24 M on VTAB: its 205,824 plus the mean head (768 + 1) x 49.5."""
    with_head = vit_b["ssf"]["trainable_without_head"] + 769 * VTAB_MEAN_CLASSES
    assert abs(with_head / 1e6 - 0.24) / 0.24 <= 0.05
    assert abs(vit_b["ssf"]["trainable_without_head"] / 1e6 - 0.24) / 0.24 > 0.05


# --- PEFT tuners --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("method", PEFT_METHODS)
def test_peft_tuners_start_at_the_frozen_backbone(method: str, name: str) -> None:
    bb = backbone(name)
    x = batch()
    with torch.no_grad():
        expected = bb(x)
    model = create_model(method, bb).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)
    assert model.peft_layers(), "PEFT layers are injected into the backbone itself"
    assert set(map(id, model.adapter_params)) == set(map(id, model.parameter_groups()[
        model.group]))


def test_lora_b_is_zero_and_a_is_not() -> None:
    model = create_model("lora", backbone("test_vit"))
    layers = model.peft_layers()
    assert len(layers) == len(model.backbone.blocks)  # one per fused qkv
    for layer in layers:
        assert not layer.lora_B["lionbench"].weight.any()
        assert layer.lora_A["lionbench"].weight.abs().sum() > 0
        assert layer.scaling["lionbench"] == 8.0 / 8


def test_lora_targets_qkv_by_default_and_named_layers_inside_blocks_only() -> None:
    bb = backbone("test_vit")
    model = create_model("lora", bb, {"target_modules": "fc2, qkv,proj,fc1"})
    assert model.config.target_modules == "fc1,fc2,proj,qkv"  # one spelling, one identity
    assert len(model.targets) == 4 * len(bb.blocks)
    assert not any(t.startswith("patch_embed") for t in model.targets)  # its proj is outside
    assert type(bb.patch_embed.proj) is nn.Conv2d
    swin = create_model("lora", backbone("test_swin"))
    assert all(t.endswith("attn.qkv") for t in swin.targets) and swin.targets
    with pytest.raises(ConfigError, match="no linear or convolution layer named q_proj"):
        create_model("lora", backbone("test_vit"), {"target_modules": "q_proj"})
    for bad in ("", "qkv;proj", "auto,qkv"):
        with pytest.raises(ConfigError, match="target_modules"):
            normalise_targets(bad)


def test_lora_on_cnns_adapts_the_3x3_convs_of_each_block_with_peft_conv2d() -> None:
    bb = backbone("test_resnet")
    convs = {n: m for n, m in bb.named_modules() if n.startswith("layer")
             and isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)}
    model = create_model("lora", bb, {"rank": 2})
    assert set(model.targets) == set(convs)
    for name in model.targets:
        layer = model.backbone.get_submodule(name)
        a, b = layer.lora_A["lionbench"], layer.lora_B["lionbench"]
        base = layer.base_layer
        assert (a.kernel_size, a.stride, a.padding) == (base.kernel_size, base.stride,
                                                         base.padding)
        assert b.kernel_size == (1, 1) and not b.weight.any()
    expected = sum(2 * (9 * c.in_channels + c.out_channels) for c in convs.values())
    assert count_parameters(model).by_component["lora"] == expected


def test_lora_dropout_trains_while_the_backbone_stays_in_eval() -> None:
    model = create_model("lora", backbone("test_vit"), {"dropout": 0.5}).train()
    layer = model.peft_layers()[0]
    assert layer.lora_dropout["lionbench"].training
    assert not model.backbone.blocks[0].norm1.training
    model.eval()
    assert not layer.lora_dropout["lionbench"].training


def test_ia3_rescales_qkv_outputs_and_the_mlp_inner_activation() -> None:
    model = create_model("ia3", backbone("test_vit"))
    for block in model.backbone.blocks:
        qkv, fc2 = block.attn.qkv, block.mlp.fc2
        assert qkv.ia3_l["lionbench"].shape[0] == qkv.base_layer.out_features
        assert fc2.is_feedforward and fc2.ia3_l["lionbench"].shape[1] == fc2.base_layer.in_features
        assert torch.equal(qkv.ia3_l["lionbench"], torch.ones_like(qkv.ia3_l["lionbench"]))


# --- SSF ----------------------------------------------------------------------------------------
def test_ssf_placement_is_the_reference_codes_on_vit() -> None:
    bb = backbone("test_vit")
    model = create_model("ssf", bb)
    names = {id(m): n for n, m in bb.named_modules()}
    placed = [names[id(m)] for m in model.targets]
    per_block = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    expected = ["patch_embed.proj"] + [f"blocks.{i}.{n}" for i in range(len(bb.blocks))
                                       for n in per_block] + ["norm"]
    assert placed == expected  # dongzelian/SSF: ssf_ada after each of these; never the head
    scales = torch.cat([s.scale for s in model.ssf])
    assert abs(scales.mean().item() - 1) < 0.01 and 0.01 < scales.std().item() < 0.03


@pytest.mark.parametrize("name", BACKBONES)
def test_ssf_at_identity_init_is_the_backbone(name: str) -> None:
    bb = backbone(name)
    x = batch()
    with torch.no_grad():
        expected = bb(x)
    model = create_model("ssf", bb, {"init_std": 0.0}).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", BACKBONES)
def test_ssf_merged_equals_unmerged(name: str) -> None:
    bb = backbone(name)
    x = batch()
    with torch.no_grad():
        plain = bb(x)
    model = create_model("ssf", bb, {"init_std": 0.3}).eval()
    with torch.no_grad():
        for ss in model.ssf:  # trained-looking values: far from the identity
            ss.shift.normal_(0, 0.3)
        before = model(x)
        assert not torch.allclose(before, plain, atol=1e-2)
        model.merge()
        assert model.merged and not model._handles
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert list(model.parameter_groups()) == ["head"]
    for module in model.targets:  # the plain timm layers again: no hook, no extra operation
        assert not module._forward_hooks


def test_ssf_trains_scales_and_shifts_only() -> None:
    model = create_model("ssf", backbone("test_resnet")).train()
    F.cross_entropy(model(batch()), torch.tensor([0, 1])).backward()
    assert all(s.scale.grad is not None and s.shift.grad is not None for s in model.ssf)
    frozen = [p for n, p in model.backbone.named_parameters() if not n.startswith("fc.")]
    assert all(p.grad is None for p in frozen)


# --- AdaptFormer --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKBONES)
def test_adaptformer_starts_at_the_frozen_backbone(name: str) -> None:
    bb = backbone(name)
    x = batch()
    with torch.no_grad():
        expected = bb(x)
    model = create_model("adaptformer", bb).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    for adapter in model.adapters:
        assert not adapter.up.weight.any() and not adapter.up.bias.any()
        assert not adapter.down.bias.any() and adapter.down.weight.abs().sum() > 0
        assert adapter.scale == 0.1


@pytest.mark.parametrize("name", ["test_vit", "test_swin"])
def test_adaptformer_is_a_scaled_branch_beside_the_mlp_reading_the_unnormed_stream(
        name: str) -> None:
    """ShoufaChen/AdaptFormer Block.forward: x' = x + attn(norm1(x));
    out = x' + mlp(norm2(x')) + s * up(relu(down(x')))."""
    model = create_model("adaptformer", backbone(name), {"dropout": 0.0, "scale": 0.5}).eval()
    bb = model.backbone
    blocks = list(bb.blocks) if name == "test_vit" else list(bb.layers[0].blocks)
    block, adapter = blocks[0], model.adapters[0]
    with torch.no_grad():
        adapter.up.weight.normal_(0, 0.5)
        adapter.up.bias.normal_(0, 0.5)
        if name == "test_vit":
            t = bb._pos_embed(bb.patch_embed(batch()))
            mid = t + block.attn(block.norm1(t))
            plain = mid + block.mlp(block.norm2(mid))
        else:
            t = bb.layers[0].downsample(bb.patch_embed(batch()))
            b_, h, w, c = t.shape
            mid = (t + block._attn(block.norm1(t))).reshape(b_, -1, c)
            plain = (mid + block.mlp(block.norm2(mid))).reshape(b_, h, w, c)
        branch = 0.5 * adapter.up(torch.relu(adapter.down(mid)))
        torch.testing.assert_close(block(t), plain + branch.reshape(plain.shape))
        assert not torch.allclose(branch, torch.zeros_like(branch))


def test_adaptformer_on_cnns_runs_beside_each_residual_block() -> None:
    model = create_model("adaptformer", backbone("test_resnet"), {"bottleneck": 4}).eval()
    bb = model.backbone
    blocks = [b for i in range(1, 5) for b in getattr(bb, f"layer{i}")]
    assert len(model.adapters) == len(blocks)
    block, adapter = blocks[1], model.adapters[1]  # a downsampling block: stride 2
    assert adapter.down.stride == (2, 2)
    x = torch.randn(1, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        adapter.up.weight.normal_()
        handles = block._forward_hooks.copy()
        block._forward_hooks.clear()
        plain = block(x)
        block._forward_hooks.update(handles)
        torch.testing.assert_close(block(x), plain + 0.1 * adapter.up(torch.relu(
            adapter.down(x))))


def test_list_methods_names_each_baselines_source() -> None:
    from typer.testing import CliRunner

    from lionbench.cli import app

    out = CliRunner().invoke(app, ["list", "methods"], env={"COLUMNS": "250"}).output
    for method, source in (("lora", "Hugging Face PEFT (LoraConfig)"), ("ssf", "dongzelian/SSF"),
                           ("adaptformer", "ShoufaChen/AdaptFormer"), ("ia3", "IA3Config")):
        line = next(ln for ln in out.splitlines() if f" {method} " in ln)
        assert source in line, line
