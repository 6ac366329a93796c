"""The LION paper's published numbers (Tables 1-4) and their table layouts.

Why this module exists: a benchmark is only useful next to the numbers it tries to reproduce.
``results/paper_results.csv`` is a transcription of every number in the paper's Tables 1-4
(checked cell by cell against the paper text), in long form, with our own backbone / method /
dataset names added beside the paper's. A copy ships as package data
(``lionbench/assets/paper_results.csv``) so an installed package finds it without the repo.

``paper_runs`` turns those numbers into the same DataFrame shape as stored runs (one pseudo-run
per cell), so the table code has a single input path: rendering the paper's own numbers through
``build_table(..., preset="tableN")`` reproduces the paper's tables, which the golden tests use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from .catalog import default_weights

FILENAME = "paper_results.csv"
_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "results" / FILENAME,  # a source checkout
    Path(__file__).resolve().parents[1] / "assets" / FILENAME,  # package data
)

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
}


@dataclass(frozen=True)
class PresetColumn:
    dataset: str  # our dataset name
    label: str  # the paper's header
    group: str | None = None  # the upper header of a two-level header (Table 3)


@dataclass(frozen=True)
class Preset:
    """One of the paper's tables: which rows and columns, in which order, with which labels."""

    name: str
    title: str
    backbones: tuple[tuple[str, str], ...]  # (our name, the paper's label)
    methods: tuple[str, ...]
    columns: tuple[PresetColumn, ...]
    params: bool = True


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
)}


def paper_results_path() -> Path:
    """The transcription: the repo's ``results/`` copy first, else the packaged one."""
    for path in _CANDIDATES:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{FILENAME} not found in {', '.join(map(str, _CANDIDATES))}")


@lru_cache(maxsize=1)
def _load() -> pd.DataFrame:
    return pd.read_csv(paper_results_path(), keep_default_na=False,
                       na_values={"value": [""]}, dtype={"value": float})


def load_paper_results() -> pd.DataFrame:
    """All of the paper's numbers in long form: the paper's columns (table, setting, backbone,
    backbone_id, method, method_id, dataset, metric, value) plus ``our_backbone``,
    ``our_method``, ``our_dataset`` (empty for the ``params_m`` rows)."""
    return _load().copy()


def paper_runs(table: str | None = None) -> pd.DataFrame:
    """The paper's numbers as pseudo-runs (one per cell, seed 0, status done, clean tree).

    ``table`` ("table1".."table4") keeps one table; ``None`` keeps all, once per (backbone,
    method, dataset) (Table 4's LION rows repeat Table 1/2's). ``params_trainable`` comes from
    the paper's Params column (Table 4 has none: it borrows Tables 1-3's for the same row).
    """
    df = _load()
    if table is not None:
        if table not in PRESETS:
            raise ValueError(f"unknown table '{table}'; choose from {', '.join(PRESETS)}")
    params = df[df.metric == "params_m"]
    own = params[params.table == table] if table else params
    key = ["our_backbone", "our_method"]
    p_own = own.drop_duplicates(key).set_index(key)["value"]
    p_any = params.drop_duplicates(key).set_index(key)["value"]
    top1 = df[df.metric == "top1"]
    if table:
        top1 = top1[top1.table == table]
    top1 = top1.drop_duplicates(["our_backbone", "our_method", "our_dataset"])
    rows = []
    for r in top1.itertuples(index=False):
        k = (r.our_backbone, r.our_method)
        p_m = p_own.get(k, p_any.get(k))
        rows.append({
            "method": r.our_method, "backbone": r.our_backbone, "dataset": r.our_dataset,
            "seed": 0, "weights": default_weights(r.our_method), "status": "done",
            "test_top1": float(r.value), "test_top5": float("nan"),
            "params_trainable": pd.NA if p_m is None else int(round(p_m * 1e6)),
            "params_trainable_no_head": pd.NA, "git_dirty": False, "protocol_version": pd.NA,
            "run_hash": f"paper:{r.table}:{r.our_backbone}:{r.our_method}:{r.our_dataset}",
        })
    out = pd.DataFrame(rows)
    for col in ("params_trainable", "params_trainable_no_head", "protocol_version"):
        out[col] = out[col].astype("Int64")
    return out


@lru_cache(maxsize=1)
def _paper_lookup() -> tuple[dict[tuple[str, str, str], float], dict[tuple[str, str], float]]:
    df = _load()
    top1 = {(r.our_backbone, r.our_method, r.our_dataset): float(r.value)
            for r in df[df.metric == "top1"].itertuples(index=False)}
    params = {(r.our_backbone, r.our_method): float(r.value)
              for r in df[df.metric == "params_m"].itertuples(index=False)}
    return top1, params


def paper_value(backbone: str, method: str, dataset: str) -> float | None:
    """The paper's top-1 for a cell (our names), or None where the paper has no number."""
    return _paper_lookup()[0].get((backbone, method, dataset))


def paper_params_m(backbone: str, method: str) -> float | None:
    """The paper's Params (M) for a row (our names), or None."""
    return _paper_lookup()[1].get((backbone, method))
