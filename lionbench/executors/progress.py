"""Progress of a matrix whose runs finish in other processes: read from the database.

Drivers of several workers learn what finished by polling the store, not by messages, so the
report is right whatever process stored the run. Events match the inline runner's (``done``
with ``config`` and ``result``, ``failed`` with ``reason``) so the CLI renders both alike.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from lionbench.executors import EventFn
from lionbench.store import Store


class Reporter:
    """Emit ``done``/``failed`` once for each run among ``hashes`` that finished since."""

    def __init__(self, store: Store, hashes: list[str], emit: EventFn):
        self.store, self.hashes, self.emit = store, hashes, emit
        self.seen: set[int] = {r["id"] for r in store.finished_runs(hashes, set())}

    @property
    def finished(self) -> int:
        return len(self.seen)

    def poll(self) -> None:
        for row in self.store.finished_runs(self.hashes, self.seen):
            self.seen.add(row["id"])
            info: dict[str, Any] = {"config": SimpleNamespace(
                method=row["method"], backbone=row["backbone"], dataset=row["dataset"],
                seed=row["seed"]), "row": row}
            if row["status"] == "done":
                self.emit("done", {**info, "result": SimpleNamespace(**row)})
            else:
                self.emit("failed", {**info, "reason": row["failure_reason"]})
