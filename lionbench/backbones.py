"""Backbones by timm name, with weights from timm's hub, a local file, or none.

Any ``timm.list_models()`` name works. A few names are built in: the project's own demo
backbone (``demo-resnet``: timm's ``test_resnet`` pretrained by ``lionbench pretrain`` on
CIFAR-10 JPEGs, shipped in ``lionbench/assets/``) and the paper's four backbones, listed first.

Weights (``--weights``): ``pretrained`` (alias ``timm``; the hub for timm names, the bundled
checkpoint for built-ins), ``none`` (random init), or a path to a safetensors file or a torch
state dict. The classifier is always new: its keys are dropped from the file and the head is
sized for the target dataset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from lionbench.errors import UnknownNameError, WeightsError

ASSETS = Path(__file__).parent / "assets"
PRETRAINED = ("pretrained", "timm")


@dataclass(frozen=True)
class BackboneSpec:
    """A built-in backbone: a timm architecture with defaults of its own."""

    name: str
    timm_name: str
    description: str
    image_size: int | None = None
    bundled_weights: str | None = None  # file in lionbench/assets
    kwargs: dict[str, Any] = field(default_factory=dict)


BUILTIN_BACKBONES = {
    spec.name: spec
    for spec in [
        BackboneSpec("demo-resnet", "test_resnet",
                     "timm test_resnet pretrained by lionbench on CIFAR-10 (32 px), bundled",
                     image_size=32, bundled_weights="demo-resnet-cifar10.safetensors"),
        BackboneSpec("resnet50", "resnet50", "ResNet-50 (paper Tables 1, 3, 4)"),
        BackboneSpec("resnet101", "resnet101", "ResNet-101 (paper Tables 1, 3)"),
        BackboneSpec("vit_base_patch16_224", "vit_base_patch16_224", "ViT-B/16 (paper Tables 2-4)"),
        BackboneSpec("swin_base_patch4_window7_224", "swin_base_patch4_window7_224",
                     "Swin-B (paper Tables 2, 3)"),
        BackboneSpec("mobilenetv2_100", "mobilenetv2_100", "MobileNetV2 (CPU-scale study)"),
        BackboneSpec("test_resnet", "test_resnet", "tiny timm ResNet for tests", image_size=32),
        BackboneSpec("test_vit", "test_vit", "tiny timm ViT for tests", image_size=32),
        BackboneSpec("test_swin", "swin_tiny_patch4_window7_224", "tiny timm Swin for tests",
                     image_size=32, kwargs={"embed_dim": 16, "depths": (2, 2), "num_heads": (1, 2),
                                            "window_size": 4, "img_size": 32}),
    ]
}


@dataclass(frozen=True)
class BackboneInfo:
    """What the data pipeline needs to know of a backbone."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    return frozenset(timm.list_models())


def list_backbones() -> list[str]:
    """The built-in names; any other timm model name is accepted as well."""
    return list(BUILTIN_BACKBONES)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec for ``name``: built-in, or any timm architecture (optionally ``arch.tag``)."""
    if name in BUILTIN_BACKBONES:
        return BUILTIN_BACKBONES[name]
    if name.split(".")[0] in _timm_names():
        return BackboneSpec(name, name, "timm model")
    raise UnknownNameError("backbone", name, list(BUILTIN_BACKBONES) + sorted(_timm_names()))


def get_backbone_info(name: str, image_size: int | None = None) -> BackboneInfo:
    """Input size and normalisation, from timm's pretrained config (no model is built)."""
    spec = get_backbone_spec(name)
    cfg = timm.get_pretrained_cfg(spec.timm_name)
    cfg = cfg.to_dict() if cfg is not None else {}
    size = image_size or spec.image_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    return BackboneInfo(size, mean, std)


def resolve_weights_id(name: str, weights: str) -> str:
    """What identifies the weights in a run's hash: 'none', 'timm:<name>' or a file digest."""
    spec = get_backbone_spec(name)
    if weights == "none":
        return "none"
    if weights in PRETRAINED:
        if spec.bundled_weights:
            return "sha256:" + file_digest(ASSETS / spec.bundled_weights)
        return f"timm:{spec.timm_name}"
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file '{weights}' not found; --weights takes 'pretrained', "
                           "'none', or a path to a .safetensors / torch state-dict file")
    check_weights_file(name, path)
    return "sha256:" + file_digest(path)


