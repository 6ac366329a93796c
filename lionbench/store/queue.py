"""The run queue's recovery side: runs go back when their worker is lost, stopped or preempted.

:class:`~lionbench.store.Store` claims runs (``claim_next``) and stores their outcome
(``mark_done``/``mark_failed``); this mixin holds what crash safety adds on top. Every change is
one conditional ``UPDATE`` on ``status='running'`` (and, for a single run, on the claim's
``attempts`` number, which identifies the claim), so a worker that lost its claim can neither
requeue nor overwrite the run another worker now holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.engine import Engine

FINISHED = ("done", "failed")
PROGRESS_COLUMNS = ("id", "run_hash", "status", "method", "backbone", "dataset", "seed",
                    "test_top1", "val_top1", "params_trainable", "train_seconds",
                    "failure_reason", "attempts")


def utcnow() -> str:
    """UTC, ISO 8601 to the second: equal-format strings compare in time order (stale checks)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def claim_held(table: Table, run_id: int, attempt: int | None) -> list[Any]:
    """The WHERE clause of a write that must only happen while claim ``attempt`` holds the run."""
    cond = [table.c.id == run_id]
    if attempt is not None:
        cond += [table.c.status == "running", table.c.attempts == attempt]
    return cond


class RunQueue:
    """Mixin of :class:`Store`: requeueing, driver-side heartbeats and progress queries."""

    engine: Engine
    table: Table

    def requeue(self, run_id: int, attempt: int, reason: str, *, count_attempt: bool = True,
                max_attempts: int | None = None) -> str | None:
        """Give claim ``attempt`` of a run back: ``pending`` again, or ``failed`` once
        ``max_attempts`` claims were lost (a run that kills its worker must not loop forever).

        ``count_attempt=False`` (Ctrl-C, the user's doing) takes the claim off the attempt count.
        Returns the new status, or None when the claim no longer held the run.
        """
        t, now = self.table, utcnow()
        held = claim_held(t, run_id, attempt)
        with self.engine.begin() as conn:
            if count_attempt and max_attempts is not None and attempt >= max_attempts:
                res = conn.execute(update(t).where(*held).values(
                    status="failed", finished_at=now, heartbeat_at=None,
                    failure_reason=f"{reason} (gave up after {attempt} attempts)"[:2000]))
                return "failed" if res.rowcount else None
            res = conn.execute(update(t).where(*held).values(
                status="pending", worker=None, heartbeat_at=None, requeue_reason=reason[:2000],
                requeued_at=now, attempts=t.c.attempts - (0 if count_attempt else 1)))
            return "pending" if res.rowcount else None

    def requeue_lost(self, reason: str, *, workers: Sequence[str] | None = None,
                     stale_after: timedelta | None = None, hashes: Sequence[str] | None = None,
                     count_attempt: bool = True, max_attempts: int | None = None) -> int:
        """Running runs held by one of ``workers`` (known dead or stopped) or whose heartbeat is
        older than ``stale_after`` go back to pending (failed past ``max_attempts``).

        Returns how many runs moved. Runs of a live worker that beats on time are never touched.
        """
        t, now = self.table, utcnow()
        who = []
        if workers:
            who.append(t.c.worker.in_(list(workers)))
        if stale_after is not None:
            before = (datetime.now(timezone.utc) - stale_after).isoformat(timespec="seconds")
            who.append(or_(t.c.heartbeat_at.is_(None), t.c.heartbeat_at < before))
        if not who:
            return 0
        cond = [t.c.status == "running", or_(*who)]
        if hashes is not None:
            cond.append(t.c.run_hash.in_(list(hashes)))
        moved = 0
        with self.engine.begin() as conn:
            if count_attempt and max_attempts is not None:
                moved += conn.execute(update(t).where(*cond, t.c.attempts >= max_attempts).values(
                    status="failed", finished_at=now, heartbeat_at=None,
                    failure_reason=f"{reason} (gave up after {max_attempts} attempts)"[:2000],
                )).rowcount
            moved += conn.execute(update(t).where(*cond).values(
                status="pending", worker=None, heartbeat_at=None, requeue_reason=reason[:2000],
                requeued_at=now, attempts=t.c.attempts - (0 if count_attempt else 1))).rowcount
        return moved

    def heartbeat_many(self, run_ids: Sequence[int], worker: str) -> int:
        """One beat for every run a driver holds on its tasks' behalf (Ray, Slurm)."""
        if not run_ids:
            return 0
        t = self.table
        with self.engine.begin() as conn:
            return conn.execute(update(t).where(t.c.id.in_(list(run_ids)),
                                                t.c.status == "running", t.c.worker == worker)
                                .values(heartbeat_at=utcnow())).rowcount

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(self.table).where(self.table.c.id == run_id)
                               ).mappings().first()
        return dict(row) if row else None

    def status_counts(self, hashes: Sequence[str]) -> dict[str, int]:
        """Counts per status among ``hashes`` (a plan's runs), every status present."""
        t = self.table
        out = {s: 0 for s in ("pending", "running", "done", "failed")}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(hashes)):
                rows = conn.execute(select(t.c.status, func.count()).where(
                    t.c.run_hash.in_(chunk)).group_by(t.c.status))
                for status, n in rows:
                    out[status] = out.get(status, 0) + n
        return out

    def finished_runs(self, hashes: Sequence[str], exclude_ids: set[int]) -> list[dict[str, Any]]:
        """Done and failed runs among ``hashes`` not yet in ``exclude_ids``, for progress."""
        t = self.table
        cols = [t.c[name] for name in PROGRESS_COLUMNS]
        out: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(list(hashes)):
                rows = conn.execute(select(*cols).where(and_(t.c.run_hash.in_(chunk),
                                                             t.c.status.in_(FINISHED)))
                                    .order_by(t.c.finished_at, t.c.id)).mappings()
                out += [dict(r) for r in rows if r["id"] not in exclude_ids]
        return out


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]
