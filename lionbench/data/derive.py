"""Derived datasets: long-tailed (``NAME-lt-irR``) and few-shot (``NAME-Kshot``) versions of any
registered dataset, ``folder:PATH`` included.

Long tail (Cao et al., 2019, LDAM-DRW): class c of C keeps
``n_c = int(n_max * (1/R) ** (c / (C - 1)))`` training images, exactly their formula, so the
known sizes come out (CIFAR-10-LT: 12,406 at R=100, 13,996 at R=50; CIFAR-100-LT: 10,847 and
12,608). ``n_max`` is the smallest class size of the train split (for CIFAR every class has 5,000
or 500 images, Cao's value), so every class can supply its share and the ratio is exactly R.
Which images: Cao's draw, a shuffle of each class's indices in class order by one NumPy
RandomState(0), first ``n_c`` kept. The subset is fixed per dataset, the same for every run seed
(a long-tailed benchmark is a fixed set); the test split stays balanced. The run's validation
hold-out is then taken from this long-tailed train split as for any dataset.

Few-shot: K training images per class chosen by the run's seed; validation takes up to K more
per class from the remaining training images (never from test), so ``val_fraction`` does not
apply. A class with fewer than K training images is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from lionbench.errors import DatasetError

from .base import DatasetSpec, ImageSet

LONGTAIL_PATTERN = r"(?P<base>.+)-lt-ir(?P<ratio>\d+)"
KSHOT_PATTERN = r"(?P<base>.+)-(?P<k>\d+)shot"
# Train images per class of the balanced sets, so listings can give derived sizes exactly.
BALANCED_TRAIN = {"cifar10": 5000, "cifar100": 500, "food101": 750, "dogs": 100, "flowers102": 10}


def longtail_counts(n_max: float, num_classes: int, ratio: float) -> list[int]:
    """Images kept per class: Cao et al.'s exponential profile, their arithmetic exactly."""
    if num_classes == 1:
        return [int(n_max)]
    factor = 1.0 / ratio
    return [int(n_max * factor ** (c / (num_classes - 1.0))) for c in range(num_classes)]


def longtail_indices(labels: torch.Tensor, num_classes: int, ratio: float) -> torch.Tensor:
    """Indices (ascending) of the long-tailed subset of a train split with these labels."""
    y = labels.numpy()
    per_class = [np.flatnonzero(y == c) for c in range(num_classes)]
    smallest = min(len(idx) for idx in per_class)
    if smallest == 0:
        empty = next(c for c, idx in enumerate(per_class) if len(idx) == 0)
        raise DatasetError(f"class {empty} has no training images: cannot make it long-tailed")
    rng = np.random.RandomState(0)  # Cao et al.: np.random.seed(0), one shuffle per class
    kept = []
    for idx, n in zip(per_class, longtail_counts(float(smallest), num_classes, ratio),
                      strict=True):
        idx = idx.copy()
        rng.shuffle(idx)
        kept.append(idx[:max(1, n)])
    return torch.from_numpy(np.sort(np.concatenate(kept))).long()


def kshot_indices(labels: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices: K per class chosen by ``seed``, then up to K more for validation."""
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < k:
            raise DatasetError(f"class {c} has {len(idx)} training images, fewer than K={k}")
        idx = idx[torch.randperm(len(idx), generator=gen)]
        train.append(idx[:k])
        val.append(idx[k:2 * k])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values


def base_name(name: str) -> str:
    """``name`` without its derivation suffixes (``cifar10-lt-ir100-8shot`` -> ``cifar10``)."""
    while True:
        stripped = re.sub(r"(-lt-ir\d+|-\d+shot)$", "", name)
        if stripped == name:
            return name
        name = stripped


def longtail_spec(base: DatasetSpec, match: re.Match[str]) -> DatasetSpec:
    """``BASE-lt-irR``: the base's train split made long-tailed; other splits unchanged."""
    ratio = int(match["ratio"])
    if ratio < 1:
        raise DatasetError(f"'{match.string}': the imbalance ratio must be at least 1")

    def load(root: Path | None, split: str) -> ImageSet:
        data = base.load(root, split)
        if split != "train":
            return data
        return data.subset(longtail_indices(data.labels, base.num_classes, ratio))

    splits = {k: v for k, v in base.splits.items() if k != "train"}
    per_class = BALANCED_TRAIN.get(base.name)
    if per_class:
        splits = {"train": sum(longtail_counts(per_class, base.num_classes, ratio)), **splits}
    return base.with_name(match.string, loader=load, splits=splits,
                          description=f"{base.description}; long-tailed train, imbalance {ratio}",
                          source=f"derived from {base.name}: {base.source}")


def kshot_spec(base: DatasetSpec, match: re.Match[str]) -> DatasetSpec:
    """``BASE-Kshot``: K train images per class by seed, validation from the rest."""
    k = int(match["k"])
    if k < 1:
        raise DatasetError(f"'{match.string}': K must be at least 1")
    if base.train_val is not None:
        raise DatasetError(f"'{match.string}': '{base.name}' already chooses its training "
                           "images per seed; derive K-shot from a dataset without a -Kshot suffix")

    def train_val(train: ImageSet, seed: int, _val_fraction: float) -> tuple[ImageSet, ImageSet]:
        keep, held = kshot_indices(train.labels, k, seed)
        return train.subset(keep), train.subset(held)

    splits = {"train": k * base.num_classes}
    per_class = BALANCED_TRAIN.get(base.name)
    if per_class:
        splits["val"] = base.num_classes * min(k, per_class - k)
    if "test" in base.splits:
        splits["test"] = base.splits["test"]
    return base.with_name(match.string, train_val=train_val, splits=splits,
                          description=f"{base.description}; {k} training images per class",
                          source=f"derived from {base.name}: {base.source}")


DERIVATIONS = [(LONGTAIL_PATTERN, longtail_spec), (KSHOT_PATTERN, kshot_spec)]
