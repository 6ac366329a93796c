"""The run queue: every change of a run's status, each one conditional ``UPDATE``.

A run moves pending -> running -> done | failed, and back to pending when its worker is lost,
stopped or preempted. A worker takes the next pending run with one atomic ``UPDATE ...
RETURNING`` (never a read then a write), so concurrent workers never claim the same run. Every
later change is conditional on ``status='running'`` and, for a single run, on the claim's
``attempts`` number, which identifies the claim: a worker that lost its claim can neither
requeue nor overwrite the run another worker now holds.

Two rules keep that identification sound:

- ``attempts`` only ever grows (one per claim): an interrupt counts in ``interrupts`` instead
  of lowering it, so no two claims of one run ever hold the same number (a give-back replayed
  with an old number matches nothing). ``attempts - interrupts`` is what ``--max-attempts``
  limits.
- Times come from the database's clock (``db_now``), not each host's: heartbeats written by one
  host and judged stale by another compare like with like, whatever the hosts' clocks say.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Table, func, literal, or_, select, update
from sqlalchemy.engine import Engine

from .health import warnings_json
from .schema import METRIC_COLUMNS, STATUSES

TIME_FORMAT_SQLITE = "%Y-%m-%dT%H:%M:%S+00:00"
TIME_FORMAT_POSTGRES = 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'


def utcnow() -> str:
    """UTC, ISO 8601 to the second: equal-format strings compare in time order (stale checks).
    This host's clock: only for databases whose clock lionbench cannot read (see ``db_now``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def db_now(dialect: str, minus: timedelta | None = None) -> ColumnElement[Any]:
    """The database's clock (less ``minus``) as SQL, formatted like :func:`utcnow`: every
    process stamps and compares times on one clock. Other dialects fall back to this host's."""
    seconds = minus.total_seconds() if minus is not None else 0.0
    if dialect == "sqlite":
        args = [literal(TIME_FORMAT_SQLITE), literal("now")]
        if seconds:
            args.append(literal(f"-{seconds:.3f} seconds"))
        return func.strftime(*args)
    if dialect == "postgresql":
        now = func.now()
        if seconds:
            now = now - func.make_interval(0, 0, 0, 0, 0, 0, literal(seconds))
        return func.to_char(func.timezone("UTC", now), literal(TIME_FORMAT_POSTGRES))
    moment = datetime.now(timezone.utc) - (minus or timedelta())
    return literal(moment.isoformat(timespec="seconds"))


def claim_held(table: Table, run_id: int, attempt: int | None) -> list[Any]:
    """The WHERE clause of a write that must only happen while claim ``attempt`` holds the run."""
    cond = [table.c.id == run_id]
    if attempt is not None:
        cond += [table.c.status == "running", table.c.attempts == attempt]
    return cond


