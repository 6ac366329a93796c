"""The choices of ``lionbench tune``, stored beside the runs they were made from.

Why a table of its own: a tuned table must be able to say which grid was searched, what every
candidate scored on validation and which configuration won, long after the run that chose. Runs
alone cannot tell a winner from a candidate. One row per tuning (task + grid + seeds: its
``tuning_hash``); tuning again with the same grid rewrites the row with the new scores.

Also here: the one read of run outcomes a choice may make, :meth:`TuningStore.validation_scores`,
which selects the validation top-1 and the cost columns and never a test column, so that the
test split cannot influence a choice by construction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, delete, insert, inspect, select
from sqlalchemy.engine import Engine

from lionbench.config import canonical_json

from .queue import utcnow
from .schema import runs, tunings

JSON_FIELDS = ("grid", "tune_seeds", "final_seeds", "candidates", "winner_values")
# what a choice may read of a run: its status, validation score and cost, nothing of the test
VALIDATION_COLUMNS = ("run_hash", "status", "val_top1", "params_trainable", "failure_reason")


class TuningStore:
    """Base of :class:`~lionbench.store.Store`: writing and reading ``tunings``."""

    engine: Engine
    tunings_table: Table = tunings

    def validation_scores(self, hashes: Sequence[str]) -> dict[str, dict[str, Any]]:
        """run_hash -> {status, val_top1, params_trainable, failure_reason} for stored runs."""
        cols = [runs.c[name] for name in VALIDATION_COLUMNS]
        out: dict[str, dict[str, Any]] = {}
        hashes = list(hashes)
        with self.engine.connect() as conn:
            for i in range(0, len(hashes), 500):
                rows = conn.execute(select(*cols).where(runs.c.run_hash.in_(hashes[i:i + 500])))
                out.update({r.run_hash: dict(r._mapping) for r in rows})
        return out

    def save_tuning(self, record: dict[str, Any]) -> None:
        """Insert or replace the tuning ``record["tuning_hash"]`` (JSON fields as Python data)."""
        values = {k: (canonical_json(v) if k in JSON_FIELDS and v is not None else v)
                  for k, v in record.items()}
        values.setdefault("created_at", utcnow())
        with self.engine.begin() as conn:
            conn.execute(delete(tunings).where(tunings.c.tuning_hash == values["tuning_hash"]))
            conn.execute(insert(tunings).values(**values))

    def fetch_tunings(self) -> list[dict[str, Any]]:
        """Every stored tuning, oldest first, JSON fields decoded (none in a database older than
        schema 7, which a read-only command reads as it is)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("tunings"):
                return []
            rows = conn.execute(select(tunings).order_by(tunings.c.id)).mappings().all()
        return [{k: (json.loads(v) if k in JSON_FIELDS and v is not None else v)
                 for k, v in row.items()} for row in rows]

    def selected_cells(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """(backbone, method, dataset) -> the latest tuning's choice with a winner:
        ``{"cell_hash", "seeds" (final), "values"}``; what ``lionbench table --selected`` shows."""
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for t in self.fetch_tunings():  # oldest first: a later tuning replaces an earlier one
            if t["winner_cell_hash"]:
                out[(t["backbone"], t["method"], t["dataset"])] = {
                    "cell_hash": t["winner_cell_hash"], "seeds": tuple(t["final_seeds"]),
                    "values": t["winner_values"] or {}}
        return out
