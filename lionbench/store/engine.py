"""Database URLs and engines: where ``--db`` points, and how it is opened.

``--db`` takes a path (a SQLite file) or any SQLAlchemy URL; without it ``$LIONBENCH_DB``, else
``results/lionbench.db``. SQLite gets a 30 s busy timeout and (set by the store, once it knows
the file is its own: the journal mode is written into the file) WAL, so that several processes
can share one file; ``sqlite://`` (in memory) gets one shared connection.

Why everything about opening lives here: every way a database can fail to open (a garbage file,
a foreign SQLite file, a malformed URL or port, a missing or read-only folder, a server that
refuses) must reach the user as one :class:`~lionbench.errors.StoreError` line, never a
traceback, and never with a password in it. ``create_db_engine`` installs one ``handle_error``
hook that turns the driver's operational errors (locked, read-only, not a database, connection
refused), wherever they happen later, into that same one line.

Read-only engines (``status``, ``table``, ``export``, ``plot``) never create or change a file:
SQLite is opened ``mode=ro``, or ``immutable=1`` when no writer has the file open (no ``-wal``
file): a WAL database then reads even in a read-only folder, where ``mode=ro`` alone would have
to create its ``-shm`` and ``-wal`` files.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from lionbench.errors import LionbenchError, StoreError
from lionbench.files import check_folder_writable
from lionbench.text import printable

DEFAULT_DB = "results/lionbench.db"
MEMORY_URLS = ("sqlite://", "sqlite:///:memory:")
SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token", "key")  # URL query parameters
BUSY_TIMEOUT_S = 30


def resolve_url(url: str | None) -> str:
    """``--db`` value, else ``$LIONBENCH_DB``, else ``results/lionbench.db``; paths become URLs.

    Nothing is created here: a writing store makes a missing folder itself
    (:func:`prepare_sqlite_file`), a read-only one never does.
    """
    url = url or os.environ.get("LIONBENCH_DB") or DEFAULT_DB
    if url.startswith(("postgresql://", "postgres://")):  # psycopg 3, lionbench[postgres]'s driver
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser()}"
    return url


def parse_url(url: str) -> URL:
    """The URL, or a StoreError naming it (password hidden) and the forms that are valid."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise StoreError(f"invalid database URL '{hide_password(url)}' ({first_line(exc)}); "
                         "give a file path or a URL like sqlite:///runs.db or "
                         "postgresql://user@host:5432/db") from None


def _parsed(url: str) -> URL | None:
    """``make_url(url)`` with the user part ending at the *last* ``@`` before the host: an
    unencoded ``@`` in a password (``u:pa@ss@host``) belongs to the password (as in
    ``urllib.parse``), where ``make_url`` alone would end it at the first and show the rest of
    the password as the host. None when the URL does not parse."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.host and "@" in parsed.host:
        more, _, host = parsed.host.rpartition("@")
        password = f"{parsed.password or ''}@{more}" if parsed.password is not None else None
        username = parsed.username if password is not None else f"{parsed.username}@{more}"
        parsed = parsed.set(username=username, password=password, host=host)
    return parsed


def secrets_of(url: str) -> list[str]:
    """The password (whole, and the pieces of it a driver may show as a host name when an
    unencoded ``@`` splits it) and the secret-looking query values of ``url``, longest first
    (to scrub from messages)."""
    parsed = _parsed(url)
    if parsed is None:
        _, sep, rest = url.partition("://")
        userinfo = rest.rpartition("@")[0] if sep else ""
        return [userinfo.partition(":")[2]] if ":" in userinfo else []
    found = [parsed.password] if parsed.password else []
    if parsed.password and "@" in parsed.password:  # 4+ characters: never scrub "pa" from text
        found += [p for p in parsed.password.split("@") if len(p) >= 4]
    for key, value in parsed.query.items():
        if any(s in key.lower() for s in SECRET_KEYS):
            found += [value] if isinstance(value, str) else list(value)
    return sorted({str(s) for s in found if s}, key=len, reverse=True)


def hide_password(url: str) -> str:
    """The URL as it may be printed: its password and secret query values replaced by ``***``
    (found by parsing the URL, :func:`_parsed`), control characters escaped. A URL that does
    not parse shows only its scheme and what follows its last ``@``."""
    parsed = _parsed(url)
    if parsed is None:
        scheme, sep, rest = url.partition("://")
        return printable(f"{scheme}://***@{rest.rpartition('@')[2]}" if sep and "@" in rest
                         else url)
    secret_keys = [k for k in parsed.query if any(s in k.lower() for s in SECRET_KEYS)]
    if not parsed.password and not secret_keys:
        return printable(url)  # nothing to hide: as the user gave it
    query = {k: ("***" if k in secret_keys else v) for k, v in parsed.query.items()}
    shown = parsed.set(query=query).render_as_string(hide_password=True)
    return printable(shown.replace("%2A%2A%2A", "***"))


def redact(text: str, url: str) -> str:
    """``text`` (a driver's message) with every secret of ``url`` replaced by ``***``."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return printable(text)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (drivers append hints and SQL on later lines)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL on disk; None for other databases and in-memory SQLite."""
    if not url.startswith("sqlite") or url in MEMORY_URLS:
        return None
    database = parse_url(url).database
    return Path(database) if database and database != ":memory:" else None


def prepare_sqlite_file(path: Path, shown: str, create_folder: bool, make: bool = True) -> None:
    """Before a writing store opens ``path``: its folder exists (made if ``create_folder``: a
    plain path such as the default ``results/lionbench.db``) and the file and folder are
    writable (WAL writes ``-wal`` and ``-shm`` files beside the database). ``make=False``
    checks the same without making anything (a missing folder must then be one that can be
    made)."""
    folder = path.parent
    if create_folder and not make and not folder.is_dir():
        try:
            check_folder_writable(folder, "database folder")
        except LionbenchError as exc:
            raise StoreError(f"cannot create the folder of database '{shown}' ({exc}); give a "
                             "path in a writable folder") from None
        return
    if create_folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of database '{shown}' "
                             f"({exc.strerror or exc}); give a path in a writable folder"
                             ) from None
    elif not folder.is_dir():
        raise StoreError(f"the folder of database '{shown}' does not exist; create it, or give "
                         "a plain path (lionbench creates the folders of a plain path)")
    if path.is_dir():
        raise StoreError(f"database '{shown}' is a folder; give a file path like {path}/runs.db")
    if path.exists() and not path.is_file():
        raise StoreError(f"database '{shown}' is not a regular file (a device, FIFO or socket); "
                         "give a database file path")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"database file '{shown}' is read-only; this command stores runs: "
                         "make it writable or give another --db (status, table, export and "
                         "plot read it as it is)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"the folder of database '{shown}' is read-only; this command stores "
                         "runs (SQLite writes its -wal and -shm files beside the database): "
                         "give a writable --db (status, table, export and plot read it as is)")


