"""A throwaway PostgreSQL server for the concurrency tests, or a clear reason why there is none.

``$LIONBENCH_TEST_POSTGRES_URL`` (a server URL whose user may create databases) wins. Otherwise,
where the Debian ``postgresql`` package's binaries exist (``apt-get install postgresql``), a
server is started on 127.0.0.1 on a free port with its data under /tmp (as the ``postgres`` user
when we are root: the server refuses to run as root) and stopped at the end of the session.
Without either, the PostgreSQL tests skip with the reason, except under ``CI=true`` where they
fail: CI must not pass by skipping them. Each test gets a fresh database of its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A server URL (``postgresql://user@host:port/postgres``) for the whole session."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("the driver is missing (pip install 'psycopg[binary]', or lionbench[dev])")
    if os.environ.get("LIONBENCH_TEST_POSTGRES_URL"):
        yield os.environ["LIONBENCH_TEST_POSTGRES_URL"]
        return
    bindir = _binaries()
    if bindir is None:
        _unavailable("no server binaries (apt-get install postgresql) and "
                     "$LIONBENCH_TEST_POSTGRES_URL unset")
    datadir = Path(tempfile.mkdtemp(prefix="lionbench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(datadir, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def pg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    init = pg(str(bindir / "initdb"), "-D", str(datadir / "data"), "-U", "postgres",
              "--auth=trust", "--no-sync")
    if init.returncode:
        _unavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
    options = (f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c max_connections=200")
    start = pg(str(bindir / "pg_ctl"), "-D", str(datadir / "data"), "-o", options,
               "-l", str(datadir / "log"), "-w", "start")
    if start.returncode:
        log = (datadir / "log").read_text() if (datadir / "log").exists() else ""
        _unavailable(f"pg_ctl start failed: {start.stderr.strip()[-300:]} {log[-500:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(datadir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's server; dropped afterwards."""
    import psycopg

    name = f"lionbench_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_server.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
