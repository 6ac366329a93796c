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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, func, insert, select, text
from sqlalchemy.exc import OperationalError

from lionbench.config import PROTOCOL_VERSION, RunConfig, canonical_json
from lionbench.errors import StoreError

from .engine import MEMORY_URLS, create_db_engine, resolve_url
from .queue import RunQueue, utcnow
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


class Store(RunQueue, TuningStore):
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
        """The URL as it may be printed (password hidden)."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def sqlite_file(self) -> Path | None:
        """The database file of a SQLite store on disk; None in memory or on a server."""
        if self.engine.dialect.name != "sqlite" or self.url in MEMORY_URLS:
            return None
        database = self.engine.url.database
        return Path(database).resolve() if database else None

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def in_memory(self) -> bool:
        return self.url in MEMORY_URLS

    def close(self) -> None:
        """Drop pooled connections (a forked process must not share its parent's)."""
        self.engine.dispose()

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

    # --- adding ----------------------------------------------------------------------------
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
                    run_hash=c.run_hash, cell_hash=c.cell_hash, method=c.method,
                    backbone=c.backbone, weights=c.weights, weights_id=c.weights_id,
                    dataset=c.dataset, seed=c.seed,
                    config=canonical_json(c.to_dict()), protocol_version=PROTOCOL_VERSION,
                    tags=tags, status="pending", attempts=0, created_at=utcnow())
                if dialect in ("sqlite", "postgresql"):
                    module = _dialect_module(dialect)
                    stmt = module.insert(runs).values(**values).on_conflict_do_nothing(
                        index_elements=["run_hash"])
                else:
                    stmt = insert(runs).values(**values)
                if conn.execute(stmt).rowcount:
                    inserted.append(c.run_hash)
        return inserted

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
        query = select(*(runs.c[n] for n in names)).order_by(runs.c.id)
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


def _dialect_module(name: str) -> Any:
    """``sqlalchemy.dialects.<name>``, for its ``insert(...).on_conflict_do_nothing``; imported
    when first written to, since the PostgreSQL dialect alone costs 40 ms of start-up."""
    return importlib.import_module(f"sqlalchemy.dialects.{name}")


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]
