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


@dataclass(frozen=True)
class SelectedCell:
    """The configuration ``lionbench tune`` chose for one (backbone, method, dataset)."""

    cell_hash: str
    seeds: tuple[int, ...]  # the final seeds (never the tuning seeds)
    values: dict[str, Any] = field(default_factory=dict)  # the chosen grid values


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
