"""The paper's named datasets (Tables 1-3), each read from its official layout under --data-root.

Every reader lists file paths and labels only (an :class:`ImageSet` with ``paths``): the pipeline
decodes each image once per size and caches it, or streams it with workers for large sets. The
layouts are those the official archives extract to, and the same as torchvision's for the sets
torchvision knows (so ``lionbench datasets prepare`` can use its downloaders), but read here
directly: torchvision checks md5 sums of the metadata files and names no expected layout in its
errors, and its StanfordCars download no longer works upstream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lionbench.errors import DatasetError

from .base import DatasetSpec, ImageSet, Loader
from .builtin import IMAGE_SUFFIXES, list_classes, read_image_folder
from .split import stratified_split

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# Where each dataset looks under --data-root: the first existing candidate folder wins.
HOMES: dict[str, tuple[str, ...]] = {
    "imagenet100": ("imagenet100", "imagenet"), "flowers102": ("flowers-102",),
    "flowers5": ("flowers5", "flowers"), "dogs": ("stanford_dogs",), "cars": ("stanford_cars",),
    "clothing1m": ("clothing1m", "Clothing1M"), "clothing1m-clean": ("clothing1m", "Clothing1M"),
    "pets": ("oxford-iiit-pet",), "food101": ("food-101",),
}
# Files (or folders) whose presence marks each home as complete enough to try.
MARKERS: dict[str, tuple[str, ...]] = {
    "imagenet100": ("train", "val"), "flowers102": ("jpg", "imagelabels.mat", "setid.mat"),
    "flowers5": (), "dogs": ("Images", "train_list.mat", "test_list.mat"),
    "cars": ("devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_train", "cars_test",
             "cars_test_annos_withlabels.mat"),
    "clothing1m": ("noisy_label_kv.txt", "clean_label_kv.txt", "images"),
    "clothing1m-clean": ("clean_label_kv.txt", "images"),
    "pets": ("images", "annotations/trainval.txt", "annotations/test.txt"),
    "food101": ("images", "meta/train.json", "meta/test.json"),
}
CLOTHING_CLASSES = ["T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
                    "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear"]


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids of CMC's ImageNet-100 (shipped: ImageNet-100 has no split file)."""
    lines = (ASSETS / "imagenet100_classes.txt").read_text().splitlines()
    return [w.strip() for w in lines if w.strip() and not w.startswith("#")]


def locator(name: str) -> Callable[[Path | None], Path | None]:
    """``locate(root)`` for ``name``: the first candidate home holding all of its markers."""
    def locate(root: Path | None) -> Path | None:
        for folder in HOMES[name]:
            home = Path(root or "data") / folder
            if home.is_dir() and all((home / m).exists() for m in MARKERS[name]):
                return home
        return None
    return locate


def home_of(name: str, root: Path | None, layout: str) -> Path:
    """The dataset's folder, or an error naming where it looked and the layout it expects."""
    home = locator(name)(root)
    if home is None:
        looked = " or ".join(f"'{Path(root or 'data') / f}'" for f in HOMES[name])
        missing = [m for m in MARKERS[name] if not (Path(root or "data") / HOMES[name][0] / m)
                   .exists()]
        raise DatasetError(f"dataset '{name}' not found: looked in {looked}"
                           + (f" (missing {', '.join(missing)})" if missing else "")
                           + f"; expected layout: {layout}; pass --data-root")
    return home


def checked(paths: list[str], labels: list[int], classes: list[str], layout: str) -> ImageSet:
    """An ImageSet after checking that every listed image file exists."""
    absent = [p for p in paths if not Path(p).is_file()]
    if absent:
        raise DatasetError(f"{len(absent)} listed image(s) missing, e.g. '{absent[0]}'; "
                           f"expected layout: {layout}")
    if not paths:
        raise DatasetError(f"no images listed; expected layout: {layout}")
    return ImageSet(labels=torch.tensor(labels, dtype=torch.int64), classes=classes, paths=paths)


