"""Outputs never clobber what they do not own (lionbench.files), and YAML cannot explode.

Run as root (as CI and containers run), a rename over a path replaces whatever it names: the old
writer turned ``/dev/full`` into a regular file. Written in place now: character devices (a
device node of the test's own, made with ``os.mknod``), FIFOs and symlinks; regular files are
still replaced whole or not at all, through a temporary file created exclusively under an
unpredictable name, and nothing is ever created beside a device.
"""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.config import RunConfig, load_yaml
from lionbench.errors import ConfigError, OutputError
from lionbench.files import (
    atomic_path,
    check_folder_writable,
    check_writable,
    write_output,
    writes_in_place,
)
from lionbench.store import Store


def make_device(path: Path, major: int, minor: int) -> Path:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    except PermissionError:  # pragma: no cover - not root
        pytest.skip("making a device node needs root (CAP_MKNOD)")
    return path


def done_db(path: Path) -> str:
    url = f"sqlite:///{path}"
    store = Store(url)
    store.add_pending([RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits")])
    row = store.claim_next("w:1")
    store.mark_done(row["id"], {"test_top1": 0.5, "params_trainable": 970}, {},
                    {"host": "h", "device": "cpu"}, attempt=row["attempts"])
    store.close()
    return url


# --- character devices: written in place, never replaced ---------------------------------------
def test_a_full_device_stays_a_device_and_the_write_fails_in_one_line(tmp_path):
    full = make_device(tmp_path / "full", 1, 7)  # /dev/full's numbers: every write ENOSPC
    before = full.lstat()
    url = done_db(tmp_path / "runs.db")
    for args in (["table", "--format", "markdown"], ["export"], ["table"]):
        result = CliRunner().invoke(app, [*args, "--db", url, "-o", str(full)])
        assert result.exit_code == 1, result.output
        assert "No space left on device" in result.output and "Traceback" not in result.output
        after = full.lstat()
        assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev  # still itself
        assert after.st_ino == before.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "runs.db"]  # nothing beside


def test_a_null_device_takes_the_output_and_stays_a_device(tmp_path):
    null = make_device(tmp_path / "null", 1, 3)
    url = done_db(tmp_path / "runs.db")
    result = CliRunner().invoke(app, ["export", "--db", url, "-o", str(null)])
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(null.lstat().st_mode) and null.lstat().st_rdev == os.makedev(1, 3)
    write_output(null, b"x" * 1000, "output")
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null", "runs.db"]


def test_pretrain_to_a_device_creates_nothing_beside_it(tmp_path, monkeypatch):
    """The checkpoint's JSON record goes beside a regular file, never beside a device."""
    import lionbench.train.pretrain as pretrain

    null = make_device(tmp_path / "null", 1, 3)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["pretrain", "-d", "digits", "-o", str(null), "--set",
                                      "epochs=1", "--set", "image_size=8", "--set",
                                      "max_train_samples=64"])
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert not (tmp_path / "null.json").exists() and sorted(os.listdir(tmp_path)) == ["null"]
    assert pretrain.writes_in_place(null)


# --- FIFOs: written in place (a reader gets the data), never replaced -------------------------
def test_a_fifo_gets_the_table_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    url = done_db(tmp_path / "runs.db")
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    proc = subprocess.run([sys.executable, "-m", "lionbench", "table", "--db", url, "--format",
                           "csv", "-o", str(fifo)], capture_output=True, text=True, timeout=300)
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert received and b"head-tuning" in received[0]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "runs.db"]


def test_a_symlink_is_written_through_not_replaced(tmp_path):
    target = tmp_path / "real.md"
    target.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    write_output(link, "new", "table")
    assert link.is_symlink() and target.read_text() == "new"


