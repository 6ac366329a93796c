"""Plans: a matrix expanded into run configs, checked, and compared with what the store holds.

Everything a user typed is checked here, before the store is opened: every method, backbone and
dataset name, every override (``--set``) against the methods of its matrix, every value against
its config's bounds. ``build_plan`` then opens the store and records, per config, whether it is
new, pending, running, done or failed; ``lionbench.runner.run.run_plan`` executes it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lionbench.backbones import get_backbone_spec
from lionbench.config import RunConfig, check_overrides, parse_set_options
from lionbench.data import get_dataset
from lionbench.errors import ConfigError
from lionbench.matrix import Matrix, load_matrix_file, parse_seeds, split_names
from lionbench.methods import get_method
from lionbench.store import Store
from lionbench.train.configs import create_run_config


@dataclass
class Plan:
    """What ``run`` would do: each config with its stored status (None = new), in ``store``."""

    store: Store
    configs: list[RunConfig]
    statuses: dict[str, str | None]
    tags: str = ""
    method_order: tuple[str, ...] | None = field(default=None)  # table order (ablate: Table 4)

    @property
    def hashes(self) -> list[str]:
        return [c.run_hash for c in self.configs]

    def to_run(self, force: bool = False, retry_failed: bool = False) -> list[RunConfig]:
        todo = {None, "pending", "running"}
        if retry_failed:
            todo.add("failed")
        return [c for c in self.configs if force or self.statuses[c.run_hash] in todo]

    def rows(self, force: bool = False, retry_failed: bool = False) -> list[dict[str, Any]]:
        todo = {c.run_hash for c in self.to_run(force, retry_failed)}
        return [{"run_hash": c.run_hash, "method": c.method, "backbone": c.backbone,
                 "dataset": c.dataset, "seed": c.seed, "weights": c.weights,
                 "stored": self.statuses[c.run_hash] or "new",
                 "action": "run" if c.run_hash in todo else "skip"} for c in self.configs]


def plan_runs(store: Store, configs: list[RunConfig], tags: str = "",
              method_order: tuple[str, ...] | None = None) -> Plan:
    """Compare ``configs`` with the store: which are new, which stored and how."""
    stored = store.get_statuses([c.run_hash for c in configs])
    return Plan(store, configs, {c.run_hash: stored.get(c.run_hash) for c in configs}, tags,
                method_order)


def create_matrices(config_file: Path | None = None, methods: str | list[str] | None = None,
                    backbones: str | list[str] | None = None,
                    datasets: str | list[str] | None = None,
                    seeds: str | list[int] | None = None, overrides: dict[str, Any] | None = None,
                    weights: str | None = None) -> list[Matrix]:
    """Matrices from a YAML file and/or flags; flags replace the file's lists."""
    overrides = overrides or {}
    if config_file is not None:
        matrices = load_matrix_file(config_file, overrides)
    else:
        matrices = [Matrix(methods=[], backbones=[], datasets=[], overrides=dict(overrides))]
    for m in matrices:
        if methods:
            m.methods = split_names(methods)
        if backbones:
            m.backbones = split_names(backbones)
        if datasets:
            m.datasets = split_names(datasets)
        if seeds is not None:
            m.seeds = parse_seeds(seeds)
        if weights:
            m.weights = weights
    if config_file is None and not (methods and backbones and datasets):
        missing = [n for n, v in (("--methods", methods), ("--backbones", backbones),
                                  ("--datasets", datasets)) if not v]
        raise ConfigError(f"missing {', '.join(missing)}; give them or a YAML matrix file")
    return matrices


def expand_matrix(matrices: list[Matrix]) -> list[RunConfig]:
    """Validate every block and return its run configs, in order, without duplicates."""
    configs: dict[str, RunConfig] = {}
    for m in matrices:
        for kind, names in (("methods", m.methods), ("backbones", m.backbones),
                            ("datasets", m.datasets)):
            if not names:
                raise ConfigError(f"no {kind} given; pass --{kind} or list them in the file")
        fields = {name: get_method(name).config_class.field_names() for name in m.methods}
        for name in m.backbones:
            get_backbone_spec(name)
        for name in m.datasets:
            get_dataset(name)
        check_overrides(m.overrides, fields)
        for method, backbone, dataset, seed in itertools.product(m.methods, m.backbones,
                                                                 m.datasets, m.seeds):
            config = create_run_config(method, backbone, dataset, seed, m.weights, m.overrides)
            configs.setdefault(config.run_hash, config)
    return list(configs.values())


def build_plan(config_file: Path | None = None, methods: str | None = None,
               backbones: str | None = None, datasets: str | None = None,
               seeds: str | None = None, set_items: list[str] | None = None,
               weights: str | None = None, db: str | None = None) -> Plan:
    """Validate everything, then open the store and compare the matrix with what it holds."""
    matrices = create_matrices(config_file, methods, backbones, datasets, seeds,
                               parse_set_options(set_items), weights)
    if any(m.grid for m in matrices):
        raise ConfigError(f"config file '{config_file}' has a grid: choose from it on "
                          f"validation with `lionbench tune {config_file}`")
    configs = expand_matrix(matrices)  # every name and value checked before the store is touched
    tags = matrices[0].name if matrices and matrices[0].name else ""
    return plan_runs(Store(db), configs, tags)
