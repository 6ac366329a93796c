"""From an :class:`ImageSet` to normalised batches on the device.

Images are kept as ``uint8`` tensors: small sets come decoded; file-based sets are decoded once
per (split, image size) and cached for the life of the process, or, when too large to cache,
decoded per batch by worker processes (:class:`StreamedImages`). Each
batch is moved to the device as uint8 and converted, resized, augmented and normalised there,
so an epoch costs no decoding and the CPU does little on a GPU machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lionbench.errors import DatasetError

from .base import ImageSet


class _Bank:
    """Decoded images of one size, one row per file path, shared by every subset of every
    split: a run's seeded hold-out, a K-shot draw or a long-tailed subset decodes nothing twice,
    and several seeds in one process hold one copy."""

    def __init__(self, size: int):
        self.size, self.rows = size, {}
        self.images = torch.empty(0, 3, size, size, dtype=torch.uint8)

    def add(self, paths: list[str], images: torch.Tensor) -> None:
        start = len(self.rows)
        self.rows.update((p, start + i) for i, p in enumerate(paths))
        self.images = torch.cat([self.images, images])

    def take(self, paths: list[str]) -> torch.Tensor:
        rows = torch.tensor([self.rows[p] for p in paths], dtype=torch.int64)
        if len(rows) == len(self.images) and torch.equal(rows, torch.arange(len(rows))):
            return self.images
        return self.images[rows]


_BANKS: dict[int, _Bank] = {}


def decode_images(data: ImageSet, size: int, workers: int | None = None
                  ) -> torch.Tensor | StreamedImages:
    """The split's images as uint8 (N, 3, size, size).

    In-memory sets come as they are. File-based images are decoded once per (path, size) and
    cached for the process while they fit in ``LIONBENCH_CACHE_GB`` (default 8); larger sets
    (ImageNet-100, Food-101, Clothing1M at 224 px) come back as :class:`StreamedImages`, decoded
    batch by batch in worker processes every epoch. ``workers`` None: 0 for small sets (a worker
    costs more to start than it saves), else up to 8 of the machine's cores.
    """
    if data.images is not None:
        return data.images
    paths = data.paths or []
    if workers is None:
        workers = 0 if len(paths) < 2000 else min(8, os.cpu_count() or 1)
    limit = float(os.environ.get("LIONBENCH_CACHE_GB", "8")) * 2**30 / (3 * size * size)
    bank = _BANKS.setdefault(size, _Bank(size))
    new = [p for p in dict.fromkeys(paths) if p not in bank.rows]
    if len(bank.rows) + len(new) > limit:
        if len(paths) > limit:
            return StreamedImages(paths, size, workers)
        bank = _BANKS[size] = _Bank(size)  # another dataset's images make way
        new = list(dict.fromkeys(paths))
    if new:
        batches = [b for _, b in StreamedImages(new, size, workers).batches(
            torch.arange(len(new)), 256)]
        bank.add(new, torch.cat(batches))
    return bank.take(paths)


class StreamedImages:
    """A file-based split too large to cache: decoded on demand, in worker processes."""

    def __init__(self, paths: list[str], size: int, workers: int = 0):
        self.paths, self.size, self.workers = paths, size, workers

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, indices: torch.Tensor) -> torch.Tensor:
        return next(self.batches(indices, max(1, len(indices))))[1]

    def batches(self, order: torch.Tensor, batch_size: int):
        """Yield (indices, uint8 images) for consecutive ``batch_size`` slices of ``order``."""
        from torch.utils.data import DataLoader

        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        loader = DataLoader(_FileImages(self.paths, self.size),
                            batch_sampler=[c.tolist() for c in chunks],
                            num_workers=self.workers, pin_memory=torch.cuda.is_available())
        for idx, (images, errors) in zip(chunks, loader, strict=True):
            bad = [e for e in errors if e]
            if bad:  # raised here, not in the worker, to keep the message to one line
                raise DatasetError(bad[0])
            yield idx, images


class _FileImages(torch.utils.data.Dataset):
    """Decode, resize (shorter side) and centre-crop one image file to uint8 (3, size, size);
    an unreadable file gives (zeros, reason) and the reader raises."""

    def __init__(self, paths: list[str], size: int):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        from PIL import Image
        from torchvision.transforms import functional as TF

        try:
            with Image.open(self.paths[i]) as img:
                img = img.convert("RGB")
                img = TF.center_crop(TF.resize(img, self.size), [self.size, self.size])
                return TF.pil_to_tensor(img), ""
        except Exception as exc:
            return (torch.zeros(3, self.size, self.size, dtype=torch.uint8),
                    f"cannot read image '{self.paths[i]}': {exc}; expected a readable image file "
                    "(JPEG, PNG, ...): replace or remove it")


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
                "crop_padding": "1/8 of the size, reflect", "test": "resize only",
                "decode": "image files: shorter side resized to image_size (PIL bilinear), "
                          "centre crop; arrays as stored"}

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


def iterate_batches(images: torch.Tensor | StreamedImages, labels: torch.Tensor,
                    batch_size: int, shuffle: bool, gen: torch.Generator | None = None):
    """Yield (uint8 images, labels) batches, shuffled with ``gen`` when asked."""
    order = torch.randperm(len(labels), generator=gen) if shuffle else torch.arange(len(labels))
    if isinstance(images, StreamedImages):
        for idx, batch in images.batches(order, batch_size):
            yield batch, labels[idx]
        return
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield images[idx], labels[idx]
