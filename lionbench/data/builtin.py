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


VAL_FOLDERS = ("val", "validation")  # a folder dataset's own validation split, either name


def folder_spec(path: str) -> DatasetSpec:
    """``folder:PATH``: ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``, and optionally a
    validation split in ``PATH/val/`` or ``PATH/validation/`` (model selection reads it instead
    of holding images out of train/; the run records which, in its ``extra["validation"]``).

    Checked here, before anything runs: at least two class folders in train/, none of them
    empty; dot-folders (``.ipynb_checkpoints``, ``.git``) and dot-files are never classes or
    images; both ``val/`` and ``validation/`` at once is ambiguous and refused.
    """
    root = Path(path).expanduser()
    layout = (f"{root}/train/<class>/<image> and {root}/test/<class>/<image> (optional "
              "val/ or validation/)")
    classes = list_classes(root / "train", layout)
    for name in classes:
        require_images(root / "train" / name, layout)
    val_dirs = [d for d in VAL_FOLDERS if (root / d).is_dir()]
    if len(val_dirs) > 1:
        raise DatasetError(f"'{root}' has both val/ and validation/; keep one validation "
                           f"folder; expected layout: {layout}")
    val_dir = val_dirs[0] if val_dirs else None

    def load(_root: Path | None, split: str) -> ImageSet:
        folder = val_dir if split == "val" and val_dir else split
        return read_image_folder(root / folder, layout, classes)

    validation = (f"its own {val_dir}/ folder" if val_dir
                  else "a seeded hold-out of train/ (no val/ or validation/ folder)")
    return DatasetSpec(name=f"folder:{path}", num_classes=len(classes), loader=load, layout=layout,
                       description=f"image folders under {root}; validation: {validation}",
                       source="your own images",
                       locate=lambda _r: root if (root / "train").is_dir() else None,
                       group="user", has_val_split=val_dir is not None,
                       val_source=f"{val_dir}/ folder" if val_dir else "")


def visible(entry: Path) -> bool:
    """Not a dot-entry: ``.ipynb_checkpoints``, ``.DS_Store``, AppleDouble ``._x.jpg``."""
    return not entry.name.startswith(".")


def list_classes(split_dir: Path, layout: str) -> list[str]:
    """The class folders of ``split_dir`` (dot-folders ignored); at least two of them."""
    if not split_dir.is_dir():
        raise DatasetError(f"no folder '{split_dir}'; expected layout: {layout}")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and visible(p))
    if not classes:
        raise DatasetError(f"'{split_dir}' holds no class folders; expected layout: {layout}")
    if len(classes) < 2:
        raise DatasetError(f"'{split_dir}' holds one class folder ({classes[0]}); classification "
                           f"needs at least two; expected layout: {layout}")
    return classes


def image_files(folder: Path) -> list[Path]:
    """The images of one class folder, sorted; dot-files are not images."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and visible(p) and p.is_file())


def require_images(folder: Path, layout: str) -> None:
    """An empty class folder would be a class without examples: refuse it, naming the folder."""
    if not any(p.suffix.lower() in IMAGE_SUFFIXES and visible(p) for p in folder.iterdir()):
        raise DatasetError(f"class folder '{folder}' holds no images; remove it or add images; "
                           f"expected layout: {layout}")


def read_image_folder(split_dir: Path, layout: str, classes: list[str] | None = None) -> ImageSet:
    """Paths and labels of ``split_dir/<class>/<image>``; classes must match the train split,
    and every class folder must hold at least one image."""
    found = list_classes(split_dir, layout)
    classes = classes or found
    if found != classes:
        extra = sorted(set(found) ^ set(classes))
        raise DatasetError(f"class folders of '{split_dir}' differ from train's: "
                           f"{', '.join(extra[:5])}; expected layout: {layout}")
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = image_files(split_dir / name)
        if not files:
            raise DatasetError(f"class folder '{split_dir / name}' holds no images; remove it or "
                               f"add images; expected layout: {layout}")
        paths += [str(p) for p in files]
        labels += [label] * len(files)
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
