"""From an :class:`ImageSet` to normalised batches on the device.

Images are kept as ``uint8`` tensors: small sets come decoded; file-based sets are decoded once
per (split, image size) with worker processes and cached for the life of the process. Each
batch is moved to the device as uint8 and converted, resized, augmented and normalised there,
so an epoch costs no decoding and the CPU does little on a GPU machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lionbench.errors import DatasetError

from .base import ImageSet

_DECODED: dict[tuple[int, int], torch.Tensor] = {}


def stratified_split(labels: torch.Tensor, fraction: float, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded, stratified split of indices into (kept, held-out): ``fraction`` of each class held
    out (at least one image of every class with two or more)."""
    gen = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_held = max(1, round(len(idx) * fraction)) if len(idx) > 1 else 0
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values


def stratified_subset(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Indices of a seeded subset of about ``count`` images with the class proportions kept."""
    if count >= len(labels):
        return torch.arange(len(labels))
    _, chosen = stratified_split(labels, count / len(labels), seed)
    return chosen


def decode_images(data: ImageSet, size: int, workers: int = 0) -> torch.Tensor:
    """The split's images as uint8 (N, 3, size, size); file-based sets decoded once, cached."""
    if data.images is not None:
        return data.images
    key = (hash(tuple(data.paths or [])), size)
    if key not in _DECODED:
        from torch.utils.data import DataLoader

        loader = DataLoader(_FileImages(data.paths or [], size), batch_size=256,
                            num_workers=workers)
        _DECODED[key] = torch.cat(list(loader)) if len(data) else torch.empty(0, 3, size, size)
    return _DECODED[key]


class _FileImages(torch.utils.data.Dataset):
    """Decode, resize (shorter side) and centre-crop one image file to uint8 (3, size, size)."""

    def __init__(self, paths: list[str], size: int):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms import functional as TF

        try:
            with Image.open(self.paths[i]) as img:
                img = img.convert("RGB")
                img = TF.center_crop(TF.resize(img, self.size), [self.size, self.size])
                return TF.pil_to_tensor(img)
        except Exception as exc:
            raise DatasetError(f"cannot read image '{self.paths[i]}': {exc}") from None


@dataclass(frozen=True)
class Pipeline:
    """The transforms of a run, recorded in its config: they move results by points."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_augment: str  # none | crop | flip-crop

    def describe(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "train_augment": self.train_augment, "resize": "bilinear-antialias",
                "crop_padding": "1/8 of the size, reflect", "test": "resize only"}

    def __call__(self, images: torch.Tensor, train: bool, gen: torch.Generator | None = None
                 ) -> torch.Tensor:
        """uint8 (B, C, H, W) on the device -> normalised float (B, 3, S, S)."""
        x = images.float().div_(255.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        if train and self.train_augment != "none":
            x = random_crop(x, max(1, self.image_size // 8), gen)
            if self.train_augment == "flip-crop":
                flip = torch.rand(x.shape[0], generator=gen) < 0.5
                x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
        mean = torch.tensor(self.mean, device=x.device)[None, :, None, None]
        std = torch.tensor(self.std, device=x.device)[None, :, None, None]
        return (x - mean) / std


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator | None) -> torch.Tensor:
    """Pad by ``pad`` (reflect) and crop back at a random offset per sample."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])  # b, h
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])  # b, w
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def iterate_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    shuffle: bool, gen: torch.Generator | None = None):
    """Yield (uint8 images, labels) batches, shuffled with ``gen`` when asked."""
    order = torch.randperm(len(labels), generator=gen) if shuffle else torch.arange(len(labels))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield images[idx], labels[idx]
