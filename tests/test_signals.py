"""SIGTERM acts like Ctrl-C; a second signal ends the process at once, even inside a long C call.

Every wait here is on a state (a checkpoint on disk, a status in the database, a marker file, a
process's exit), with generous deadlines: nothing depends on how fast a loaded machine is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from lionbench.store import Store

TINY = ["--set", "image_size=8", "--set", "max_train_samples=64", "--set", "batch_size=16"]


def lionbench_cmd() -> list[str]:
    script = Path(sys.executable).parent / "lionbench"
    return [str(script)] if script.exists() else [sys.executable, "-c",
                                                  "from lionbench.cli import main; main()"]


def wait_for(condition, timeout: float, what: str) -> float:  # noqa: ANN001
    """Poll ``condition`` until true; the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def statuses(url: str) -> list[str]:
    return [r["status"] for r in Store(url, read_only=True).fetch_runs(columns=["status"])]


def test_sigterm_puts_the_run_back_within_seconds_and_a_rerun_completes_it_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    args = [*lionbench_cmd(), "run", "-m", "fine-tuning", "-b", "test_resnet", "-d", "digits",
            "--weights", "none", "--set", "epochs=40", *TINY, "--db", url, "--no-table"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    ckpts = tmp_path / "checkpoints"
    wait_for(lambda: any(ckpts.glob("*.pt")) or proc.poll() is not None, 300,
             "the first epoch checkpoint")
    assert proc.poll() is None, proc.communicate()
    assert statuses(url) == ["running"]
    proc.send_signal(signal.SIGTERM)
    took = wait_for(lambda: statuses(url) == ["pending"], 60, "the run back to pending")
    out, err = proc.communicate(timeout=60)
    assert took < 15, f"the run went back to pending only after {took:.1f} s"
    assert proc.returncode == 143, (out, err)  # 128 + SIGTERM, as a shell reports it
    assert err.strip().splitlines() == ["interrupted: the run in progress went back to pending; "
                                        "rerun the same command to resume"]
    row = Store(url, read_only=True).fetch_runs()[0]
    assert (row["attempts"], row["interrupts"]) == (1, 1)
    assert "SIGTERM" in row["requeue_reason"]

    rerun = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    rows = Store(url, read_only=True).fetch_runs()
    assert len(rows) == 1 and rows[0]["status"] == "done"  # stored once
    assert (rows[0]["attempts"], rows[0]["interrupts"]) == (2, 1)
    history = json.loads(rows[0]["extra"])["history"]
    assert [h["epoch"] for h in history] == list(range(40))  # resumed, each epoch once
    assert not list(ckpts.glob("*.pt"))


SLOW_RUN = '''
import sys, time
from pathlib import Path

def slow_run(config, data_root=None, device="cpu", *, progress=None, checkpoint_path=None):
    if "--torch-op" in sys.argv:  # one long torch call (tens of seconds): no Python signal
        import torch                # handler runs until it returns

        torch.set_num_threads(1)
        a = torch.randn(5000, 5000, dtype=torch.float64)
        Path(sys.argv[2]).write_text("started")
        return a @ a
    Path(sys.argv[2]).write_text("started")
    for epoch in range(100000):
        time.sleep(0.05)
        if progress:
            progress("epoch", epoch + 1, 100000)
'''

DRIVER = '''
import sys
sys.path.insert(0, {folder!r})
from lionbench.config import RunConfig
from lionbench.executors import ExecOptions
from lionbench.runner import plan_runs, run_plan
from lionbench.store import Store

store = Store(sys.argv[1])
configs = [RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits")]
run_plan(plan_runs(store, configs), options=ExecOptions(run_fn="slowrun:slow_run",
                                                        heartbeat_seconds=0.5))
'''


def start_driver(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str, Path]:
    (tmp_path / "slowrun.py").write_text(SLOW_RUN)
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER).format(folder=str(tmp_path)))
    url, marker = f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, str(script), url, str(marker), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: marker.exists() or proc.poll() is not None, 300, "the run to start")
    assert proc.poll() is None, proc.communicate()
    return proc, url, marker


def test_sigterm_in_the_library_gives_the_run_back(tmp_path):
    proc, url, _ = start_driver(tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    row = Store(url, read_only=True).fetch_runs()[0]
    assert row["status"] == "pending" and row["interrupts"] == 1


def test_second_signal_ends_the_process_at_once_even_inside_a_long_torch_op(tmp_path):
    from lionbench.runner import reclaim_stale

    proc, url, _ = start_driver(tmp_path, "--torch-op")
    proc.send_signal(signal.SIGINT)  # its KeyboardInterrupt waits for the op to return
    time.sleep(0.5)
    assert proc.poll() is None
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert time.monotonic() - start < 10
    assert proc.returncode == 130  # 128 + SIGINT
    store = Store(url)
    assert statuses(url) == ["running"]  # no time to give it back ...
    assert reclaim_stale(store, [store.fetch_runs()[0]["run_hash"]]) == 1  # ... the next run does
