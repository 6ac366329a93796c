"""Plans: a matrix expanded into run configs, checked, and compared with what the store holds.

Everything a user typed is checked here, before the store is opened: every method, backbone and
dataset name, every override (``--set``) against the methods of its matrix, every value against
its config's bounds. ``build_plan`` then reads the store (read-only: a dry run, or a plan whose
weights turn out to be missing, creates and changes nothing) and records, per config, whether it
is new, pending, running, done or failed; the database is opened for writing (and created) only
when the plan runs (``Plan.store``); ``lionbench.runner.run.run_plan`` executes it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lionbench.backbones import PRETRAINED, check_pretrained_available, get_backbone_spec
from lionbench.config import RunConfig, check_overrides, parse_set_options
from lionbench.data import expand_suites, get_dataset
from lionbench.errors import ConfigError, DatasetError
from lionbench.matrix import (  # DEFAULT_AXES: re-exported, where it was defined before
    DEFAULT_AXES,  # noqa: F401
    Matrix,
    check_matrix_size,
    fill_default_axes,
    load_matrix_file,
    parse_seeds,
    split_names,
)
from lionbench.methods import get_method
from lionbench.store import Store, stored_statuses
from lionbench.train.configs import create_run_config


class LazyStore:
    """A plan's database: read (read-only, creating nothing) until something must be written,
    then opened once for writing and shared by every plan made from it (``lionbench tune``
    runs two plans on one store; an in-memory database must be the same object for both)."""

    def __init__(self, db: str | Store | None):
        self.db = db.url if isinstance(db, Store) else db
        self.opened: Store | None = db if isinstance(db, Store) else None

    def get(self) -> Store:
        if self.opened is None:
            self.opened = Store(self.db)
        return self.opened

    def statuses(self, hashes: list[str]) -> dict[str, str]:
        if self.opened is not None:
            return self.opened.get_statuses(hashes)
        return stored_statuses(self.db, hashes)


@dataclass
class Plan:
    """What ``run`` would do: each config with its stored status (None = new), in ``source``
    (its database, opened for writing when ``store`` is first used)."""

    source: LazyStore
    configs: list[RunConfig]
    statuses: dict[str, str | None]
    tags: str = ""
    method_order: tuple[str, ...] | None = field(default=None)  # table order (ablate: Table 4)
    notes: list[str] = field(default_factory=list)  # the defaults used, one line each

    @property
    def store(self) -> Store:
        """The database, opened for writing (a new one created) on first use."""
        return self.source.get()

    @property
    def hashes(self) -> list[str]:
        return [c.run_hash for c in self.configs]

    def to_run(self, force: bool = False, retry_failed: bool = False) -> list[RunConfig]:
        todo = {None, "pending", "running"}
        if retry_failed:
            todo.add("failed")
        return [c for c in self.configs if force or self.statuses[c.run_hash] in todo]

    def validation_sources(self) -> dict[str, str]:
        """Dataset -> where its runs' model selection reads validation from, in words (a
        folder's own ``val/`` or ``validation/``, a seeded hold-out, K-shot's choice); data not
        on this machine (yet: a worker elsewhere may have it) is said to be unknown here."""
        sources: dict[str, str] = {}
        for c in self.configs:
            if c.dataset not in sources:
                try:
                    spec = get_dataset(c.dataset)
                    sources[c.dataset] = spec.validation_source(c.train.val_fraction)
                except DatasetError:
                    sources[c.dataset] = "unknown here (the data is not on this machine)"
        return sources

    def rows(self, force: bool = False, retry_failed: bool = False) -> list[dict[str, Any]]:
        todo = {c.run_hash for c in self.to_run(force, retry_failed)}
        return [{"run_hash": c.run_hash, "method": c.method, "backbone": c.backbone,
                 "dataset": c.dataset, "seed": c.seed, "weights": c.weights,
                 "stored": self.statuses[c.run_hash] or "new",
                 "action": "run" if c.run_hash in todo else "skip"} for c in self.configs]


def plan_runs(store: Store | LazyStore | str | None, configs: list[RunConfig], tags: str = "",
              method_order: tuple[str, ...] | None = None) -> Plan:
    """Compare ``configs`` with the store (an open Store, or a database URL or path read
    without opening it for writing): which are new, which stored and how."""
    source = store if isinstance(store, LazyStore) else LazyStore(store)
    stored = source.statuses([c.run_hash for c in configs])
    return Plan(source, configs, {c.run_hash: stored.get(c.run_hash) for c in configs}, tags,
                method_order)


def create_matrices(config_file: Path | None = None, methods: str | list[str] | None = None,
                    backbones: str | list[str] | None = None,
                    datasets: str | list[str] | None = None,
                    seeds: str | list[int] | None = None, overrides: dict[str, Any] | None = None,
                    weights: str | None = None, notes: list[str] | None = None
                    ) -> list[Matrix]:
    """Matrices from a YAML file and/or flags; flags replace the file's lists, and an axis that
    neither gives takes its default (DEFAULT_AXES), each default used noted in ``notes``."""
    overrides = overrides or {}
    if config_file is not None:
        matrices = load_matrix_file(config_file, overrides)
    else:
        matrices = [Matrix(overrides=dict(overrides))]
    flags = {"methods": split_names(methods), "backbones": split_names(backbones),
             "datasets": split_names(datasets), "seeds": parse_seeds(seeds)}
    used: dict[str, str] = {}
    for m in matrices:
        for axis, value in flags.items():
            if value:
                setattr(m, axis, value)
        used.update((line.split(":")[0], line) for line in fill_default_axes(m))
        m.datasets = expand_suites(m.datasets)  # vtab-1k: its 19 tasks
        if weights:
            m.weights = weights
    if notes is not None:
        notes.extend(used.values())
    return matrices


def check_weights_available(configs: list[RunConfig]) -> None:
    """Fail in seconds, before anything is stored or trained, when a run's pretrained weights
    cannot be had (offline hub, not cached): the WeightsError names --weights FILE."""
    for backbone in dict.fromkeys(c.backbone for c in configs if c.weights in PRETRAINED):
        check_pretrained_available(backbone)


def expand_matrix(matrices: list[Matrix]) -> list[RunConfig]:
    """Validate every block and return its run configs, in order, without duplicates.

    A cell's config is built once and copied per seed (seeds change nothing else), so a
    matrix of many seeds plans in a fraction of a second."""
    configs: dict[str, RunConfig] = {}
    for m in matrices:
        fill_default_axes(m)
        m.datasets = expand_suites(m.datasets)  # vtab-1k: its 19 tasks (ablate's too)
    check_matrix_size(matrices)
    for m in matrices:
        fields = {name: get_method(name).config_class.field_names() for name in m.methods}
        for name in m.backbones:
            get_backbone_spec(name)
        for name in m.datasets:
            get_dataset(name)
        check_overrides(m.overrides, fields)
        for method, backbone, dataset in itertools.product(m.methods, m.backbones, m.datasets):
            cell = create_run_config(method, backbone, dataset, m.seeds[0], m.weights,
                                     m.overrides)
            for seed in m.seeds:
                config = cell if seed == cell.seed else replace(
                    cell, seed=seed, train=replace(cell.train),
                    method_config=dict(cell.method_config), pipeline=dict(cell.pipeline))
                configs.setdefault(config.run_hash, config)
    return list(configs.values())


def build_plan(config_file: Path | None = None, methods: str | None = None,
               backbones: str | None = None, datasets: str | None = None,
               seeds: str | None = None, set_items: list[str] | None = None,
               weights: str | None = None, db: str | None = None) -> Plan:
    """Validate everything, then open the store and compare the matrix with what it holds."""
    notes: list[str] = []
    matrices = create_matrices(config_file, methods, backbones, datasets, seeds,
                               parse_set_options(set_items), weights, notes)
    if any(m.grid for m in matrices):
        raise ConfigError(f"config file '{config_file}' has a grid: choose from it on "
                          f"validation with `lionbench tune {config_file}`")
    configs = expand_matrix(matrices)  # every name and value checked before the store is touched
    tags = matrices[0].name if matrices and matrices[0].name else ""
    plan = plan_runs(db, configs, tags)
    plan.notes = notes
    return plan
