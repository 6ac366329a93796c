"""Tables of the runs a store holds: what ``lionbench table`` (and ``run``, at its end) prints."""

from __future__ import annotations

import json
from typing import Any

from lionbench.config import PROTOCOL_VERSION, cell_hash_of
from lionbench.errors import ConfigError
from lionbench.store import Store

from .render import FORMATS, render_table
from .tables import SelectedCell, build_table

# what a table reads of each run (not its history, extra metrics or package versions)
TABLE_COLUMNS = ("run_hash", "cell_hash", "status", "method", "backbone", "weights",
                 "weights_id", "dataset", "seed", "config", "protocol_version", "git_dirty",
                 "imported_result", "params_trainable", "test_top1", "warnings", "data_id")


def load_done_runs(store: Store, hashes: list[str] | None = None) -> list[dict[str, Any]]:
    """Done runs, optionally only those of a plan, as dicts for :func:`build_table`.

    ``config`` is the run's *cell*: its config without the seed (the ``seed`` field has it),
    decoded once per cell and shared by the cell's runs, which differ only by seed.
    """
    runs = store.fetch_runs("done", TABLE_COLUMNS)
    if hashes is not None:
        wanted = set(hashes)
        runs = [r for r in runs if r["run_hash"] in wanted]
    cells: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r["cell_hash"] is None:  # a database older than schema 3, read as it is
            r["cell_hash"] = cell_hash_of(json.loads(r["config"]))
        if r["cell_hash"] not in cells:
            cells[r["cell_hash"]] = {k: v for k, v in json.loads(r["config"]).items()
                                     if k != "seed"}
        r["config"] = cells[r["cell_hash"]]
    return runs


def load_selection(store: Store) -> dict[tuple[str, str, str], SelectedCell]:
    """The validation-selected configuration of every tuned (backbone, method, dataset)."""
    chosen = store.selected_cells()
    if not chosen:
        raise ConfigError(f"no tuning with a chosen configuration in '{store.safe_url}'; run "
                          "`lionbench tune ...` first (see lionbench tune --help)")
    return {key: SelectedCell(c["cell_hash"], tuple(c["seeds"]), dict(c["values"]))
            for key, c in chosen.items()}


def render_stored_table(store: Store, *, hashes: list[str] | None = None, fmt: str = "rich",
                        preset: str | None = None, compare: str | None = None,
                        clean_only: bool = False, method_order: tuple[str, ...] | None = None,
                        mark_imported: bool = True, allow_empty: bool = True,
                        selected: bool = False) -> Any:
    """The comparison table of the store's done runs, rendered in ``fmt`` (imported results
    marked ``‡`` unless ``mark_imported=False``); None when there is no done run and
    ``allow_empty`` is False (an empty table says nothing a user can use). ``selected``: only
    the configurations ``lionbench tune`` chose, one row per method and backbone."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown table format '{fmt}'; valid: {', '.join(FORMATS)}")
    selection = load_selection(store) if selected else None
    runs = load_done_runs(store, hashes)
    if not runs and not allow_empty:
        return None
    try:
        table = build_table(runs, preset=preset, clean_only=clean_only, compare=compare,
                            current_protocol=PROTOCOL_VERSION, method_order=method_order,
                            mark_imported=mark_imported, selected=selection)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return render_table(table, fmt)
