"""LION's ablations (paper Table 4) and sensitivity sweeps (Figure 3) as run matrices.

``lionbench ablate --variant lion-r`` runs LION and LION-R over the chosen backbones and
datasets; ``--variant all`` runs every variant; ``--tau 0.2,0.4,0.6,0.8`` and
``--deq-layers 1,2,3,4`` add one block per value (``lion.tau=...``, ``lion.deq_layers=...``), so
each value is a run of its own and a row of its own in the table (``lion (tau=0.2)``).
"""

from __future__ import annotations

from typing import Any

from lionbench.config import parse_set_options
from lionbench.errors import ConfigError
from lionbench.matrix import Matrix, parse_seeds, split_names
from lionbench.store import Store

from .plan import Plan, expand_matrix, fill_default_axes, plan_runs

VARIANTS = ("lion-p1", "lion-p2", "lion-r")
TABLE4_ORDER = ("lion-p1", "lion-p2", "lion-r", "lion")


def parse_values(text: str | None, kind: type, name: str) -> list[Any]:
    if not text:
        return []
    try:
        return [kind(v) for v in split_names(text)]
    except ValueError:
        raise ConfigError(f"invalid --{name} '{text}'; expected a comma-separated list of "
                          f"{kind.__name__}s, e.g. {'0.2,0.4' if kind is float else '1,2'}"
                          ) from None


def create_ablation_matrices(backbones: str | None = None, datasets: str | None = None, *,
                             variant: str | None = None,
                             taus: str | None = None, deq_layers: str | None = None,
                             seeds: str | None = None, overrides: dict[str, Any] | None = None,
                             weights: str = "pretrained") -> list[Matrix]:
    """Matrices for the requested ablation(s); at least one of variant/taus/deq_layers.
    Backbones, datasets and seeds left out take the matrix defaults (runner.plan.DEFAULT_AXES)."""
    if variant is None and not taus and not deq_layers:
        raise ConfigError("nothing to ablate; give --variant lion-p1|lion-p2|lion-r|all, "
                          "--tau VALUES or --deq-layers VALUES")
    if variant is not None and variant not in (*VARIANTS, "all"):
        raise ConfigError(f"unknown variant '{variant}'; valid: {', '.join(VARIANTS)}, all")
    base = dict(backbones=split_names(backbones), datasets=split_names(datasets),
                seeds=parse_seeds(seeds), weights=weights, name="ablation")
    overrides = dict(overrides or {})
    matrices = []
    if variant is not None:
        methods = ["lion", *(VARIANTS if variant == "all" else [variant])]
        matrices.append(Matrix(methods=methods, overrides=overrides, **base))
    for tau in parse_values(taus, float, "tau"):
        matrices.append(Matrix(methods=["lion"], overrides={**overrides, "lion.tau": tau}, **base))
    for layers in parse_values(deq_layers, int, "deq-layers"):
        matrices.append(Matrix(methods=["lion"],
                               overrides={**overrides, "lion.deq_layers": layers}, **base))
    return matrices


def build_ablation_plan(backbones: str | None = None, datasets: str | None = None, *,
                        variant: str | None = None,
                        taus: str | None = None, deq_layers: str | None = None,
                        seeds: str | None = None, set_items: list[str] | None = None,
                        weights: str = "pretrained", db: str | None = None) -> Plan:
    """Check the ablation's matrices, then plan them against the store (Table 4's row order)."""
    matrices = create_ablation_matrices(backbones, datasets, variant=variant, taus=taus,
                                        deq_layers=deq_layers, seeds=seeds,
                                        overrides=parse_set_options(set_items), weights=weights)
    notes = [line for m in matrices for line in fill_default_axes(m)]
    configs = expand_matrix(matrices)
    plan = plan_runs(Store(db), configs, tags="ablation", method_order=TABLE4_ORDER)
    plan.notes = list(dict.fromkeys(notes))
    return plan
