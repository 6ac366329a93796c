"""Executors under concurrency and crashes, on SQLite and PostgreSQL.

Most runs here go through ``lionbench.executors.fake:fake_run`` (sleeps through its epochs, no
torch), so the tests measure claiming, heartbeats, requeueing and resubmission, not training;
``test_cli_local_workers_train_for_real`` trains for real through ``lionbench run --workers``.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pgserver import postgres_server, postgres_url  # noqa: F401 - fixtures

from lionbench.config import RunConfig, TrainConfig
from lionbench.executors import ExecOptions, SlurmOptions
from lionbench.runner import plan_runs, run_plan
from lionbench.store import Store

FAKE = "lionbench.executors.fake:fake_run"


def require(module: str, extra: str):
    """The module, or a skip saying how to get it; under CI=true a failure (no silent skips)."""
    try:
        return __import__(module)
    except ImportError:
        reason = f"{module} is not installed: pip install 'lionbench[{extra}]' (or [dev])"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def fake_configs(n: int, epochs: int = 1, **method_config) -> list[RunConfig]:
    return [RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits", seed=i,
                      method_config=dict(method_config), train=TrainConfig(epochs=epochs))
            for i in range(n)]


def fast(**kw) -> ExecOptions:
    base = dict(run_fn=FAKE, heartbeat_seconds=0.5, poll_seconds=0.1, stale_after=60)
    return ExecOptions(**{**base, **kw})


def assert_each_run_done_once(store: Store, configs: list[RunConfig]) -> None:
    df = store.list_runs()
    assert sorted(df.run_hash) == sorted(c.run_hash for c in configs)  # each exactly once
    assert set(df.status) == {"done"}, df.status.value_counts()
    for col in ("test_top1", "finished_at", "started_at", "worker", "host"):  # no partial rows
        assert df[col].notna().all(), col


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return request.getfixturevalue("postgres_url")


# --- (1) 8 workers x 200 runs -------------------------------------------------------------------
def test_eight_workers_200_runs_each_done_once(any_db, tmp_path):
    store, configs = Store(any_db), fake_configs(200)
    summary = run_plan(plan_runs(store, configs), executor="local",
                       options=fast(workers=8, log_dir=tmp_path / "logs"))
    assert (summary.done, summary.failed, summary.pending) == (200, 0, 0)
    assert_each_run_done_once(store, configs)
    df = store.list_runs()
    assert (df.attempts == 1).all()  # no run claimed twice
    assert df.extra.map(lambda e: e["pid"]).nunique() > 1  # the workers really shared the work
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "locked" not in logs and "Traceback" not in logs, logs[-2000:]


# --- (2) a worker killed with SIGKILL mid-run ---------------------------------------------------
def kill_when_running(store: Store, ckpt: Path, find_pid, killed: dict) -> threading.Thread:
    """Background: once a run has saved an epoch checkpoint, SIGKILL the process ``find_pid``
    names for its worker (the worker itself, or the run process it started)."""
    def target() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for row in store.list_runs("running").itertuples():
                pid = find_pid(int(row.worker.rpartition(":")[2]))
                if pid and (ckpt / f"{row.run_hash}.pt").exists():
                    killed.update(run_hash=row.run_hash, pid=pid)
                    os.kill(pid, signal.SIGKILL)
                    return
            time.sleep(0.05)
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def child_of(pid: int) -> int | None:
    """The run process a fresh-process worker started (scan /proc for its parent id)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            return int(stat.parent.name)
    return None


