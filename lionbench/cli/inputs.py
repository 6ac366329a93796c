"""Every input of a command that trains, checked before torch is imported.

``run``, ``tune``, ``ablate``, ``params``, ``pretrain`` and ``bench`` end up importing torch and
timm (seconds on a loaded machine). What a user typed is checked first, here, from plain data:
method, backbone and dataset names and every ``--set``/``--grid`` value against the generated
catalogs (lionbench.catalog, lionbench.settings), seeds and the matrix's size and YAML
matrices (lionbench.matrix), the weights argument, and the database
(lionbench.store.check_database); the execution options are checked by
``lionbench.executors.make_options`` (devices and GPUs against this machine, threads, workers,
Slurm and Ray options, output folders), torch-free as well. A bad input is refused in well under
a second with the one-line message the full check would give.

What needs the model itself is checked after torch loads and still before anything is stored or
trained: whether a weights file fits the backbone (its keys and shapes), and whether a method
accepts a backbone family (``vpt-shallow`` on a CNN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lionbench.catalog import (
    check_backbone,
    check_dataset,
    check_method_values,
    check_weights_argument,
    expand_dataset_suites,
    method_entry,
    method_setting_names,
)
from lionbench.config import TrainConfig, check_overrides, parse_set_options, split_overrides
from lionbench.errors import ConfigError
from lionbench.matrix import (
    Matrix,
    check_matrix_size,
    create_ablation_matrices,
    fill_default_axes,
    load_matrix_file,
    parse_grid,
    parse_seeds,
    split_names,
)

MAX_NUM_CLASSES = 1_000_000  # a classification head; ImageNet-21k has 21,841 classes


def matrices_from_flags(config: Path | None, methods: str | None, backbones: str | None,
                        datasets: str | None, seeds: str | None, set_items: list[str] | None,
                        weights: str | None) -> list[Matrix]:
    """The matrices ``lionbench.runner.plan.create_matrices`` would build, axes filled."""
    overrides = parse_set_options(set_items)
    matrices = (load_matrix_file(config, overrides) if config is not None
                else [Matrix(overrides=dict(overrides))])
    flags = {"methods": split_names(methods), "backbones": split_names(backbones),
             "datasets": split_names(datasets), "seeds": parse_seeds(seeds)}
    for m in matrices:
        for axis, value in flags.items():
            if value:
                setattr(m, axis, value)
        fill_default_axes(m)
        m.datasets = expand_dataset_suites(m.datasets)  # vtab-1k: its 19 tasks
        if weights:
            m.weights = weights
    return matrices


def check_settings_of(methods: list[str], overrides: dict[str, Any],
                      option: str = "--set") -> dict[str, set[str]]:
    """Every key of ``overrides`` known to training or a method of ``methods``, every value
    valid (training keys against TrainConfig, method keys against the catalog's schema);
    returns each method's setting names."""
    fields = {name: method_setting_names(name) for name in methods}
    check_overrides(overrides, fields, option)
    for name in methods:
        train_values, method_values = split_overrides(overrides, name, fields[name])
        TrainConfig(**train_values)
        check_method_values(name, method_values)
    return fields


def check_matrix(m: Matrix) -> dict[str, set[str]]:
    """One block: its names, weights and settings."""
    for name in m.methods:
        method_entry(name)
    for name in m.backbones:
        check_backbone(name)
    for name in m.datasets:
        check_dataset(name)
    check_weights_argument(m.weights)
    return check_settings_of(m.methods, m.overrides)


def check_run_inputs(config: Path | None, methods: str | None, backbones: str | None,
                     datasets: str | None, seeds: str | None, set_items: list[str] | None,
                     weights: str | None) -> list[Matrix]:
    """``lionbench run``'s matrix inputs; the checked matrices."""
    matrices = matrices_from_flags(config, methods, backbones, datasets, seeds, set_items,
                                   weights)
    if any(m.grid for m in matrices):
        raise ConfigError(f"config file '{config}' has a grid: choose from it on validation "
                          f"with `lionbench tune {config}`")
    check_matrix_size(matrices)
    for m in matrices:
        check_matrix(m)
    return matrices


def check_tune_inputs(config: Path | None, methods: str | None, backbones: str | None,
                      datasets: str | None, seeds: str | None, set_items: list[str] | None,
                      grid_items: list[str] | None, tune_seeds: str | None,
                      weights: str | None) -> None:
    """``lionbench tune``'s inputs: the matrix's, then the grid's keys and every value of it,
    and tuning seeds disjoint from the final ones."""
    matrices = matrices_from_flags(config, methods, backbones, datasets, seeds, set_items,
                                   weights)
    grid = parse_grid(grid_items)
    chosen = parse_seeds(tune_seeds) if tune_seeds else None
    check_matrix_size(matrices)
    for m in matrices:
        fields = check_matrix(m)
        m_grid = {**m.grid, **grid}
        if not m_grid:
            raise ConfigError("nothing to tune: give --grid KEY=V1,V2 (e.g. --grid "
                              "lr=1e-3,1e-2) or a 'grid:' in the matrix file")
        both = sorted(set(m_grid) & set(m.overrides))
        if both:
            raise ConfigError(f"{', '.join(both)}: both set and in the grid; keep one")
        check_overrides(m_grid, fields, "--grid")
        for key, values in m_grid.items():
            for value in values:  # each candidate value as if it were set
                check_settings_of(m.methods, {**m.overrides, key: value}, "--grid")
        final = m.seeds
        tuning = chosen or m.tune_seeds or [max(final) + 1]
        both_seeds = sorted(set(tuning) & set(final))
        if both_seeds:
            raise ConfigError(f"tuning seeds {','.join(map(str, tuning))} overlap the final "
                              f"seeds {','.join(map(str, final))} (seed "
                              f"{','.join(map(str, both_seeds))}); give --tune-seeds disjoint "
                              "from --seeds (default: one seed after the final ones)")


def check_ablate_inputs(backbones: str | None, datasets: str | None, variant: str | None,
                        taus: str | None, deq_layers: str | None, seeds: str | None,
                        set_items: list[str] | None, weights: str | None) -> None:
    """``lionbench ablate``'s inputs (its matrices built as ``lionbench.runner.ablation``
    builds them)."""
    matrices = create_ablation_matrices(backbones, datasets, variant=variant, taus=taus,
                                        deq_layers=deq_layers, seeds=seeds,
                                        overrides=parse_set_options(set_items),
                                        weights=weights or "pretrained")
    for m in matrices:
        fill_default_axes(m)
        m.datasets = expand_dataset_suites(m.datasets)
    check_matrix_size(matrices)
    for m in matrices:
        check_matrix(m)


def check_num_classes(num_classes: int) -> None:
    if not 1 <= num_classes <= MAX_NUM_CLASSES:
        raise ConfigError(f"invalid --num-classes {num_classes}; a head has 1 to "
                          f"{MAX_NUM_CLASSES:,} classes")


__all__ = ["MAX_NUM_CLASSES", "check_ablate_inputs", "check_matrix", "check_num_classes",
           "check_run_inputs", "check_settings_of", "check_tune_inputs", "matrices_from_flags"]
