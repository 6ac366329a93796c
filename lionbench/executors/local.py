"""Local workers: one process per GPU (``--gpus 0,1``) or ``--workers N`` on CPU.

Each worker (lionbench.executors.worker) claims runs from the database itself, so the driver
here only supervises: it starts the workers (each in its own session, so a terminal Ctrl-C
reaches the driver alone, and made to die with the driver), gives back the runs of a worker that
died (attempt counted; failed after ``max_attempts``) or whose heartbeat went stale, starts a
replacement while runs are pending, and reports finished runs from the database.

Ctrl-C: the workers get SIGINT and put their runs back to pending (resumable from the last epoch
checkpoint, attempt not counted); a second Ctrl-C kills them at once and the next
``lionbench run`` takes their runs back (dead pids on this host).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO

from lionbench.executors import EventFn, ExecOptions, ExecutorError
from lionbench.executors.execute import die_with_parent
from lionbench.executors.interrupts import on_hard_exit, raise_if_interrupted
from lionbench.executors.progress import Reporter
from lionbench.executors.worker import describe_exit
from lionbench.store import Store

MAX_QUICK_DEATHS = 3  # a slot whose workers die this often without any run finishing: give up


@dataclass
class Slot:
    """One worker place: a GPU id (or None on CPU) and the process now in it."""

    gpu: int | None
    proc: subprocess.Popen | None = None
    log: IO[str] | None = None
    started_at_finished: int = 0  # finished runs when the process started
    quick_deaths: int = 0

    @property
    def worker(self) -> str:
        return f"{socket.gethostname()}:{self.proc.pid}" if self.proc else ""


class LocalPool:
    """The worker processes of one ``run_local`` call."""

    def __init__(self, store: Store, hashes: list[str], options: ExecOptions, workdir: Path):
        self.store, self.hashes, self.options = store, hashes, options
        gpus = options.gpus or []
        self.slots = [Slot(g) for g in gpus] or [Slot(None) for _ in range(options.workers or 1)]
        self.fresh = options.fresh_process if options.fresh_process is not None else bool(gpus)
        self.hashes_file = workdir / "hashes.json"
        self.hashes_file.write_text(json.dumps(hashes))
        self.spawned: list[str] = []  # every worker id, for the cleanup after a stop

    def spawn(self, slot: Slot, finished: int) -> None:
        o = self.options
        cmd = [sys.executable, "-m", "lionbench.executors.worker",
               "--payload", json.dumps(o.work_payload()), "--hashes-file", str(self.hashes_file),
               "--heartbeat", str(o.heartbeat_seconds), "--max-attempts", str(o.max_attempts)]
        if self.fresh:
            cmd.append("--fresh-process")
        env = {**os.environ, "LIONBENCH_DB": self.store.url}  # not argv: ps shows passwords
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
        elif "OMP_NUM_THREADS" not in env:  # N workers share the cores instead of fighting
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(self.slots)))
        if o.log_dir is not None:
            Path(o.log_dir).mkdir(parents=True, exist_ok=True)
            name = f"worker-{'gpu' + str(slot.gpu) if slot.gpu is not None else 'cpu'}"
            slot.log = open(Path(o.log_dir) / f"{name}-{len(self.spawned)}.log", "a")  # noqa: SIM115
        slot.proc = subprocess.Popen(
            cmd, env=env, start_new_session=True, stdout=slot.log,
            stderr=subprocess.STDOUT if slot.log else None,
            preexec_fn=die_with_parent(signal.SIGTERM))
        slot.started_at_finished = finished
        self.spawned.append(slot.worker)

    def reap(self, finished: int) -> None:
        """Give back the runs of workers that died; count deaths that got nothing done."""
        for slot in self.slots:
            if slot.proc is None or (rc := slot.proc.poll()) is None:
                continue
            if rc != 0:
                self.store.requeue_lost(f"worker {slot.worker} {describe_exit(rc)}",
                                        workers=[slot.worker], hashes=self.hashes,
                                        max_attempts=self.options.max_attempts)
                slot.quick_deaths = (slot.quick_deaths + 1
                                     if finished == slot.started_at_finished else 0)
                if slot.quick_deaths >= MAX_QUICK_DEATHS:
                    where = f"; see {self.options.log_dir}" if self.options.log_dir else ""
                    raise ExecutorError(f"local workers keep dying ({describe_exit(rc)}) "
                                        f"without finishing a run{where}")
            self._close(slot)

    def live(self) -> list[Slot]:
        return [s for s in self.slots if s.proc is not None and s.proc.poll() is None]

    def stop(self, grace: float = 60.0) -> None:
        """SIGINT every worker and wait; a second Ctrl-C (KeyboardInterrupt here) kills them."""
        try:
            self._signal(signal.SIGINT)
            deadline = time.monotonic() + grace
            while self.live() and time.monotonic() < deadline:
                time.sleep(0.1)
        except KeyboardInterrupt:
            self._signal(signal.SIGKILL)
            raise
        self._signal(signal.SIGKILL)
        self.store.requeue_lost("interrupted (Ctrl-C); resumes from its last epoch checkpoint",
                                workers=self.spawned, hashes=self.hashes, count_attempt=False)
        for slot in self.slots:
            self._close(slot)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        for slot in self.live():
            try:
                os.killpg(slot.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _close(self, slot: Slot) -> None:
        if slot.proc is not None:
            slot.proc.wait()
        if slot.log is not None:
            slot.log.close()
        slot.proc, slot.log = None, None


def run_local(store: Store, hashes: list[str], options: ExecOptions, emit: EventFn) -> None:
    """Run the pending runs among ``hashes`` on local worker processes until none is left."""
    if not hashes:
        return
    if store.in_memory:
        raise ExecutorError("local workers need a database file or server, not in-memory SQLite")
    if options.gpus and options.device not in ("auto", "cuda"):
        raise ExecutorError(f"--gpus pins one GPU per worker (it is cuda:0 there); leave "
                            f"--device at auto instead of {options.device}")
    reporter = Reporter(store, hashes, emit)
    stale = timedelta(seconds=options.stale_after)
    with tempfile.TemporaryDirectory(prefix="lionbench-workers-") as tmp:
        pool = LocalPool(store, hashes, options, Path(tmp))
        with on_hard_exit(pool.kill):  # a second Ctrl-C or SIGTERM kills the workers too
            supervise(pool, store, hashes, options, reporter, stale)
    reporter.poll()


def supervise(pool: LocalPool, store: Store, hashes: list[str], options: ExecOptions,
              reporter: Reporter, stale: timedelta) -> None:
    """The driver's loop: reap, requeue stale runs, report, spawn, until nothing is pending."""
    try:
        while True:
            raise_if_interrupted()  # one a finaliser may have swallowed
            pool.reap(reporter.finished)
            store.requeue_lost(f"no heartbeat for {options.stale_after:.0f} s",
                               stale_after=stale, hashes=hashes,
                               max_attempts=options.max_attempts)
            counts = store.status_counts(hashes)
            reporter.poll()
            live = pool.live()
            if counts["pending"] and len(live) < len(pool.slots):
                free = [slot for slot in pool.slots if slot.proc is None]
                for slot in free[:counts["pending"]]:
                    pool.spawn(slot, reporter.finished)
            elif not live:
                pool.reap(reporter.finished)  # one may have died since: its run is back
                if not store.status_counts(hashes)["pending"]:
                    break  # runs still 'running' here belong to another driver
            time.sleep(options.poll_seconds)
    except KeyboardInterrupt:
        pool.stop()
        reporter.poll()
        raise
    except BaseException:
        pool.kill()
        store.requeue_lost("the local executor stopped on an error", workers=pool.spawned,
                           hashes=hashes, count_attempt=False)
        raise


def describe(options: ExecOptions) -> str:
    """For the progress line: what runs the matrix."""
    if options.gpus:
        return f"{len(options.gpus)} local workers on GPUs {','.join(map(str, options.gpus))}"
    return f"{options.workers or 1} local CPU workers"


__all__ = ["run_local", "LocalPool", "describe"]