def load_mat(path: Path, layout: str) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(str(path), squeeze_me=True)
    except Exception as exc:
        raise DatasetError(f"cannot read '{path}' ({exc}); expected layout: {layout}") from None


def entries(value: object) -> np.ndarray:
    """A .mat field as a flat array (``squeeze_me`` turns a one-entry list into a scalar)."""
    return np.atleast_1d(np.asarray(value)).reshape(-1)


def read_lines(path: Path, layout: str) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"no file '{path}'; expected layout: {layout}")
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def load_imagenet100(root: Path | None, split: str) -> ImageSet:
    """ImageNet-100: the shipped 100 classes from a train/val ImageNet tree (val is the test)."""
    home = home_of("imagenet100", root, IMAGENET_LAYOUT)
    folder = home / ("train" if split == "train" else "val")
    classes = sorted(imagenet100_classes())
    missing = [c for c in classes if not (folder / c).is_dir()]
    if missing:
        raise DatasetError(f"'{folder}' lacks {len(missing)} of the 100 ImageNet-100 class folders "
                           f"(e.g. {', '.join(missing[:3])}); expected layout: {IMAGENET_LAYOUT}")
    paths, labels = [], []
    for label, wnid in enumerate(classes):
        files = sorted(p for p in (folder / wnid).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return checked(paths, labels, classes, IMAGENET_LAYOUT)


def load_flowers102(root: Path | None, split: str) -> ImageSet:
    """Oxford Flowers-102 with its official train/val/test ids (setid.mat)."""
    from torchvision.datasets import Flowers102

    home = home_of("flowers102", root, FLOWERS102_LAYOUT)
    key = {"train": "trnid", "val": "valid", "test": "tstid"}[split]
    ids = entries(load_mat(home / "setid.mat", FLOWERS102_LAYOUT)[key]).tolist()
    all_labels = entries(load_mat(home / "imagelabels.mat", FLOWERS102_LAYOUT)["labels"])
    classes = list(getattr(Flowers102, "classes", [str(i) for i in range(102)]))
    paths = [str(home / "jpg" / f"image_{i:05d}.jpg") for i in ids]
    return checked(paths, [int(all_labels[i - 1]) - 1 for i in ids], classes, FLOWERS102_LAYOUT)


def load_flowers5(root: Path | None, split: str) -> ImageSet:
    """The 5-species, 4,242-image flower set the paper's text describes (Kaggle 'Flowers
    Recognition'): ``train/`` and ``test/`` folders if given, else one folder per class with a
    fixed 80/20 stratified split (seed 0, the same for every run)."""
    home = home_of("flowers5", root, FLOWERS5_LAYOUT)
    if (home / "train").is_dir():
        return read_image_folder(home / split, FLOWERS5_LAYOUT,
                                 list_classes(home / "train", FLOWERS5_LAYOUT))
    everything = read_image_folder(home, FLOWERS5_LAYOUT)
    train, test = stratified_split(everything.labels, 0.2, seed=0)
    return everything.subset(train if split == "train" else test)


def load_dogs(root: Path | None, split: str) -> ImageSet:
    """Stanford Dogs with its official lists (train_list.mat / test_list.mat; labels 1-based)."""
    home = home_of("dogs", root, DOGS_LAYOUT)
    mat = load_mat(home / f"{'train' if split == 'train' else 'test'}_list.mat", DOGS_LAYOUT)
    files = [str(f) for f in entries(mat["file_list"])]
    classes = list_classes(home / "Images", DOGS_LAYOUT)
    labels = [int(v) - 1 for v in entries(mat["labels"])]
    return checked([str(home / "Images" / f) for f in files], labels, classes, DOGS_LAYOUT)


def load_cars(root: Path | None, split: str) -> ImageSet:
    """Stanford Cars from its devkit layout (local only: the upstream download is gone)."""
    home = home_of("cars", root, CARS_LAYOUT)
    if split == "train":
        annos, images = home / "devkit" / "cars_train_annos.mat", home / "cars_train"
    else:
        annos, images = home / "cars_test_annos_withlabels.mat", home / "cars_test"
    annotations = entries(load_mat(annos, CARS_LAYOUT)["annotations"])
    meta = load_mat(home / "devkit" / "cars_meta.mat", CARS_LAYOUT)
    classes = [str(c) for c in entries(meta["class_names"])]
    return checked([str(images / str(a["fname"])) for a in annotations],
                   [int(a["class"]) - 1 for a in annotations], classes, CARS_LAYOUT)


def clothing_loader(train_list: str) -> Callable[[Path | None, str], ImageSet]:
    """Clothing1M from its annotation lists: train from ``train_list`` (noisy labels for the
    noisy list), validation and test from the clean lists with clean labels."""
    name = "clothing1m" if train_list == "noisy" else "clothing1m-clean"

    def load(root: Path | None, split: str) -> ImageSet:
        home = home_of(name, root, CLOTHING_LAYOUT)
        kind = train_list if split == "train" else "clean"
        keys = read_lines(home / f"{kind}_{split}_key_list.txt", CLOTHING_LAYOUT)
        kv = dict(line.split()[:2] for line in read_lines(home / f"{kind}_label_kv.txt",
                                                          CLOTHING_LAYOUT))
        unlabelled = [k for k in keys if k not in kv]
        if unlabelled:
            raise DatasetError(f"{len(unlabelled)} key(s) of {kind}_{split}_key_list.txt have no "
                               f"label in {kind}_label_kv.txt, e.g. '{unlabelled[0]}'; "
                               f"expected layout: {CLOTHING_LAYOUT}")
        names = home / "category_names_eng.txt"
        classes = read_lines(names, CLOTHING_LAYOUT) if names.is_file() else CLOTHING_CLASSES
        return checked([str(home / k) for k in keys], [int(kv[k]) for k in keys], classes,
                       CLOTHING_LAYOUT)
    return load


def load_pets(root: Path | None, split: str) -> ImageSet:
    """Oxford-IIIT Pets, 37 breeds: official trainval (our train) and test lists."""
    home = home_of("pets", root, PETS_LAYOUT)
    rows = [line.split() for line in read_lines(
        home / "annotations" / f"{'trainval' if split == 'train' else 'test'}.txt", PETS_LAYOUT)]
    labels = [int(r[1]) - 1 for r in rows]
    names = {int(r[1]) - 1: r[0].rsplit("_", 1)[0] for r in rows}
    classes = [" ".join(p.title() for p in names[i].split("_")) if i in names else f"class {i}"
               for i in range(max(labels, default=-1) + 1)]
    return checked([str(home / "images" / f"{r[0]}.jpg") for r in rows], labels, classes,
                   PETS_LAYOUT)


def load_food101(root: Path | None, split: str) -> ImageSet:
    """Food-101 with its official meta/train.json and meta/test.json."""
    home = home_of("food101", root, FOOD_LAYOUT)
    meta = home / "meta" / f"{'train' if split == 'train' else 'test'}.json"
    try:
        lists = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read '{meta}' ({exc}); expected layout: {FOOD_LAYOUT}"
                           ) from None
    classes = sorted(lists)
    paths = [str(home / "images" / f"{rel}.jpg") for c in classes for rel in lists[c]]
    labels = [i for i, c in enumerate(classes) for _ in lists[c]]
    return checked(paths, labels, classes, FOOD_LAYOUT)