# --- regular files: whole or absent, an unpredictable temporary name, the mode kept -----------
def test_regular_files_are_replaced_whole_through_an_unpredictable_temporary(tmp_path,
                                                                              monkeypatch):
    out = tmp_path / "table.md"
    out.write_text("old")
    out.chmod(0o640)
    # the old writer's predictable name, planted as a symlink to a file the user owns
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / f".table.md.{os.getpid()}.tmp").symlink_to(victim)
    names: list[str] = []
    real = os.replace

    def spy(src, dst):  # noqa: ANN001
        names.append(Path(src).name)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_output(out, "new", "table")
    write_output(out, "newer", "table")
    assert out.read_text() == "newer" and stat.S_IMODE(out.stat().st_mode) == 0o640
    assert victim.read_text() == "precious"  # the planted link was never followed
    assert len(set(names)) == 2 and all(n.startswith(".table.md.") for n in names)
    assert all(str(os.getpid()) not in n.split(".")[-2] for n in names)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "table.md"
    out.write_text("old")

    def explode(_target: Path) -> None:
        raise OSError(28, "No space left on device")

    from lionbench.files import write_atomically

    with pytest.raises(OutputError, match="No space left on device"):
        write_atomically(out, explode, "table")
    assert out.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["table.md"]


def test_atomic_path_removes_its_temporary_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.pt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_folders_where_nothing_can_be_made_are_refused_before_any_work():
    with pytest.raises(OutputError, match="'/proc' is read-only"):
        check_folder_writable("/proc/nope", "--checkpoint-dir")
    with pytest.raises(OutputError, match="folder '/proc' is read-only"):
        check_writable("/proc/nope/b.json", "benchmark report")
    assert writes_in_place("/dev/null") and not writes_in_place("/nonexistent/x")


# --- YAML: aliases refused before anything is built --------------------------------------------
BOMB_LEVELS = 9  # 9 ** 9 = 387,420,489 leaves once expanded (the old loader: minutes, GBs)


def bomb(prefix: str = "") -> str:
    lines = [f"{prefix}l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, BOMB_LEVELS):
        refs = ", ".join([f"*l{i - 1}"] * 9)
        lines.append(f"{prefix}l{i}: &l{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_in_under_2_s_with_bounded_memory(tmp_path):
    """A separate process with a 1 GB address-space limit: the old ``safe_load`` would build
    the expanded tree (and die of a MemoryError, or spin for minutes); the alias is refused at
    the first ``*`` instead."""
    matrix = tmp_path / "bomb.yaml"
    matrix.write_text("methods: [head-tuning]\nbackbones: [test_resnet]\ndatasets: [digits]\n"
                      "notes:\n" + bomb("  "))
    code = ("import resource, sys, time\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "sys.argv = ['lionbench', 'run', sys.argv[1], '--dry-run', '--db', sys.argv[2]]\n"
            "from lionbench.cli import main\n"
            "start = time.process_time()\n"
            "try:\n    main()\n"
            "except SystemExit as exc:\n"
            "    hwm = [line.split()[1] for line in open('/proc/self/status')\n"
            "           if line.startswith('VmHWM:')][0]  # this process's peak, in kB\n"
            "    print(exc.code, round(time.process_time() - start, 3), hwm)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(matrix), str(tmp_path / "r.db")],
                          capture_output=True, text=True, timeout=120)
    code_, cpu_seconds, peak_kb = proc.stdout.split()
    assert code_ == "1" and float(cpu_seconds) < 2.0, proc.stdout
    assert int(peak_kb) < 200_000, peak_kb  # the CLI's own size (about 55 MB): nothing expanded
    assert proc.stderr.count("\n") == 1 and "YAML aliases (*name) are not supported" in \
        proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["bomb.yaml"]


def test_the_loader_refuses_aliases_and_merge_keys_but_reads_anchors_alone():
    assert load_yaml("a: &x 1\nb: 2\n", "f") == {"a": 1, "b": 2}  # an anchor is harmless
    for text in ("a: &x 1\nb: *x\n", "base: &b {x: 1}\nother:\n  <<: *b\n", "[*undefined]"):
        with pytest.raises(ConfigError, match="YAML aliases"):
            load_yaml(text, "f")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_yaml("[" * 100_000, "f")


def test_nothing_is_built_before_the_alias_is_met():
    start, before = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError):
        load_yaml(bomb(), "bomb")
    assert time.process_time() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB
