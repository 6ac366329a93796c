"""Many processes opening one new database at the same instant: all succeed, tables made once.

Issue 12 saw 6 processes fail 3 times in 6 with "table meta already exists": each checked for
the schema, found none, and created it. The store now creates and migrates under the
database's write lock and checks again once it holds it.
"""

from __future__ import annotations

import multiprocessing
import traceback

import pytest
from pgserver import postgres_server, postgres_url  # noqa: F401 - fixtures

from lionbench.config import RunConfig
from lionbench.store import SCHEMA_VERSION, Store

PROCESSES = 10
TRIALS = 8


def open_and_add(url: str, barrier, seed: int, errors) -> None:  # noqa: ANN001
    try:
        barrier.wait(timeout=120)  # every process opens at the same moment
        store = Store(url)
        store.add_pending([RunConfig(method="head-tuning", backbone="test_resnet",
                                     dataset="digits", seed=seed % 3)])
        store.close()
    except BaseException:  # noqa: BLE001 - reported to the parent
        errors.put(traceback.format_exc(limit=3))


def open_at_once(url: str) -> list[str]:
    ctx = multiprocessing.get_context("fork")  # fast: the parent has imported the store
    barrier, errors = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=open_and_add, args=(url, barrier, i, errors))
             for i in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    found = []
    while not errors.empty():
        found.append(errors.get())
    found += [f"process exited with {p.exitcode}" for p in procs if p.exitcode]
    return found


def test_ten_processes_open_one_new_sqlite_file_at_once(tmp_path):
    for trial in range(TRIALS):
        url = f"sqlite:///{tmp_path / f'new-{trial}.db'}"
        errors = open_at_once(url)
        assert not errors, f"trial {trial}: {errors[0]}"
        store = Store(url)
        assert store.execute("select value from meta") == [(str(SCHEMA_VERSION),)]
        assert store.count_by_status()["pending"] == 3  # seeds 0-2, each stored once


def test_ten_processes_open_one_new_postgresql_database_at_once(request):
    url = request.getfixturevalue("postgres_url")
    errors = open_at_once(url)
    assert not errors, errors[0]
    store = Store(url)
    assert store.execute("select value from meta") == [(str(SCHEMA_VERSION),)]
    assert store.count_by_status()["pending"] == 3


@pytest.mark.parametrize("version", [1, 3])
def test_ten_processes_upgrade_one_old_database_at_once(tmp_path, version):
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    store = Store(url)
    with store.engine.begin() as conn:  # pretend the schema is older: every step runs again
        conn.execute(text(f"update meta set value = '{version}' where key = 'schema_version'"))
    store.close()
    errors = open_at_once(url)
    assert not errors, errors[0]
    assert Store(url).execute("select value from meta") == [(str(SCHEMA_VERSION),)]
