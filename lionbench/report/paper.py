"""The LION paper's published numbers (Tables 1-4) and their table layouts.

Why this module exists: a benchmark is only useful next to the numbers it tries to reproduce.
``results/paper_results.csv`` is a transcription of every number in the paper's Tables 1-4
(checked cell by cell against the paper text), in long form, with our own backbone / method /
dataset names added beside the paper's. A copy ships as package data
(``lionbench/assets/paper_results.csv``) so an installed package finds it without the repo.

``paper_runs`` turns those numbers into the same records as stored runs (one pseudo-run per
cell), so the table code has a single input path: rendering the paper's own numbers through
``build_table(..., preset="tableN")`` reproduces the paper's tables, which the golden tests use.
The CSV is read with the standard library: ``--compare paper`` must not cost a pandas import.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import default_weights

if TYPE_CHECKING:
    import pandas as pd

FILENAME = "paper_results.csv"
# Published VTAB-1k numbers of the field's baselines (ViT-B/16, ImageNet-21K), each row naming
# the repository, file and section it was transcribed from: the petl-vit preset's comparison.
PUBLISHED_FILENAME = "petl_vit_published.csv"


def _candidates(filename: str) -> tuple[Path, ...]:
    return (Path(__file__).resolve().parents[2] / "results" / filename,  # a source checkout
            Path(__file__).resolve().parents[1] / "assets" / filename)  # package data


_CANDIDATES = _candidates(FILENAME)

# The paper's dataset ids (column ``dataset`` of the CSV) -> our dataset names.
DATASET_IDS: dict[str, str] = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "imagenet100": "imagenet100",
    "flowers": "flowers102",
    "dogs": "dogs",
    "cars": "cars",
    "clothing": "clothing1m",
    "cifar10-lt-ir100": "cifar10-lt-ir100",
    "cifar10-lt-ir50": "cifar10-lt-ir50",
    "cifar100-lt-ir100": "cifar100-lt-ir100",
    "cifar100-lt-ir50": "cifar100-lt-ir50",
    "pets-8shot": "pets-8shot",
    "food101-8shot": "food101-8shot",
    "cars-8shot": "cars-8shot",
    "flowers-8shot": "flowers102-8shot",
}
# The CSV's backbone_id / method_id already are our names; kept as explicit maps on purpose.
BACKBONE_IDS: dict[str, str] = {b: b for b in (
    "resnet50", "resnet101", "vit_base_patch16_224", "swin_base_patch4_window7_224")}
METHOD_IDS: dict[str, str] = {m: m for m in (
    "retraining", "head-tuning", "fine-tuning", "adapter", "bias", "vpt", "lion",
    "lion-p1", "lion-p2", "lion-r")}

METHOD_ORDER = tuple(METHOD_IDS)  # the paper's row order; Table 4 variants last
DATASET_ORDER = tuple(DATASET_IDS.values())  # the paper's column order
METHOD_LABELS = {
    "retraining": "Retraining", "head-tuning": "Head-tuning", "fine-tuning": "Fine-tuning",
    "adapter": "Adapter", "bias": "Bias", "vpt": "VPT", "lion": "LION",
    "lion-p1": "LION-P1", "lion-p2": "LION-P2", "lion-r": "LION-R",
    "vpt-shallow": "VPT-Shallow", "lora": "LoRA", "ia3": "IA3", "loha": "LoHa", "lokr": "LoKr",
    "ssf": "SSF", "adaptformer": "AdaptFormer",
}


@dataclass(frozen=True)
class PresetColumn:
    dataset: str  # our dataset name
    label: str  # the paper's header
    group: str | None = None  # the upper header of a two-level header (Table 3)


@dataclass(frozen=True)
class Preset:
    """One of the paper's tables: which rows and columns, in which order, with which labels.

    ``group_means`` adds, after the columns, the mean of each column group (``group``) and of
    all columns, over a row's cells (empty unless every cell of the group has a value).
    ``params_without_head``: the Params column counts without the classifier, as the source's
    table does. ``labels`` overrides method labels; ``compare_note`` names the published source.
    """

    name: str
    title: str
    backbones: tuple[tuple[str, str], ...]  # (our name, the paper's label)
    methods: tuple[str, ...]
    columns: tuple[PresetColumn, ...]
    params: bool = True
    group_means: bool = False
    params_without_head: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    compare_note: str = ""


_REGULAR = tuple(PresetColumn(d, lab) for d, lab in (
    ("cifar10", "CIFAR10"), ("cifar100", "CIFAR100"), ("imagenet100", "ImageNet100"),
    ("flowers102", "Flower"), ("dogs", "Dogs"), ("cars", "Cars"), ("clothing1m", "Clothing")))
_BASELINES = ("retraining", "head-tuning", "fine-tuning", "adapter", "bias", "vpt", "lion")
_LT_FS = (
    PresetColumn("cifar10-lt-ir100", "IR100", "CIFAR10-LongTail"),
    PresetColumn("cifar10-lt-ir50", "IR50", "CIFAR10-LongTail"),
    PresetColumn("cifar100-lt-ir100", "IR100", "CIFAR100-LongTail"),
    PresetColumn("cifar100-lt-ir50", "IR50", "CIFAR100-LongTail"),
    PresetColumn("pets-8shot", "Pets", "Fine-Grained Few-Shot"),
    PresetColumn("food101-8shot", "Food-101", "Fine-Grained Few-Shot"),
    PresetColumn("cars-8shot", "Cars", "Fine-Grained Few-Shot"),
    PresetColumn("flowers102-8shot", "Flower", "Fine-Grained Few-Shot"),
)
_R50, _R101 = ("resnet50", "ResNet-50"), ("resnet101", "ResNet-101")
_VIT, _SWIN = ("vit_base_patch16_224", "ViT-B"), ("swin_base_patch4_window7_224", "Swin-B")


def _vtab_columns() -> tuple[PresetColumn, ...]:
    """VTAB-1k's 19 tasks in its order, grouped, from the asset lionbench.data reads too."""
    path = Path(__file__).resolve().parents[1] / "assets" / "vtab-1k.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return tuple(PresetColumn(f"vtab-{r['folder']}", r["label"], r["group"].capitalize())
                     for r in csv.DictReader(fh))