@pytest.mark.parametrize("fresh", [False, True], ids=["worker-killed", "run-process-killed"])
def test_sigkilled_worker_run_is_retried_and_stored_once(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("LIONBENCH_FAKE_EPOCH_SECONDS", "0.1")
    store, configs = Store(f"sqlite:///{tmp_path / 'runs.db'}"), fake_configs(5, epochs=15)
    killed: dict = {}
    thread = kill_when_running(store, tmp_path / "ckpt", child_of if fresh else (lambda pid: pid),
                               killed)
    summary = run_plan(plan_runs(store, configs), executor="local",
                       options=fast(workers=2, fresh_process=fresh,
                                    checkpoint_dir=tmp_path / "ckpt"))
    thread.join()
    assert killed and summary.done == 5
    assert_each_run_done_once(store, configs)
    df = store.list_runs().set_index("run_hash")
    victim = df.loc[killed["run_hash"]]
    assert victim.attempts == 2 and "SIGKILL" in victim.requeue_reason
    assert victim.extra["pid"] != killed["pid"]
    assert victim.extra["resumed_from_epoch"] > 0  # went on from its epoch checkpoint
    assert (df.drop(index=killed["run_hash"]).attempts == 1).all()


# --- (3) the whole driver killed at random moments ----------------------------------------------
DRIVER = """
import sys
from lionbench.config import RunConfig, TrainConfig
from lionbench.executors import ExecOptions
from lionbench.runner import plan_runs, run_plan
from lionbench.store import Store

store = Store(sys.argv[1])
configs = [RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits", seed=i,
                     train=TrainConfig(epochs=4)) for i in range(int(sys.argv[2]))]
run_plan(plan_runs(store, configs), executor="local",
         options=ExecOptions(workers=3, run_fn="{fake}", heartbeat_seconds=0.5,
                             poll_seconds=0.1, checkpoint_dir=sys.argv[3]))
"""


def lingering_workers(url: str) -> list[int]:
    """Processes whose environment names this database: workers that outlived their driver."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"LIONBENCH_DB={url}".encode() in environ.read_bytes():
                pids.append(int(environ.parent.name))
        except OSError:
            pass
    return pids


def test_driver_killed_at_random_moments_then_rerun(tmp_path, monkeypatch):
    monkeypatch.setenv("LIONBENCH_FAKE_EPOCH_SECONDS", "0.1")
    url, n = f"sqlite:///{tmp_path / 'runs.db'}", 24
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER).replace("{fake}", FAKE))
    rng = random.Random(7)
    for trial in range(10):
        proc = subprocess.Popen([sys.executable, str(script), url, str(n), str(tmp_path / "ck")])
        time.sleep(rng.uniform(1.0, 3.5))
        proc.send_signal(signal.SIGINT if trial % 3 == 2 else signal.SIGKILL)
        proc.wait(timeout=180)  # SIGINT: the driver gives its workers up to 60 s to stop
        deadline = time.monotonic() + 60  # generous: the machine may be loaded
        while lingering_workers(Store(url).url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not lingering_workers(Store(url).url), f"workers outlived the driver ({trial})"
        df = Store(url).list_runs()
        assert df.run_hash.is_unique
        done = df[df.status == "done"]
        assert done.test_top1.notna().all() and done.finished_at.notna().all()
    store = Store(url)
    configs = fake_configs(n, epochs=4)
    run_plan(plan_runs(store, configs), executor="local",
             options=fast(workers=3, checkpoint_dir=tmp_path / "ck"))
    assert_each_run_done_once(store, configs)


# --- Ctrl-C: resumable; a second Ctrl-C exits at once ------------------------------------------
def test_ctrl_c_puts_runs_back_and_second_ctrl_c_exits_at_once(tmp_path, monkeypatch):
    from lionbench.runner import reclaim_stale

    monkeypatch.setenv("LIONBENCH_FAKE_EPOCH_SECONDS", "0.2")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store(url)

    def start(stubborn: bool) -> subprocess.Popen:
        script = tmp_path / f"driver-{stubborn}.py"
        script.write_text(textwrap.dedent(DRIVER).replace("{fake}", FAKE).replace(
            "epochs=4)", f"epochs=50), method_config={{'stubborn': {stubborn}}}"))
        proc = subprocess.Popen([sys.executable, str(script), url, "4", str(tmp_path / "ck")],
                                stderr=subprocess.PIPE, text=True)
        # wait on states, not on time: three runs claimed and each inside its training (an
        # epoch checkpoint written), however slow a loaded machine is
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            running = set(store.list_runs("running").run_hash)
            ckpts = {p.stem for p in (tmp_path / "ck").glob("*.pt")}
            if len(running) == 3 and running <= ckpts:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the driver ended before its runs started"
        return proc

    proc = start(stubborn=False)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) != 0 and "KeyboardInterrupt" in proc.stderr.read()
    df = store.list_runs()
    interrupted = df[df.requeue_reason.fillna("").str.contains("interrupted")]
    assert set(df.status) == {"pending"} and len(interrupted) == 3
    # Ctrl-C is not the run's fault: counted as an interrupt, not charged as an attempt;
    # `attempts` itself never goes down (it identifies the claim)
    assert (interrupted.attempts == 1).all() and (interrupted.interrupts == 1).all()
    for p in (tmp_path / "ck").glob("*.pt"):
        p.unlink()  # the next start waits for fresh checkpoints

    proc = start(stubborn=True)  # runs that ignore the first Ctrl-C ...
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert proc.poll() is None  # ... keep the driver waiting for them
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert time.monotonic() - t0 < 10  # the second Ctrl-C kills them and exits at once
    assert proc.returncode == 130
    deadline = time.monotonic() + 10
    while lingering_workers(store.url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not lingering_workers(store.url)
    hashes = list(store.list_runs().run_hash)
    assert store.count_by_status()["running"] == 3
    assert reclaim_stale(store, hashes) == 3  # the next `lionbench run` takes them back


# --- (4) Ray with simulated GPUs, submitit's local executor --------------------------------------
def test_ray_executor_gives_each_task_its_own_gpu(tmp_path):
    ray = require("ray", "ray")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"LIONBENCH_FAKE_EPOCH_SECONDS": "0.1"}})
    try:
        store, configs = Store(f"sqlite:///{tmp_path / 'runs.db'}"), fake_configs(6, epochs=5)
        summary = run_plan(plan_runs(store, configs), executor="ray", options=fast())
    finally:
        ray.shutdown()
    assert summary.done == 6
    assert_each_run_done_once(store, configs)
    extras = list(store.list_runs().extra)
    for e in extras:
        assert len(e["ray_gpu_ids"]) == 1 and e["ray_gpu_ids"][0] in (0, 1)
        assert e["cuda_visible_devices"] == str(e["ray_gpu_ids"][0])
    for a in extras:  # tasks that ran at the same time saw different GPUs
        for b in extras:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["ray_gpu_ids"] != b["ray_gpu_ids"]
    assert len({e["pid"] for e in extras}) == 6  # max_calls=1: a fresh process per GPU run


def test_submitit_local_executor_resubmits_a_preempted_job(tmp_path, monkeypatch):
    require("submitit", "slurm")
    from lionbench.executors import slurm

    monkeypatch.setenv("LIONBENCH_FAKE_EPOCH_SECONDS", "0.1")
    store, configs = Store(f"sqlite:///{tmp_path / 'runs.db'}"), fake_configs(3, epochs=20)
    ckpt, preempted = tmp_path / "ckpt", {}
    real_submit = slurm.SlurmDriver.submit

    def submit_then_preempt(self, rows):
        jobs = real_submit(self, rows)
        if not preempted:  # preempt the first job once its run has checkpointed an epoch
            job, row = next(iter(jobs.items()))
            preempted["run_hash"] = row["run_hash"]

            def preempt() -> None:
                deadline = time.monotonic() + 60
                while not (ckpt / f"{row['run_hash']}.pt").exists():
                    if time.monotonic() > deadline:
                        return
                    time.sleep(0.05)
                os.kill(child_of(job._process.pid), signal.SIGUSR2)  # as Slurm preempts
            threading.Thread(target=preempt, daemon=True).start()
        return jobs

    monkeypatch.setattr(slurm.SlurmDriver, "submit", submit_then_preempt)
    options = fast(workers=3, checkpoint_dir=ckpt,
                   slurm=SlurmOptions(cluster="local", folder=tmp_path / "slurm", time_min=5))
    summary = run_plan(plan_runs(store, configs), executor="slurm", options=options)
    assert summary.done == 3
    assert_each_run_done_once(store, configs)
    victim = store.list_runs().set_index("run_hash").loc[preempted["run_hash"]]
    assert victim.attempts == 2 and "slurm job ended" in victim.requeue_reason
    assert victim.extra["resumed_from_epoch"] > 0


# --- store: heartbeats, fencing, retries, migration ---------------------------------------------
def test_stale_run_goes_back_counted_and_old_claim_cannot_store(tmp_path):
    from datetime import timedelta

    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    store.add_pending(fake_configs(1))
    first = store.claim_next("gone:1")
    store.execute("update runs set heartbeat_at = '2000-01-01T00:00:00+00:00'")
    assert store.requeue_lost("no heartbeat", stale_after=timedelta(minutes=1)) == 1
    second = store.claim_next("w:2")
    assert second["attempts"] == 2
    assert not store.heartbeat(first["id"], first["attempts"])  # the old claim learns it lost
    assert not store.mark_done(first["id"], {"test_top1": 0.1}, {}, {}, attempt=1)
    assert store.mark_done(second["id"], {"test_top1": 0.2}, {}, {}, attempt=2)
    assert store.list_runs().test_top1[0] == 0.2
    store.reset_to_pending([second["run_hash"]])
    for _ in (3, 4):  # a run that keeps killing its worker ends failed, reason kept
        row = store.claim_next("w:3")
        status = store.requeue(row["id"], row["attempts"], "worker died", max_attempts=4)
    assert (row["attempts"], status) == (4, "failed")
    assert "worker died" in store.list_runs().failure_reason[0]


def test_failed_reason_kept_and_retry_failed_reruns(tmp_path):
    store, configs = Store(f"sqlite:///{tmp_path / 'runs.db'}"), fake_configs(2, fail="boom")
    summary = run_plan(plan_runs(store, configs), options=fast())
    assert summary.failed == 2 and "RuntimeError: boom" in summary.failures[0][1]
    assert run_plan(plan_runs(store, configs), options=fast()).skipped == 2
    again = run_plan(plan_runs(store, configs), retry_failed=True, options=fast())
    assert again.failed == 2 and set(store.list_runs().attempts) == {2}


def test_migration_from_a_version_1_database(any_db):
    from sqlalchemy import text

    from lionbench.config import canonical_json
    from lionbench.store import SCHEMA_VERSION, create_db_engine, metadata, resolve_url

    old = fake_configs(2)[1]
    engine = create_db_engine(resolve_url(any_db))
    with engine.begin() as conn:  # a database as lionbench 0.1 (schema 1) left it
        metadata.create_all(conn)
        conn.execute(text("DROP TABLE tunings"))  # v7
        conn.execute(text("DROP INDEX ix_runs_cell_hash"))
        for col in ("requeue_reason", "requeued_at", "cell_hash", "runtime", "data_id", "origin",
                    "imported_result", "interrupts", "warnings"):
            conn.execute(text(f"ALTER TABLE runs DROP COLUMN {col}"))
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('schema_version', '1')"))
        conn.execute(text(
            "INSERT INTO runs (run_hash, method, backbone, weights, weights_id, dataset, seed, "
            "config, protocol_version, tags, status, attempts, created_at, extra) VALUES (:h, "
            ":m, :b, 'pretrained', 'timm', :d, :s, :c, 1, '', 'done', 1, "
            "'2026-01-01T00:00:00+00:00', :e)"),
            dict(h=old.run_hash, m=old.method, b=old.backbone, d=old.dataset, s=old.seed,
                 c=canonical_json(old.to_dict()),
                 e='{"p1_fwd_not_converged": 3.0, "p2_fwd_not_converged": 0.0}'))
    engine.dispose()
    Store(any_db).add_pending(fake_configs(1), data_ids={"digits": "data:1234"})  # new columns
    store = Store(any_db)
    assert store.execute("select value from meta")[0][0] == str(SCHEMA_VERSION) == "7"
    cells = dict(store.execute("select run_hash, cell_hash from runs"))
    assert cells[old.run_hash] == old.cell_hash  # v3 filled in the runs it found
    v4 = {r[0]: r[1:] for r in store.execute(
        "select run_hash, data_id, origin, imported_result, runtime from runs")}
    assert v4[old.run_hash] == (None, None, None, None)  # v4: made here, digest unknown
    assert v4[fake_configs(1)[0].run_hash][0] == "data:1234"
    interrupts = dict(store.execute("select run_hash, interrupts from runs"))
    assert interrupts[old.run_hash] == 0  # v5: none counted before
    # v6 derived the warnings of the done runs it found from their stored solver counts
    assert [r["warnings"] for r in store.runs_with_warnings()] == [
        ["p1: 3 forward solves did not converge"]]
    assert store.fetch_tunings() == []  # v7 created the table of tune's choices
    row = store.claim_next("w:1")
    assert store.requeue(row["id"], row["attempts"], "lost") == "pending"
    assert store.get_run(row["id"])["requeue_reason"] == "lost"


# --- end to end: lionbench run --workers, lionbench status --------------------------------------
def test_cli_local_workers_train_for_real(tmp_path):
    from conftest import TINY_SET
    from typer.testing import CliRunner

    from lionbench.cli import app

    db = f"sqlite:///{tmp_path / 'runs.db'}"
    args = ["run", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits", "--seeds", "0,1",
            "--weights", "none", *TINY_SET, "--set", "max_train_samples=64", "--db", db,
            "--workers", "2", "--fresh-process", "--no-table"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    df = Store(db).list_runs()
    assert set(df.status) == {"done"} and len(df) == 2
    assert df.device.str.startswith("cpu").all() and df.params_trainable.notna().all()
    assert df.host.eq(socket.gethostname()).all()
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # deleted once done
    status = CliRunner().invoke(app, ["status", "--db", db])
    assert status.exit_code == 0 and "done" in status.output