class RunQueue:
    """Base of :class:`~lionbench.store.Store`: claiming, beating, finishing, requeueing."""

    engine: Engine
    table: Table

    def now(self, minus: timedelta | None = None) -> ColumnElement[Any]:
        """The database's clock as SQL (see :func:`db_now`)."""
        return db_now(self.engine.dialect.name, minus)

    def claim_next(self, worker: str, hashes: list[str] | None = None) -> dict[str, Any] | None:
        """Atomically take the oldest pending run (optionally among ``hashes``) for ``worker``."""
        t = self.table
        pick = select(t.c.id).where(t.c.status == "pending")
        if hashes is not None:
            pick = pick.where(t.c.run_hash.in_(hashes))
        pick = pick.order_by(t.c.id).limit(1)
        if self.engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        now = self.now()
        stmt = (update(t).where(t.c.id == pick.scalar_subquery(), t.c.status == "pending")
                .values(status="running", worker=worker, started_at=now, heartbeat_at=now,
                        attempts=t.c.attempts + 1)
                .returning(*t.c))
        with self.engine.begin() as conn:
            row = conn.execute(stmt).mappings().first()
        return dict(row) if row else None

    def heartbeat(self, run_id: int, attempt: int | None = None) -> bool:
        """Record that the run's worker is alive; False once claim ``attempt`` lost the run."""
        with self.engine.begin() as conn:
            res = conn.execute(update(self.table).where(*claim_held(self.table, run_id, attempt))
                               .values(heartbeat_at=self.now()))
        return res.rowcount == 1

    def heartbeat_many(self, run_ids: Sequence[int], worker: str) -> int:
        """One beat for every run a driver holds on its tasks' behalf (Ray, Slurm)."""
        if not run_ids:
            return 0
        t = self.table
        with self.engine.begin() as conn:
            return conn.execute(update(t).where(t.c.id.in_(list(run_ids)),
                                                t.c.status == "running", t.c.worker == worker)
                                .values(heartbeat_at=self.now())).rowcount

    def mark_done(self, run_id: int, metrics: dict[str, Any], extra: dict[str, Any],
                  provenance: dict[str, Any], attempt: int | None = None) -> bool:
        """Store a result (one UPDATE: never a partial row), with the health warnings derived
        from ``extra`` (store/health.py). With ``attempt``, only while that claim still holds
        the run, so a run requeued meanwhile is not stored twice. The result was made here:
        ``imported_result`` becomes false even for a run that came by import."""
        values = {k: _clean(metrics.get(k)) for k in METRIC_COLUMNS}
        with self.engine.begin() as conn:
            res = conn.execute(update(self.table).where(*claim_held(self.table, run_id, attempt))
                               .values(status="done", finished_at=self.now(),
                                       failure_reason=None,
                                       extra=json.dumps(extra, default=_json_default),
                                       imported_result=False, warnings=warnings_json(extra),
                                       **values, **provenance))
        return res.rowcount == 1

    def mark_failed(self, run_id: int, reason: str, provenance: dict[str, Any],
                    attempt: int | None = None) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(update(self.table).where(*claim_held(self.table, run_id, attempt))
                               .values(status="failed", finished_at=self.now(),
                                       failure_reason=reason[:2000], imported_result=False,
                                       **provenance))
        return res.rowcount == 1

    def reset_to_pending(self, hashes: Iterable[str], statuses: tuple[str, ...] = STATUSES
                         ) -> int:
        """Send runs back to pending (``--force``, ``--retry-failed``, stale running runs)."""
        hashes, t = list(hashes), self.table
        if not hashes:
            return 0
        with self.engine.begin() as conn:
            res = conn.execute(update(t).where(t.c.run_hash.in_(hashes), t.c.status.in_(statuses))
                               .values(status="pending", worker=None, heartbeat_at=None))
            return res.rowcount

    def requeue(self, run_id: int, attempt: int, reason: str, *, count_attempt: bool = True,
                max_attempts: int | None = None) -> str | None:
        """Give claim ``attempt`` of a run back: ``pending`` again, or ``failed`` once
        ``max_attempts`` claims were lost (a run that kills its worker must not loop forever).

        ``count_attempt=False`` (Ctrl-C, the user's doing) counts the claim as an interrupt,
        which ``max_attempts`` does not charge; ``attempts`` itself is never lowered.
        Returns the new status, or None when the claim no longer held the run.
        """
        t = self.table
        held = claim_held(t, run_id, attempt)
        with self.engine.begin() as conn:
            if count_attempt and max_attempts is not None:
                res = conn.execute(update(t).where(
                    *held, t.c.attempts - t.c.interrupts >= max_attempts).values(
                    status="failed", finished_at=self.now(), heartbeat_at=None,
                    failure_reason=f"{reason} (gave up after {max_attempts} attempts)"[:2000]))
                if res.rowcount:
                    return "failed"
            res = conn.execute(update(t).where(*held).values(**self._back_to_pending(
                reason, count_attempt)))
            return "pending" if res.rowcount else None

    def requeue_lost(self, reason: str, *, workers: Sequence[str] | None = None,
                     stale_after: timedelta | None = None, hashes: Sequence[str] | None = None,
                     count_attempt: bool = True, max_attempts: int | None = None) -> int:
        """Running runs held by one of ``workers`` (known dead or stopped) or whose heartbeat is
        older than ``stale_after`` by the database's clock go back to pending (failed past
        ``max_attempts``).

        Returns how many runs moved. Runs of a live worker that beats on time are never touched.
        """
        t = self.table
        who = []
        if workers:
            who.append(t.c.worker.in_(list(workers)))
        if stale_after is not None:
            who.append(or_(t.c.heartbeat_at.is_(None), t.c.heartbeat_at < self.now(stale_after)))
        if not who:
            return 0
        cond = [t.c.status == "running", or_(*who)]
        if hashes is not None:
            cond.append(t.c.run_hash.in_(list(hashes)))
        moved = 0
        with self.engine.begin() as conn:
            if count_attempt and max_attempts is not None:
                moved += conn.execute(update(t).where(
                    *cond, t.c.attempts - t.c.interrupts >= max_attempts).values(
                    status="failed", finished_at=self.now(), heartbeat_at=None,
                    failure_reason=f"{reason} (gave up after {max_attempts} attempts)"[:2000],
                )).rowcount
            moved += conn.execute(update(t).where(*cond).values(
                **self._back_to_pending(reason, count_attempt))).rowcount
        return moved

    def _back_to_pending(self, reason: str, count_attempt: bool) -> dict[str, Any]:
        """The values of a give-back; an uncounted one (interrupt) adds to ``interrupts``."""
        values: dict[str, Any] = dict(status="pending", worker=None, heartbeat_at=None,
                                      requeue_reason=reason[:2000], requeued_at=self.now())
        if not count_attempt:
            values["interrupts"] = self.table.c.interrupts + 1
        return values


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
