"""Progress of a matrix whose runs finish in other processes: read from the database.

Drivers of several workers learn what finished by polling the store, not by messages, so the
report is right whatever process stored the run. Events match the inline runner's (``done``
with ``config`` and ``result``, ``failed`` with ``reason``) so the CLI renders both alike.

Without a terminal (nohup, CI, a Slurm log) progress bars draw nothing until the end, so a
long run would be silent: there, each epoch is one plain, flushed line (:func:`epoch_line`),
printed by whichever process trains the run (the CLI inline, or a local worker).
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any, TextIO

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


def epoch_line(info: dict[str, Any], label: str = "") -> str:
    """One epoch as a plain log line: epoch, train loss, validation top-1, seconds."""
    parts = [f"epoch {info.get('epoch', info.get('done'))}/{info.get('epochs', info.get('total'))}"]
    if info.get("train_loss") is not None:
        parts.append(f"train loss {info['train_loss']:.4f}")
    if info.get("val_top1") is not None:
        parts.append(f"val top-1 {info['val_top1']:.4f}")
    if info.get("seconds") is not None:
        parts.append(f"{info['seconds']:.1f} s")
    return f"  {label}{': ' if label else ''}{', '.join(parts)}"


def print_epoch_lines(stream: TextIO | None = None) -> EventFn:
    """An event handler for a process without a terminal: one flushed line per epoch."""
    def emit(kind: str, info: dict[str, Any]) -> None:
        if kind == "progress":
            out = stream or sys.stdout
            out.write(epoch_line(info, str(info.get("label", ""))) + "\n")
            out.flush()
    return emit
