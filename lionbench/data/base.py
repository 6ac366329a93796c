"""Dataset specs and image sets: what a registered dataset provides.

A dataset is a :class:`DatasetSpec` with a ``load(root, split)`` function returning an
:class:`ImageSet`: labels plus either decoded ``uint8`` images in memory (small sets: digits,
CIFAR) or file paths that the pipeline decodes once per image size and caches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from lionbench.errors import DatasetError

from .split import stratified_split


@dataclass
class ImageSet:
    """One split: labels and either ``images`` (uint8, N x C x H x W) or ``paths``."""

    labels: torch.Tensor
    classes: list[str]
    images: torch.Tensor | None = None
    paths: list[str] | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0] if self.images is not None else len(self.paths or [])
        if n != len(self.labels):
            raise DatasetError(f"{n} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> ImageSet:
        idx = indices.tolist()
        return ImageSet(
            labels=self.labels[indices],
            classes=self.classes,
            images=self.images[indices] if self.images is not None else None,
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
        )


Loader = Callable[[Path | None, str], ImageSet]
# (train split, run seed, val_fraction) -> (train, val): a run's own split of the train split
TrainValSplit = Callable[[ImageSet, int, float], tuple[ImageSet, ImageSet]]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to load each split and how to tell a user where to get it."""

    name: str
    num_classes: int
    description: str
    loader: Loader
    layout: str  # the expected layout under --data-root, for error messages and `datasets`
    source: str = ""  # where to obtain it
    default_augment: str = "flip-crop"
    locate: Callable[[Path | None], Path | None] | None = None  # where it looks; None: bundled
    splits: dict[str, int] = field(default_factory=dict)  # known split sizes, for listings
    group: str = "paper"
    # Seed-dependent choice of a run's train and val sets (K-shot); None: the default below
    train_val: TrainValSplit | None = None

    def load(self, root: Path | None, split: str) -> ImageSet:
        data = self.loader(root, split)
        if len(data.classes) != self.num_classes:
            raise DatasetError(f"dataset '{self.name}' has {len(data.classes)} classes in its "
                               f"{split} split, expected {self.num_classes}; layout: {self.layout}")
        if len(data) and (int(data.labels.min()) < 0
                          or int(data.labels.max()) >= self.num_classes):
            raise DatasetError(f"dataset '{self.name}': labels of its {split} split fall outside "
                               f"0..{self.num_classes - 1}; layout: {self.layout}")
        return data

    def load_train_val(self, root: Path | None, seed: int, val_fraction: float
                       ) -> tuple[ImageSet, ImageSet]:
        """The train and validation sets of one run; the test split is never touched.

        ``train_val`` decides where it is set (K-shot: K per class chosen by the seed, validation
        from the rest); else the dataset's own ``val`` split where it has one; else a seeded,
        stratified ``val_fraction`` hold-out of the train split.
        """
        train = self.load(root, "train")
        if self.train_val is not None:
            return self.train_val(train, seed, val_fraction)
        if "val" in self.splits:
            return train, self.load(root, "val")
        keep, held = stratified_split(train.labels, val_fraction, seed)
        return train.subset(keep), train.subset(held)

    def is_present(self, root: Path | None) -> bool:
        if self.locate is None:
            return True
        return self.locate(root) is not None

    def with_name(self, name: str, **changes: object) -> DatasetSpec:
        return replace(self, name=name, **changes)
