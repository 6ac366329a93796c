"""LION's ablations (paper Table 4) and sensitivity sweeps (Figure 3) as run matrices.

``lionbench ablate --variant lion-r`` runs LION and LION-R over the chosen backbones and
datasets; ``--variant all`` runs every variant; ``--tau 0.2,0.4,0.6,0.8`` and
``--deq-layers 1,2,3,4`` add one block per value (``lion.tau=...``, ``lion.deq_layers=...``), so
each value is a run of its own and a row of its own in the table (``lion (tau=0.2)``).
"""

from __future__ import annotations

from lionbench.config import parse_set_options
from lionbench.matrix import (  # defined there (torch-free: the CLI checks them before torch)
    TABLE4_ORDER,
    VARIANTS,  # noqa: F401
    create_ablation_matrices,
    parse_values,  # noqa: F401
)

from .plan import Plan, expand_matrix, fill_default_axes, plan_runs


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
    plan = plan_runs(db, configs, tags="ablation", method_order=TABLE4_ORDER)
    plan.notes = list(dict.fromkeys(notes))
    return plan
