"""Run a matrix against the store: plan, skip what is stored, claim, train, record.

Every run is inserted as ``pending`` first, then claimed one at a time with the store's atomic
claim, so an interrupted matrix resumes where it stopped and several workers can share one
matrix. A run that raises is stored as ``failed`` with its reason and the matrix goes on;
Ctrl-C puts the run in hand back to ``pending``, to resume from its last epoch checkpoint.
Where the runs train is an executor's business (lionbench.executors): this process by default.

The exit rule (``RunSummary.exit_code``, shared by every command that runs a plan: ``run``,
``ablate``, ``tune``): 0 when no run of the invocation's plan failed and none is left for this
process to do: every run is done (trained now, or already stored as done), or is being trained
right now by another live process sharing the database (several drivers on one matrix: each
exits 0 once nothing is left to claim; ``wait`` makes each wait until those runs end, and then
counts their outcome too). 1 otherwise: a run that failed now, a run of the plan stored as
failed earlier and not retried, or a run left pending. Scripts, CI and Slurm jobs can tell a
complete matrix from a failed one, and "others are finishing it" from both.

``max_attempts`` counts every claim a run loses, whoever lost it: a worker killed with SIGKILL
or a vanished host is taken back by the next driver (attempt counted, failed past the limit);
only interrupts (Ctrl-C, SIGTERM: the user's doing) are not charged.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from lionbench.config import RunConfig, run_config_from_dict
from lionbench.data import get_dataset
from lionbench.data.digest import digest_if_present
from lionbench.errors import DatasetError
from lionbench.executors import EventFn, ExecOptions, get_executor
from lionbench.executors.execute import config_of, execute_claimed, worker_id
from lionbench.executors.interrupts import interrupt_guard, raise_if_interrupted
from lionbench.executors.local import describe as describe_local
from lionbench.files import check_folder_writable
from lionbench.store import Store
from lionbench.store.provenance import host_name
from lionbench.train import select_device

from .plan import Plan, check_weights_available, create_matrices, expand_matrix, plan_runs

STALE_AFTER = timedelta(minutes=10)  # at the start of a run: silent this long = lost


@dataclass
class RunSummary:
    """What one invocation did with its plan, and whether it completed (the exit rule)."""

    done: int = 0  # runs of this invocation that ended done
    failed: int = 0  # runs of this invocation that ended failed
    skipped: int = 0  # runs already stored, not run again
    failures: list[tuple[str, str]] = field(default_factory=list)
    pending: int = 0  # left pending (nobody holds them: another process gave them back late)
    total: int = 0  # runs in the plan
    stored_failed: int = 0  # skipped runs stored as failed earlier (--retry-failed reruns them)
    elsewhere: int = 0  # still running in other live processes when this one ended

    @property
    def complete(self) -> bool:
        """Nothing failed and nothing is left for this process: every run of the plan is done,
        or running in another live process (``elsewhere``)."""
        return not (self.failed or self.pending or self.stored_failed)

    @property
    def exit_code(self) -> int:
        """0 when the plan is complete, else 1 (the CLI's exit status for run/ablate/tune)."""
        return 0 if self.complete else 1

    def note_line(self) -> str:
        """One line on the runs other processes are still training; empty when none."""
        if not self.elsewhere:
            return ""
        return (f"note: {self.elsewhere} of {self.total} runs are still running in other "
                "processes sharing the database (not waited for: --wait waits for them; "
                "lionbench status shows them)")

    def problem_line(self) -> str:
        """One line naming what is not done, e.g. ``2 of 15 runs failed; see lionbench
        status``; empty when the plan is complete."""
        if self.complete:
            return ""
        parts = []
        failed = self.failed + self.stored_failed
        if failed:
            earlier = (f" ({self.stored_failed} stored as failed earlier; --retry-failed reruns "
                       f"{'them' if self.stored_failed > 1 else 'it'})"
                       if self.stored_failed else "")
            parts.append(f"{failed} of {self.total} runs failed{earlier}")
        if self.pending:
            parts.append(f"{self.pending} of {self.total} runs not finished (left pending)")
        return "; ".join(parts) + "; see lionbench status"


def reclaim_stale(store: Store, hashes: list[str], stale_after: timedelta = STALE_AFTER,
                  max_attempts: int | None = None) -> int:
    """Runs left ``running`` by a dead process on this host, or silent for ``stale_after``, go
    back to pending (attempt counted: failed once ``max_attempts`` claims were lost, a run that
    kills whatever trains it must not loop). Runs held by a live local process are left
    alone."""
    df = store.list_runs("running")
    df = df[df.run_hash.isin(hashes)]
    dead = []
    for worker in set(df.worker.dropna()):
        host, _, pid = worker.partition("/")[0].rpartition(":")
        if host == host_name() and pid.isdigit() and not _pid_alive(int(pid)):
            dead.append(worker)
    moved = store.requeue_lost("its worker process is gone", workers=dead, hashes=hashes,
                               max_attempts=max_attempts)
    return moved + store.requeue_lost(f"no heartbeat for {stale_after}", stale_after=stale_after,
                                      hashes=hashes, max_attempts=max_attempts)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A zombie (killed, not yet reaped: an orphan waits
    for init to reap it, which can take seconds) holds no run and counts as gone."""
    if pid == os.getpid():
        return False  # a row claimed by this very process cannot be running now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): alive, as far as we can tell
    return state not in ("Z", "X")


def run_plan(plan: Plan, *, force: bool = False, retry_failed: bool = False,
             data_root: Path | None = None, device: str = "auto",
             on_event: EventFn | None = None, executor: str = "inline",
             options: ExecOptions | None = None) -> RunSummary:
    """Execute the plan's runs that are not stored yet; return counts and failures.

    ``executor``: ``inline`` (this process), ``local``, ``ray`` or ``slurm`` (lionbench.executors)
    with ``options``; ``data_root`` and ``device`` given here win over the options' own.
    Called from the main thread, SIGTERM acts like Ctrl-C meanwhile and a second signal ends
    the process at once (lionbench.executors.interrupts).
    """
    with interrupt_guard():
        return _run_plan(plan, force=force, retry_failed=retry_failed, data_root=data_root,
                         device=device, on_event=on_event, executor=executor, options=options)


def remove_if_empty(folder: Path | None) -> None:
    """Remove ``folder`` if it is empty (the epoch checkpoints a matrix made and deleted as each
    run finished): nothing is left behind that nobody asked for."""
    if folder is None:
        return
    try:
        folder.rmdir()
    except OSError:  # not empty (a run to resume, or another matrix's), or gone already
        pass


def _run_plan(plan: Plan, *, force: bool, retry_failed: bool, data_root: Path | None,
              device: str, on_event: EventFn | None, executor: str,
              options: ExecOptions | None) -> RunSummary:
    emit = on_event or (lambda kind, info: None)
    if options is None or options.run_fn is None:  # no weights here: fail before storing
        check_weights_available(plan.to_run(force, retry_failed))
    store = plan.store  # opened (a new database created) only now
    opts = resolve_options(store, options, data_root=data_root, device=device)
    if opts.checkpoint_dir is not None:  # before any run starts, not as each run's failure
        check_folder_writable(opts.checkpoint_dir, "checkpoint folder")
    folder = Path(opts.checkpoint_dir) if opts.checkpoint_dir is not None else None
    made_here = folder is not None and not folder.exists()
    try:
        return _run_todo(plan, opts, force=force, retry_failed=retry_failed, emit=emit,
                         executor=executor)
    finally:
        if made_here:
            remove_if_empty(folder)


def _run_todo(plan: Plan, opts: ExecOptions, *, force: bool, retry_failed: bool, emit: EventFn,
              executor: str) -> RunSummary:
    store = plan.store
    todo = plan.to_run(force, retry_failed)
    hashes = [c.run_hash for c in todo]
    summary = RunSummary(skipped=len(plan.configs) - len(todo), total=len(plan.configs))
    data_ids = planned_data_ids(todo, opts.data_root)
    store.add_pending(todo, tags=plan.tags, data_ids=data_ids)
    if force:
        store.reset_to_pending(hashes)
    elif retry_failed:
        store.reset_to_pending(hashes, statuses=("failed",))
    store.localize(todo, data_ids if force else None)  # this machine's weights path (and data)
    reclaim_stale(store, hashes, max_attempts=opts.max_attempts)
    run = None if executor == "inline" else get_executor(executor)  # unknown: fail here
    total, waiting = len(todo), False
    while True:
        if run is None:
            run_inline(store, hashes, opts, emit, summary, total)
        else:
            emit("start", {"total": total, "skipped": summary.skipped,
                           "device": describe_executor(executor, opts)})
            run(store, hashes, opts, emit)
        counts = _settle(store, hashes, opts)
        while not counts["pending"] and counts["running"] and opts.wait:
            if not waiting:  # others hold runs of this matrix: wait for them to end
                emit("waiting", {"running": counts["running"]})
                waiting = True
            time.sleep(opts.poll_seconds)
            raise_if_interrupted()
            counts = _settle(store, hashes, opts)
        if not counts["pending"]:
            break
        total = counts["pending"]  # given back meanwhile (a worker elsewhere died): run them
    summary.done, summary.failed = counts["done"], counts["failed"]
    summary.pending, summary.elsewhere = counts["pending"], counts["running"]
    todo_hashes = set(hashes)
    skipped = [h for h in plan.hashes if h not in todo_hashes]
    summary.stored_failed = store.status_counts(skipped)["failed"] if skipped else 0
    if summary.failed:
        failed = store.list_runs("failed")
        failed = failed[failed.run_hash.isin(hashes)]
        summary.failures = list(zip(failed.run_hash, failed.failure_reason.fillna(""),
                                    strict=True))
    emit("end", {"summary": summary})
    return summary


def planned_data_ids(configs: list[RunConfig], data_root: Path | None) -> dict[str, str | None]:
    """Dataset name -> the digest of its data here (None where absent), once per dataset: what
    new runs record as the data they were planned on (lionbench.data.digest). A folder not on
    this machine counts as absent: a worker elsewhere records the digest of what it reads."""
    ids: dict[str, str | None] = {}
    for name in dict.fromkeys(c.dataset for c in configs):
        try:
            ids[name] = digest_if_present(get_dataset(name), data_root)
        except DatasetError:
            ids[name] = None
    return ids


def _settle(store: Store, hashes: list[str], opts: ExecOptions) -> dict[str, int]:
    """Counts per status of the plan's runs once runs of dead or silent workers were taken
    back (attempt counted): what is ``running`` then is held by a live process."""
    reclaim_stale(store, hashes, max_attempts=opts.max_attempts)
    return store.status_counts(hashes)


def run_inline(store: Store, hashes: list[str], opts: ExecOptions, emit: EventFn,
               summary: RunSummary, total: int | None = None) -> None:
    """The plain ``lionbench run``: claim and train one run after the other in this process."""
    dev = select_device(opts.device)
    payload = {**opts.work_payload(), "device": str(dev)}
    emit("start", {"total": len(hashes) if total is None else total,
                   "skipped": summary.skipped, "device": str(dev)})
    me = worker_id()
    while (row := store.claim_next(me, hashes)) is not None:
        emit("run", {"config": run_config_from_dict(config_of(row)), "row": row})
        execute_claimed(store, row, payload, heartbeat_seconds=opts.heartbeat_seconds, emit=emit)
        raise_if_interrupted()  # one a finaliser may have swallowed


def resolve_options(store: Store, options: ExecOptions | None, *, data_root: Path | None,
                    device: str) -> ExecOptions:
    """A copy of ``options`` with what depends on the store filled in: epoch checkpoints go
    next to a SQLite file (``<db dir>/checkpoints``), else to ``results/checkpoints``
    (``$LIONBENCH_CHECKPOINTS`` wins); an in-memory database keeps none."""
    opts = replace(options or ExecOptions())
    if device != "auto":
        opts.device = device
    if data_root is not None:
        opts.data_root = data_root
    if opts.checkpoint_dir is None and opts.checkpoints:
        if os.environ.get("LIONBENCH_CHECKPOINTS"):
            opts.checkpoint_dir = Path(os.environ["LIONBENCH_CHECKPOINTS"])
        elif not store.is_sqlite:
            opts.checkpoint_dir = Path("results/checkpoints")
        elif store.sqlite_file is not None:
            opts.checkpoint_dir = store.sqlite_file.parent / "checkpoints"
    return opts


def describe_executor(name: str, opts: ExecOptions) -> str:
    if name == "local":
        return describe_local(opts)
    return {"ray": f"Ray ({opts.address or 'local cluster'})",
            "slurm": f"Slurm via submitit ({opts.slurm.cluster or 'slurm'})"}.get(name, name)


def run_matrix(config_file: Path | None = None, *, methods: str | None = None,
               backbones: str | None = None, datasets: str | None = None,
               seeds: str | None = None, overrides: dict[str, Any] | None = None,
               weights: str | None = None, db: str | None = None, force: bool = False,
               data_root: Path | None = None, device: str = "auto", executor: str = "inline",
               options: ExecOptions | None = None) -> RunSummary:
    """Plan and run a matrix (the CLI's ``run`` without the progress bars): in this process, or
    with ``executor`` ``local``/``ray``/``slurm`` and its ``options`` (lionbench.executors)."""
    matrices = create_matrices(config_file, methods, backbones, datasets, seeds, overrides,
                               weights)
    plan = plan_runs(Store(db), expand_matrix(matrices))
    return run_plan(plan, force=force, data_root=data_root, device=device, executor=executor,
                    options=options)
