"""One unit of work under every executor: train a run, or train a claimed run and store it.

``compute`` trains one configuration and returns its outcome as plain data (picklable: Ray and
submitit ship it back to the driver). ``execute_claimed`` is what a process holding a claim does:
beat while ``compute`` runs, then store the outcome only if the claim still holds the run.
torch is imported only when the real training function runs (a function-level import on
purpose: workers that run a cheap ``run_fn`` in tests start in a second without it).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lionbench.config import run_config_from_dict
from lionbench.errors import LionbenchError, StoreError
from lionbench.executors.interrupts import raise_if_interrupted
from lionbench.store import METRIC_COLUMNS, Store
from lionbench.store.provenance import git_state, package_versions

EventFn = Callable[[str, dict[str, Any]], None]
DEFAULT_RUN_FN = "lionbench.train:train_run"
METRICS = METRIC_COLUMNS
MISSED_BEATS = 3  # consecutive heartbeats that may fail (a locked database) before a run stops


class ClaimLost(Exception):
    """The run was taken back (its heartbeat went stale) while this process trained it."""


class HeartbeatFailed(ClaimLost):
    """The database refused ``MISSED_BEATS`` heartbeats in a row: others will soon judge the run
    stale and take it back, so this process stops it rather than train it twice."""


def worker_id(suffix: str = "") -> str:
    """``host:pid`` (plus ``/suffix``): stale checks find a dead local worker by its pid."""
    return f"{socket.gethostname()}:{os.getpid()}" + (f"/{suffix}" if suffix else "")


def load_run_fn(spec: str | None) -> Callable[..., Any]:
    """``"module:function"`` -> the function; called like ``train_run(config, data_root, device,
    progress=..., checkpoint_path=...)`` and returning a RunResult or a dict of metrics."""
    module, _, name = (spec or DEFAULT_RUN_FN).partition(":")
    return getattr(importlib.import_module(module), name)


def config_of(row: dict[str, Any]) -> dict[str, Any]:
    return row["config"] if isinstance(row["config"], dict) else json.loads(row["config"])


def expectations(row: dict[str, Any]) -> dict[str, Any]:
    """What the stored row says the worker must find here before training (plain data, shipped
    with the config to Ray and Slurm): the data digest and, for an imported run, its source."""
    origin = row.get("origin")
    if isinstance(origin, str):
        origin = json.loads(origin)
    return {"data_id": row.get("data_id"),
            "imported_from": (origin or {}).get("source") if isinstance(origin, dict) else None}


def compute(config: dict[str, Any], *, device: str = "auto", data_root: str | None = None,
            checkpoint_dir: str | None = None, run_fn: str | None = None,
            progress: Callable[..., None] | None = None,
            reraise: tuple[type[BaseException], ...] = (),
            expect: dict[str, Any] | None = None, threads: int | None = None) -> dict[str, Any]:
    """Train one run here; ``{"status": "done", metrics, extra, provenance}`` or
    ``{"status": "failed", reason, provenance}``. KeyboardInterrupt, ClaimLost and ``reraise``
    (the executor's own signals, e.g. submitit's preemption) propagate: they are no failure.

    The real training function first checks that the weights and data here are the run's
    (lionbench.train.verify; ``expect`` from :func:`expectations`): a mismatch is the run's
    failure, stored with its one-line reason, and nothing trains. The data digest found here is
    stored with the run. A custom ``run_fn`` (tests) skips the check. ``threads`` sets torch's
    intra-op threads first: CPU numbers depend on it (docs/protocol.md, "Reproducibility"), and the
    count is stored with the run's runtime either way.
    """
    cfg = run_config_from_dict(config)
    fn = load_run_fn(run_fn)
    ckpt = Path(checkpoint_dir) / f"{cfg.run_hash}.pt" if checkpoint_dir else None
    root = Path(data_root) if data_root else None
    if run_fn is None:
        from lionbench.train import device_name, select_device  # torch: only where it trains
        from lionbench.train.device import runtime_settings, set_threads

        set_threads(threads)
        dev: Any = select_device(device)
        provenance = {**run_provenance(device_name(dev)),
                      "runtime": json.dumps(runtime_settings(), sort_keys=True)}
    else:
        dev, provenance = device, {"host": socket.gethostname(), "device": device}
    try:
        if run_fn is None:
            from lionbench.train.verify import check_run_inputs  # torch, like training

            provenance["data_id"] = check_run_inputs(cfg, root, **(expect or {}))
        result = fn(cfg, root, dev, progress=progress, checkpoint_path=ckpt)
    except (ClaimLost, *reraise):
        raise
    except Exception as exc:  # stored as the run's failure; the matrix goes on
        return {"status": "failed", "reason": failure_reason(exc), "provenance": provenance}
    if isinstance(result, dict):
        metrics, extra = {k: result.get(k) for k in METRICS}, dict(result.get("extra") or {})
    else:
        metrics, extra = {k: getattr(result, k) for k in METRICS}, result.extra
    return {"status": "done", "metrics": metrics, "extra": extra, "provenance": provenance}


def run_provenance(device: str) -> dict[str, Any]:
    """What is stored with every run about where it ran: host, device, code and packages."""
    commit, dirty = git_state()
    return {"host": socket.gethostname(), "device": device, "git_commit": commit,
            "git_dirty": dirty, "versions": json.dumps(package_versions())}


def failure_reason(exc: BaseException) -> str:
    """One line worth storing: out-of-memory named as such, our own errors without a trace."""
    if type(exc).__name__ == "OutOfMemoryError":
        return "out of memory: " + str(exc).splitlines()[0]
    if isinstance(exc, LionbenchError):
        return f"{type(exc).__name__}: {exc}"
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def store_outcome(store: Store, run_id: int, attempt: int | None, outcome: dict[str, Any]) -> bool:
    """Write an outcome while claim ``attempt`` holds the run; False if it was taken back."""
    if outcome["status"] == "done":
        return store.mark_done(run_id, outcome["metrics"], outcome["extra"],
                               outcome["provenance"], attempt=attempt)
    return store.mark_failed(run_id, outcome["reason"], outcome["provenance"], attempt=attempt)


def execute_claimed(store: Store, row: dict[str, Any], payload: dict[str, Any], *,
                    heartbeat_seconds: float = 30.0, emit: EventFn | None = None) -> str:
    """Train the claimed ``row`` in this process and store it: ``done``, ``failed``, or ``lost``
    (taken back meanwhile: nothing stored). Ctrl-C (or SIGTERM, see interrupts.py) puts the run
    back to pending without charging the attempt, then re-raises. A heartbeat that keeps failing
    stops the run with a StoreError saying why (never silently: another worker would train it
    too once the run looked stale)."""
    emit = emit or (lambda kind, info: None)
    run_id, attempt = row["id"], row["attempts"]
    stop, lost = threading.Event(), threading.Event()
    beat_errors: list[str] = []
    label = f"{row['method']} / {row['backbone']} / {row['dataset']} / seed {row['seed']}"

    def beat() -> None:
        while not stop.wait(heartbeat_seconds):
            try:
                if not store.heartbeat(run_id, attempt):
                    lost.set()
                    return
                beat_errors.clear()
            except Exception as exc:  # a locked or unreachable database: say so, retry a bit
                beat_errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                print(f"warning: heartbeat of run {run_id} failed ({beat_errors[-1]}); "
                      f"{MISSED_BEATS - len(beat_errors)} more tries", file=sys.stderr,
                      flush=True)
                if len(beat_errors) >= MISSED_BEATS:
                    lost.set()
                    return

    def progress(phase: str, done: int, total: int, info: dict[str, Any] | None = None) -> None:
        raise_if_interrupted()  # a Ctrl-C that a finaliser swallowed
        if lost.is_set():
            if beat_errors:
                raise HeartbeatFailed(beat_errors[-1])
            raise ClaimLost(f"run {run_id} was taken back from this worker")
        emit("progress", {"done": done, "total": total, "label": label, **(info or {})})

    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{run_id}")
    thread.start()
    try:
        outcome = compute(config_of(row), progress=progress, expect=expectations(row), **payload)
    except KeyboardInterrupt:
        store.requeue(run_id, attempt, "interrupted (Ctrl-C or SIGTERM); resumes from its "
                      "last epoch checkpoint", count_attempt=False)
        raise
    except HeartbeatFailed as exc:
        raise StoreError(f"stopped run {run_id} ({row['method']} / {row['dataset']} / seed "
                         f"{row['seed']}): {MISSED_BEATS} heartbeats in a row failed ({exc}); "
                         "it resumes from its last epoch checkpoint once the database answers "
                         "again (rerun the command)") from None
    except ClaimLost:
        return "lost"
    finally:
        stop.set()
        thread.join(timeout=5)
    if not store_outcome(store, run_id, attempt, outcome):
        return "lost"
    info = {"config": SimpleNamespace(**{k: row[k] for k in ("method", "backbone", "dataset",
                                                               "seed")}), "row": row}
    if outcome["status"] == "done":
        emit("done", {**info, "result": SimpleNamespace(**outcome["metrics"])})
    else:
        emit("failed", {**info, "reason": outcome["reason"]})
    return outcome["status"]


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``sig`` when its parent dies (Linux), so no
    worker outlives a killed driver; None elsewhere. libc is looked up here, in the parent:
    the forked child must not import anything (another thread may hold the import lock)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(sig))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return preexec
