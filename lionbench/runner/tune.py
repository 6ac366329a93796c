"""``lionbench tune``: per method, backbone and dataset, choose a configuration on validation,
then run the winner's final seeds.

Why: one learning rate for every method decides a ranking more than the methods do (issue 15:
on digits, head-tuning, VPT, Bias and fine-tuning sit near 10 % at lr 1e-5 and reach 79-86 % at
1e-2). The anchors (VPT's ``tune_vtab.py``, VTAB, the PETL unification studies) tune lr and
weight decay per method and task on a validation split, then report fixed seeds of the winner.
The protocol here:

1. **Candidates**: the grid's cartesian product for each method. A plain grid key applies to
   every method that has it (training keys such as ``lr`` and ``weight_decay`` to all; a method
   key such as ``prompt_length`` to VPT only); ``vpt.lr`` applies to VPT alone. The more specific
   wins: ``vpt.lr`` in the grid, then ``vpt.lr`` in ``set``, then ``lr`` in the grid, then ``lr``
   in ``set``; the same key in both grid and set is an error. Each candidate trains with the
   tuning seeds (default: one seed after the final ones).
2. **Choice**: the best mean validation top-1 over the tuning seeds (each run's best epoch, as
   every run selects its epoch). Ties (equal to 1e-9: validation accuracy is a count, ties are
   common) go to the cheaper candidate: fewer trainable parameters (the paper's cost axis), then
   fewer epochs (compute), then the smaller lr (VPT's tie rule, "for stability"), then grid order.
   Outcomes are read through ``Store.validation_scores``, which selects no test column: the test
   split cannot influence a choice.
3. **Stored**: the grid, every candidate's validation score, the winner and the rule, in the
   store's ``tunings`` table (``lionbench table --selected`` reads it).
4. **Final runs**: the winner with the final seeds. Tuning seeds are disjoint from them by
   default, so no reported test number comes from the run that won the selection (a winner's
   validation luck would otherwise flatter its own test number). Where the dataset's protocol
   retrains its final runs on train + val (``DatasetSpec.final_on_train_val``: VTAB-1k, whose
   final runs train on train800val200), the final runs are the winner with ``train_on_val``:
   trained on both, the last epoch kept; the stored choice names their cell.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lionbench.config import (
    RunConfig,
    TrainConfig,
    check_overrides,
    config_hash,
    parse_set_options,
)
from lionbench.data import get_dataset
from lionbench.errors import ConfigError
from lionbench.matrix import Matrix, parse_grid, parse_seeds
from lionbench.methods import get_method
from lionbench.store import Store
from lionbench.train.configs import create_run_config

from .plan import LazyStore, Plan, create_matrices, expand_matrix, plan_runs
from .run import RunSummary, run_plan

METRIC = "val_top1"
TIE = 1e-9
RULE = ("best mean validation top-1 over the tuning seeds; ties (within 1e-9) to fewer "
        "trainable parameters, then fewer epochs, then the smaller lr, then grid order")


@dataclass
class Candidate:
    """One point of a method's grid: its values and its runs (one per tuning seed)."""

    values: dict[str, Any]
    overrides: dict[str, Any]  # the matrix's set plus the values, scoped to the method
    configs: list[RunConfig]
    val_scores: list[float | None] = field(default_factory=list)
    params: int | None = None
    status: str = "new"  # done (every tuning run), failed (one did), pending, new

    @property
    def cell_hash(self) -> str:
        return self.configs[0].cell_hash

    @property
    def val_top1(self) -> float | None:
        scores = self.val_scores
        if self.status != "done" or not scores or any(s is None for s in scores):
            return None
        return math.fsum(scores) / len(scores)  # type: ignore[arg-type]

    def record(self) -> dict[str, Any]:
        return {"values": self.values, "cell_hash": self.cell_hash, "status": self.status,
                "val_top1": self.val_top1, "val_scores": self.val_scores,
                "params_trainable": self.params,
                "run_hashes": [c.run_hash for c in self.configs]}


@dataclass
class Task:
    """One (method, backbone, dataset, weights) to tune: its grid, candidates and outcome."""

    method: str
    backbone: str
    dataset: str
    weights: str
    grid: dict[str, list[Any]]
    candidates: list[Candidate]
    tune_seeds: list[int]
    final_seeds: list[int]
    name: str = ""
    winner: Candidate | None = None
    finals: list[RunConfig] = field(default_factory=list)

    @property
    def weights_id(self) -> str:
        return self.candidates[0].configs[0].weights_id

    @property
    def tuning_hash(self) -> str:
        return config_hash({"task": [self.method, self.backbone, self.dataset, self.weights_id],
                            "cells": [c.cell_hash for c in self.candidates],
                            "tune_seeds": self.tune_seeds, "final_seeds": self.final_seeds})

    def record(self) -> dict[str, Any]:
        """The row of the store's ``tunings`` table."""
        w = self.winner
        return {"tuning_hash": self.tuning_hash, "name": self.name, "method": self.method,
                "backbone": self.backbone, "dataset": self.dataset,
                "weights_id": self.weights_id, "grid": self.grid, "tune_seeds": self.tune_seeds,
                "final_seeds": self.final_seeds, "metric": METRIC, "rule": RULE,
                "candidates": [c.record() for c in self.candidates],
                # the cell whose final seeds tables show: the winner's, retrained on
                # train + val where the dataset's protocol says so (final_overrides)
                "winner_cell_hash": (self.finals[0].cell_hash if self.finals else
                                     w.cell_hash if w else None),
                "winner_values": w.values if w else None}


