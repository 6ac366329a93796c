"""The driver shared by cluster executors (Ray, Slurm): it alone claims runs and writes results.

Tasks on other hosts never touch the database: SQLite must not be written from several hosts
(its locking does not hold over network filesystems), and one writer keeps PostgreSQL setups
equally simple. The driver claims runs, hands each to the cluster with its config, beats for the
runs in flight (they stay ``running`` while queued or training), stores the outcomes that come
back, and gives back a run whose task was lost for good (its node died past the cluster's own
retries, its job was preempted or timed out): pending again, attempt counted, so the next
round resubmits it and it resumes from its epoch checkpoint.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from lionbench.executors import EventFn, ExecOptions
from lionbench.executors.execute import config_of, store_outcome, worker_id
from lionbench.executors.interrupts import raise_if_interrupted
from lionbench.executors.progress import Reporter
from lionbench.store import Store

INTERRUPTED = "interrupted (Ctrl-C or SIGTERM); resumes from its last epoch checkpoint"


class RemoteDriver:
    """Subclasses say how to submit, collect and cancel; the loop here owns the database."""

    name = "remote"

    def __init__(self, store: Store, hashes: list[str], options: ExecOptions, emit: EventFn):
        self.store, self.hashes, self.options, self.emit = store, hashes, options, emit
        self.me = worker_id(self.name)
        self.inflight: dict[Any, dict[str, Any]] = {}  # task key -> claimed row

    # --- what a cluster provides --------------------------------------------------------
    def capacity(self) -> int:
        """How many runs to keep in flight."""
        return self.options.workers or len(self.hashes)

    def submit(self, rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        """Start one task per row; return task key -> row."""
        raise NotImplementedError

    def collect(self, timeout: float) -> list[tuple[Any, dict[str, Any] | BaseException]]:
        """Wait up to ``timeout`` s; the finished tasks with their outcome or lost-task error."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop every task in flight (Ctrl-C)."""

    def describe_loss(self, error: BaseException) -> str:
        return f"{self.name} task lost: {type(error).__name__}: {str(error)[:300]}"

    # --- the loop ----------------------------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        return self.options.work_payload()

    def run(self) -> None:
        store, o = self.store, self.options
        reporter = Reporter(store, self.hashes, self.emit)
        stale = timedelta(seconds=o.stale_after)
        last_beat = time.monotonic()
        try:
            while True:
                raise_if_interrupted()  # one a finaliser may have swallowed
                rows = []
                while len(self.inflight) + len(rows) < self.capacity():
                    row = store.claim_next(self.me, self.hashes)
                    if row is None:
                        break
                    rows.append(row)
                if rows:
                    self.inflight.update(self.submit(rows))
                if not self.inflight:
                    break
                for key, outcome in self.collect(o.poll_seconds):
                    row = self.inflight.pop(key)
                    if isinstance(outcome, BaseException):
                        store.requeue(row["id"], row["attempts"], self.describe_loss(outcome),
                                      max_attempts=o.max_attempts)
                    else:
                        store_outcome(store, row["id"], row["attempts"], outcome)
                if time.monotonic() - last_beat >= o.heartbeat_seconds:
                    store.heartbeat_many([r["id"] for r in self.inflight.values()], self.me)
                    last_beat = time.monotonic()
                store.requeue_lost(f"no heartbeat for {o.stale_after:.0f} s", stale_after=stale,
                                   hashes=self.hashes, max_attempts=o.max_attempts)
                reporter.poll()
        except KeyboardInterrupt:
            try:
                self.cancel()
            finally:
                store.requeue_lost(INTERRUPTED, workers=[self.me], hashes=self.hashes,
                                   count_attempt=False)
            raise
        finally:
            reporter.poll()

    @staticmethod
    def config(row: dict[str, Any]) -> dict[str, Any]:
        return config_of(row)
