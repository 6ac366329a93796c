"""Hardening beyond malformed input: read-only databases and folders, names that look like
markup, logs without a terminal, corrupt caches, failing heartbeats, hidden passwords."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_SET
from PIL import Image
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.config import RunConfig, TrainConfig
from lionbench.errors import StoreError
from lionbench.executors import ExecOptions
from lionbench.executors.execute import MISSED_BEATS, execute_claimed
from lionbench.runner import create_matrices, expand_matrix, plan_runs
from lionbench.store import SCHEMA_VERSION, Store, hide_password
from lionbench.train import feature_cache, train_run

FAKE = "lionbench.executors.fake:fake_run"
ODD = "folder:data/odd[/x] [bold red]name[/bold red]"  # rich would read these as markup


def lionbench_cmd() -> list[str]:
    script = Path(sys.executable).parent / "lionbench"
    return [str(script)] if script.exists() else [sys.executable, "-c",
                                                  "from lionbench.cli import main; main()"]


def without_root_powers() -> list[str]:
    """A command prefix under which file permissions hold even for root (tests run as root in
    containers): setpriv drops the capabilities that bypass them."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def done_store(url: str, datasets: tuple[str, ...] = ("digits",)) -> Store:
    store = Store(url)
    store.add_pending([RunConfig(method="head-tuning", backbone="test_resnet", dataset=d)
                       for d in datasets])
    while (row := store.claim_next("w:1")) is not None:
        store.mark_done(row["id"], {"test_top1": 0.75, "params_trainable": 970}, {},
                        {"host": "h", "device": "cpu"}, attempt=row["attempts"])
    return store


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --- read-only databases ---------------------------------------------------------------------
def test_read_only_folder_is_readable_by_every_read_only_command(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    done_store(f"sqlite:///{folder / 'runs.db'}").close()
    before = tree(folder)
    folder.chmod(0o555)
    try:
        prefix, db = without_root_powers(), str(folder / "runs.db")
        outputs = {}
        for args in (["status"], ["table", "--format", "markdown"], ["export"],
                     ["run", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits"]):
            proc = subprocess.run([*prefix, *lionbench_cmd(), *args, "--db", db], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=300)
            outputs[args[0]] = proc
    finally:
        folder.chmod(0o755)
    for name in ("status", "table", "export"):
        assert outputs[name].returncode == 0, (name, outputs[name].stderr)
    assert "done    │ 1" in outputs["status"].stdout
    assert "0.7500" in outputs["table"].stdout and "head-tuning" in outputs["export"].stdout
    run = outputs["run"]  # a writing command says why it cannot, in one line
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    assert "folder of database" in run.stderr and "read-only" in run.stderr
    assert tree(folder) == before  # no -wal, -shm or journal left behind, nothing changed


def test_read_only_database_file_refuses_run_in_one_line(tmp_path):
    db = tmp_path / "runs.db"
    done_store(f"sqlite:///{db}").close()
    before = db.read_bytes()
    db.chmod(0o444)
    try:
        proc = subprocess.run([*without_root_powers(), *lionbench_cmd(), "run", "-m",
                               "head-tuning", "-b", "test_resnet", "-d", "digits", "--db",
                               str(db)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
        status = subprocess.run([*without_root_powers(), *lionbench_cmd(), "status", "--db",
                                 str(db)], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
    finally:
        db.chmod(0o644)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: database file") and "is read-only" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert status.returncode == 0 and "done" in status.stdout
    assert db.read_bytes() == before


def test_read_only_commands_create_nothing_and_never_migrate(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    done_store(url).close()
    store = Store(url)
    store.execute("update meta set value = '3' where key = 'schema_version'")
    store.execute("alter table runs drop column interrupts")
    store.close()
    before = tree(tmp_path)
    runner = CliRunner()
    status = runner.invoke(app, ["status", "--db", url])
    assert status.exit_code == 0 and "schema 3, read as it is" in status.output
    table = runner.invoke(app, ["table", "--db", url, "--format", "csv"])
    assert table.exit_code == 0 and "0.75" in table.output
    exported = runner.invoke(app, ["export", "--db", url, "--format", "json"])
    assert exported.exit_code == 0 and '"interrupts": null' in exported.output
    assert tree(tmp_path) == before  # not upgraded, no files created
    assert Store(url, read_only=True).schema_version == 3
    assert Store(url).schema_version == SCHEMA_VERSION  # a writing store upgrades it


def test_a_read_only_store_refuses_to_write(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    done_store(url).close()
    store = Store(url, read_only=True)
    with pytest.raises(StoreError, match="readonly"):
        store.add_pending([RunConfig(method="head-tuning", backbone="test_resnet",
                                     dataset="digits", seed=9)])


# --- names that look like markup -------------------------------------------------------------
def test_names_with_brackets_print_as_typed_everywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for split in ("train", "test"):  # the folder exists: `run --dry-run` plans it
        for label in ("a", "b"):  # two classes of one image: the selection guards' minimum
            folder = tmp_path / ODD.removeprefix("folder:") / split / label
            folder.mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(folder / "0.png")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store(url)
    configs = [RunConfig(method="head-tuning", backbone="test_resnet", dataset=d,
                         method_config={"fail": "boom [/red] at [bold]x"} if "fail" in d else {},
                         train=TrainConfig(epochs=2))
               for d in (ODD, "folder:[/fail]")]
    seen = []
    from lionbench.cli.options import console
    from lionbench.cli.progress import run_with_progress

    for terminal in (True, False):  # rich bars, then plain lines
        store.reset_to_pending([c.run_hash for c in configs])
        with console.capture() as captured:
            console._force_terminal = terminal
            try:
                run_with_progress(console, plan_runs(store, configs),
                                  options=ExecOptions(run_fn=FAKE, heartbeat_seconds=0.5))
            finally:
                console._force_terminal = None
        seen.append(captured.get())
    for text in seen:
        assert "odd[/x] [bold red]name[/bold red]" in text
        assert "folder:[/fail]" in text and "boom [/red] at [bold]x" in text
    runner = CliRunner(env={"COLUMNS": "250"})  # wide enough for the whole name
    rich_table = runner.invoke(app, ["table", "--db", url])
    assert rich_table.exit_code == 0
    assert "odd[/x] [bold red]name[/bold red]" in rich_table.output, rich_table.output
    markdown = runner.invoke(app, ["table", "--db", url, "--format", "markdown"])
    assert markdown.exit_code == 0 and "odd[/x] [bold red]name[/bold red]" in markdown.output
    status = runner.invoke(app, ["status", "--db", url])
    assert status.exit_code == 0
    assert "folder:[/fail]" in status.output and "boom [/red] at [bold]x" in status.output
    dry = runner.invoke(app, ["run", "-m", "head-tuning", "-b", "test_resnet", "-d", ODD,
                              "--db", url, "--dry-run"])
    assert dry.exit_code == 0 and "[bold red]name[/bold red]" in dry.output


# --- logs without a terminal -----------------------------------------------------------------
def test_run_without_a_terminal_prints_a_flushed_line_per_epoch(tmp_path):
    log = tmp_path / "run.log"
    args = [*lionbench_cmd(), "run", "-m", "fine-tuning", "-b", "test_resnet", "-d", "digits",
            "--weights", "none", "--set", "epochs=40", "--set", "image_size=8",
            "--set", "max_train_samples=64", "--db", str(tmp_path / "runs.db")]
    with open(log, "w") as out:  # what nohup, CI and Slurm give a process: a file
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            deadline = time.monotonic() + 300
            while "epoch 2/40" not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
            assert proc.poll() is None  # the lines are in the file while the run goes on
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    lines = [line for line in log.read_text().splitlines() if "(default; pass" not in line]
    assert lines[0] == "validation of digits: a seeded, stratified 0.1 hold-out of the train split"
    assert lines[1] == "1 run(s) on cpu (0 already stored)"
    assert lines[2] == "run 1/1: fine-tuning / test_resnet / digits / seed 0"
    epoch = [line for line in lines if line.startswith("  epoch 1/40")][0]
    assert "train loss " in epoch and "val top-1 " in epoch and epoch.endswith(" s")
    assert "\x1b[" not in log.read_text()  # plain text: no colour codes, no bars


def test_cli_runner_output_has_epoch_and_run_lines(tmp_path):
    result = CliRunner().invoke(app, ["run", "-m", "head-tuning", "-b", "test_resnet", "-d",
                                      "digits", "--weights", "none", *TINY_SET, "--set",
                                      "epochs=2", "--db", f"sqlite:///{tmp_path / 'r.db'}",
                                      "--no-table"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(",")[0] for line in lines if "epoch" in line] == ["  epoch 1/2",
                                                                        "  epoch 2/2"]
    assert any(line.startswith("  done  head-tuning / test_resnet / digits") for line in lines)


WORKERS = """
import sys
from lionbench.config import RunConfig, TrainConfig
from lionbench.executors import ExecOptions
from lionbench.runner import plan_runs, run_plan
from lionbench.store import Store

store = Store(sys.argv[1])
configs = [RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits", seed=i,
                     train=TrainConfig(epochs=3)) for i in range(2)]
run_plan(plan_runs(store, configs), executor="local",
         options=ExecOptions(workers=2, run_fn="{fake}", heartbeat_seconds=0.5,
                             poll_seconds=0.1))
"""


def test_local_workers_without_a_terminal_log_their_epochs(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(WORKERS).replace("{fake}", FAKE))
    with open(tmp_path / "out.log", "w") as out:
        subprocess.run([sys.executable, str(script), f"sqlite:///{tmp_path / 'runs.db'}"],
                       stdout=out, stderr=subprocess.STDOUT, timeout=300, check=True)
    text = (tmp_path / "out.log").read_text()
    for seed in (0, 1):
        for epoch in (1, 2, 3):
            assert (f"  head-tuning / test_resnet / digits / seed {seed}: epoch {epoch}/3, "
                    "train loss") in text, text


# --- corrupt files and failing heartbeats ----------------------------------------------------
def test_a_corrupt_feature_cache_file_is_recomputed_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setenv(feature_cache.ENV, str(tmp_path / "cache"))
    (config,) = expand_matrix(create_matrices(
        methods="head-tuning", backbones="test_resnet", datasets="digits", weights="none",
        overrides={"epochs": 1, "image_size": 8, "max_train_samples": 64, "augment": "none"}))
    feature_cache.clear_memory_cache()
    first = train_run(config)
    (bank,) = (tmp_path / "cache").glob("*.pt")
    for bad in (b"garbage", None):
        if bad is None:  # a readable file whose keys and features disagree
            torch.save({"keys": ["a", "b"], "features": torch.zeros(3, 4)}, bank)
        else:
            bank.write_bytes(bad)
        feature_cache.clear_memory_cache()  # a new process: reads the file
        with pytest.warns(UserWarning, match="ignoring feature cache"):
            again = train_run(config)
        assert again.test_top1 == first.test_top1
        assert torch.load(bank, weights_only=True)["features"].shape[0] > 64  # rewritten
    feature_cache.clear_memory_cache()


def test_failing_heartbeats_stop_the_run_and_say_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIONBENCH_FAKE_EPOCH_SECONDS", "0.05")
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    store.add_pending([RunConfig(method="head-tuning", backbone="test_resnet",
                                 dataset="digits", train=TrainConfig(epochs=1000))])
    row = store.claim_next("w:1")

    def locked(*args, **kwargs):
        raise StoreError("cannot use database 'x': database is locked")

    monkeypatch.setattr(store, "heartbeat", locked)
    with pytest.raises(StoreError, match=f"{MISSED_BEATS} heartbeats in a row failed"):
        execute_claimed(store, row, {"run_fn": FAKE, "device": "cpu"},
                        heartbeat_seconds=0.05)
    err = capsys.readouterr().err
    assert err.count("warning: heartbeat of run") == MISSED_BEATS and "locked" in err
    assert store.get_run(row["id"])["status"] == "running"  # others take it back when stale


# --- passwords -------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://me:s3cret@db:5432/runs", "postgresql://me:***@db:5432/runs"),
    ("postgresql://me@db/runs?password=s3cret", "postgresql://me@db/runs?password=***"),
    ("postgresql://me@db/runs?sslpassword=s3cret&sslmode=require",
     "postgresql://me@db/runs?sslmode=require&sslpassword=***"),
    ("postgresql://me:s3cret@db:notaport/runs", "postgresql://***@db:notaport/runs"),
])
def test_passwords_never_shown(url, shown):
    assert hide_password(url) == shown



def test_a_killed_but_unreaped_worker_counts_as_gone():
    from lionbench.runner.run import _pid_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 60
    while stat.read_text().rpartition(")")[2].split()[0] != "Z":  # exited, not yet reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        assert not _pid_alive(child.pid)  # a zombie holds no run: its runs can be taken back
    finally:
        child.wait()
    assert _pid_alive(os.getppid())
