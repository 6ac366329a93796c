"""Tables of the runs a store holds: what ``lionbench table`` (and ``run``, at its end) prints."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from lionbench.config import PROTOCOL_VERSION
from lionbench.errors import ConfigError
from lionbench.store import Store

from .render import FORMATS, render_table
from .tables import build_table

# what a table reads of each run (not its history, extra metrics or package versions)
TABLE_COLUMNS = ("run_hash", "cell_hash", "status", "method", "backbone", "weights",
                 "weights_id", "dataset", "seed", "config", "protocol_version", "git_dirty",
                 "params_trainable", "test_top1")


def load_done_runs(store: Store, hashes: list[str] | None = None) -> pd.DataFrame:
    """Done runs, optionally only those of a plan, for tables.

    ``config`` is the run's *cell*: its config without the seed (the ``seed`` column has it),
    decoded once per cell, since the runs of a cell differ only by seed.
    """
    df = store.list_runs("done", columns=TABLE_COLUMNS, decode=False)
    if hashes is not None:
        df = df[df.run_hash.isin(hashes)]
    first = df.drop_duplicates("cell_hash")
    cells = {cell: {k: v for k, v in json.loads(text).items() if k != "seed"}
             for cell, text in zip(first["cell_hash"], first["config"], strict=True)}
    df = df.assign(config=df["cell_hash"].map(cells))
    return df.reset_index(drop=True)


def render_stored_table(store: Store, *, hashes: list[str] | None = None, fmt: str = "rich",
                        preset: str | None = None, compare: str | None = None,
                        clean_only: bool = False, method_order: tuple[str, ...] | None = None
                        ) -> Any:
    """The comparison table of the store's done runs, rendered in ``fmt``."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown table format '{fmt}'; valid: {', '.join(FORMATS)}")
    runs = load_done_runs(store, hashes)
    try:
        table = build_table(runs, preset=preset, clean_only=clean_only, compare=compare,
                            current_protocol=PROTOCOL_VERSION, method_order=method_order)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return render_table(table, fmt)
