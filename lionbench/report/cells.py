"""Which runs make one table cell, and what a row's label says about them.

Why: a comparison is only as good as its cells. A cell is ONE configuration: the runs that
differ only by seed (``RunConfig.cell_hash``: method settings, training settings, data
pipeline, weights digest, protocol version). Grouping by method name alone averaged an lr sweep
of one seed into a "mean ± std over seeds" that counted the same seed twice (issue 15).

A row is then named by what sets its configuration apart, and by nothing else:

- method settings that differ from the method's registered defaults (``lion (tau=0.2)``);
- training settings (``lr``, ``epochs`` ...) and weights that differ from the defaults AND
  differ between runs of one column (dataset): ``lion (lr=1e-2)`` next to ``lion``. A setting
  that every run of a column shares (the quickstart's ``epochs=6``, a paper preset's
  ``lr=1e-5``, 30 epochs on CIFAR but 100 on Flowers) describes the column, not the row: it goes
  into one footnote (:func:`shared_note`) instead of every label;
- weights by a short name (the file's stem), never a long path; random weights (``none``) for a
  method that transfers pretrained features are always named: they change what the row means;
- if two configurations of one (backbone, method, dataset) would still share a label (they
  differ only in something the rules above do not name: the pipeline, the weights' digest, the
  protocol version), the keys where they differ are added to both labels, and as a last resort a
  prefix of the cell hash. Two configurations never share a cell.

Pure Python over plain dicts: ``lionbench table`` must not import pandas or torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from lionbench.config import TrainConfig, cell_hash_of

from .catalog import default_weights, non_default_settings

TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
Part = tuple[str, Any]  # one "key=value" of a label


@dataclass
class CellInfo:
    """What labelling needs to know of one cell (all its runs share it)."""

    key: str  # the cell hash, or a stand-in for records without a config
    backbone: str
    method: str
    dataset: str
    weights: str  # normalised: pretrained | none | the path as typed
    weights_id: str | None = None
    method_diff: dict[str, Any] = field(default_factory=dict)  # non-default method settings
    train: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)  # flattened, for the last resort


@dataclass
class Labels:
    """Each cell's label parts (``[("lr", 0.01)]``), and the settings its column shares."""

    parts: dict[str, list[Part]]
    shared: dict[str, dict[str, Any]]  # key -> {dataset: value} for column-wide settings

    def suffix(self, key: str) -> str:
        return _text(self.parts.get(key, []))


def _text(parts: list[Part]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in parts)


def format_value(value: Any) -> str:
    """``0.01`` -> ``0.01``, ``1e-05`` -> ``1e-5``, ``True`` -> ``true``, ``None`` -> ``none``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}".replace("e-0", "e-").replace("e+0", "e+")
    return str(value)


def short_weights(weights: str, weights_id: str | None = None) -> str:
    """``../shared/weights/mobilenetv2_100.imagenet.safetensors`` -> ``mobilenetv2_100.imagenet``;
    ``pretrained`` and ``none`` stay; a path without a name gives the digest's start."""
    if weights in ("pretrained", "none"):
        return weights
    name = PurePath(weights).name
    for suffix in WEIGHT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name or (weights_id or "file")[:15]


def describe_cell(record: dict[str, Any]) -> CellInfo:
    """The cell a run belongs to. ``record`` has method, backbone, dataset, normalised weights
    and optionally ``cell_hash``, ``weights_id`` and ``config`` (``RunConfig.to_dict``, with or
    without the seed); records without a config (the paper's numbers) form one cell per
    (backbone, method, weights, dataset)."""
    method, config = record["method"], record.get("config")
    config = config if isinstance(config, dict) else None
    key = record.get("cell_hash") or (cell_hash_of(config) if config else None)
    if key is None:
        key = "\x00".join(("nocfg", record["backbone"], method, record["weights"],
                           record["dataset"]))
    info = CellInfo(key, record["backbone"], method, record["dataset"], record["weights"],
                    record.get("weights_id") or (config or {}).get("weights_id"))
    if config:
        mc = config.get("method_config") if isinstance(config.get("method_config"), dict) else {}
        info.method_diff = non_default_settings(method, dict(sorted(mc.items())))
        info.train = dict(config.get("train") or {})
        info.identity = _flatten(config)
    return info


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section in ("method_config", "train"):
        out.update(config.get(section) or {})
    for k, v in (config.get("pipeline") or {}).items():
        out[f"pipeline.{k}"] = v
    out["weights_id"] = config.get("weights_id")
    out["protocol"] = config.get("protocol_version")
    return out


