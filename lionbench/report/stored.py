"""Tables of the runs a store holds: what ``lionbench table`` (and ``run``, at its end) prints."""

from __future__ import annotations

import json
from typing import Any

from lionbench.config import PROTOCOL_VERSION, cell_hash_of
from lionbench.errors import ConfigError
from lionbench.store import Store
from lionbench.text import printable, printable_data

from .render import FORMATS, render_table
from .tables import ComparisonTable, SelectedCell, build_table
from .tuning import mark_tuning_runs, selection_margin, validation_images

# what a table reads of each run (not its history, extra metrics or package versions)
TABLE_COLUMNS = ("run_hash", "cell_hash", "status", "method", "backbone", "weights",
                 "weights_id", "dataset", "seed", "config", "protocol_version", "git_dirty",
                 "imported_result", "params_trainable", "test_top1", "warnings", "data_id")


def load_done_runs(store: Store, hashes: list[str] | None = None) -> list[dict[str, Any]]:
    """Done runs, optionally only those of a plan, as dicts for :func:`build_table`.

    ``config`` is the run's *cell*: its config without the seed (the ``seed`` field has it),
    decoded once per cell and shared by the cell's runs, which differ only by seed.
    ``tuning_candidate`` marks the runs ``lionbench tune`` trained to choose (at its tuning
    seeds): a table leaves them out unless asked (``lionbench.report.tuning``). Names and
    settings, which label rows and columns, are made inert (lionbench.text.printable: a
    control character in a stored or imported name is shown escaped in every format).
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
    mark_tuning_runs(runs, store.fetch_tunings())
    for r in runs:
        for key in ("method", "backbone", "dataset", "weights"):
            if isinstance(r[key], str):
                r[key] = printable(r[key])
    for cell in cells.values():
        cell.update(printable_data(cell))
    return runs


def load_selection(store: Store) -> dict[tuple[str, str, str], SelectedCell]:
    """The validation-selected configuration of every tuned (backbone, method, dataset), with
    its margin over the runner-up and that margin's noise (``lionbench.report.tuning``)."""
    chosen = store.selected_cells()
    if not chosen:
        raise ConfigError(f"no tuning with a chosen configuration in '{store.safe_url}'; run "
                          "`lionbench tune ...` first (see lionbench tune --help)")
    latest = {}
    for t in store.fetch_tunings():  # oldest first, as selected_cells reads them
        if t["winner_cell_hash"]:
            latest[(t["backbone"], t["method"], t["dataset"])] = t
    images = _validation_images(store, [h for t in latest.values()
                                        for c in t["candidates"] or []
                                        if c.get("cell_hash") == t["winner_cell_hash"]
                                        for h in c.get("run_hashes") or []])
    out = {}
    for key, c in chosen.items():
        t = latest.get(key)
        margin = None
        if t is not None:
            winner = [h for cand in t["candidates"] or [] if cand.get("cell_hash") == c["cell_hash"]
                      for h in cand.get("run_hashes") or []]
            sizes = [images[h] for h in winner if images.get(h)]
            margin = selection_margin(t["candidates"] or [], c["cell_hash"],
                                      min(sizes) if sizes else None)
        out[key] = SelectedCell(c["cell_hash"], tuple(c["seeds"]), dict(c["values"]), margin)
    return out


def _validation_images(store: Store, hashes: list[str]) -> dict[str, int | None]:
    """run hash -> the size of the validation set the run recorded (done runs only)."""
    wanted = set(hashes)
    if not wanted:
        return {}
    return {r["run_hash"]: validation_images(r["extra"])
            for r in store.fetch_runs("done", ("run_hash", "extra")) if r["run_hash"] in wanted}


def render_stored_table(store: Store, *, hashes: list[str] | None = None, fmt: str = "rich",
                        preset: str | None = None, compare: str | None = None,
                        clean_only: bool = False, method_order: tuple[str, ...] | None = None,
                        mark_imported: bool = True, allow_empty: bool = True,
                        selected: bool = False, stats: bool = True, interval: str = "t",
                        versus: str | None = None, all_seeds: bool = False) -> Any:
    """The comparison table of the store's done runs, rendered in ``fmt`` (imported results
    marked ``‡`` unless ``mark_imported=False``); None when there is no done run and
    ``allow_empty`` is False (an empty table says nothing a user can use). ``selected``: only
    the configurations ``lionbench tune`` chose, one row per method and backbone.
    ``all_seeds``: tuning runs too, in rows of their own; ``stats``, ``interval`` and
    ``versus``: best and tie marks, and a difference column (``build_table``)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown table format '{fmt}'; valid: {', '.join(FORMATS)}")
    table = stored_table(store, hashes=hashes, preset=preset, compare=compare,
                         clean_only=clean_only, method_order=method_order,
                         mark_imported=mark_imported, selected=selected, stats=stats,
                         interval=interval, versus=versus, all_seeds=all_seeds,
                         allow_empty=allow_empty)
    return None if table is None else render_table(table, fmt)


def stored_table(store: Store, *, hashes: list[str] | None = None, selected: bool = False,
                 allow_empty: bool = True, **options: Any) -> ComparisonTable | None:
    """The ``ComparisonTable`` of the store's done runs (``options`` go to ``build_table``);
    None when there is no done run and ``allow_empty`` is False. Bad options: ConfigError."""
    selection = load_selection(store) if selected else None
    runs = load_done_runs(store, hashes)
    if not runs and not allow_empty:
        return None
    try:
        return build_table(runs, current_protocol=PROTOCOL_VERSION, selected=selection,
                           **options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
