"""The ``runs`` table, the ``tunings`` table, the ``meta`` table, and the migrations between
schema versions.

The schema carries its version in ``meta``; ``MIGRATIONS`` upgrades an older database step by
step, so every release can open every earlier database. ``METRIC_COLUMNS`` is the one list of
what a finished run stores as numbers (the executors and the exchange read it from here).
"""

from __future__ import annotations

import json
from collections.abc import Callable

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
    inspect,
    select,
    text,
    update,
)

from lionbench.config import cell_hash_of

from .health import warnings_json

SCHEMA_VERSION = 7
STATUSES = ("pending", "running", "done", "failed")
FINISHED = ("done", "failed")

metadata = MetaData()
meta_table = Table("meta", metadata, Column("key", String(64), primary_key=True),
                   Column("value", Text, nullable=False))
runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_hash", String(64), unique=True, nullable=False),
    Column("cell_hash", String(64), index=True),  # v3: the identity without the seed
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
    Column("attempts", Integer, nullable=False, default=0),  # claims so far: never lowered
    Column("interrupts", Integer, nullable=False, default=0, server_default="0"),  # v5
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
    Column("runtime", Text),  # v4: JSON, torch threads and determinism settings of the run
    Column("data_id", String(128)),  # v4: digest of the data the run reads (data/digest.py)
    Column("origin", Text),  # v4: JSON, where an imported run came from (None: made here)
    Column("imported_result", Boolean),  # v4: the stored outcome came with an import
    Column("test_top1", Float), Column("test_top5", Float), Column("val_top1", Float),
    Column("best_epoch", Integer),
    Column("params_trainable", Integer), Column("params_trainable_no_head", Integer),
    Column("params_total", Integer),
    Column("train_seconds", Float), Column("images_per_second", Float),
    Column("peak_memory_mb", Float),
    Column("extra", Text),
    Column("warnings", Text),  # v6: JSON list of one-line health warnings (store/health.py)
)

# v7: what `lionbench tune` chose for one (method, backbone, dataset, weights) and why: the grid,
# every candidate's validation score (never a test number), the winner and the final seeds
tunings = Table(
    "tunings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tuning_hash", String(64), unique=True, nullable=False),  # task + grid + seeds
    Column("name", String(256), nullable=False, default=""),  # the matrix's name
    Column("method", String(64), nullable=False, index=True),
    Column("backbone", String(128), nullable=False),
    Column("dataset", String(512), nullable=False),
    Column("weights_id", String(128), nullable=False),
    Column("grid", Text, nullable=False),  # JSON {key: [values]} as it applied to this method
    Column("tune_seeds", Text, nullable=False),  # JSON [seeds] of the candidate runs
    Column("final_seeds", Text, nullable=False),  # JSON [seeds] of the winner's final runs
    Column("metric", String(32), nullable=False),  # what chose: val_top1
    Column("rule", Text, nullable=False),  # the selection rule, tie-breaks included, in words
    Column("candidates", Text, nullable=False),  # JSON [{values, cell_hash, val_top1, ...}]
    Column("winner_cell_hash", String(64)),  # None: no candidate finished
    Column("winner_values", Text),  # JSON {key: value}
    Column("created_at", String(32), nullable=False),
)

METRIC_COLUMNS = ("test_top1", "test_top5", "val_top1", "best_epoch", "params_trainable",
                  "params_trainable_no_head", "params_total", "train_seconds",
                  "images_per_second", "peak_memory_mb")
JSON_COLUMNS = ("config", "extra", "versions", "runtime", "origin")
V4_COLUMNS = (("runtime", "TEXT"), ("data_id", "VARCHAR(128)"), ("origin", "TEXT"),
              ("imported_result", "BOOLEAN"))


def _v1(conn: Connection) -> None:
    metadata.create_all(conn)


def _v2(conn: Connection) -> None:
    """Why and when a run went back to pending (worker lost, Ctrl-C, preemption)."""
    have = {c["name"] for c in inspect(conn).get_columns("runs")}
    for name, sql_type in (("requeue_reason", "TEXT"), ("requeued_at", "VARCHAR(32)")):
        if name not in have:  # a fresh database got them from _v1's create_all already
            conn.execute(text(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}"))


def _v3(conn: Connection) -> None:
    """``cell_hash``: runs that differ only by seed share it, so tables group them without
    decoding every run's config."""
    if "cell_hash" not in {c["name"] for c in inspect(conn).get_columns("runs")}:
        conn.execute(text("ALTER TABLE runs ADD COLUMN cell_hash VARCHAR(64)"))
        conn.execute(text("CREATE INDEX IF NOT EXISTS ix_runs_cell_hash ON runs (cell_hash)"))
    rows = conn.execute(select(runs.c.id, runs.c.config).where(runs.c.cell_hash.is_(None)))
    for run_id, config in rows.all():
        conn.execute(update(runs).where(runs.c.id == run_id)
                     .values(cell_hash=cell_hash_of(json.loads(config))))


def _v4(conn: Connection) -> None:
    """Verified provenance: the data digest a run was planned or trained on (checked before a
    worker trains), where an imported run came from and whether its outcome came with it (tables
    mark those), and the run's torch threads and determinism settings. Runs already stored were
    made here (origin empty) and keep unknown data digests and runtimes."""
    have = {c["name"] for c in inspect(conn).get_columns("runs")}
    for name, sql_type in V4_COLUMNS:
        if name not in have:
            conn.execute(text(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}"))


def _v5(conn: Connection) -> None:
    """``interrupts``: claims that ended by the user's interrupt (Ctrl-C, SIGTERM). Before v5 an
    interrupt *lowered* ``attempts``, so a later claim could get an attempt number an earlier,
    still live claim held, and both passed the fencing checks; now ``attempts`` only grows
    (it is the claim's fencing token) and interrupts are counted here instead: the attempts
    charged against ``--max-attempts`` are ``attempts - interrupts``."""
    if "interrupts" not in {c["name"] for c in inspect(conn).get_columns("runs")}:
        conn.execute(text("ALTER TABLE runs ADD COLUMN interrupts INTEGER NOT NULL DEFAULT 0"))


def _v6(conn: Connection) -> None:
    """``warnings``: solver health of each run, derived from its stored ``extra`` so that
    tables can flag unconverged LION runs without decoding every run's metrics."""
    if "warnings" not in {c["name"] for c in inspect(conn).get_columns("runs")}:
        conn.execute(text("ALTER TABLE runs ADD COLUMN warnings TEXT"))
    rows = conn.execute(select(runs.c.id, runs.c.extra).where(runs.c.status == "done",
                                                              runs.c.warnings.is_(None)))
    for run_id, extra in rows.all():
        try:
            decoded = json.loads(extra) if extra else {}
        except json.JSONDecodeError:
            decoded = {}
        conn.execute(update(runs).where(runs.c.id == run_id)
                     .values(warnings=warnings_json(decoded)))


def _v7(conn: Connection) -> None:
    """``tunings``: the choices of ``lionbench tune`` (a new table; runs are untouched)."""
    metadata.create_all(conn, tables=[tunings], checkfirst=True)


# version -> the step that brings a database from version-1 to version
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4,
                                                      5: _v5, 6: _v6, 7: _v7}
