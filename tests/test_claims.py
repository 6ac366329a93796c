"""Claims, give-backs and heartbeats replayed step by step against the Store API.

Why replays: the race these tests pin down needs processes interleaved in one particular order
(issue 12: a run process gives its run back on Ctrl-C, another worker claims it, then the first
worker gives it back *again* with the old attempt number). Played as single steps in one
thread, the order is exact and the test is deterministic on any machine, however loaded.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from pgserver import postgres_server, postgres_url  # noqa: F401 - fixtures

from lionbench.config import RunConfig, TrainConfig
from lionbench.store import Store
from lionbench.store import queue as queue_module

INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"


def configs(n: int) -> list[RunConfig]:
    return [RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits", seed=i,
                      train=TrainConfig(epochs=1)) for i in range(n)]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'runs.db'}")
    return Store(request.getfixturevalue("postgres_url"))


def live_claims(store: Store) -> list[tuple[int, int]]:
    """(run id, attempt) of every claim the database would still honour."""
    return [(r["id"], r["attempts"]) for r in store.fetch_runs("running", ["id", "attempts"])]


def test_give_back_replayed_twice_cannot_hand_one_attempt_to_two_claims(store):
    store.add_pending(configs(1))
    a = store.claim_next("worker-a:1")  # the worker's run process holds attempt 1
    # Ctrl-C: the run process gives the run back itself ...
    assert store.requeue(a["id"], a["attempts"], INTERRUPTED, count_attempt=False) == "pending"
    b = store.claim_next("worker-b:2")  # ... another worker claims it at once ...
    # ... and the first worker, not knowing, gives it back again with the old number
    assert store.requeue(a["id"], a["attempts"], INTERRUPTED, count_attempt=False) is None
    assert b["attempts"] != a["attempts"]
    assert store.get_run(b["id"])["status"] == "running"  # b's claim was not taken away
    assert store.claim_next("worker-c:3") is None  # so nobody else can claim it
    assert store.heartbeat(b["id"], b["attempts"])
    assert not store.heartbeat(a["id"], a["attempts"])  # the old claim learns it lost
    assert not store.mark_done(a["id"], {"test_top1": 0.1}, {}, {}, attempt=a["attempts"])
    assert store.mark_done(b["id"], {"test_top1": 0.2}, {}, {}, attempt=b["attempts"])
    row = store.get_run(b["id"])
    assert (row["status"], row["test_top1"]) == ("done", 0.2)
    # interrupts are still not charged: two claims, one of them interrupted
    assert (row["attempts"], row["interrupts"]) == (2, 1)


def test_interrupted_claims_are_not_charged_against_max_attempts(store):
    store.add_pending(configs(1))
    for _ in range(5):  # five Ctrl-Cs: the user's doing, never the run's fault
        row = store.claim_next("w:1")
        assert store.requeue(row["id"], row["attempts"], INTERRUPTED, count_attempt=False,
                             max_attempts=2) == "pending"
    row = store.claim_next("w:1")
    assert store.requeue(row["id"], row["attempts"], "worker died", max_attempts=2) == "pending"
    row = store.claim_next("w:1")  # the second charged loss reaches max_attempts=2
    assert store.requeue(row["id"], row["attempts"], "worker died", max_attempts=2) == "failed"
    final = store.get_run(row["id"])
    assert (final["attempts"], final["interrupts"], final["status"]) == (7, 5, "failed")


OPERATIONS = ("claim", "interrupt", "interrupt_stale", "lose", "lose_stale", "reap_worker",
              "beat", "finish", "finish_stale", "reset")


def test_random_interleavings_never_give_two_live_claims_one_attempt(store):
    """Thousands of seeded steps of every status change, from current and stale claims alike:
    every claim ever handed out has a (run, attempt) no other claim had, and at most one claim
    per run passes the fencing checks at any moment."""
    rng = random.Random(12)
    cs = configs(3)
    store.add_pending(cs)
    handed: set[tuple[int, int]] = set()
    held: list[dict] = []  # claims the workers believe they hold (some long stale)
    steps = 600 if store.engine.dialect.name == "postgresql" else 1500
    for _ in range(steps):
        op = rng.choice(OPERATIONS)
        claim = rng.choice(held) if held else None
        if op == "claim":
            row = store.claim_next(f"w:{rng.randrange(4)}")
            if row is not None:
                key = (row["id"], row["attempts"])
                assert key not in handed, f"attempt {key} handed out twice"
                handed.add(key)
                held.append(row)
        elif claim is None:
            continue
        elif op in ("interrupt", "interrupt_stale"):
            store.requeue(claim["id"], claim["attempts"], INTERRUPTED, count_attempt=False)
        elif op in ("lose", "lose_stale"):
            store.requeue(claim["id"], claim["attempts"], "lost", max_attempts=50)
        elif op == "reap_worker":
            store.requeue_lost("worker gone", workers=[claim["worker"]],
                               count_attempt=rng.random() < 0.5)
        elif op == "beat":
            store.heartbeat(claim["id"], claim["attempts"])
        elif op in ("finish", "finish_stale"):
            store.mark_done(claim["id"], {"test_top1": 0.5}, {}, {}, attempt=claim["attempts"])
        elif op == "reset":
            store.reset_to_pending([cs[rng.randrange(3)].run_hash])
        live = live_claims(store)
        assert len({run for run, _ in live}) == len(live)
        honoured = [c for c in held if (c["id"], c["attempts"]) in set(live)]
        assert len(honoured) == len({c["id"] for c in honoured}), "two claims pass the fence"
    assert len(handed) > 50  # the sequence really exercised claims


def test_heartbeats_and_staleness_use_the_database_clock(tmp_path, monkeypatch):
    """A worker whose clock runs two hours behind must not look stale to a correct host, and a
    run silent by the database's clock must be taken back whatever the local clock says."""
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    store.add_pending(configs(2))

    class Skewed(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) - timedelta(hours=2)

    monkeypatch.setattr(queue_module, "datetime", Skewed)  # this host's clock, 2 h behind
    live = store.claim_next("slow-clock:1")
    assert store.heartbeat(live["id"], live["attempts"])
    monkeypatch.setattr(queue_module, "datetime", datetime)  # judged from a correct host
    assert store.requeue_lost("no heartbeat", stale_after=timedelta(minutes=10)) == 0
    beat = datetime.fromisoformat(store.get_run(live["id"])["heartbeat_at"])
    assert abs(beat - datetime.now(timezone.utc)) < timedelta(minutes=1)  # the database's now

    silent = store.claim_next("w:2")
    store.execute("update runs set heartbeat_at = strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', "
                  f"'-20 minutes') where id = {silent['id']}")

    class Behind(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) - timedelta(hours=1)  # a host clock that makes it look fresh

    monkeypatch.setattr(queue_module, "datetime", Behind)
    assert store.requeue_lost("no heartbeat", stale_after=timedelta(minutes=10)) == 1
    assert store.get_run(silent["id"])["status"] == "pending"
    assert store.get_run(live["id"])["status"] == "running"


def test_postgresql_stamps_with_its_own_clock(request):
    store = Store(request.getfixturevalue("postgres_url"))
    store.add_pending(configs(1))
    row = store.claim_next("w:1")
    stamp = datetime.fromisoformat(row["heartbeat_at"])
    assert stamp.tzinfo is not None and abs(stamp - datetime.now(timezone.utc)) < timedelta(
        minutes=1)
    assert store.requeue_lost("stale", stale_after=timedelta(minutes=5)) == 0
    store.execute(f"update runs set heartbeat_at = '2000-01-01T00:00:00+00:00' "
                  f"where id = {row['id']}")
    assert store.requeue_lost("stale", stale_after=timedelta(minutes=5)) == 1
