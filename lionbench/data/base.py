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


def concat(first: ImageSet, second: ImageSet) -> ImageSet:
    """Both sets' images in one (train and validation together)."""
    images = None if first.images is None else torch.cat([first.images, second.images])
    paths = None if first.paths is None else [*first.paths, *(second.paths or [])]
    return ImageSet(labels=torch.cat([first.labels, second.labels]), classes=first.classes,
                    images=images, paths=paths)


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
    has_val_split: bool = False  # a validation split of its own (also: "val" in splits)
    val_source: str = ""  # how that split is named in messages, e.g. "validation/ folder"
    # The benchmark's protocol retrains its final runs on train + val without selection
    # (VTAB-1k: train800val200); `lionbench tune` does so for this dataset's final runs.
    final_on_train_val: bool = False
    train_val_split: str = ""  # a split the dataset ships as train + val ("trainval"), if any

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
        if self.own_val:
            return train, self.load(root, "val")
        keep, held = stratified_split(train.labels, val_fraction, seed)
        return train.subset(keep), train.subset(held)

    def load_train_plus_val(self, root: Path | None, seed: int, val_fraction: float
                            ) -> ImageSet:
        """Every image a run may train on when it selects nothing (``train_on_val``): the
        dataset's own train + val split where it ships one, else the train and validation sets
        of :meth:`load_train_val` together. The test split is never touched."""
        if self.train_val_split:
            return self.load(root, self.train_val_split)
        return concat(*self.load_train_val(root, seed, val_fraction))

    @property
    def own_val(self) -> bool:
        """Whether validation is a split of the dataset's own (not held out of train)."""
        return self.train_val is None and (self.has_val_split or "val" in self.splits)

    def validation_source(self, val_fraction: float) -> str:
        """Where a run's validation images come from, in words (stored with every run)."""
        if self.train_val is not None:
            return "chosen per seed from the training images the run does not train on"
        if self.own_val:
            return f"the dataset's own {self.val_source or 'val split'}"
        return f"a seeded, stratified {val_fraction:g} hold-out of the train split"

    def is_present(self, root: Path | None) -> bool:
        if self.locate is None:
            return True
        return self.locate(root) is not None

    def with_name(self, name: str, **changes: object) -> DatasetSpec:
        return replace(self, name=name, **changes)