def label_cells(cells: Iterable[CellInfo], hidden: tuple[str, ...] = ()) -> Labels:
    """Label parts for every cell (see the module's docstring for the rules).

    ``hidden`` settings are left out of labels and of the shared settings: a plot's x axis
    (Figure 3's ``tau``), whose values tell its points apart, or the values ``lionbench tune``
    chose, which a ``--selected`` table names in a footnote of their own.
    """
    cells = list({c.key: c for c in cells}.values())
    by_column: dict[str, dict[str, set[str]]] = {}  # dataset -> key -> distinct values
    for c in cells:
        column = by_column.setdefault(c.dataset, {})
        for k, v in _shared_values(c).items():
            column.setdefault(k, set()).add(repr(v))
    varying = {k for column in by_column.values() for k, vs in column.items() if len(vs) > 1}
    parts: dict[str, list[Part]] = {}
    for c in cells:
        own: list[Part] = []
        if c.weights != default_weights(c.method) and ("weights" in varying
                                                       or c.weights == "none"):
            own.append(("weights", short_weights(c.weights, c.weights_id)))
        own += [(k, v) for k, v in c.method_diff.items() if k not in hidden]
        own += [(k, v) for k, v in sorted(c.train.items())
                if k in varying and v != TRAIN_DEFAULTS.get(k) and k not in hidden]
        parts[c.key] = own
    _separate_collisions(cells, parts, hidden)
    shared: dict[str, dict[str, Any]] = {}
    for c in cells:
        for k, v in _shared_values(c).items():
            if (k not in varying and k not in hidden and v != _default(k, c.method)
                    and (k, v) != ("weights", "none")):
                shared.setdefault(k, {})[c.dataset] = v
    return Labels(parts, shared)


def _shared_values(c: CellInfo) -> dict[str, Any]:
    """Settings comparable across the methods of a column: training keys and the weights
    (left out for a method that always starts from random weights: retraining)."""
    out = dict(c.train)
    if not (c.weights == "none" and default_weights(c.method) == "none"):
        out["weights"] = short_weights(c.weights, c.weights_id)
    return out


def _default(key: str, method: str) -> Any:
    return default_weights(method) if key == "weights" else TRAIN_DEFAULTS.get(key)


def _separate_collisions(cells: list[CellInfo], parts: dict[str, list[Part]],
                         hidden: tuple[str, ...]) -> None:
    """Where configurations of one (backbone, method, dataset) share a label, add the keys in
    which they differ; where nothing known tells them apart, a prefix of the cell hash."""
    groups: dict[tuple[Any, ...], list[CellInfo]] = {}
    for c in cells:
        position = tuple(repr(c.method_diff.get(h, c.train.get(h))) for h in hidden)
        groups.setdefault((c.backbone, c.method, c.dataset, position, _text(parts[c.key])),
                          []).append(c)
    for group in groups.values():
        if len(group) < 2:
            continue
        keys = sorted({k for c in group for k in c.identity})
        differing = [k for k in keys
                     if len({repr(c.identity.get(k)) for c in group}) > 1 and k not in hidden]
        for c in group:
            named = {k for k, _ in parts[c.key]}
            parts[c.key] += [(k, c.identity.get(k)) for k in differing if k not in named]
        if len({_text(parts[c.key]) for c in group}) < len(group):
            for c in group:
                parts[c.key].append(("cell", c.key[:8]))


def shared_note(shared: dict[str, dict[str, Any]], columns: list[str]) -> str | None:
    """``runs share: epochs=6, lr=0.003`` or, where a column differs, ``epochs=30 (cifar10,
    cifar100), 100 (dogs)``: the non-default settings no label names."""
    items = []
    for key in sorted(shared):
        by_value: dict[str, list[str]] = {}
        for dataset in columns:
            if dataset in shared[key]:
                by_value.setdefault(format_value(shared[key][dataset]), []).append(dataset)
        if len(by_value) == 1 and len(next(iter(by_value.values()))) == len(columns):
            items.append(f"{key}={next(iter(by_value))}")
        elif by_value:
            items.append(f"{key}=" + ", ".join(f"{v} ({', '.join(ds)})"
                                               for v, ds in by_value.items()))
    return "runs share: " + "; ".join(items) if items else None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def sort_key(parts: list[Part]) -> tuple[Any, ...]:
    """Rows of one method: the plain one first, then weights variants last, numbers in order."""
    return (any(k == "weights" for k, _ in parts),
            tuple((k, (0, float(v), "") if is_number(v) else (1, 0.0, str(v))) for k, v in parts))
