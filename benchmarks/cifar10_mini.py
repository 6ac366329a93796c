"""Build ``data/cifar10-mini``: a real 10-class JPEG folder dataset small enough to tune on 2 CPU
cores, from the CIFAR-10 JPEG folder (``train/<class>/NNNN.jpg``, ``test/<class>/NNNN.jpg``; see
docs/datasets.md for how to get it) or a ``.tar.gz`` archive of it.

    python benchmarks/cifar10_mini.py data/cifar10-jpeg [data/cifar10-mini]

Keeps the first 500 training and the first 200 test images of every class (files in name
order: deterministic, class-balanced; CIFAR's order carries no meaning). 5,000 training and
2,000 test images: a run's test evaluation costs a fifth of the full 10,000-image split, and
the standard error of a test top-1 near 0.7 is about 0.010. Used by benchmarks/cpu-tuned.yaml.
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

PER_CLASS = {"train": 500, "test": 200}


def build(source: Path, target: Path) -> dict[str, int]:
    """Copy (or extract) the kept images; returns images per split."""
    if source.is_dir():
        return build_from_folder(source, target)
    return build_from_archive(source, target)


def build_from_folder(source: Path, target: Path) -> dict[str, int]:
    counts = {split: 0 for split in PER_CLASS}
    for split, per_class in PER_CLASS.items():
        for class_dir in sorted(p for p in (source / split).iterdir()
                                if p.is_dir() and not p.name.startswith(".")):
            for image in sorted(class_dir.glob("*.jpg"))[:per_class]:
                out = target / split / class_dir.name / image.name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(image.read_bytes())
                counts[split] += 1
    return counts


def build_from_archive(archive: Path, target: Path) -> dict[str, int]:
    counts = {split: 0 for split in PER_CLASS}
    kept: dict[tuple[str, str], int] = {}
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()
                          and m.name.endswith(".jpg") and m.name.count("/") == 2),
                         key=lambda m: m.name)
        for m in members:
            split, cls, _ = m.name.split("/")
            if split not in PER_CLASS or kept.get((split, cls), 0) >= PER_CLASS[split]:
                continue
            out = target / split / cls / Path(m.name).name
            out.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(m)
            assert source is not None
            out.write_bytes(source.read())
            kept[(split, cls)] = kept.get((split, cls), 0) + 1
            counts[split] += 1
    return counts


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    dest = Path(sys.argv[2] if len(sys.argv) == 3 else "data/cifar10-mini")
    print(build(Path(sys.argv[1]), dest), "->", dest)
