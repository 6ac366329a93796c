"""The library behind the CLI: one function per command, usable from Python.

>>> from lionbench.api import run_matrix
>>> summary = run_matrix(methods="head-tuning", backbones="demo-resnet", datasets="digits",
...                      db="sqlite://", overrides={"epochs": 1})  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lionbench.config import PROTOCOL_VERSION, parse_set_options
from lionbench.errors import ConfigError
from lionbench.executors import ExecOptions
from lionbench.matrix import Matrix, expand_matrix, load_matrix_file, parse_seeds, split_names
from lionbench.runner import Plan, RunSummary, plan_runs, run_plan
from lionbench.store import Store

TABLE_FORMATS = ("rich", "markdown", "latex", "csv")


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


def build_plan(config_file: Path | None, methods: str | None, backbones: str | None,
               datasets: str | None, seeds: str | None, set_items: list[str] | None,
               weights: str | None, db: str | None) -> tuple[Plan, Store, str]:
    """Validate everything, then open the store and compare the matrix with what it holds."""
    matrices = create_matrices(config_file, methods, backbones, datasets, seeds,
                               parse_set_options(set_items), weights)
    configs = expand_matrix(matrices)  # every name and value checked before the store is touched
    store = Store(db)
    tags = matrices[0].name if matrices and matrices[0].name else ""
    return plan_runs(store, configs), store, tags


def run_matrix(config_file: Path | None = None, *, methods: str | None = None,
               backbones: str | None = None, datasets: str | None = None,
               seeds: str | None = None, overrides: dict[str, Any] | None = None,
               weights: str | None = None, db: str | None = None, force: bool = False,
               data_root: Path | None = None, device: str = "auto", executor: str = "inline",
               options: ExecOptions | None = None) -> RunSummary:
    """Plan and run a matrix (the CLI's ``run`` without the progress bars): in this process, or
    with ``executor`` ``local``/``ray``/``slurm`` and its ``options`` (lionbench.executors)."""
    matrices = create_matrices(config_file, methods, backbones, datasets, seeds, overrides,
                               weights)
    store = Store(db)
    plan = plan_runs(store, expand_matrix(matrices))
    return run_plan(store, plan, force=force, data_root=data_root, device=device,
                    executor=executor, options=options)


def load_done_runs(store: Store, hashes: list[str] | None = None):  # -> pandas.DataFrame
    """Done runs, optionally only those of a plan, with their config flattened for tables."""
    df = store.list_runs("done")
    if hashes is not None:
        df = df[df.run_hash.isin(hashes)]
    return df.reset_index(drop=True)


def render_stored_table(store: Store, *, hashes: list[str] | None = None, fmt: str = "rich",
                        preset: str | None = None, compare: str | None = None,
                        clean_only: bool = False, method_order: tuple[str, ...] | None = None
                        ) -> Any:
    """The comparison table of the store's done runs, rendered in ``fmt``."""
    from lionbench.tables import build_table, render_table

    runs = load_done_runs(store, hashes)
    try:
        table = build_table(runs, preset=preset, clean_only=clean_only, compare=compare,
                            current_protocol=PROTOCOL_VERSION, method_order=method_order)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if fmt not in TABLE_FORMATS:
        raise ConfigError(f"unknown table format '{fmt}'; valid: {', '.join(TABLE_FORMATS)}")
    return render_table(table, fmt)
