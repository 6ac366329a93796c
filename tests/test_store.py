"""The results store, on in-memory and temporary SQLite databases."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from lionbench.config import RunConfig
from lionbench.errors import StoreError
from lionbench.store import SCHEMA_VERSION, Store


def configs(n: int) -> list[RunConfig]:
    return [RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits", seed=i)
            for i in range(n)]


def test_schema_version_recorded_and_reopened(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    Store(url)
    assert Store(url).execute("select value from meta")[0][0] == str(SCHEMA_VERSION)


def test_newer_schema_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    Store(url).execute("update meta set value='999' where key='schema_version'")
    with pytest.raises(StoreError, match="newer"):
        Store(url)


def test_foreign_database_is_not_taken_over_when_create_false(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    with create_engine(url).begin() as conn:
        conn.execute(text("create table x (a int)"))
    with pytest.raises(StoreError, match="not a lionbench database"):
        Store(url, create=False)


def test_sqlite_uses_wal(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    assert store.execute("pragma journal_mode")[0][0] == "wal"


def test_unreachable_urls_are_store_errors(tmp_path):
    with pytest.raises(StoreError):
        Store(f"sqlite:///{tmp_path / 'missing-dir' / 'sub' / 'x.db'}".replace("sqlite:///",
                                                                              "sqlite:////no/"))
    with pytest.raises(StoreError):
        Store("nosuchdialect://host/db")


def test_add_pending_is_idempotent_and_claims_in_order():
    store = Store("sqlite://")
    cs = configs(3)
    assert len(store.add_pending(cs)) == 3
    assert store.add_pending(cs) == []
    first = store.claim_next("w1")
    second = store.claim_next("w2")
    assert first["run_hash"] == cs[0].run_hash and second["run_hash"] == cs[1].run_hash
    assert first["status"] == "running" and first["attempts"] == 1
    assert store.claim_next("w3", hashes=[cs[0].run_hash]) is None  # already running


def test_done_and_failed_rows_keep_metrics_and_reasons():
    store = Store("sqlite://")
    store.add_pending(configs(2))
    a, b = store.claim_next("w"), store.claim_next("w")
    store.mark_done(a["id"], {"test_top1": 0.5, "test_top5": float("nan")}, {"k": 1},
                    {"host": "h", "device": "cpu", "git_commit": "c", "git_dirty": False,
                     "versions": "{}"})
    store.mark_failed(b["id"], "TrainingFailed: loss is nan", {"host": "h"})
    df = store.list_runs()
    assert list(df.status) == ["done", "failed"]
    assert df.test_top1[0] == 0.5 and df.test_top5.isna()[0]  # NaN stored as NULL
    assert df.extra[0] == {"k": 1}
    assert df.failure_reason[1] == "TrainingFailed: loss is nan"
    assert store.count_by_status() == {"pending": 0, "running": 0, "done": 1, "failed": 1}


def test_reset_to_pending_only_touches_given_statuses():
    store = Store("sqlite://")
    cs = configs(2)
    store.add_pending(cs)
    row = store.claim_next("w")
    store.mark_done(row["id"], {"test_top1": 1.0}, {}, {})
    assert store.reset_to_pending([c.run_hash for c in cs], statuses=("failed",)) == 0
    assert store.get_statuses([cs[0].run_hash]) == {cs[0].run_hash: "done"}
