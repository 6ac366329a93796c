"""Run a matrix against the store: plan, skip what is stored, claim, train, record.

Every run is inserted as ``pending`` first, then claimed one at a time with the store's atomic
claim, so an interrupted matrix resumes where it stopped and several workers can share one
matrix. A run that raises is stored as ``failed`` with its reason and the matrix goes on;
Ctrl-C puts the run in hand back to ``pending``.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import torch

from lionbench.config import RunConfig, run_config_from_dict
from lionbench.provenance import device_name, git_state, host_name, package_versions
from lionbench.store import Store
from lionbench.train import RunResult, select_device, train_run

EventFn = Callable[[str, dict[str, Any]], None]
STALE_AFTER = timedelta(minutes=10)
HEARTBEAT_SECONDS = 30.0


@dataclass
class Plan:
    """What ``run`` would do: each config with its stored status (None = new)."""

    configs: list[RunConfig]
    statuses: dict[str, str | None]

    def to_run(self, force: bool = False, retry_failed: bool = False) -> list[RunConfig]:
        todo = {None, "pending", "running"}
        if retry_failed:
            todo.add("failed")
        return [c for c in self.configs if force or self.statuses[c.run_hash] in todo]

    def rows(self, force: bool = False, retry_failed: bool = False) -> list[dict[str, Any]]:
        todo = {c.run_hash for c in self.to_run(force, retry_failed)}
        return [{"run_hash": c.run_hash, "method": c.method, "backbone": c.backbone,
                 "dataset": c.dataset, "seed": c.seed, "weights": c.weights,
                 "stored": self.statuses[c.run_hash] or "new",
                 "action": "run" if c.run_hash in todo else "skip"} for c in self.configs]


@dataclass
class RunSummary:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def plan_runs(store: Store, configs: list[RunConfig]) -> Plan:
    stored = store.get_statuses([c.run_hash for c in configs])
    return Plan(configs, {c.run_hash: stored.get(c.run_hash) for c in configs})


def worker_id() -> str:
    return f"{host_name()}:{os.getpid()}"


def reclaim_stale(store: Store, hashes: list[str]) -> int:
    """Runs left ``running`` by a dead process on this host, or silent for too long -> pending."""
    df = store.list_runs("running")
    df = df[df.run_hash.isin(hashes)]
    stale = []
    now = datetime.now(timezone.utc)
    for row in df.itertuples():
        host, _, pid = (row.worker or "").rpartition(":")
        dead_here = host == host_name() and pid.isdigit() and not _pid_alive(int(pid))
        beat = datetime.fromisoformat(row.heartbeat_at) if row.heartbeat_at else None
        if dead_here or beat is None or now - beat > STALE_AFTER:
            stale.append(row.run_hash)
    return store.reset_to_pending(stale, statuses=("running",))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a row claimed by this very process cannot be running now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_plan(store: Store, plan: Plan, *, force: bool = False, retry_failed: bool = False,
             data_root: Path | None = None, device: str = "auto", tags: str = "",
             on_event: EventFn | None = None) -> RunSummary:
    """Execute the plan's runs that are not stored yet; return counts and failures."""
    emit = on_event or (lambda kind, info: None)
    todo = plan.to_run(force, retry_failed)
    hashes = [c.run_hash for c in todo]
    summary = RunSummary(skipped=len(plan.configs) - len(todo))
    store.add_pending(todo, tags=tags)
    if force:
        store.reset_to_pending(hashes)
    elif retry_failed:
        store.reset_to_pending(hashes, statuses=("failed",))
    reclaim_stale(store, hashes)
    dev = select_device(device)
    me = worker_id()
    emit("start", {"total": len(todo), "skipped": summary.skipped, "device": str(dev)})
    while (row := store.claim_next(me, hashes)) is not None:
        config = run_config_from_dict(row["config"] if isinstance(row["config"], dict)
                                      else __import__("json").loads(row["config"]))
        emit("run", {"config": config, "row": row})
        outcome = execute_one(store, row["id"], config, data_root, dev, emit)
        if outcome is None:
            summary.done += 1
        else:
            summary.failed += 1
            summary.failures.append((config.run_hash, outcome))
    emit("end", {"summary": summary})
    return summary


def execute_one(store: Store, run_id: int, config: RunConfig, data_root: Path | None,
                device: torch.device, emit: EventFn) -> str | None:
    """Train one claimed run and store its outcome; return the failure reason or None."""
    provenance = run_provenance(device)
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(store, run_id, stop), daemon=True)
    beat.start()
    try:
        result = train_run(config, data_root, device,
                           progress=lambda phase, i, n: emit("progress", {"done": i, "total": n}))
    except KeyboardInterrupt:
        store.reset_to_pending([config.run_hash], statuses=("running",))
        raise
    except Exception as exc:  # stored, and the matrix goes on
        reason = failure_reason(exc)
        store.mark_failed(run_id, reason, provenance)
        emit("failed", {"config": config, "reason": reason})
        return reason
    finally:
        stop.set()
        beat.join(timeout=5)
    store.mark_done(run_id, metrics_of(result), result.extra, provenance)
    emit("done", {"config": config, "result": result})
    return None


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "out of memory: " + str(exc).splitlines()[0]
    from lionbench.errors import LionbenchError

    if isinstance(exc, LionbenchError):
        return f"{type(exc).__name__}: {exc}"
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def metrics_of(result: RunResult) -> dict[str, Any]:
    return {k: getattr(result, k) for k in (
        "test_top1", "test_top5", "val_top1", "best_epoch", "params_trainable",
        "params_trainable_no_head", "params_total", "train_seconds", "images_per_second",
        "peak_memory_mb")}


def run_provenance(device: torch.device) -> dict[str, Any]:
    import json

    commit, dirty = git_state()
    return {"host": host_name(), "device": device_name(device), "git_commit": commit,
            "git_dirty": dirty, "versions": json.dumps(package_versions())}


def _beat(store: Store, run_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            store.heartbeat(run_id)
        except Exception:  # a missed beat is not worth killing the run for
            pass