@lru_cache(maxsize=32)
def check_weights_file(name: str, path: Path) -> None:
    """Fail before anything runs if ``path`` does not fit backbone ``name`` (built on the meta
    device: no memory, no time)."""
    with torch.device("meta"):
        model = _create_timm(get_backbone_spec(name).timm_name, 10, False,
                             dict(get_backbone_spec(name).kwargs))
    check_state_dict(model, read_state_dict(path), path)


@lru_cache(maxsize=32)
def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def create_backbone(name: str, num_classes: int, weights: str = "pretrained",
                    image_size: int | None = None) -> nn.Module:
    """Build backbone ``name`` with a new ``num_classes`` head and load ``weights``."""
    spec = get_backbone_spec(name)
    kwargs = dict(spec.kwargs)
    if image_size and image_size != get_backbone_info(name).image_size:
        kwargs["img_size"] = image_size  # ViT/Swin families resize their position tables
    from_hub = weights in PRETRAINED and not spec.bundled_weights
    model = _create_timm(spec.timm_name, num_classes, from_hub, kwargs)
    if weights in PRETRAINED and spec.bundled_weights:
        load_weights_file(model, ASSETS / spec.bundled_weights)
    elif weights not in PRETRAINED and weights != "none":
        load_weights_file(model, Path(weights))
    size = image_size or get_backbone_info(name).image_size
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    model.pretrained_cfg = {**cfg, "input_size": (3, size, size)}  # the size the run feeds it
    return model


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick connection probe, so an offline machine fails in seconds, not after retries."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _create_timm(timm_name: str, num_classes: int, pretrained: bool, kwargs: dict) -> nn.Module:
    if pretrained and not hub_reachable():
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True  # use the local cache only
    try:
        return timm.create_model(timm_name, pretrained=pretrained, num_classes=num_classes,
                                 **kwargs)
    except TypeError:
        if "img_size" not in kwargs:
            raise
        kwargs = {k: v for k, v in kwargs.items() if k != "img_size"}  # CNNs take any size
        return timm.create_model(timm_name, pretrained=pretrained, num_classes=num_classes,
                                 **kwargs)
    except Exception as exc:  # offline hub, missing tag, ...: say how to work offline
        if not pretrained:
            raise
        raise WeightsError(
            f"cannot fetch pretrained weights for '{timm_name}' from timm's hub "
            f"({type(exc).__name__}: hub unreachable and not in the local cache?); "
            "offline, pass a local file with --weights FILE (safetensors or a torch state dict) "
            "or train from scratch with --weights none") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a torch checkpoint (``state_dict``/``model`` key)."""
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # one line: never torch's advice to unpickle untrusted files
        raise WeightsError(f"cannot read weights file '{path}' ({type(exc).__name__}); give a "
                           ".safetensors file or a torch state dict of tensors") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file '{path}' holds no state dict")
    return state


def load_weights_file(model: nn.Module, path: Path) -> None:
    """Load a checkpoint into ``model``, ignoring the classifier; name every mismatching key."""
    state = check_state_dict(model, read_state_dict(path), path)
    model.load_state_dict(state, strict=False)


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path: Path
                     ) -> dict[str, torch.Tensor]:
    """The state without classifier keys; a WeightsError naming every mismatching key."""
    own = model.state_dict()
    head_keys = {f"{n}" for n, _ in _classifier_state_names(model)}
    state = {k: v for k, v in state.items() if k not in head_keys}
    missing = sorted(k for k in own if k not in state and k not in head_keys)
    unexpected = sorted(k for k in state if k not in own)
    shape = sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shape)):
        if keys:
            problems.append(f"{label}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                            f" ({len(keys)})")
    if problems:
        raise WeightsError(f"weights file '{path}' does not fit {type(model).__name__}: "
                           + "; ".join(problems))
    return state


def _classifier_state_names(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    head = model.get_classifier()
    names = {id(t): n for n, t in model.state_dict(keep_vars=True).items()}
    return [(names[id(t)], t) for t in head.state_dict(keep_vars=True).values() if id(t) in names]
