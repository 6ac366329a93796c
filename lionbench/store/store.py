"""The results database (SQLAlchemy 2.0 Core): one row per run, with its metrics and provenance.

SQLite by default and any SQLAlchemy URL otherwise (lionbench.store.engine); the schema and its
migrations are in lionbench.store.schema. :class:`Store` opens the database, adds planned runs
and answers queries; every change of a run's status (claim, heartbeat, done, failed, back to
pending) is a method of its base :class:`~lionbench.store.queue.RunQueue`, and the choices of
``lionbench tune`` go through :class:`~lionbench.store.tunings.TuningStore`. The SQLAlchemy
engine stays inside this package: callers ask the store, never the engine.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import Connection, and_, func, insert, inspect, literal, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from lionbench.config import PROTOCOL_VERSION, RunConfig, canonical_json
from lionbench.errors import StoreError

from .engine import (
    BUSY_TIMEOUT_S,
    DEFAULT_DB,
    MEMORY_URLS,
    create_db_engine,
    describe_failure,
    first_line,
    hide_password,
    parse_url,
    prepare_sqlite_file,
    redact,
    resolve_url,
    sqlite_path,
)
from .health import has_warnings, warning_lines
from .queue import RunQueue
from .schema import (
    FINISHED,
    JSON_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    STATUSES,
    meta_table,
    runs,
)
from .tunings import TuningStore

if TYPE_CHECKING:
    import pandas as pd

PROGRESS_COLUMNS = ("id", "run_hash", "status", "method", "backbone", "dataset", "seed",
                    "test_top1", "val_top1", "params_trainable", "train_seconds",
                    "failure_reason", "attempts")
MIGRATION_LOCK = 7_242_001  # PostgreSQL advisory lock held while a database is created/upgraded


class Store(RunQueue, TuningStore):
    """Library access to the results database; the CLI is a thin layer over these methods.

    ``create``: make lionbench's tables in an empty database (else a StoreError).
    ``read_only``: open without creating, migrating or changing anything (``status``,
    ``table``, ``export``, ``plot``): the database must exist; an older schema is read as it
    is (columns it lacks read as empty), a newer one is refused.
    """

    table = runs

    def __init__(self, url: str | None = None, *, create: bool = True, read_only: bool = False):
        raw = url or os.environ.get("LIONBENCH_DB") or DEFAULT_DB
        self.url = resolve_url(url)
        self.read_only = read_only
        self.engine = create_db_engine(self.url, read_only=read_only,
                                       create_folder="://" not in raw)
        self.schema_version = SCHEMA_VERSION
        self.columns: set[str] = set(runs.c.keys())
        try:
            self._open(create and not read_only)
        except StoreError:
            self.engine.dispose()
            raise
        except SQLAlchemyError as exc:  # what the engine's hook did not already make one line
            self.engine.dispose()
            reason = redact(first_line(exc), self.url)
            raise StoreError(f"cannot open database '{self.safe_url}': {reason}") from None

    @property
    def safe_url(self) -> str:
        """The URL as it may be printed (password and secret parameters hidden)."""
        return hide_password(self.url)

    @property
    def sqlite_file(self) -> Path | None:
        """The database file of a SQLite store on disk; None in memory or on a server."""
        path = sqlite_path(self.url)
        return path.resolve() if path is not None else None

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def in_memory(self) -> bool:
        return self.url in MEMORY_URLS

    def close(self) -> None:
        """Drop pooled connections (a forked process must not share its parent's)."""
        self.engine.dispose()

    # --- opening ----------------------------------------------------------------------------
    def _open(self, create: bool) -> None:
        """Check the schema; create or upgrade it (writing stores) under a lock, so that any
        number of processes opening one new database at once all succeed."""
        with self.engine.connect() as conn:
            version = self._version(conn)
            if version >= 0 and not self.read_only:
                self._use_wal(conn)  # only on a database that is (or will be) lionbench's
        if version == SCHEMA_VERSION:
            return
        self._refuse(version, create)
        if self.read_only:
            with self.engine.connect() as conn:
                self.columns = {c["name"] for c in inspect(conn).get_columns("runs")}
            self.schema_version = version
            return
        with self.engine.connect() as conn:
            self._lock(conn)  # a second process waits here, then finds the work done
            version = self._version(conn)
            self._refuse(version, create)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](conn)
            conn.execute(meta_table.delete().where(meta_table.c.key == "schema_version"))
            conn.execute(insert(meta_table).values(key="schema_version",
                                                   value=str(SCHEMA_VERSION)))
            conn.commit()

    def _use_wal(self, conn: Connection) -> None:
        """SQLite on disk: WAL (readers never block the writer), a setting the file keeps.

        Switching needs an exclusive lock, and two processes switching one new file at once
        can deadlock, which SQLite reports at once as "locked" instead of waiting: retry
        until the mode reads ``wal`` (the other process may have switched it meanwhile)."""
        if not self.is_sqlite or self.in_memory:
            return
        raw = conn.connection.driver_connection  # the sqlite3 connection: its own errors
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                if str(raw.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                    return
                raw.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise StoreError(describe_failure(self.safe_url, self.url, exc)) from None
                if time.monotonic() > deadline:
                    raise StoreError(describe_failure(self.safe_url, self.url, exc)) from None
                time.sleep(random.uniform(0.01, 0.1))

    def _lock(self, conn: Connection) -> None:
        """Take the database's write lock for the rest of ``conn``'s transaction."""
        if self.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits up to the busy timeout
        elif self.engine.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(literal(MIGRATION_LOCK))))

    def _version(self, conn: Connection) -> int:
        """The schema version in ``meta`` (0: no lionbench tables); -1 for a foreign database."""
        names = set(inspect(conn).get_table_names())
        if "meta" not in names:
            lionbench_tables = {"runs"} & names
            others = names - {"runs"}
            if lionbench_tables or (others and self.engine.dialect.name == "sqlite"):
                return -1
            return 0
        if not {"key", "value"} <= {c["name"] for c in inspect(conn).get_columns("meta")}:
            return -1  # a `meta` table of some other program
        value = conn.execute(select(meta_table.c.value).where(
            meta_table.c.key == "schema_version")).scalar()
        try:
            return int(value) if value is not None else -1
        except ValueError:
            return -1

    def _refuse(self, version: int, create: bool) -> None:
        """A StoreError for a database this store must not open."""
        if version > SCHEMA_VERSION:
            raise StoreError(f"database '{self.safe_url}' has schema {version}, newer than this "
                             f"lionbench ({SCHEMA_VERSION}); upgrade lionbench")
        if version < 0:
            raise StoreError(f"'{self.safe_url}' is not a lionbench database (it holds other "
                             "tables); give a lionbench database or a new path")
        if version == 0 and (self.read_only or not create):
            raise StoreError(f"'{self.safe_url}' is not a lionbench database (no lionbench "
                             "tables); `lionbench run` creates one at a new path")

    # --- adding ----------------------------------------------------------------------------
    def add_pending(self, configs: Iterable[RunConfig], tags: str = "",
                    data_ids: dict[str, str | None] | None = None) -> list[str]:
        """Insert configs not yet stored as pending; return the hashes that were new.

        ``data_ids`` (dataset name -> digest, lionbench.data.digest) records what data each new
        run was planned on, so a worker (here, or wherever an export takes the run) can check
        its data before training. ``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL: two
        drivers adding the same matrix at once both succeed and each run exists once.
        """
        configs, data_ids = list(configs), data_ids or {}
        existing = self.get_statuses([c.run_hash for c in configs])
        new = [c for c in configs if c.run_hash not in existing]
        dialect = self.engine.dialect.name
        inserted = []
        with self.engine.begin() as conn:
            for c in new:
                values = dict(
                    run_hash=c.run_hash, cell_hash=c.cell_hash, method=c.method,
                    backbone=c.backbone, weights=c.weights, weights_id=c.weights_id,
                    dataset=c.dataset, seed=c.seed,
                    config=canonical_json(c.to_dict()), protocol_version=PROTOCOL_VERSION,
                    tags=tags, status="pending", attempts=0, interrupts=0,
                    created_at=self.now(), data_id=data_ids.get(c.dataset))
                if dialect in ("sqlite", "postgresql"):
                    module = _dialect_module(dialect)
                    stmt = module.insert(runs).values(**values).on_conflict_do_nothing(
                        index_elements=["run_hash"])
                else:
                    stmt = insert(runs).values(**values)
                if conn.execute(stmt).rowcount:
                    inserted.append(c.run_hash)
        return inserted

    def localize(self, configs: Iterable[RunConfig], data_ids: dict[str, str | None] | None = None
                 ) -> int:
        """Make stored runs that are about to be trained here (pending or failed, same hash as
        ``configs``) read this machine's weights path, and with ``data_ids`` this machine's data
        digest; return how many rows changed.

        The weights path is not part of a run's identity (its digest is), so a run planned or
        imported from elsewhere may name a path that holds other bytes here, or none: the plan
        being run names the file that has the identity's digest on this machine. ``data_ids``
        is given by ``run --force`` only: the user asks to train these runs on the data here.
        One query per 500 runs finds the rows to change; only those are written.
        """
        t, by_hash = runs, {c.run_hash: c for c in configs}
        unfinished = t.c.status.in_(("pending", "failed"))
        changed = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(list(by_hash)):
                rows = conn.execute(select(t.c.run_hash, t.c.weights).where(
                    t.c.run_hash.in_(chunk), unfinished))
                for run_hash, weights in rows.all():
                    c = by_hash[run_hash]
                    if weights != c.weights:
                        changed += conn.execute(update(t).where(
                            t.c.run_hash == run_hash, unfinished).values(
                            weights=c.weights, config=canonical_json(c.to_dict()))).rowcount
            for dataset, data_id in (data_ids or {}).items():
                if data_id is None:
                    continue
                hashes = [h for h, c in by_hash.items() if c.dataset == dataset]
                for chunk in _chunks(hashes):
                    changed += conn.execute(update(t).where(
                        t.c.run_hash.in_(chunk), unfinished, t.c.dataset == dataset,
                        or_(t.c.data_id.is_(None), t.c.data_id != data_id)).values(
                        data_id=data_id)).rowcount
        return changed

    # --- reading ----------------------------------------------------------------------------
    def get_statuses(self, hashes: list[str]) -> dict[str, str]:
        """run_hash -> status for the stored ones among ``hashes``."""
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(hashes):
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

    def status_counts(self, hashes: Sequence[str]) -> dict[str, int]:
        """Counts per status among ``hashes`` (a plan's runs), every status present."""
        out = {s: 0 for s in STATUSES}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(hashes)):
                rows = conn.execute(select(runs.c.status, func.count()).where(
                    runs.c.run_hash.in_(chunk)).group_by(runs.c.status))
                for status, n in rows:
                    out[status] = out.get(status, 0) + n
        return out

    def fetch_runs(self, status: str | None = None, columns: Sequence[str] | None = None
                   ) -> list[dict[str, Any]]:
        """Runs as plain dicts (JSON columns as text), in insertion order; all columns or
        ``columns``; all runs or those of ``status``."""
        names = list(columns) if columns is not None else list(runs.c.keys())
        return [dict(zip(names, row, strict=True)) for row in self._select(status, names)]

    def _select(self, status: str | None, names: list[str]) -> list[tuple[Any, ...]]:
        """Rows of ``names``; a column an older (read-only) database lacks reads as None."""
        query = select(*(runs.c[n] if n in self.columns else literal(None).label(n)
                         for n in names)).order_by(runs.c.id)
        if status:
            query = query.where(runs.c.status == status)
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]

    def list_runs(self, status: str | None = None, columns: Sequence[str] | None = None,
                  decode: bool = True) -> pd.DataFrame:
        """:meth:`fetch_runs` as a DataFrame, JSON columns decoded unless ``decode=False``
        (a table of 10,000 runs need not decode each run's history)."""
        import pandas as pd  # only here: `status` and `export` never need it (start-up time)

        names = list(columns) if columns is not None else list(runs.c.keys())
        df = pd.DataFrame(self._select(status, names), columns=names)
        for col in JSON_COLUMNS if decode else ():
            if col in df.columns:
                df[col] = df[col].map(lambda v: json.loads(v) if isinstance(v, str) else {})
        return df

    def runs_with_warnings(self, hashes: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Done runs stored with health warnings (``warnings`` not empty; store/health.py), as
        dicts of their identity and ``warnings`` (a list of lines), optionally among
        ``hashes``."""
        names = ("run_hash", "method", "backbone", "dataset", "seed", "warnings")
        query = (select(*(runs.c[n] for n in names))
                 .where(runs.c.status == "done", runs.c.warnings.is_not(None),
                        runs.c.warnings != "[]").order_by(runs.c.id))
        with self.engine.connect() as conn:
            rows = [dict(zip(names, row, strict=True)) for row in conn.execute(query)]
        wanted = set(hashes) if hashes is not None else None
        return [{**r, "warnings": warning_lines(r["warnings"])} for r in rows
                if (wanted is None or r["run_hash"] in wanted) and has_warnings(r["warnings"])]

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        return dict(row) if row else None

    def finished_runs(self, hashes: Sequence[str], exclude_ids: set[int]) -> list[dict[str, Any]]:
        """Done and failed runs among ``hashes`` not yet in ``exclude_ids``, for progress."""
        cols = [runs.c[name] for name in PROGRESS_COLUMNS]
        out: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(list(hashes)):
                rows = conn.execute(select(*cols).where(and_(runs.c.run_hash.in_(chunk),
                                                             runs.c.status.in_(FINISHED)))
                                    .order_by(runs.c.finished_at, runs.c.id)).mappings()
                out += [dict(r) for r in rows if r["id"] not in exclude_ids]
        return out

    def execute(self, sql: str) -> list[Any]:
        """Raw SQL, for tests and debugging; the rows of a query, [] otherwise."""
        with self.engine.begin() as conn:
            result = conn.execute(text(sql))
            return list(result) if result.returns_rows else []


def _new_sqlite(url: str) -> bool:
    """An in-memory database, or a SQLite file not made yet: missing, empty (SQLite reads a
    zero-byte file as an empty database), or a database without a single table (another
    process sharing the matrix is creating lionbench's tables in it right now)."""
    if url in MEMORY_URLS:
        return True
    path = sqlite_path(url)
    if path is None:
        return False
    if not path.exists():
        return True
    if not path.is_file():
        return False
    if path.stat().st_size == 0:
        return True
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_S)
        try:
            return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        finally:
            conn.close()
    except sqlite3.DatabaseError:  # garbage: the store's own open says so, in one line
        return False


def stored_statuses(db: str | None, hashes: list[str]) -> dict[str, str]:
    """run_hash -> status of the stored ones among ``hashes``, read without creating or
    changing anything (a dry run, a plan not yet run): {} for a database not made yet."""
    if _new_sqlite(resolve_url(db)):
        return {}
    store = Store(db, read_only=True)
    try:
        return store.get_statuses(hashes)
    finally:
        store.close()


def check_database(db: str | None, *, write: bool = True) -> None:
    """Refuse, creating and changing nothing, a ``--db`` this command cannot use: a malformed
    URL, a missing driver, an unreachable server, a file that is garbage or another program's
    database, a newer schema; with ``write``, also a read-only file or folder, or a folder that
    cannot be made. What every command that trains checks before it imports torch."""
    raw = db or os.environ.get("LIONBENCH_DB") or DEFAULT_DB
    url = resolve_url(db)
    shown = hide_password(url)
    parse_url(url)
    path = sqlite_path(url)
    if path is not None and write:
        prepare_sqlite_file(path, shown, create_folder="://" not in raw, make=False)
    if _new_sqlite(url):
        return
    Store(db, read_only=True).close()  # opens it as `table` would: garbage, foreign, refused


def _dialect_module(name: str) -> Any:
    """``sqlalchemy.dialects.<name>``, for its ``insert(...).on_conflict_do_nothing``; imported
    when first written to, since the PostgreSQL dialect alone costs 40 ms of start-up."""
    return importlib.import_module(f"sqlalchemy.dialects.{name}")


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]