_PETL_METHODS = ("head-tuning", "fine-tuning", "adapter", "bias", "vpt-shallow", "vpt", "lora",
                 "ia3", "loha", "lokr", "ssf", "adaptformer", "lion")
PETL_NOTE = ("published: V-PETL Bench (synbol/Parameter-Efficient-Transfer-Learning-Benchmark, "
             "README.md, 'Benchmark results of image classification on VTAB'; "
             "results/petl_vit_published.csv); its LoRA adapts q and v with separate rank-8 pairs, "
             "its Adapter (one sequential bottleneck per block, 0.16 M) is not lionbench's Houlsby "
             "adapter and is left out; VPT's prompt lengths were tuned per task; group means are "
             "means of the published per-task numbers")

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("table1", "Table 1: regular setting, CNN backbones (Params in M)",
           (_R50, _R101), _BASELINES, _REGULAR),
    # Table 2 writes "Vit-B" (sic); Tables 3 and 4 write "ViT-B".
    Preset("table2", "Table 2: regular setting, Transformer backbones (Params in M)",
           (("vit_base_patch16_224", "Vit-B"), _SWIN), _BASELINES, _REGULAR),
    Preset("table3", "Table 3: long-tailed and few-shot (8 per class) settings (Params in M)",
           (_R50, _R101, _VIT, _SWIN), ("head-tuning", "fine-tuning", "vpt", "lion"), _LT_FS),
    Preset("table4", "Table 4: ablation of LION's inner modules",
           (_R50, _VIT), ("lion-p1", "lion-p2", "lion-r", "lion"), _REGULAR[:3], params=False),
    Preset("petl-vit", "PETL baselines on VTAB-1k, ViT-B/16 (ImageNet-21K), top-1 "
           "(Params in M, without the head)",
           (("vit_base_patch16_224.orig_in21k", "ViT-B/16"),), _PETL_METHODS, _vtab_columns(),
           group_means=True, params_without_head=True,
           labels=(("vpt", "VPT-Deep"), ("head-tuning", "Linear probing"),
                   ("fine-tuning", "Full fine-tuning"), ("bias", "BitFit")),
           compare_note=PETL_NOTE),
)}


