"""A local worker process: claim the next pending run, train it, repeat until none is left.

``python -m lionbench.executors.worker --db URL --hashes-file F --payload JSON [--fresh-process]``
is started by the local executor, one per GPU or CPU slot. With ``--fresh-process`` each run
trains in a child (``--run-id N --attempt A``) so no GPU memory, allocator cache or peak-memory
high-water mark carries from one run to the next; the worker beats for it while it lives and
gives the run back (attempt counted) if it dies. SIGTERM acts like Ctrl-C: the run in hand goes
back to pending, resumable from its last epoch checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from typing import Any

from lionbench.errors import LionbenchError
from lionbench.executors.execute import die_with_parent, execute_claimed, worker_id
from lionbench.executors.interrupts import interrupt_guard, raise_if_interrupted
from lionbench.executors.progress import print_epoch_lines
from lionbench.store import Store

INTERRUPTED = "interrupted (Ctrl-C or SIGTERM); resumes from its last epoch checkpoint"


def describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


def run_in_child(store: Store, row: dict[str, Any], args: argparse.Namespace) -> None:
    """Train ``row`` in a fresh process; give the run back if that process dies without storing."""
    cmd = [sys.executable, "-m", "lionbench.executors.worker",  # the URL goes by environment
           "--payload", args.payload, "--heartbeat", str(args.heartbeat),
           "--run-id", str(row["id"]), "--attempt", str(row["attempts"])]
    child = subprocess.Popen(cmd, env={**os.environ, "LIONBENCH_DB": store.url},
                             preexec_fn=die_with_parent(signal.SIGKILL))
    try:
        while True:
            try:
                rc = child.wait(timeout=args.heartbeat)
                break
            except subprocess.TimeoutExpired:
                raise_if_interrupted()
                store.heartbeat(row["id"], row["attempts"])
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)  # it gives the run back itself ...
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        store.requeue(row["id"], row["attempts"], INTERRUPTED, count_attempt=False)  # ... or we do
        raise
    if rc != 0:  # no-op when the child stored its outcome before dying
        store.requeue(row["id"], row["attempts"],
                      f"run process {describe_exit(rc)} (worker {worker_id()})",
                      max_attempts=args.max_attempts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lionbench.executors.worker")
    parser.add_argument("--db", help="database URL (default: $LIONBENCH_DB)")
    parser.add_argument("--payload", required=True, help="JSON of ExecOptions.work_payload()")
    parser.add_argument("--hashes-file", help="JSON list of the run hashes this worker may take")
    parser.add_argument("--fresh-process", action="store_true")
    parser.add_argument("--heartbeat", type=float, default=30.0)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--run-id", type=int, help="train this one claimed run and exit")
    parser.add_argument("--attempt", type=int)
    args = parser.parse_args(argv)
    payload = json.loads(args.payload)
    # without a terminal (a log file), each epoch is a line of the log; on a terminal the
    # driver's progress bars show the matrix and workers stay quiet
    emit = None if sys.stdout.isatty() else print_epoch_lines()
    with interrupt_guard():  # SIGTERM = Ctrl-C: the run in hand goes back to pending
        store = Store(args.db, create=False)
        try:
            if args.run_id is not None:
                row = store.get_run(args.run_id)
                if row is None or row["status"] != "running" or row["attempts"] != args.attempt:
                    return 0  # taken back before this process started: nothing to do
                execute_claimed(store, row, payload, heartbeat_seconds=args.heartbeat, emit=emit)
                return 0
            with open(args.hashes_file) as fh:
                hashes = json.load(fh)
            me = worker_id()
            while (row := store.claim_next(me, hashes)) is not None:
                if args.fresh_process:
                    run_in_child(store, row, args)
                else:
                    execute_claimed(store, row, payload, heartbeat_seconds=args.heartbeat,
                                    emit=emit)
                raise_if_interrupted()
            return 0
        except KeyboardInterrupt:
            return 130
        except LionbenchError as exc:  # e.g. heartbeats that kept failing: one line, exit 1
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            store.close()


if __name__ == "__main__":
    sys.exit(main())
