"""VPT (Jia et al. 2022): learnable prompts fed to a frozen backbone with a new head.

Three families, following the VPT paper and its reference code (KMnP/vpt):

- **ViT** (timm ``VisionTransformer``): ``prompt_length`` tokens inserted right after the class
  (and register) tokens, after patch embedding and position encoding. Shallow: one set, inserted
  once. Deep (default): a new set before every block, replacing the previous block's prompt
  outputs. The class token stays at index 0, so timm's token pooling is untouched, and the prompt
  outputs are dropped before the final norm and head (average pooling therefore sees only patch
  tokens). The forward reuses the backbone's own ``patch_embed``, ``_pos_embed``, ``blocks``,
  ``norm`` and ``forward_head``. ViT-B/16 with 5 tokens: deep 46,080, shallow 3,840 parameters.
  (VPT's ViT head reads the class token, as timm's ``global_pool='token'`` does.)
- **Swin** (timm ``SwinTransformer``), as VPT did: the prompts are prepended to the token sequence
  and, in every block, shared by all windows: each window attends over ``[prompts; window
  tokens]`` (zero relative-position bias and no shift mask for prompts), and the prompt outputs
  are averaged over windows. Deep: a new set for every block, of the stage's width. Shallow: one
  set at the input that flows through the blocks' MLPs and is tiled 4x at patch merging before
  the stage's own merging norm and reduction. The head follows VPT's reference code
  (``PromptedSwinTransformer.forward_features``: ``norm`` over prompts and patches, then one
  average over all of them): the last block's prompt outputs go through the final norm and are
  averaged *together with* the patch tokens before the classifier. (Until protocol version 2
  lionbench pooled the patch tokens only; since Swin has no class token, what the prompts
  contribute to the pooled feature is part of the method, so we follow the reference.)
  Implemented by pointing each block's ``attn.forward`` at a prompted version that falls back
  to timm's own forward when no prompt is active, so the backbone keeps its modules,
  parameters and state-dict keys.
- **CNNs** (everything else): VPT's ConvNet variant ``pad``: a learnable frame of
  ``prompt_length`` RGB pixels around the image (the input grows from S to S + 2p), initialised
  uniformly in [0, 1] and normalised with the backbone's mean/std like an image. The frame is
  learned for ``pad_size`` (0: the backbone's pretrained input size); other input sizes resample
  it bilinearly. ``deep`` and ``dropout`` do not apply here, so ``vpt-shallow`` (``deep=false``)
  is refused on CNNs before anything runs: it would build exactly ``vpt``'s model (a duplicate
  row and duplicate compute). VPT's code has one other ConvNet location, ``below`` (extra input
  channels and a retrained first convolution), which is not a shallow variant of the frame.

Token prompts are initialised uniformly in Xavier's range +-sqrt(6 / (3 * patch_area + dim)), as
VPT does, and go through prompt dropout (``dropout``), which lives outside the backbone: the
inherited ``train()`` puts the frozen backbone in eval mode while the dropout follows ``mode``.
``prompt_length=0`` leaves only the head (useful to check the re-implemented forward paths).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from lionbench.errors import ConfigError
from lionbench.settings import setting

from . import register_method
from .base import MethodConfig, PetlModel


@dataclass
class VptConfig(MethodConfig):
    prompt_length: int = setting(5, low=0, high=4096, help="prompt tokens per set (ViT, Swin); "
                                 "frame width in pixels (CNNs)")
    deep: bool = setting(True, help="a new prompt set before every block (ViT, Swin); false: "
                         "one set at the input")
    dropout: float = setting(0.1, low=0.0, high=1.0, help="prompt dropout (ViT, Swin)")
    pad_size: int = setting(0, low=0, high=4096, help="CNNs: the image size the frame is "
                            "learned for; 0: the backbone's pretrained input size")


def _uniform(shape: tuple[int, ...], bound: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


def _prompted_window_attention(attn: nn.Module, state: SimpleNamespace, x: torch.Tensor,
                               mask: torch.Tensor | None = None) -> torch.Tensor:
    """timm's WindowAttention with ``state.prompt`` (B, p, C) prepended to every window."""
    if state.prompt is None:
        return type(attn).forward(attn, x, mask)
    prompt = state.prompt
    windows, n, c = x.shape
    batch, p = prompt.shape[:2]
    length = p + n
    tokens = torch.cat([prompt.repeat_interleave(windows // batch, dim=0), x], dim=1)
    q, k, v = attn.qkv(tokens).reshape(windows, length, 3, attn.num_heads, -1).permute(
        2, 0, 3, 1, 4).unbind(0)
    bias = F.pad(attn._get_rel_pos_bias(), (p, 0, p, 0))  # (1, heads, L, L); 0 for prompts
    if mask is not None:  # shifted windows: (num_win, N, N) of 0/-100, 0 for prompts
        num_win = mask.shape[0]
        bias = (bias.unsqueeze(1) + F.pad(mask, (p, 0, p, 0)).unsqueeze(1).unsqueeze(0))
        bias = bias.expand(windows // num_win, -1, -1, -1, -1).reshape(windows, -1, length, length)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=attn.scale,
                                         dropout_p=attn.attn_drop.p if attn.training else 0.0)
    out = attn.proj_drop(attn.proj(out.transpose(1, 2).reshape(windows, length, -1)))
    state.prompt_out = out[:, :p].reshape(batch, windows // batch, p, c).mean(1)
    return out[:, p:]


def vpt_family(backbone: nn.Module) -> str:
    """``vit``, ``swin`` or ``cnn``: which of VPT's three designs fits ``backbone``."""
    if isinstance(backbone, VisionTransformer):
        return "vit"
    if isinstance(backbone, SwinTransformer):
        return "swin"
    if hasattr(backbone, "patch_embed"):
        raise ConfigError(f"vpt supports timm VisionTransformer, SwinTransformer and CNNs, "
                          f"not {type(backbone).__name__}")
    return "cnn"


class VptTuning(PetlModel):
    """Frozen backbone in eval mode; prompts (tokens or an input frame) and the head train."""

    config_class = VptConfig

    @classmethod
    def check_backbone(cls, backbone: nn.Module, config: MethodConfig) -> None:
        if vpt_family(backbone) == "cnn" and not getattr(config, "deep", True):
            raise ConfigError("deep=false (vpt-shallow) has no CNN variant of its own: VPT's "
                              "ConvNet prompt is one learned pixel frame at the input, which "
                              "vpt builds already; use vpt on CNNs")

    def __init__(self, backbone: nn.Module, config: VptConfig):
        super().__init__(backbone, config)
        self.check_backbone(backbone, config)
        self.train_only_head()
        self.prompt_dropout = nn.Dropout(config.dropout)
        self.prompts = nn.ParameterList()
        p = config.prompt_length
        self.family = vpt_family(backbone)
        if self.family in ("vit", "swin"):
            patch = backbone.patch_embed.patch_size
            dim = backbone.embed_dim
            bound = math.sqrt(6.0 / (3 * patch[0] * patch[1] + dim))
            if self.family == "vit":
                widths = [dim] * (len(backbone.blocks) if config.deep else 1)
            else:
                widths = [blk.dim for stage in backbone.layers for blk in stage.blocks]
                widths = widths if config.deep else widths[:1]
                self._state = SimpleNamespace(prompt=None, prompt_out=None)
                for stage in backbone.layers:
                    for blk in stage.blocks:
                        blk.attn.forward = functools.partial(_prompted_window_attention,
                                                             blk.attn, self._state)
            for width in widths:
                self.prompts.append(_uniform((p, width), bound))
        else:
            cfg = getattr(backbone, "pretrained_cfg", None) or {}
            size = config.pad_size or int(cfg.get("input_size", (3, 224, 224))[-1])
            self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)))
                                 .view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)))
                                 .view(1, 3, 1, 1), persistent=False)
            # VPT's layout: top+bottom strips span the padded width, left+right the image height
            self.prompts.append(nn.Parameter(torch.rand(1, 3, 2 * p, size + 2 * p)))
            self.prompts.append(nn.Parameter(torch.rand(1, 3, size, 2 * p)))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"head": list(self.head().parameters()), "prompt": list(self.prompts)}

    # --- forward paths --------------------------------------------------------------------
    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """CNN: surround the image with the learned frame; (B,3,H,W) -> (B,3,H+2p,W+2p)."""
        p = self.config.prompt_length
        if p == 0:
            return x
        b, _, h, w = x.shape
        tb, lr = ((t - self.mean) / self.std for t in self.prompts)  # normalised like an image
        if tb.shape[-1] != w + 2 * p or lr.shape[-2] != h:  # another size: resample the frame
            tb = F.interpolate(tb, size=(2 * p, w + 2 * p), mode="bilinear", align_corners=False)
            lr = F.interpolate(lr, size=(h, 2 * p), mode="bilinear", align_corners=False)
        tb, lr = tb.to(x.dtype).expand(b, -1, -1, -1), lr.to(x.dtype).expand(b, -1, -1, -1)
        x = torch.cat([lr[..., :p], x, lr[..., p:]], dim=-1)
        return torch.cat([tb[:, :, :p], x, tb[:, :, p:]], dim=-2)

    def _vit_features(self, x: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        x = bb.norm_pre(bb.patch_drop(bb._pos_embed(bb.patch_embed(x))))
        start, p = bb.num_prefix_tokens, self.config.prompt_length
        for i, block in enumerate(bb.blocks):
            if i < len(self.prompts):  # deep: every block; shallow: the first only
                prompt = self.prompt_dropout(self.prompts[i]).to(x.dtype)
                prompt = prompt.unsqueeze(0).expand(x.shape[0], -1, -1)
                rest = x[:, start + p:] if i > 0 else x[:, start:]
                x = torch.cat([x[:, :start], prompt, rest], dim=1)
            x = block(x)
        x = torch.cat([x[:, :start], x[:, start + p:]], dim=1)  # drop the prompt outputs
        return bb.norm(x)

    def _swin_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch tokens (B, H, W, C), prompt outputs of the last block (B, p, C)), both through
        the final norm, as VPT's reference normalises prompts and patches together."""
        bb, state = self.backbone, self._state
        x = bb.patch_embed(x)  # (B, H, W, C)
        prompt, k, fresh = None, 0, len(self.prompts)  # blocks 0..fresh-1 get new prompts
        try:
            for stage in bb.layers:
                x = stage.downsample(x)
                if k >= fresh and not isinstance(stage.downsample, nn.Identity):
                    merge = stage.downsample  # tile the prompts 4x, as patch merging does
                    prompt = merge.reduction(merge.norm(torch.cat([prompt] * 4, dim=-1)))
                for block in stage.blocks:
                    if k < fresh:
                        prompt = self.prompt_dropout(self.prompts[k]).to(x.dtype)
                        prompt = prompt.unsqueeze(0).expand(x.shape[0], -1, -1)
                    state.prompt = block.norm1(prompt)
                    x = block(x)
                    if k + 1 >= fresh:  # the next block (or the head, after the last) reads them
                        prompt = prompt + block.drop_path1(state.prompt_out)
                        prompt = prompt + block.drop_path2(block.mlp(block.norm2(prompt)))
                    k += 1
        finally:
            state.prompt = state.prompt_out = None
        return bb.norm(x), bb.norm(prompt)

    def _swin_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """VPT's Swin head input: one average over the prompt outputs and the patch tokens
        (timm's own head averages patches only), through the head's dropout."""
        tokens, prompt = self._swin_features(x)
        pooled = torch.cat([prompt, tokens.flatten(1, 2)], dim=1).mean(dim=1)
        return self.backbone.head.drop(pooled)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's unpooled features with the prompts in place (Swin: patch tokens;
        its prompt outputs join them in :meth:`features`)."""
        if self.family == "vit":
            return self._vit_features(x)
        if self.family == "swin":
            return self._swin_features(x)[0]
        return self.backbone.forward_features(self.pad(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.family == "swin":
            return self._swin_pooled(x)
        return self.backbone.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.family == "swin":
            return self.backbone.head.fc(self._swin_pooled(x))
        return self.backbone.forward_head(self.forward_features(x))


register_method("vpt", VptTuning, paper_name="VPT",
                source="Jia et al. 2022 (VPT-Deep on ViT/Swin; VPT's pad prompt on CNNs)",
                description="visual prompt tuning: deep prompt tokens (ViT, Swin), "
                            "a learned pixel frame (CNNs)")
register_method("vpt-shallow", VptTuning, defaults={"deep": False, "dropout": 0.0},
                source="Jia et al. 2022 (VPT-Shallow)",
                paper_name="VPT-shallow",
                description="visual prompt tuning, one prompt set at the input (ViT, Swin; "
                            "refused on CNNs, where it would be vpt)")
