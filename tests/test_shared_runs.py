"""Exit status when processes share a matrix, and ``--max-attempts`` counting every claim.

Drivers here are real processes running ``run_plan`` with the fake training function (no torch:
each starts in about a second), on one SQLite file. Every wait is on a state (a status in the
database, a process's exit) with generous deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from lionbench.config import RunConfig, TrainConfig
from lionbench.store import Store

FAKE = "lionbench.executors.fake:fake_run"

DRIVER = textwrap.dedent("""
    import json, sys
    from lionbench.config import RunConfig, TrainConfig
    from lionbench.executors import ExecOptions
    from lionbench.runner import plan_runs, run_plan
    from lionbench.store import Store

    url, runs, epochs, wait, max_attempts = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                             sys.argv[4] == "wait", int(sys.argv[5]))
    configs = [RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits", seed=i,
                         train=TrainConfig(epochs=epochs)) for i in range(runs)]
    summary = run_plan(plan_runs(url, configs), options=ExecOptions(
        run_fn="lionbench.executors.fake:fake_run", heartbeat_seconds=0.2, poll_seconds=0.1,
        wait=wait, max_attempts=max_attempts))
    print(json.dumps({"exit": summary.exit_code, "done": summary.done, "failed": summary.failed,
                      "elsewhere": summary.elsewhere, "note": summary.note_line(),
                      "problem": summary.problem_line()}))
""")


def driver(url: str, runs: int, epochs: int, wait: bool = False, max_attempts: int = 3,
           epoch_seconds: float = 0.05) -> subprocess.Popen:
    env = {**os.environ, "LIONBENCH_FAKE_EPOCH_SECONDS": str(epoch_seconds)}
    return subprocess.Popen([sys.executable, "-c", DRIVER, url, str(runs), str(epochs),
                             "wait" if wait else "no", str(max_attempts)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def outcome(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def wait_for(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_processes_sharing_a_matrix_all_exit_0_and_each_run_trains_once(tmp_path):
    """The drivers that find nothing left to claim exit 0 (a note names the runs the others
    still train); with --wait each waits for them, then every summary counts them done."""
    plain, waiting = (f"sqlite:///{tmp_path / name}" for name in ("plain.db", "wait.db"))
    procs = [(False, driver(plain, runs=3, epochs=30)) for _ in range(2)]
    procs += [(True, driver(waiting, runs=3, epochs=30, wait=True)) for _ in range(2)]
    results = [(wait, outcome(p)) for wait, p in procs]
    assert [r["exit"] for _, r in results] == [0] * 4, results
    for url in (plain, waiting):
        rows = Store(url, read_only=True).fetch_runs(columns=["status", "attempts"])
        assert [r["status"] for r in rows] == ["done"] * 3
        assert all(r["attempts"] == 1 for r in rows)  # each trained exactly once
    for wait, r in results:
        assert r["problem"] == ""
        if wait:  # waited: every run counts as done, nothing left elsewhere
            assert r["elsewhere"] == 0 and r["done"] == 3, r
        elif r["elsewhere"]:
            assert r["note"].startswith(f"note: {r['elsewhere']} of 3 runs are still running "
                                        "in other processes"), r


KILLED = textwrap.dedent("""
    import sys
    from lionbench.config import RunConfig, TrainConfig
    from lionbench.executors import ExecOptions
    from lionbench.runner import plan_runs, run_plan

    config = RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits",
                       train=TrainConfig(epochs=100000))
    run_plan(plan_runs(sys.argv[1], [config]), options=ExecOptions(
        run_fn="lionbench.executors.fake:fake_run", heartbeat_seconds=0.2, max_attempts=3))
""")


def fake_options(**kwargs):  # noqa: ANN003, ANN201
    from lionbench.executors import ExecOptions

    return ExecOptions(run_fn=FAKE, heartbeat_seconds=0.2, poll_seconds=0.1, **kwargs)


def test_a_failure_elsewhere_is_still_a_failure_when_waited_for(tmp_path, monkeypatch):
    from lionbench.runner import plan_runs, run_plan

    monkeypatch.setenv("LIONBENCH_FAKE_EPOCH_SECONDS", "0.01")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store(url)
    configs = [RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits", seed=i,
                         train=TrainConfig(epochs=5)) for i in range(2)]
    store.add_pending(configs)
    held = store.claim_next(f"otherhost:{os.getpid()}", [configs[1].run_hash])  # alive, beating

    def fail_it_later() -> None:
        wait_for(lambda: store.status_counts([configs[0].run_hash])["done"], 120, "run 0")
        time.sleep(0.5)
        store.mark_failed(held["id"], "boom elsewhere", {"host": "otherhost"}, attempt=1)

    helper = threading.Thread(target=fail_it_later)
    helper.start()
    summary = run_plan(plan_runs(url, configs), options=fake_options(wait=True))
    helper.join()
    assert summary.exit_code == 1 and summary.failed == 1 and summary.elsewhere == 0
    assert summary.problem_line().startswith("1 of 2 runs failed")


def dead_worker() -> str:
    """The worker id of a process of this host that has ended (as one killed by SIGKILL)."""
    from lionbench.executors.execute import worker_id

    proc = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"],
                            stdout=subprocess.PIPE, text=True)
    pid = int(proc.communicate(timeout=60)[0])
    return worker_id().rpartition(":")[0] + f":{pid}"


def test_max_attempts_counts_claims_lost_to_killed_workers(tmp_path, monkeypatch):
    """Three drivers killed with SIGKILL mid-run (no chance to give the run back): the next
    one takes the run back, sees three lost claims, and marks it failed instead of running it
    a fourth time. (The first pass let it run: attempts=4, interrupts=0.)"""
    from lionbench.runner import plan_runs, reclaim_stale, run_plan

    monkeypatch.setenv("LIONBENCH_FAKE_EPOCH_SECONDS", "0.01")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store(url)
    config = RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits",
                       train=TrainConfig(epochs=3))
    store.add_pending([config])
    for attempt in (1, 2, 3):
        if attempt > 1:  # the next driver takes the dead one's claim back, counted
            assert reclaim_stale(store, [config.run_hash], max_attempts=3) == 1
        row = store.claim_next(dead_worker(), [config.run_hash])
        assert row["attempts"] == attempt
    summary = run_plan(plan_runs(store, [config]), options=fake_options(max_attempts=3))
    (row,) = store.fetch_runs()
    assert row["status"] == "failed" and row["attempts"] == 3 and row["interrupts"] == 0
    assert "its worker process is gone (gave up after 3 attempts)" in row["failure_reason"]
    assert summary.exit_code == 1 and summary.failed == 1


def test_a_driver_killed_by_sigkill_is_taken_back_with_the_attempt_counted(tmp_path):
    """One real SIGKILL: the next driver takes the claim back, the attempt counted."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    Store(url).close()
    env = {**os.environ, "LIONBENCH_FAKE_EPOCH_SECONDS": "0.05"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, url], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(r["status"] == "running" for r in Store(url, read_only=True)
                         .fetch_runs()), 300, "the claim")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    from lionbench.runner import reclaim_stale

    (row,) = Store(url, read_only=True).fetch_runs()
    assert reclaim_stale(Store(url), [row["run_hash"]], max_attempts=3) == 1
    (row,) = Store(url, read_only=True).fetch_runs()
    assert row["status"] == "pending" and row["attempts"] == 1 and row["interrupts"] == 0
    assert row["requeue_reason"] == "its worker process is gone"
