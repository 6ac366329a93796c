"""The built-in datasets of the skeleton: ``digits`` (bundled), ``cifar10``/``cifar100``
(torchvision), and ``folder:PATH`` (a user's ImageFolder tree)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lionbench.errors import DatasetError

from .base import DatasetSpec, ImageSet

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".gif", ".tif", ".tiff"}


def load_digits_split(root: Path | None, split: str) -> ImageSet:
    """scikit-learn's 1,797 8x8 digits; a fixed stratified 80/20 train/test split (seed 0).

    The split never depends on the run's seed: every run is tested on the same 360 images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # N,1,8,8
    idx = np.arange(len(images))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=digits.target,
                                           random_state=0)
    chosen = {"train": train_idx, "test": test_idx}[split]
    return ImageSet(labels=torch.as_tensor(digits.target[chosen], dtype=torch.int64),
                    classes=[str(i) for i in range(10)],
                    images=torch.from_numpy(images[chosen]))


def _cifar_loader(num_classes: int):
    folder = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"

    def load(root: Path | None, split: str) -> ImageSet:
        from torchvision.datasets import CIFAR10, CIFAR100

        cls = CIFAR10 if num_classes == 10 else CIFAR100
        root = Path(root or "data")
        present = (root / folder).is_dir()
        try:
            ds = cls(str(root), train=(split == "train"), download=not present)
        except Exception as exc:
            raise DatasetError(
                f"cannot find or download CIFAR-{num_classes} under '{root}' "
                f"({type(exc).__name__}); offline, put the python-version archive's folder "
                f"'{folder}/' there and pass --data-root {root}") from None
        images = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return ImageSet(labels=torch.as_tensor(ds.targets, dtype=torch.int64),
                        classes=list(ds.classes), images=images)

    def locate(root: Path | None) -> Path | None:
        path = Path(root or "data") / folder
        return path if path.is_dir() else None

    return load, locate


def folder_spec(path: str) -> DatasetSpec:
    """``folder:PATH``: ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``, optional ``val/``."""
    root = Path(path).expanduser()
    layout = f"{root}/train/<class>/<image> and {root}/test/<class>/<image> (optional val/)"
    classes = list_classes(root / "train", layout)

    def load(_root: Path | None, split: str) -> ImageSet:
        return read_image_folder(root / split, layout, classes)

    return DatasetSpec(name=f"folder:{path}", num_classes=len(classes), loader=load, layout=layout,
                       description=f"image folders under {root}", source="your own images",
                       locate=lambda _r: root if (root / "train").is_dir() else None,
                       group="user")


def list_classes(split_dir: Path, layout: str) -> list[str]:
    if not split_dir.is_dir():
        raise DatasetError(f"no folder '{split_dir}'; expected layout: {layout}")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"'{split_dir}' holds no class folders; expected layout: {layout}")
    return classes


def read_image_folder(split_dir: Path, layout: str, classes: list[str] | None = None) -> ImageSet:
    """Paths and labels of ``split_dir/<class>/<image>``; classes must match the train split."""
    found = list_classes(split_dir, layout)
    classes = classes or found
    if found != classes:
        extra = sorted(set(found) ^ set(classes))
        raise DatasetError(f"class folders of '{split_dir}' differ from train's: "
                           f"{', '.join(extra[:5])}; expected layout: {layout}")
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (split_dir / name).iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    if not paths:
        raise DatasetError(f"no images under '{split_dir}'; expected layout: {layout}")
    return ImageSet(labels=torch.tensor(labels, dtype=torch.int64), classes=classes, paths=paths)


_cifar10, _cifar10_locate = _cifar_loader(10)
_cifar100, _cifar100_locate = _cifar_loader(100)

BUILTIN_DATASETS = [
    DatasetSpec("digits", 10, "scikit-learn digits, 8x8 grayscale, bundled", load_digits_split,
                layout="bundled with scikit-learn", source="sklearn.datasets.load_digits",
                default_augment="crop", splits={"train": 1437, "test": 360}, group="embedded"),
    DatasetSpec("cifar10", 10, "CIFAR-10 (torchvision)", _cifar10,
                layout="<data-root>/cifar-10-batches-py/",
                source="torchvision download, or the python archive of cs.toronto.edu/~kriz",
                locate=_cifar10_locate, splits={"train": 50000, "test": 10000}),
    DatasetSpec("cifar100", 100, "CIFAR-100 (torchvision)", _cifar100,
                layout="<data-root>/cifar-100-python/",
                source="torchvision download, or the python archive of cs.toronto.edu/~kriz",
                locate=_cifar100_locate, splits={"train": 50000, "test": 10000}),
]
