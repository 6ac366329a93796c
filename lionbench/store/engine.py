"""Database URLs and engines: where ``--db`` points, and how SQLite is opened.

``--db`` takes a path (a SQLite file) or any SQLAlchemy URL; without it ``$LIONBENCH_DB``, else
``results/lionbench.db``. SQLite gets WAL and a 30 s busy timeout so that several processes can
share one file; ``sqlite://`` (in memory) gets one shared connection. Passwords never appear in
what lionbench prints (``hide_password``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from lionbench.errors import StoreError

DEFAULT_DB = "results/lionbench.db"
MEMORY_URLS = ("sqlite://", "sqlite:///:memory:")


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


def hide_password(url: str) -> str:
    """The URL as it may be printed: its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def create_db_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL and a 30 s busy timeout, ``sqlite://`` one shared connection."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if url in MEMORY_URLS:
            kwargs["poolclass"] = StaticPool
    shown = hide_password(url)
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
            if url not in MEMORY_URLS:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    return engine