IMAGENET_LAYOUT = ("<data-root>/imagenet/{train,val}/<wnid>/*.JPEG (ILSVRC-2012, val sorted into "
                   "class folders; or <data-root>/imagenet100/ with only the 100 classes)")
FLOWERS102_LAYOUT = "<data-root>/flowers-102/{jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat}"
FLOWERS5_LAYOUT = ("<data-root>/flowers5/<species>/*.jpg (5 species; or flowers5/{train,test}/"
                   "<species>/; the Kaggle archive's flowers/ folder is found too)")
DOGS_LAYOUT = "<data-root>/stanford_dogs/{Images/<wnid-breed>/*.jpg, train_list.mat, test_list.mat}"
CARS_LAYOUT = ("<data-root>/stanford_cars/{devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
               "cars_train/, cars_test/, cars_test_annos_withlabels.mat}")
CLOTHING_LAYOUT = ("<data-root>/clothing1m/{images/<d>/<dd>/*.jpg, noisy_label_kv.txt, "
                   "clean_label_kv.txt, noisy_train_key_list.txt, clean_train_key_list.txt, "
                   "clean_val_key_list.txt, clean_test_key_list.txt, category_names_eng.txt}")
PETS_LAYOUT = "<data-root>/oxford-iiit-pet/{images/*.jpg, annotations/trainval.txt, test.txt}"
FOOD_LAYOUT = "<data-root>/food-101/{images/<class>/*.jpg, meta/train.json, meta/test.json}"
TV = "torchvision download (lionbench datasets prepare {})"


