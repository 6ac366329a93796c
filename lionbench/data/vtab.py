"""VTAB-1k as researchers keep it on disk: image folders with the 800/200 list files.

VPT, NOAH, FacT, V-PETL Bench and their successors distribute VTAB-1k as one folder per task
(NOAH's ``data/vtab-source/get_vtab1k.py`` writes them from TensorFlow Datasets; V-PETL Bench
hosts the result), each holding::

    images/...           the images (NOAH: images/<split>/<index>.jpg)
    train800.txt         800 training images          one line per image: "<path> <label>",
    val200.txt           200 validation images        <path> relative to the task folder,
    train800val200.txt   the 1,000 of both            <label> an integer from 0
    test.txt             the task's test split

Two ways to name a task:

- ``vtab:PATH`` (``--datasets vtab:data/vtab-1k/caltech101``): any folder in that layout; the
  class count is the known one for the 19 tasks (by folder name), else the largest label + 1;
- ``vtab-<task>`` (``vtab-caltech101``, ...): the 19 tasks under ``<data-root>/vtab-1k/<task>``,
  NOAH's folder names; ``vtab-1k`` on the datasets axis stands for all 19, in VTAB's order
  (natural, specialized, structured).

How the VTAB protocol maps onto lionbench's (see docs, "VTAB-1k"): a run trains on train800 and
selects its epoch on val200, as for every dataset with a validation split of its own; ``tune``
chooses the configuration on val200 as well. VTAB's final runs retrain the chosen
configuration on train800val200 for the full schedule and report the last epoch: the final runs
of ``lionbench tune`` on a VTAB task do that (``DatasetSpec.final_on_train_val``), and any run
can with ``--set train_on_val=true``. The test split chooses nothing.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from lionbench.errors import DatasetError

from .base import DatasetSpec, ImageSet

# (folder, label, group, classes): the 19 tasks in VTAB's order, from lionbench/assets/vtab-1k.csv
# (plain data the reports read too). Class counts as in VPT's tune_vtab.py (DATA2CLS), folder
# names as NOAH's get_vtab1k.py writes them.
with (Path(__file__).resolve().parent.parent / "assets" / "vtab-1k.csv").open() as _fh:
    VTAB_TASKS: tuple[tuple[str, str, str, int], ...] = tuple(
        (r["folder"], r["label"], r["group"], int(r["classes"])) for r in csv.DictReader(_fh))
VTAB_GROUPS = ("natural", "specialized", "structured")
SUITE_NAME = "vtab-1k"
VTAB_NAMES = tuple(f"vtab-{folder}" for folder, *_ in VTAB_TASKS)
VTAB_HOMES = {f"vtab-{folder}": (f"vtab-1k/{folder}",) for folder, *_ in VTAB_TASKS}
LISTS = {"train": "train800.txt", "val": "val200.txt", "trainval": "train800val200.txt",
         "test": "test.txt"}
SOURCE = ("NOAH's data/vtab-source/get_vtab1k.py (from TensorFlow Datasets, as VPT's "
          "VTAB_SETUP.md prepares them), or V-PETL Bench's processed copy")


def layout(home: str | Path) -> str:
    return (f"{home}/{{images/..., train800.txt, val200.txt, train800val200.txt, test.txt}}, "
            "each line '<image path relative to the folder> <label>'")


def read_list(home: Path, split: str) -> tuple[list[str], list[int]]:
    """Paths and labels of one list file, checked: two fields per line, an integer label,
    an existing image."""
    path = home / LISTS[split]
    if not path.is_file():
        raise DatasetError(f"no file '{path}'; expected layout: {layout(home)}")
    paths, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        image, _, label = line.strip().rpartition(" ")
        if not image or not label.lstrip("-").isdigit():
            raise DatasetError(f"'{path}' line {number}: expected '<image path> <label>', got "
                               f"{line.strip()[:80]!r}; expected layout: {layout(home)}")
        paths.append(str(home / image.strip()))
        labels.append(int(label))
    if not paths:
        raise DatasetError(f"'{path}' lists no images; expected layout: {layout(home)}")
    absent = [p for p in paths if not Path(p).is_file()]
    if absent:
        raise DatasetError(f"{len(absent)} image(s) listed in '{path}' are missing, e.g. "
                           f"'{absent[0]}'; expected layout: {layout(home)}")
    return paths, labels


def task_classes(home: Path) -> int:
    """The class count: VTAB's for its 19 tasks (by folder name), else the largest label + 1."""
    known = {folder: classes for folder, _, _, classes in VTAB_TASKS}
    if home.name in known:
        return known[home.name]
    labels = [label for split in ("trainval", "test") if (home / LISTS[split]).is_file()
              for label in read_labels(home / LISTS[split])]
    if not labels:
        raise DatasetError(f"'{home}' has no train800val200.txt or test.txt to count classes "
                           f"from; expected layout: {layout(home)}")
    return max(labels) + 1


