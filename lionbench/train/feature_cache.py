"""Head-tuning on cached features: the frozen backbone runs once per image, not once per epoch.

A linear probe (``head-tuning`` with ``unfreeze_blocks=0``) trains only the classifier on
``F(x)``, the pooled features of a frozen backbone in eval mode. When the training pipeline applies
no random augmentation (``train_augment == "none"``), ``F(x)`` of an image is the same at every
epoch, in every run with the same backbone weights and transforms, so the training loop can train
the head on stored features: the same batches in the same order (the shuffling generator is
consumed identically), the same head initialisation and the same optimizer, hence the same
numbers: bit-identical on CPU in the tests and the benchmark. Features are extracted in batches
of the size the uncached loop uses, so kernels chosen per shape are the same; batches hold other
images, though, so a library whose per-sample results depend on the batch's other samples
(possible on GPU) could move the last bit. With augmentation every epoch sees new crops/flips
of each image, whose features
differ; caching them would change the result, so the cache is **never** used then
(:func:`cache_applies`).

Features are stored per image row, keyed by the image's content (a digest of its uint8 pixels;
a file path for sets streamed from disk), in a bank per (backbone, weights identity, seed for
random weights, image size, normalisation, device type). Every run that can use them shares
them: other learning rates, epochs, seeds whose hold-outs overlap, and the validation and test
splits. ``LIONBENCH_FEATURE_CACHE``: ``memory`` (default: the process keeps the banks), ``off``,
or a directory (banks are also saved there as ``<key>.pt`` and loaded by later processes).
The cache changes no number, so it is not part of a run's identity (hash).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lionbench.config import RunConfig, canonical_json
from lionbench.data.pipeline import Pipeline, StreamedImages
from lionbench.files import atomic_path
from lionbench.methods import PetlModel
from lionbench.methods.head_tuning import HeadTuning

ENV = "LIONBENCH_FEATURE_CACHE"


def cache_mode() -> str:
    """``off``, ``memory`` or a directory path, from ``LIONBENCH_FEATURE_CACHE``."""
    return os.environ.get(ENV, "memory").strip() or "memory"


def cache_applies(config: RunConfig, model: PetlModel) -> bool:
    """A linear probe on a frozen backbone with no random augmentation (and the cache not off)."""
    return (cache_mode() != "off" and isinstance(model, HeadTuning) and not model.unfrozen
            and config.pipeline.get("train_augment") == "none")


class _Bank:
    """Features of one backbone + transform, one row per distinct image.

    A bank file that cannot be read or does not hold what it should (a truncated write by a
    killed process, a disk error, another program's file) is set aside with a one-line warning
    and the features computed again: the cache only ever saves time, so a bad file must never
    fail a run, let alone every later one.
    """

    def __init__(self, path: Path | None):
        self.path, self.rows = path, {}
        self.features: Tensor | None = None
        if path is not None and path.is_file():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                keys, features = saved["keys"], saved["features"]
                if (not isinstance(features, Tensor) or features.dim() < 1
                        or len(keys) != len(features) or len(set(keys)) != len(keys)):
                    raise ValueError("keys and features do not match")
            except Exception as exc:  # any unreadable or inconsistent file: compute again
                warnings.warn(f"ignoring feature cache {path} ({type(exc).__name__}); its "
                              "features are computed again", stacklevel=2)
                path.unlink(missing_ok=True)
                return
            self.rows = {k: i for i, k in enumerate(keys)}
            self.features = features

    def add(self, keys: list[str], features: Tensor) -> None:
        start = len(self.rows)
        self.rows.update((k, start + i) for i, k in enumerate(keys))
        self.features = features if self.features is None else torch.cat([self.features,
                                                                           features])
        if self.path is not None:  # atomic: a concurrent reader sees the old or the new file
            with atomic_path(self.path) as tmp:
                torch.save({"keys": list(self.rows), "features": self.features}, tmp)


_BANKS: dict[str, _Bank] = {}


def bank_key(config: RunConfig, device: torch.device) -> str:
    """What the features depend on: backbone, weights, transforms, device kind (bf16 on CUDA)."""
    p = config.pipeline
    ident: dict[str, Any] = {"backbone": config.backbone, "weights_id": config.weights_id,
                             "image_size": p["image_size"], "mean": p["mean"], "std": p["std"],
                             "device": device.type}
    if config.weights_id == "none":  # random weights: the seed decides them
        ident["seed"] = config.seed
    return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:20]


def row_keys(images: Tensor | StreamedImages) -> list[str]:
    """One key per image: a digest of its pixels, or its path for streamed sets."""
    if isinstance(images, StreamedImages):
        return [f"path:{p}" for p in images.paths]
    flat = images.reshape(len(images), -1).contiguous().numpy()
    return [hashlib.blake2b(row.data, digest_size=16).hexdigest() for row in flat]


@torch.no_grad()
def extract_features(model: PetlModel, images: Tensor | StreamedImages, pipeline: Pipeline,
                     batch_size: int, device: torch.device) -> Tensor:
    """Pooled features ``F(x)`` in eval mode, as the training loop would compute them."""
    use_cuda = device.type == "cuda"
    model.eval()
    order = torch.arange(len(images))
    batches = (images.batches(order, batch_size) if isinstance(images, StreamedImages)
               else ((None, images[order[i:i + batch_size]])
                     for i in range(0, len(order), batch_size)))
    out = []
    for _, xb in batches:
        x = pipeline(xb.to(device), train=False).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_cuda):
            out.append(model.features(x).cpu())
    return torch.cat(out) if out else torch.empty(0)


class FeaturePipeline:
    """Stands in for :class:`Pipeline` when batches are features: they go through unchanged."""

    def __call__(self, features: Tensor, train: bool, gen: torch.Generator | None = None
                 ) -> Tensor:
        return features


class HeadOnFeatures(nn.Module):
    """The model's classifier applied to its cached features (``model.classify``)."""

    def __init__(self, model: PetlModel):
        super().__init__()
        self.model = model

    def forward(self, features: Tensor) -> Tensor:
        return self.model.classify(features)


@dataclass
class CachedRun:
    """What the training loop swaps in: features for images, the head for the model."""

    model: PetlModel
    net: HeadOnFeatures
    pipeline: FeaturePipeline
    image_pipeline: Pipeline
    bank: _Bank
    batch_size: int
    device: torch.device

    def features(self, images: Tensor | StreamedImages, batch_size: int | None = None
                 ) -> Tensor:
        """Features of ``images`` on the device, computing only the rows the bank lacks.

        ``batch_size``: extract in batches of the size the uncached loop would use (training:
        the training batch size; evaluation: the default), so that kernels chosen per input
        shape (oneDNN, cuDNN) are the same ones and the features the same to the last bit."""
        keys = row_keys(images)
        missing = list(dict.fromkeys(k for k in keys if k not in self.bank.rows))
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            idx = torch.tensor([first[k] for k in missing], dtype=torch.int64)
            subset = (StreamedImages([images.paths[i] for i in idx.tolist()], images.size,
                                     images.workers)
                      if isinstance(images, StreamedImages) else images[idx])
            self.bank.add(missing, extract_features(self.model, subset, self.image_pipeline,
                                                    batch_size or self.batch_size, self.device))
        assert self.bank.features is not None
        rows = torch.tensor([self.bank.rows[k] for k in keys], dtype=torch.int64)
        return self.bank.features[rows].to(self.device)


def cached_run(config: RunConfig, model: PetlModel, pipeline: Pipeline, batch_size: int,
               device: torch.device) -> CachedRun | None:
    """The cached path for this run, or None where the cache must not (or cannot) be used."""
    if not cache_applies(config, model):
        return None
    mode = cache_mode()
    key = bank_key(config, device)
    if key not in _BANKS:
        _BANKS[key] = _Bank(None if mode == "memory" else Path(mode) / f"{key}.pt")
    return CachedRun(model, HeadOnFeatures(model), FeaturePipeline(), pipeline, _BANKS[key],
                     batch_size, device)


def clear_memory_cache() -> None:
    """Forget every in-memory bank (files on disk stay)."""
    _BANKS.clear()