def malformed_as_layout_error(loader: Loader, layout: str) -> Loader:
    """Metadata that does not parse (a short line, a non-number label, a .mat without its
    field) becomes a DatasetError naming the expected layout instead of a traceback."""
    def load(root: Path | None, split: str) -> ImageSet:
        try:
            return loader(root, split)
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise DatasetError(f"malformed metadata ({type(exc).__name__}: {exc}) under "
                               f"'{root or 'data'}'; expected layout: {layout}") from None
    return load


def _spec(name: str, classes: int, description: str, loader: Loader, layout: str, source: str,
          splits: dict[str, int]) -> DatasetSpec:
    return DatasetSpec(name, classes, description, malformed_as_layout_error(loader, layout),
                       layout=layout, source=source, locate=locator(name), splits=splits)


SUITE_DATASETS = [
    _spec("imagenet100", 100, "ImageNet-100 (CMC's 100 classes; test = ImageNet val)",
          load_imagenet100, IMAGENET_LAYOUT, "image-net.org (login); class list shipped",
          {"train": 126689, "test": 5000}),
    _spec("flowers102", 102, "Oxford Flowers-102 (the paper's citation for Flower)",
          load_flowers102, FLOWERS102_LAYOUT, TV.format("flowers102"),
          {"train": 1020, "val": 1020, "test": 6149}),
    _spec("flowers5", 5, "5 flower species, 4,242 images (the paper's text); fixed 80/20 split",
          load_flowers5, FLOWERS5_LAYOUT, "kaggle.com/datasets/alxmamaev/flowers-recognition",
          {}),
    _spec("dogs", 120, "Stanford Dogs, official lists", load_dogs, DOGS_LAYOUT,
          "vision.stanford.edu/aditya86/ImageNetDogs (lionbench datasets prepare dogs)",
          {"train": 12000, "test": 8580}),
    _spec("cars", 196, "Stanford Cars (local only: the upstream download is gone)", load_cars,
          CARS_LAYOUT, "no working download; a copy of the original devkit + images",
          {"train": 8144, "test": 8041}),
    _spec("clothing1m", 14, "Clothing1M: noisy train, clean val/test", clothing_loader("noisy"),
          CLOTHING_LAYOUT, "on request from its authors (github.com/Cysu/noisy_label)",
          {"train": 1000000, "val": 14313, "test": 10526}),
    _spec("clothing1m-clean", 14, "Clothing1M: clean train, clean val/test",
          clothing_loader("clean"), CLOTHING_LAYOUT,
          "on request from its authors (github.com/Cysu/noisy_label)",
          {"train": 47570, "val": 14313, "test": 10526}),
    _spec("pets", 37, "Oxford-IIIT Pets (train = trainval)", load_pets, PETS_LAYOUT,
          TV.format("pets"), {"train": 3680, "test": 3669}),
    _spec("food101", 101, "Food-101", load_food101, FOOD_LAYOUT, TV.format("food101"),
          {"train": 75750, "test": 25250}),
]
