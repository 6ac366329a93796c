"""Experiment matrices: methods x backbones x datasets x seeds, from flags or a YAML file.

A YAML file holds the same keys as the flags; ``runs:`` may list several blocks, each a matrix of
its own, with the top-level keys as defaults::

    name: quickstart
    methods: [head-tuning, fine-tuning]
    backbones: [demo-resnet]
    datasets: [digits]
    seeds: [0, 1]
    set: {epochs: 5, lr: 0.001}
    runs:
      - {}                                   # the matrix above
      - {methods: [head-tuning], weights: none}   # plus head-tuning from random init

This module only reads and shapes matrices (plain data, no torch): names and values are checked
against the registries by ``lionbench.runner.plan.expand_matrix`` before anything runs or is
stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lionbench.errors import ConfigError

MATRIX_KEYS = {"name", "methods", "backbones", "datasets", "seeds", "weights", "set", "runs",
               "description", "notes"}


@dataclass
class Matrix:
    """One block of a matrix: the cartesian product of its lists, with shared overrides.

    An empty list is an axis left out: it takes its default when the matrix is expanded
    (``lionbench.runner.plan.DEFAULT_AXES``: the paper's methods, demo-resnet, digits, seed 0).
    """

    methods: list[str] = field(default_factory=list)
    backbones: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    weights: str = "pretrained"
    overrides: dict[str, Any] = field(default_factory=dict)
    name: str = ""


def split_names(value: str | list[str] | None) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def parse_seeds(value: str | list[int] | int | None) -> list[int]:
    """``"0,1,2"``, ``[0, 1]`` or ``3`` -> a list of ints; None -> [] (the default seeds)."""
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    try:
        return [int(s) for s in split_names(value)]
    except ValueError:
        raise ConfigError(f"invalid seeds '{value}'; expected integers like 0,1,2") from None


def coerce_number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-5`` (no dot) as a string; take it as the number it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_matrix_file(path: Path, overrides: dict[str, Any] | None = None) -> list[Matrix]:
    """Read a YAML matrix; ``overrides`` (from ``--set``) apply on top of the file's ``set``."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file '{path}' is not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping with keys "
                          f"{', '.join(sorted(MATRIX_KEYS))}")
    unknown = set(doc) - MATRIX_KEYS
    if unknown:
        raise ConfigError(f"config file '{path}': unknown keys {', '.join(sorted(unknown))}; "
                          f"valid: {', '.join(sorted(MATRIX_KEYS))}")
    blocks = doc.get("runs") or [{}]
    matrices = []
    for block in blocks:
        if not isinstance(block, dict) or set(block) - MATRIX_KEYS:
            raise ConfigError(f"config file '{path}': each entry of 'runs' must be a mapping "
                              f"with keys among {', '.join(sorted(MATRIX_KEYS - {'runs'}))}")
        merged = {**doc, **block}
        sets = {**(doc.get("set") or {}), **(block.get("set") or {})}
        sets = {k: coerce_number(v) for k, v in sets.items()} | dict(overrides or {})
        matrices.append(Matrix(
            methods=split_names(merged.get("methods")),
            backbones=split_names(merged.get("backbones")),
            datasets=split_names(merged.get("datasets")),
            seeds=parse_seeds(merged.get("seeds")),
            weights=str(merged.get("weights", "pretrained")),
            overrides=sets, name=str(doc.get("name", Path(path).stem))))
    return matrices
