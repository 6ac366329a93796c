"""What ``lionbench table --selected`` keeps: per (backbone, method, dataset), the configuration
``lionbench tune`` chose on validation, and only its final seeds.

Why only the final seeds: the winner's tuning run won the selection on its validation score, and
its test number shares that luck; the reported mean leaves it out (runner/tune.py). The chosen
values are named once, in a footnote per row, instead of in every label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .cells import format_value
from .tuning import Margin, Z

NOISE_MARK = "\u00b0"  # °: a choice inside the validation noise


@dataclass(frozen=True)
class SelectedCell:
    """The configuration ``lionbench tune`` chose for one (backbone, method, dataset)."""

    cell_hash: str
    seeds: tuple[int, ...]  # the final seeds (never the tuning seeds)
    values: dict[str, Any] = field(default_factory=dict)  # the chosen grid values
    margin: Margin | None = None  # its validation lead over the runner-up, with the noise


def is_selected(run: dict[str, Any], cell: str,
                selected: dict[tuple[str, str, str], SelectedCell]) -> bool:
    """Is ``run`` (of cell ``cell``) one of the final seeds of its task's chosen configuration?"""
    choice = selected.get((run["backbone"], run["method"], run["dataset"]))
    return (choice is not None and cell == choice.cell_hash
            and int(run.get("seed") or 0) in choice.seeds)


def selection_notes(selected: dict[tuple[str, str, str], SelectedCell],
                    rows: list[tuple[str, str, str, str]], columns: list[tuple[str, str]]
                    ) -> list[str]:
    """One line per row ((backbone, method, method label, backbone label)): the values chosen
    on validation, per column ((dataset, label))."""
    notes = []
    for backbone, method, label, backbone_label in rows:
        chosen = []
        for dataset, column in columns:
            choice = selected.get((backbone, method, dataset))
            if choice is not None:
                values = ", ".join(f"{k}={format_value(v)}" for k, v in choice.values.items())
                chosen.append(f"{column} {values or '(no grid)'}")
        if chosen:
            notes.append(f"{label} / {backbone_label} chosen on validation: {'; '.join(chosen)}")
    return notes


def noise_notes(selected: dict[tuple[str, str, str], SelectedCell],
                rows: list[tuple[str, str, str, str]], columns: list[tuple[str, str]]
                ) -> list[str]:
    """One line per choice whose margin over the runner-up is inside the validation noise
    (``lionbench.report.tuning``), with the numbers, after one line saying what the mark means."""
    notes = []
    for backbone, method, label, backbone_label in rows:
        for dataset, column in columns:
            choice = selected.get((backbone, method, dataset))
            m = choice.margin if choice is not None else None
            if m is None or not m.inside:
                continue
            runner = ", ".join(f"{k}={format_value(v)}" for k, v in m.runner_up_values.items())
            notes.append(f"{NOISE_MARK} {label} / {backbone_label}, {column}: validation top-1 "
                         f"{m.winner:.4f} against {m.runner_up:.4f} for {runner or 'the runner-up'}"
                         f": margin {m.margin:.4f} < {Z:.2f} x {m.noise:.4f} ({m.noise_kind})")
    if notes:
        notes.insert(0, f"{NOISE_MARK} the choice's validation margin over the runner-up is "
                        f"inside the noise (below {Z:.2f} standard errors): another tuning seed "
                        "could have chosen otherwise")
    return notes
