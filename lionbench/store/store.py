"""The results database (SQLAlchemy 2.0 Core): one row per run, with its metrics and provenance.

SQLite by default (WAL, a busy timeout) and any SQLAlchemy URL otherwise. The schema carries a
version in the ``meta`` table; ``MIGRATIONS`` upgrades an older database in order, so every
release can open every earlier database. A run moves pending -> running -> done | failed; a
worker takes the next pending run with one atomic ``UPDATE ... RETURNING`` (never a read then a
write), so concurrent workers never claim the same run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from lionbench.config import PROTOCOL_VERSION, RunConfig, canonical_json
from lionbench.errors import StoreError
from lionbench.store_queue import RunQueue, claim_held, utcnow

SCHEMA_VERSION = 2
DEFAULT_DB = "results/lionbench.db"
STATUSES = ("pending", "running", "done", "failed")

metadata = MetaData()
meta_table = Table("meta", metadata, Column("key", String(64), primary_key=True),
                   Column("value", Text, nullable=False))
runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_hash", String(64), unique=True, nullable=False),
    Column("method", String(64), nullable=False, index=True),
    Column("backbone", String(128), nullable=False, index=True),
    Column("weights", String(512), nullable=False),
    Column("weights_id", String(128), nullable=False),
    Column("dataset", String(512), nullable=False, index=True),
    Column("seed", Integer, nullable=False),
    Column("config", Text, nullable=False),
    Column("protocol_version", Integer, nullable=False),
    Column("tags", String(256), nullable=False, default=""),
    Column("status", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", String(32), nullable=False),
    Column("started_at", String(32)),
    Column("finished_at", String(32)),
    Column("heartbeat_at", String(32)),
    Column("worker", String(128)),
    Column("failure_reason", Text),
    Column("requeue_reason", Text),  # v2: why the run last went back to pending
    Column("requeued_at", String(32)),  # v2
    Column("host", String(128)),
    Column("device", String(128)),
    Column("git_commit", String(64)),
    Column("git_dirty", Boolean),
    Column("versions", Text),
    Column("test_top1", Float), Column("test_top5", Float), Column("val_top1", Float),
    Column("best_epoch", Integer),
    Column("params_trainable", Integer), Column("params_trainable_no_head", Integer),
    Column("params_total", Integer),
    Column("train_seconds", Float), Column("images_per_second", Float),
    Column("peak_memory_mb", Float),
    Column("extra", Text),
)

METRIC_COLUMNS = ("test_top1", "test_top5", "val_top1", "best_epoch", "params_trainable",
                  "params_trainable_no_head", "params_total", "train_seconds",
                  "images_per_second", "peak_memory_mb")


def _v1(conn: Connection) -> None:
    metadata.create_all(conn)


def _v2(conn: Connection) -> None:
    """Why and when a run went back to pending (worker lost, Ctrl-C, preemption)."""
    have = {c["name"] for c in inspect(conn).get_columns("runs")}
    for name, sql_type in (("requeue_reason", "TEXT"), ("requeued_at", "VARCHAR(32)")):
        if name not in have:  # a fresh database got them from _v1's create_all already
            conn.execute(text(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}"))


# version -> the step that brings a database from version-1 to version
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2}


def resolve_url(url: str | None) -> str:
    """``--db`` value, else ``$LIONBENCH_DB``, else ``results/lionbench.db``; paths become URLs."""
    url = url or os.environ.get("LIONBENCH_DB") or DEFAULT_DB
    if url.startswith(("postgresql://", "postgres://")):  # psycopg 3, lionbench[postgres]'s driver
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        path = Path(url).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    return url


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def create_db_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL and a 30 s busy timeout, ``sqlite://`` one shared connection."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
    shown = _hide_password(url)
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StoreError(f"invalid database URL '{shown}': {exc}") from None
    except ModuleNotFoundError as exc:
        raise StoreError(f"database URL '{shown}' needs the driver '{exc.name}'; "
                         "install it (e.g. pip install 'lionbench[postgres]')") from None
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            if url not in ("sqlite://", "sqlite:///:memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    return engine


class Store(RunQueue):
    """Library access to the results database; the CLI is a thin layer over these methods."""

    table = runs

    def __init__(self, url: str | None = None, *, create: bool = True):
        self.url = resolve_url(url)
        self.engine = create_db_engine(self.url)
        try:
            with self.engine.begin() as conn:
                self._migrate(conn, create)
        except OperationalError as exc:
            reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
            raise StoreError(f"cannot open database '{self.safe_url}': {reason}") from None

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _migrate(self, conn: Connection, create: bool) -> None:
        has_meta = self.engine.dialect.has_table(conn, "meta")
        version = 0
        if has_meta:
            row = conn.execute(select(meta_table.c.value).where(
                meta_table.c.key == "schema_version")).first()
            version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"database '{self.safe_url}' has schema {version}, newer than this "
                             f"lionbench ({SCHEMA_VERSION}); upgrade lionbench")
        if version == SCHEMA_VERSION:
            return
        if not create and version == 0:
            raise StoreError(f"'{self.safe_url}' is not a lionbench database")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[step](conn)
        conn.execute(meta_table.delete().where(meta_table.c.key == "schema_version"))
        conn.execute(insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION)))

    # --- writing ----------------------------------------------------------------------------
    def add_pending(self, configs: Iterable[RunConfig], tags: str = "") -> list[str]:
        """Insert configs not yet stored as pending; return the hashes that were new.

        ``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL: two drivers adding the same matrix
        at once both succeed and each run exists once.
        """
        configs = list(configs)
        existing = self.get_statuses([c.run_hash for c in configs])
        new = [c for c in configs if c.run_hash not in existing]
        dialect = self.engine.dialect.name
        inserted = []
        with self.engine.begin() as conn:
            for c in new:
                values = dict(
                    run_hash=c.run_hash, method=c.method, backbone=c.backbone, weights=c.weights,
                    weights_id=c.weights_id, dataset=c.dataset, seed=c.seed,
                    config=canonical_json(c.to_dict()), protocol_version=PROTOCOL_VERSION,
                    tags=tags, status="pending", attempts=0, created_at=utcnow())
                if dialect in ("sqlite", "postgresql"):
                    module = sqlite_dialect if dialect == "sqlite" else postgresql_dialect
                    stmt = module.insert(runs).values(**values).on_conflict_do_nothing(
                        index_elements=["run_hash"])
                else:
                    stmt = insert(runs).values(**values)
                if conn.execute(stmt).rowcount:
                    inserted.append(c.run_hash)
        return inserted

    def reset_to_pending(self, hashes: Iterable[str], statuses: tuple[str, ...] = STATUSES
                         ) -> int:
        """Send runs back to pending (``--force``, ``--retry-failed``, stale running runs)."""
        hashes = list(hashes)
        if not hashes:
            return 0
        with self.engine.begin() as conn:
            res = conn.execute(update(runs).where(runs.c.run_hash.in_(hashes),
                                                  runs.c.status.in_(statuses))
                               .values(status="pending", worker=None, heartbeat_at=None))
            return res.rowcount

    def claim_next(self, worker: str, hashes: list[str] | None = None) -> dict[str, Any] | None:
        """Atomically take the oldest pending run (optionally among ``hashes``) for ``worker``."""
        pick = select(runs.c.id).where(runs.c.status == "pending")
        if hashes is not None:
            pick = pick.where(runs.c.run_hash.in_(hashes))
        pick = pick.order_by(runs.c.id).limit(1)
        if self.engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        now = utcnow()
        stmt = (update(runs).where(runs.c.id == pick.scalar_subquery(),
                                   runs.c.status == "pending")
                .values(status="running", worker=worker, started_at=now, heartbeat_at=now,
                        attempts=runs.c.attempts + 1)
                .returning(*runs.c))
        with self.engine.begin() as conn:
            row = conn.execute(stmt).mappings().first()
        return dict(row) if row else None

    def heartbeat(self, run_id: int, attempt: int | None = None) -> bool:
        """Record that the run's worker is alive; False once claim ``attempt`` lost the run."""
        with self.engine.begin() as conn:
            res = conn.execute(update(runs).where(*claim_held(runs, run_id, attempt))
                               .values(heartbeat_at=utcnow()))
        return res.rowcount == 1

    def mark_done(self, run_id: int, metrics: dict[str, Any], extra: dict[str, Any],
                  provenance: dict[str, Any], attempt: int | None = None) -> bool:
        """Store a result (one UPDATE: never a partial row). With ``attempt``, only while that
        claim still holds the run, so a run requeued meanwhile is not stored twice."""
        values = {k: _clean(metrics.get(k)) for k in METRIC_COLUMNS}
        with self.engine.begin() as conn:
            res = conn.execute(update(runs).where(*claim_held(runs, run_id, attempt)).values(
                status="done", finished_at=utcnow(), failure_reason=None,
                extra=json.dumps(extra, default=_json_default), **values, **provenance))
        return res.rowcount == 1

    def mark_failed(self, run_id: int, reason: str, provenance: dict[str, Any],
                    attempt: int | None = None) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(update(runs).where(*claim_held(runs, run_id, attempt)).values(
                status="failed", finished_at=utcnow(), failure_reason=reason[:2000],
                **provenance))
        return res.rowcount == 1

    # --- reading ----------------------------------------------------------------------------
    def get_statuses(self, hashes: list[str]) -> dict[str, str]:
        """run_hash -> status for the stored ones among ``hashes``."""
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(hashes), 500):
                chunk = hashes[start:start + 500]
                rows = conn.execute(select(runs.c.run_hash, runs.c.status)
                                    .where(runs.c.run_hash.in_(chunk)))
                out.update({h: s for h, s in rows})
        return out

    def count_by_status(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))
            counts = {s: 0 for s in STATUSES}
            counts.update({s: n for s, n in rows})
        return counts

    def list_runs(self, status: str | None = None) -> pd.DataFrame:
        """All runs (or those of one status) as a DataFrame; JSON columns decoded."""
        query = select(runs).order_by(runs.c.id)
        if status:
            query = query.where(runs.c.status == status)
        with self.engine.connect() as conn:
            df = pd.DataFrame(conn.execute(query).mappings().all(), columns=list(runs.c.keys()))
        for col in ("config", "extra", "versions"):
            df[col] = df[col].map(lambda v: json.loads(v) if isinstance(v, str) else {})
        return df

    def execute(self, sql: str) -> list[Any]:
        """Raw SQL, for tests and debugging; the rows of a query, [] otherwise."""
        with self.engine.begin() as conn:
            result = conn.execute(text(sql))
            return list(result) if result.returns_rows else []


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


__all__ = ["Store", "StoreError", "SQLAlchemyError", "SCHEMA_VERSION", "resolve_url"]