def paper_results_path() -> Path:
    """The transcription: the repo's ``results/`` copy first, else the packaged one."""
    for path in _CANDIDATES:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{FILENAME} not found in {', '.join(map(str, _CANDIDATES))}")


@lru_cache(maxsize=1)
def _load() -> tuple[dict[str, Any], ...]:
    """The CSV's rows, ``value`` as a float (None where empty)."""
    with paper_results_path().open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return tuple({**r, "value": float(r["value"]) if r["value"] != "" else None} for r in rows)


def load_paper_results() -> pd.DataFrame:
    """All of the paper's numbers in long form: the paper's columns (table, setting, backbone,
    backbone_id, method, method_id, dataset, metric, value) plus ``our_backbone``,
    ``our_method``, ``our_dataset`` (empty for the ``params_m`` rows)."""
    import pandas as pd  # a DataFrame for analysis; the tables themselves never need pandas

    return pd.DataFrame(list(_load()))


def paper_runs(table: str | None = None) -> list[dict[str, Any]]:
    """The paper's numbers as pseudo-run records (one per cell, seed 0, done, clean tree).

    ``table`` ("table1".."table4") keeps one table; ``None`` keeps all, once per (backbone,
    method, dataset) (Table 4's LION rows repeat Table 1/2's). ``params_trainable`` comes from
    the paper's Params column (Table 4 has none: it borrows Tables 1-3's for the same row).
    """
    if table is not None and table not in PRESETS:
        raise ValueError(f"unknown table '{table}'; choose from {', '.join(PRESETS)}")
    rows = _load()
    p_own: dict[tuple[str, str], float] = {}
    p_any: dict[tuple[str, str], float] = {}
    for r in rows:
        if r["metric"] == "params_m":
            key = (r["our_backbone"], r["our_method"])
            p_any.setdefault(key, r["value"])
            if table is None or r["table"] == table:
                p_own.setdefault(key, r["value"])
    out, seen = [], set()
    for r in rows:
        cell = (r["our_backbone"], r["our_method"], r["our_dataset"])
        if r["metric"] != "top1" or (table and r["table"] != table) or cell in seen:
            continue
        seen.add(cell)
        p_m = p_own.get(cell[:2], p_any.get(cell[:2]))
        out.append({
            "method": r["our_method"], "backbone": r["our_backbone"], "dataset": r["our_dataset"],
            "seed": 0, "weights": default_weights(r["our_method"]), "status": "done",
            "test_top1": r["value"], "test_top5": None,
            "params_trainable": None if p_m is None else int(round(p_m * 1e6)),
            "params_trainable_no_head": None, "git_dirty": False, "protocol_version": None,
            "run_hash": f"paper:{r['table']}:{':'.join(cell)}",
        })
    return out


@lru_cache(maxsize=1)
def load_published() -> tuple[dict[str, Any], ...]:
    """The published PETL numbers (petl_vit_published.csv), ``value`` as a float."""
    for path in _candidates(PUBLISHED_FILENAME):
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as fh:
                return tuple({**r, "value": float(r["value"])} for r in csv.DictReader(fh))
    return ()


@lru_cache(maxsize=1)
def _paper_lookup() -> tuple[dict[tuple[str, str, str], float], dict[tuple[str, str], float]]:
    top1 = {(r["our_backbone"], r["our_method"], r["our_dataset"]): r["value"]
            for r in _load() if r["metric"] == "top1"}
    params = {(r["our_backbone"], r["our_method"]): r["value"]
              for r in _load() if r["metric"] == "params_m"}
    for r in load_published():  # other backbones and datasets: no key is shared
        if r["metric"] == "top1":
            top1[(r["backbone_id"], r["method_id"], r["our_dataset"])] = r["value"]
        elif r["metric"] == "params_m_no_head":
            params[(r["backbone_id"], r["method_id"])] = r["value"]
    return top1, params


def paper_value(backbone: str, method: str, dataset: str) -> float | None:
    """The paper's top-1 for a cell (our names), or None where the paper has no number; for
    the petl-vit preset's cells, the published number (load_published)."""
    return _paper_lookup()[0].get((backbone, method, dataset))


def paper_params_m(backbone: str, method: str) -> float | None:
    """The paper's Params (M) for a row (our names), or None."""
    return _paper_lookup()[1].get((backbone, method))