def read_only_sqlite_url(path: Path, shown: str) -> str:
    """A ``mode=ro`` URL for ``path`` (``immutable=1`` when no writer has it open)."""
    if not path.is_file():
        hint = "" if path.parent.is_dir() else " (its folder does not exist either)"
        raise StoreError(f"no database at '{shown}'{hint}; `lionbench run` creates one, or give "
                         "an existing database with --db or $LIONBENCH_DB")
    if not os.access(path, os.R_OK):
        raise StoreError(f"database file '{shown}' is not readable; check its permissions")
    params = "mode=ro"
    if not Path(f"{path}-wal").exists():  # no live writer: nothing newer than the file itself
        params += "&immutable=1"
    return f"sqlite:///file:{quote(str(path.resolve()))}?{params}&uri=true"


def create_db_engine(url: str, *, read_only: bool = False, create_folder: bool = False
                     ) -> Engine:
    """An engine; SQLite gets a 30 s busy timeout, ``sqlite://`` one shared connection.

    ``read_only``: SQLite opened with ``mode=ro`` (no file is created or changed; with
    ``immutable=1``, chosen when no writer had the file open, meant for one-shot reads such as
    ``status``), PostgreSQL sessions set read-only. ``create_folder``: a writing SQLite store
    makes its missing folder. Driver errors on any later use become one-line StoreErrors.
    """
    shown = hide_password(url)
    parse_url(url)  # malformed URLs and ports fail here, as one line
    kwargs: dict[str, Any] = {}
    target = url
    sqlite = url.startswith("sqlite")
    if sqlite:
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
        path = sqlite_path(url)
        if url in MEMORY_URLS:
            kwargs["poolclass"] = StaticPool
        elif path is not None and read_only:
            target = read_only_sqlite_url(path, shown)
        elif path is not None:
            prepare_sqlite_file(path, shown, create_folder)
    try:
        engine = create_engine(target, **kwargs)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise StoreError(f"invalid database URL '{shown}' ({redact(first_line(exc), url)}); "
                         "give a file path or a URL like sqlite:///runs.db or "
                         "postgresql://user@host:5432/db") from None
    except ModuleNotFoundError as exc:
        raise StoreError(f"database URL '{shown}' needs the driver '{exc.name}'; "
                         f"{install_hint(url, exc.name)}") from None
    _install_hooks(engine, url, shown, read_only)
    return engine


def install_hint(url: str, module: str | None) -> str:
    """How to get a missing database driver: lionbench's extra for PostgreSQL, else the
    driver's own package (``pip install pymysql`` for ``mysql+pymysql://``)."""
    if url.startswith("postgresql"):
        return "install it: pip install 'lionbench[postgres]'"
    package = {"MySQLdb": "mysqlclient", "cx_Oracle": "cx_Oracle", "pyodbc": "pyodbc",
               "psycopg2": "psycopg2-binary"}.get(module or "", module or "the driver")
    return f"install it (pip install {package}) or name another driver in the URL"


def _install_hooks(engine: Engine, url: str, shown: str, read_only: bool) -> None:
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
            cur.close()  # WAL is set by the store once it knows the file is its own
    elif read_only and engine.dialect.name == "postgresql":
        @event.listens_for(engine, "connect")
        def _read_only(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cur.close()
            dbapi_conn.commit()

    @event.listens_for(engine, "handle_error")
    def _one_line(context):  # noqa: ANN001
        exc = context.sqlalchemy_exception
        # operational trouble (locked, read-only, refused) and "file is not a database" are the
        # user's to fix; integrity and programming errors are bugs and keep their traceback
        if isinstance(exc, OperationalError) or type(exc) is DatabaseError or (
                exc is None and isinstance(context.original_exception, sqlite3.DatabaseError)):
            raise StoreError(describe_failure(shown, url, context.original_exception)) from None


def describe_failure(shown: str, url: str, exc: BaseException) -> str:
    """One line for a database that failed: what happened and what to do."""
    reason = redact(first_line(exc), url)
    low = reason.lower()
    if "not a database" in low or "malformed" in low:
        hint = "; give a lionbench database file, a new path, or a database URL"
    elif "readonly" in low or "read-only" in low:
        hint = ("; the file or its folder is read-only: give a writable --db for commands that "
                "store runs")
    elif "locked" in low or "busy" in low:
        hint = f"; another process held it for over {BUSY_TIMEOUT_S} s: retry"
    elif "unable to open" in low:
        hint = "; its folder is missing or not accessible"
    else:
        hint = "; check the URL, the server and your credentials"
    return f"cannot use database '{shown}': {reason}{hint}"