@dataclass
class TunePlan:
    """Every task of a tuning and the store it writes to (opened for writing on first use,
    as a plan's: a dry run reads it only)."""

    source: LazyStore | Store
    tasks: list[Task]
    name: str = ""
    notes: list[str] = field(default_factory=list)  # the axis defaults used, one line each

    def __post_init__(self) -> None:
        if not isinstance(self.source, LazyStore):  # an open Store (library use)
            self.source = LazyStore(self.source)

    @property
    def store(self) -> Store:
        return self.source.get()

    def candidate_plan(self) -> Plan:
        configs = {c.run_hash: c for t in self.tasks for cand in t.candidates
                   for c in cand.configs}
        return plan_runs(self.source, list(configs.values()),
                         tags=f"{self.name}:tune".lstrip(":"))


@dataclass
class TuneResult:
    tasks: list[Task]
    candidates: RunSummary
    finals: RunSummary

    @property
    def total(self) -> int:
        """Runs of this invocation: every candidate run and every final run, stored or not."""
        return sum(s.done + s.failed + s.skipped + s.pending
                   for s in (self.candidates, self.finals))

    @property
    def failed(self) -> int:
        return self.candidates.failed + self.finals.failed

    @property
    def summary(self) -> RunSummary:
        """Both phases as one invocation: its ``exit_code`` and ``problem_line`` are the CLI's
        exit rule, the same as ``lionbench run``'s."""
        a, b = self.candidates, self.finals
        return RunSummary(done=a.done + b.done, failed=a.failed + b.failed,
                          skipped=a.skipped + b.skipped, failures=a.failures + b.failures,
                          pending=a.pending + b.pending, total=a.total + b.total,
                          stored_failed=a.stored_failed + b.stored_failed,
                          elsewhere=a.elsewhere + b.elsewhere)


def method_grid(method: str, grid: dict[str, list[Any]], overrides: dict[str, Any],
                fields: set[str]) -> dict[str, list[Any]]:
    """The grid as it applies to ``method`` (see the module's docstring for precedence)."""
    known = fields | TrainConfig.field_names()
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        prefix, dot, name = key.rpartition(".")
        if dot and prefix == method:
            out[name] = values
        elif not dot and key in known and f"{method}.{key}" not in overrides:
            out.setdefault(key, values)
    return out


def check_disjoint_seeds(tune_seeds: list[int], final_seeds: list[int]) -> None:
    """Tuning seeds must differ from the final ones: a winner's tuning run would otherwise be
    one of its reported runs, its validation luck flattering its own test number."""
    both = sorted(set(tune_seeds) & set(final_seeds))
    if both:
        raise ConfigError(f"tuning seeds {','.join(map(str, tune_seeds))} overlap the final "
                          f"seeds {','.join(map(str, final_seeds))} (seed "
                          f"{','.join(map(str, both))}); give --tune-seeds disjoint from "
                          "--seeds (default: one seed after the final ones)")


def create_tasks(matrices: list[Matrix], grid: dict[str, list[Any]] | None = None,
                 tune_seeds: list[int] | None = None) -> list[Task]:
    """Every task of the matrices, its candidates built and checked (nothing is stored)."""
    tasks: list[Task] = []
    for m in matrices:
        expand_matrix([m])  # every name and set value checked as `lionbench run` does
        m_grid = {**m.grid, **(grid or {})}
        if not m_grid:
            raise ConfigError("nothing to tune: give --grid KEY=V1,V2 (e.g. --grid "
                              "lr=1e-3,1e-2) or a 'grid:' in the matrix file")
        both = sorted(set(m_grid) & set(m.overrides))
        if both:
            raise ConfigError(f"{', '.join(both)}: both set and in the grid; keep one")
        fields = {name: get_method(name).config_class.field_names() for name in m.methods}
        check_overrides(m_grid, fields, "--grid")  # the same rules as --set
        seeds_t = tune_seeds or m.tune_seeds or [max(m.seeds) + 1]
        check_disjoint_seeds(seeds_t, m.seeds)
        for method, backbone, dataset in itertools.product(m.methods, m.backbones, m.datasets):
            g = method_grid(method, m_grid, m.overrides, fields[method])
            candidates: dict[str, Candidate] = {}
            for combo in itertools.product(*g.values()):
                values = dict(zip(g, combo, strict=True))
                overrides = {**m.overrides, **{f"{method}.{k}": v for k, v in values.items()}}
                configs = [create_run_config(method, backbone, dataset, s, m.weights, overrides)
                           for s in seeds_t]
                candidates.setdefault(configs[0].cell_hash,
                                      Candidate(values, overrides, configs))
            tasks.append(Task(method, backbone, dataset, m.weights, g,
                              list(candidates.values()), list(seeds_t), list(m.seeds), m.name))
    return tasks


