"""A dataset's digest: what identifies the data a run reads, cheaply, on any machine.

Why: a run's identity names its dataset (``folder:data/cifar10-jpeg``, ``cifar10``), not the
images behind the name, and two machines may hold different images under one name. The digest
is recorded when a run is planned (or, if the data was absent then, when it first trains) and a
worker checks it before training (lionbench.train.verify): a run planned on one machine, or
imported from another, never trains on other data without a word.

What is hashed (SHA-256, first 16 hex digits, ``data:`` prefix), per split a run reads (train,
the dataset's own validation split if it has one, test): the class names, the labels, and for
each image either its path relative to the split's common folder and its size in bytes (sets
read from files: a listing and one ``stat`` per file, no image is opened, so ImageNet-sized
trees cost seconds, not a pass over their bytes), or the decoded pixels themselves (sets held
in memory: digits, CIFAR). An image rewritten with the same size is not noticed; a file added,
removed, renamed, moved to another class, or changed in size is.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lionbench.errors import DatasetError

from .base import DatasetSpec, ImageSet


def dataset_digest(spec: DatasetSpec, root: Path | None) -> str:
    """The digest of ``spec``'s data under ``root`` (DatasetError when it cannot be read)."""
    h = hashlib.sha256()
    splits = ["train", *(["val"] if spec.own_val else []), "test"]
    for split in splits:
        h.update(f"\0split {split}\0".encode())
        _update(h, spec.load(root, split))
    return "data:" + h.hexdigest()[:16]


def digest_if_present(spec: DatasetSpec, root: Path | None) -> str | None:
    """The digest, or None when the data is not on this machine (yet): planning goes on, and
    the first worker that trains the run records the digest of what it read."""
    if not spec.is_present(root):
        return None
    try:
        return dataset_digest(spec, root)
    except DatasetError:
        return None


def _update(h: hashlib._Hash, data: ImageSet) -> None:
    h.update("\0".join(data.classes).encode())
    h.update(data.labels.numpy().tobytes())
    if data.images is not None:
        h.update(str(tuple(data.images.shape)).encode())
        h.update(data.images.contiguous().numpy().tobytes())
        return
    paths = data.paths or []
    base = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0]) if paths \
        else ""
    for path in paths:
        try:
            size = os.stat(path).st_size
        except OSError:
            raise DatasetError(f"cannot read image '{path}'") from None
        h.update(f"{os.path.relpath(path, base)}\0{size}\n".encode())