def read_labels(path: Path) -> list[int]:
    out = []
    for line in path.read_text().splitlines():
        label = line.strip().rpartition(" ")[2]
        if label.isdigit():
            out.append(int(label))
    return out


def vtab_spec(name: str, home: Path, description: str = "", group: str = "user") -> DatasetSpec:
    """The spec of one task folder; nothing is read until it is located or loaded."""
    def locate(root: Path | None) -> Path | None:
        folder = resolve(root)
        return folder if all((folder / f).is_file() for f in LISTS.values()) else None

    def resolve(root: Path | None) -> Path:
        return home if home.is_absolute() or name.startswith("vtab:") else \
            Path(root or "data") / home

    def load(root: Path | None, split: str) -> ImageSet:
        folder = resolve(root)
        if not folder.is_dir():
            raise DatasetError(f"VTAB-1k task folder '{folder}' not found; get it from {SOURCE} "
                               f"and pass --data-root (the folder holding vtab-1k/); expected "
                               f"layout: {layout(folder)}")
        paths, labels = read_list(folder, split)
        classes = task_classes(folder)
        return ImageSet(labels=torch.tensor(labels, dtype=torch.int64),
                        classes=[str(i) for i in range(classes)], paths=paths)

    classes = task_classes(home) if name.startswith("vtab:") else \
        {f"vtab-{f}": c for f, _, _, c in VTAB_TASKS}[name]
    return DatasetSpec(name, classes, description or f"VTAB-1k task folder {home}", load,
                       layout=layout(home), source=SOURCE, default_augment="none",
                       locate=locate, splits={"train": 800, "val": 200}, group=group,
                       has_val_split=True, val_source="val200.txt", final_on_train_val=True,
                       train_val_split="trainval")


def path_spec(path: str) -> DatasetSpec:
    """``vtab:PATH``: checked at once (a missing folder or list file is a one-line error)."""
    home = Path(path).expanduser()
    if not home.is_dir():
        raise DatasetError(f"no VTAB-1k task folder '{home}'; get it from {SOURCE}; expected "
                           f"layout: {layout(home)}")
    missing = [f for f in LISTS.values() if not (home / f).is_file()]
    if missing:
        raise DatasetError(f"'{home}' lacks {', '.join(missing)}; expected layout: "
                           f"{layout(home)}")
    return vtab_spec(f"vtab:{path}", home)


def expand_suites(names: list[str]) -> list[str]:
    """``vtab-1k`` on the datasets axis is its 19 tasks, in VTAB's order; other names stay."""
    out: list[str] = []
    for name in names:
        out += list(VTAB_NAMES) if name == SUITE_NAME else [name]
    return list(dict.fromkeys(out))


VTAB_DATASETS = [
    vtab_spec(f"vtab-{folder}", Path("vtab-1k") / folder,
              f"VTAB-1k {group}: {label} ({classes} classes), 800/200 train/val lists",
              group="vtab-1k")
    for folder, label, group, classes in VTAB_TASKS
]
