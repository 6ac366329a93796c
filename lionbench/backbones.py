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
import io
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


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256. Cached per (path, size, mtime), so a file
    rewritten in place while this process lives is hashed again, never served stale."""
    stat = Path(path).stat()
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def weights_path(name: str, weights: str) -> Path | None:
    """The file ``weights`` loads for backbone ``name``; None for random init or timm's hub."""
    spec = get_backbone_spec(name)
    if weights == "none" or (weights in PRETRAINED and not spec.bundled_weights):
        return None
    return ASSETS / spec.bundled_weights if weights in PRETRAINED else Path(weights)


def verify_weights_id(name: str, weights: str, expected_id: str,
                      data: bytes | None = None) -> None:
    """Refuse to train on other weights than those in the run's identity.

    ``expected_id`` is the run's ``weights_id``, computed when it was planned (a file's digest,
    ``timm:<name>`` or ``none``); what ``weights`` resolves to *here, now* must be the same: a
    file rewritten since, or a path that names other bytes on this machine (an import, another
    node), is a WeightsError. ``data``: the bytes about to be loaded, hashed instead of the file,
    so what is checked is exactly what is loaded. timm hub weights are identified by their tag,
    not by a digest: lionbench cannot check their bytes.
    """
    path = weights_path(name, weights)
    if path is None:
        actual = "none" if weights == "none" else f"timm:{get_backbone_spec(name).timm_name}"
    elif data is not None:
        actual = "sha256:" + bytes_digest(data)
    elif path.is_file():
        actual = "sha256:" + file_digest(path)
    else:
        raise WeightsError(f"weights file '{weights}' not found on this machine (the run was "
                           f"planned with weights {expected_id})")
    if actual != expected_id:
        raise WeightsError(f"weights '{weights}' are {actual} here, not {expected_id} as when "
                           "the run was planned; refusing to train on other weights (a file "
                           "changed since, or a path naming other bytes on this machine)")


def create_backbone(name: str, num_classes: int, weights: str = "pretrained",
                    image_size: int | None = None, expected_id: str | None = None
                    ) -> nn.Module:
    """Build backbone ``name`` with a new ``num_classes`` head and load ``weights``.

    With ``expected_id`` (a run's ``weights_id``), the bytes read are checked against it before
    they are loaded (:func:`verify_weights_id`): training never starts on other weights.
    """
    spec = get_backbone_spec(name)
    kwargs = dict(spec.kwargs)
    if image_size and image_size != get_backbone_info(name).image_size:
        kwargs["img_size"] = image_size  # ViT/Swin families resize their position tables
    path = weights_path(name, weights)
    data = read_weights_bytes(path) if path is not None else None
    if expected_id is not None:
        verify_weights_id(name, weights, expected_id, data)
    from_hub = weights in PRETRAINED and not spec.bundled_weights
    model = _create_timm(spec.timm_name, num_classes, from_hub, kwargs)
    if path is not None and data is not None:
        state = check_state_dict(model, state_dict_from_bytes(data, path), path)
        model.load_state_dict(state, strict=False)
    size = image_size or get_backbone_info(name).image_size
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    model.pretrained_cfg = {**cfg, "input_size": (3, size, size)}  # the size the run feeds it
    return model


def check_pretrained_available(name: str) -> None:
    """Fail before anything trains when ``name``'s pretrained weights cannot be had here.

    Bundled weights are always there; timm's hub weights count as available when they are in
    the local Hugging Face or torch hub cache, or when the hub answers (the run downloads them).
    Otherwise the same one-line WeightsError a run would fail with, in seconds instead of after
    a matrix has started.
    """
    spec = get_backbone_spec(name)
    if spec.bundled_weights or _in_local_cache(spec.timm_name) or hub_reachable():
        return
    raise WeightsError(_offline_message(spec.timm_name, "hub unreachable and not in the local "
                                                        "cache"))


def _in_local_cache(timm_name: str) -> bool:
    """Whether timm would find ``timm_name``'s pretrained file without the network."""
    cfg = timm.get_pretrained_cfg(timm_name)
    if cfg is None:
        return False
    if cfg.file and Path(cfg.file).is_file():
        return True
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache  # a dependency of timm

        for filename in ("model.safetensors", "pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(cfg.hf_hub_id.split("@")[0], filename), str):
                return True
    if cfg.url:
        return (Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name).is_file()
    return False


def _offline_message(timm_name: str, why: str) -> str:
    return (f"cannot fetch pretrained weights for '{timm_name}' from timm's hub ({why}); "
            "offline, pass a local file with --weights FILE (safetensors or a torch state dict) "
            "or train from scratch with --weights none")


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
        raise WeightsError(_offline_message(
            timm_name, f"{type(exc).__name__}: hub unreachable and not in the local cache?"
        )) from None


def read_weights_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' not found")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read weights file '{path}': {exc.strerror or exc}") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a torch checkpoint (``state_dict``/``model`` key)."""
    return state_dict_from_bytes(read_weights_bytes(path), path)


def state_dict_from_bytes(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``data`` (the bytes of ``path``; its suffix tells the format)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load as load_safetensors

            return load_safetensors(data)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
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