def build_tune_plan(config_file: Path | None = None, methods: str | None = None,
                    backbones: str | None = None, datasets: str | None = None,
                    seeds: str | None = None, set_items: list[str] | None = None,
                    grid_items: list[str] | None = None, tune_seeds: str | None = None,
                    weights: str | None = None, db: str | None = None) -> TunePlan:
    """Check everything (names, set values, grid keys and values), then open the store."""
    notes: list[str] = []
    matrices = create_matrices(config_file, methods, backbones, datasets, seeds,
                               parse_set_options(set_items), weights, notes)
    tasks = create_tasks(matrices, parse_grid(grid_items),
                         parse_seeds(tune_seeds) if tune_seeds else None)
    return TunePlan(LazyStore(db), tasks, matrices[0].name if matrices else "", notes)


def choose(candidates: list[Candidate]) -> Candidate | None:
    """The winner by :data:`RULE`; None when no candidate finished every tuning run."""
    done = [c for c in candidates if c.val_top1 is not None]
    if not done:
        return None
    best = max(c.val_top1 for c in done)  # type: ignore[type-var]
    tied = [c for c in done if best - c.val_top1 <= TIE]  # type: ignore[operator]

    def cost(c: Candidate) -> tuple[float, int, float]:
        train = c.configs[0].train
        return (c.params if c.params is not None else math.inf, train.epochs, train.lr)

    return min(tied, key=lambda c: (cost(c), candidates.index(c)))


def score(store: Store, task: Task) -> None:
    """Fill each candidate's status, validation scores and cost from the store."""
    outcomes = store.validation_scores([c.run_hash for cand in task.candidates
                                        for c in cand.configs])
    for cand in task.candidates:
        rows = [outcomes.get(c.run_hash) for c in cand.configs]
        statuses = {r["status"] if r else "new" for r in rows}
        cand.status = ("failed" if "failed" in statuses else "done" if statuses == {"done"}
                       else "pending")
        cand.val_scores = [r["val_top1"] if r else None for r in rows]
        params = [r["params_trainable"] for r in rows if r and r["params_trainable"] is not None]
        cand.params = max(params) if params else None


def final_overrides(task: Task, winner: Candidate) -> dict[str, Any]:
    """The winner's settings for its final runs: the same, plus ``train_on_val`` where the
    dataset's protocol retrains its final runs on train + val (VTAB-1k: train800val200)."""
    overrides = dict(winner.overrides)
    if get_dataset(task.dataset).final_on_train_val:
        overrides[f"{task.method}.train_on_val"] = True
    return overrides


def choose_and_store(plan: TunePlan) -> None:
    """Score every task's candidates, choose, prepare the final runs, store the choice."""
    for task in plan.tasks:
        score(plan.store, task)
        task.winner = choose(task.candidates)
        w = task.winner
        task.finals = [] if w is None else [
            create_run_config(task.method, task.backbone, task.dataset, s, task.weights,
                              final_overrides(task, w)) for s in task.final_seeds]
        plan.store.save_tuning(task.record())


def run_tune(plan: TunePlan, *, force: bool = False, retry_failed: bool = False,
             on_phase: Callable[[str, Plan], None] | None = None,
             **run_options: Any) -> TuneResult:
    """Run the candidates, choose on validation, store the choices, run the winners' seeds.

    ``run_options`` go to :func:`lionbench.runner.run.run_plan` (data_root, device, on_event,
    executor, options); ``on_phase("candidates" | "finals", plan)`` is called before each.
    """
    phase = on_phase or (lambda name, p: None)
    candidates = plan.candidate_plan()
    phase("candidates", candidates)
    first = run_plan(candidates, force=force, retry_failed=retry_failed, **run_options)
    choose_and_store(plan)
    finals = plan_runs(plan.source, [c for t in plan.tasks for c in t.finals],
                       tags=plan.name)
    phase("finals", finals)
    second = run_plan(finals, force=force, retry_failed=retry_failed, **run_options) \
        if finals.configs else RunSummary()
    return TuneResult(plan.tasks, first, second)
