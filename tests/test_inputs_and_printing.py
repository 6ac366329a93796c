"""What the second hardening pass found, beyond one-line refusals (tests/test_faults.py):
nothing created unless asked, text from users and databases printed inert, logs never cut to
80 columns, option groups shared, the hub asked through huggingface_hub's own settings, and a
package that installs like one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.config import RunConfig
from lionbench.errors import StoreError
from lionbench.store import Store, hide_password
from lionbench.store.exchange import export_runs
from lionbench.text import printable

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "evil\x1b[2J\x1b]0;title\x07\nerror: forged\u202e"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --- nothing created that nobody asked for ------------------------------------------------------
def test_a_dry_run_creates_no_database_and_leaves_an_empty_file_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["run", "-m", "head-tuning", "-b", "test_resnet", "-d",
                                 "digits", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "1 to run, 0 already stored" in result.output and os.listdir(tmp_path) == []
    (tmp_path / "zero.db").write_bytes(b"")
    result = runner.invoke(app, ["run", "-m", "head-tuning", "-b", "test_resnet", "-d",
                                 "digits", "--dry-run", "--db", "zero.db"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "zero.db").stat().st_size == 0 and os.listdir(tmp_path) == ["zero.db"]
    tune = runner.invoke(app, ["tune", "-m", "head-tuning", "-b", "test_resnet", "-d",
                               "digits", "--grid", "lr=0.1,0.01", "--dry-run"])
    assert tune.exit_code == 0, tune.output
    assert os.listdir(tmp_path) == ["zero.db"]


def test_offline_without_weights_the_run_stops_before_creating_a_database(tmp_path,
                                                                          monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "--methods", "lion,vpt", "--backbones", "resnet50"])
    assert result.exit_code == 1
    assert "cannot fetch pretrained weights for 'resnet50'" in result.output
    assert os.listdir(tmp_path) == []  # no results/lionbench.db, no results/


def test_a_run_leaves_no_empty_checkpoint_folder(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    result = CliRunner().invoke(app, ["run", "-m", "head-tuning", "-b", "test_resnet", "-d",
                                      "digits", "--weights", "none", "--set", "epochs=1",
                                      "--set", "image_size=8", "--set", "max_train_samples=64",
                                      "--db", url, "--no-table"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "checkpoints").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("runs.db")) == []
    existing = tmp_path / "mine"
    existing.mkdir()  # a folder the user made is theirs: left alone, even empty
    result = CliRunner().invoke(app, ["run", "-m", "head-tuning", "-b", "test_resnet", "-d",
                                      "digits", "--weights", "none", "--set", "epochs=1",
                                      "--set", "image_size=8", "--set", "max_train_samples=64",
                                      "--db", url, "--no-table", "--seeds", "1",
                                      "--checkpoint-dir", str(existing)])
    assert result.exit_code == 0, result.output
    assert existing.is_dir()


# --- text from users and databases, printed inert -----------------------------------------------
def test_printable_escapes_every_control_character_and_nothing_else():
    assert printable(HOSTILE) == ("evil\\x1b[2J\\x1b]0;title\\x07\\nerror: forged\\u202e")
    assert printable("café – 東京 [bold]x[/]") == "café – 東京 [bold]x[/]"
    assert printable("\t\r\x00\x7f\x9b\u2028") == "\\t\\r\\x00\\x7f\\x9b\\u2028"


def hostile_export(tmp_path: Path) -> Path:
    """An export whose names, failure reason and warnings carry escape sequences (run hashes
    valid: the hostile text is in the config, as a real foreign export could have it)."""
    url = f"sqlite:///{tmp_path / 'src.db'}"
    store = Store(url)
    done = RunConfig(method="head-tuning", backbone="test_resnet", dataset=f"folder:{HOSTILE}")
    failed = RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits", seed=1)
    store.add_pending([done, failed])
    row = store.claim_next("w:1", [done.run_hash])
    store.mark_done(row["id"], {"test_top1": 0.5, "params_trainable": 970}, {},
                    {"host": "h", "device": "cpu"}, attempt=row["attempts"])
    row = store.claim_next("w:1", [failed.run_hash])
    store.mark_failed(row["id"], f"RuntimeError: {HOSTILE}", {"host": "h"},
                      attempt=row["attempts"])
    path = tmp_path / "hostile.json"
    with open(path, "w") as fh:
        export_runs(store, "json", fh)
    doc = json.loads(path.read_text())
    for rec in doc["runs"]:  # warnings are taken from the file as they are (not re-derived)
        if rec["status"] == "done":
            rec["warnings"] = json.dumps([f"p1: {HOSTILE}"])
    path.write_text(json.dumps(doc))
    return path


def test_control_characters_from_an_import_never_reach_the_terminal(tmp_path):
    source = hostile_export(tmp_path)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    runner = CliRunner(env={"COLUMNS": "80"})
    imported = runner.invoke(app, ["import", str(source), "--db", url])
    assert imported.exit_code == 0, imported.output
    outputs = [runner.invoke(app, args + ["--db", url]) for args in (
        ["status"], ["table"], ["table", "--format", "markdown"], ["table", "--format", "latex"],
        ["table", "--format", "csv"])]
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output
        assert "\u202e" not in result.output
        assert not any(line.startswith("error: forged") for line in result.output.splitlines())
    assert "evil\\x1b[2J\\x1b]0;title\\x07\\nerror: forged" in outputs[0].output  # status
    assert "p1: evil\\x1b[2J" in outputs[0].output  # the imported warning, inert
    assert "evil\\x1b[2J" in outputs[1].output  # the table's column label (rich)


def test_a_url_is_masked_by_parsing_even_with_an_unencoded_at_in_the_password():
    assert hide_password("postgresql://u:pa@ssLEAK9@127.0.0.1:1/x") == \
        "postgresql://u:***@127.0.0.1:1/x"
    assert hide_password("postgresql://u:p%40ss@h/x") == "postgresql://u:***@h/x"
    assert hide_password("sqlite:///runs\x1b[2J.db") == "sqlite:///runs\\x1b[2J.db"
    result = CliRunner().invoke(app, ["status", "--db",
                                      "postgresql://u:pa@ssLEAK9@127.0.0.1:1/x"])
    assert result.exit_code == 1 and "ssLEAK9" not in result.output
    assert "u:***@127.0.0.1:1/x" in result.output


# --- output without a terminal: never cut ---------------------------------------------------
def test_output_without_a_terminal_is_never_cut_to_80_columns(tmp_path):
    runner = CliRunner(env={"COLUMNS": "80"})  # what a log, a pipe or CI give
    dry = runner.invoke(app, ["run", "-m", "head-tuning,fine-tuning", "-b", "test_resnet", "-d",
                              "digits", "--dry-run", "--db", str(tmp_path / "r.db")])
    assert dry.exit_code == 0
    hashes = [line.split("│")[1].strip() for line in dry.output.splitlines()
              if line.startswith("│")]
    assert len(hashes) == 2 and all(len(h) == 16 and "…" not in h for h in hashes)
    assert "…" not in dry.output and "fine-tuning" in dry.output
    backbones = runner.invoke(app, ["list", "backbones"])
    assert "swin_base_patch4_window7_224" in backbones.output and "…" not in backbones.output
    settings = runner.invoke(app, ["list", "methods", "--settings", "lion"])
    line = next(x for x in settings.output.splitlines() if x.startswith("│ p2_width"))
    assert "the paper's parameter budget per backbone (22 on others)" in line  # one line


# --- status: one line when the database fails, no literal markup ------------------------------
def test_status_prints_nothing_but_the_error_when_the_database_fails_midway(tmp_path,
                                                                            monkeypatch):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store(url)
    store.add_pending([RunConfig(method="head-tuning", backbone="test_resnet", dataset="d")])
    store.close()

    def locked(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        raise StoreError(f"cannot use database '{url}': database is locked; another process "
                         "held it for over 30 s: retry")

    monkeypatch.setattr(Store, "runs_with_warnings", locked)
    result = CliRunner().invoke(app, ["status", "--db", url])
    assert result.exit_code == 1
    assert result.stdout == "" and result.stderr.count("\n") == 1, (result.stdout,
                                                                     result.stderr)


def test_status_styles_its_headings_instead_of_printing_markup(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store(url)
    store.add_pending([RunConfig(method="lion", backbone="test_resnet", dataset="digits")])
    row = store.claim_next("w:1")
    store.mark_done(row["id"], {"test_top1": 0.5, "params_trainable": 9}, {
        "p1_fwd_not_converged": 5, "p1_fwd_samples": 10}, {"host": "h"},
        attempt=row["attempts"])
    result = CliRunner().invoke(app, ["status", "--db", url])
    assert result.exit_code == 0
    assert "runs with solver warnings (flagged § in tables):" in result.output
    assert "[bold]" not in result.output and "[/]" not in result.output


# --- option groups: declared once, the same on run, tune and ablate -------------------------
def option_flags(command: str) -> set[str]:
    import typer.main

    group = typer.main.get_command(app)
    return {opt for p in group.commands[command].params for opt in p.opts + p.secondary_opts}


def test_run_tune_and_ablate_share_the_planning_and_execution_options():
    from lionbench.cli.options import EXECUTION, PLANNING

    expected = set()
    for group in (PLANNING, EXECUTION):
        for _, annotation, _ in group.options:
            info = annotation.__metadata__[0]
            expected |= {d for decl in (info.default, *(info.param_decls or ()))
                         if isinstance(decl, str) for d in decl.split("/") if d}
    for command in ("run", "tune", "ablate"):
        missing = expected - option_flags(command)
        assert not missing, (command, missing)
    assert {"--executor", "--partition", "--address", "--wait", "--max-attempts",
            "--retry-failed"} <= option_flags("ablate")


def test_help_shows_no_type_for_flags():
    for args in (["--help"], ["run", "--help"], ["tune", "--help"], ["list", "methods", "--help"],
                 ["table", "--help"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0 and "<bool>" not in result.output, args
    assert "--wait" in CliRunner().invoke(app, ["tune", "--help"]).output


# --- the hub, asked through huggingface_hub's settings -------------------------------------
def test_hub_reachability_follows_huggingface_hub_settings(monkeypatch):
    import http.server
    import threading

    from huggingface_hub import constants

    from lionbench.backbones import hub_offline, hub_reachable

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_reachable() is False  # HF_HUB_OFFLINE: not even asked
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:  # HF_ENDPOINT (a mirror, or a proxy's address) is where it asks
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert hub_reachable() is True
    finally:
        server.shutdown()
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    assert hub_reachable(timeout=2) is False
    with hub_offline():
        assert constants.HF_HUB_OFFLINE is True
    assert constants.HF_HUB_OFFLINE is False  # restored: never set for the rest of the process


# --- exit codes, python -m lionbench ---------------------------------------------------------
def test_python_dash_m_lionbench_is_the_cli():
    proc = subprocess.run([sys.executable, "-m", "lionbench", "run", "-m", "lion2"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1 and proc.stderr.startswith("error: unknown method 'lion2'")


def test_the_exit_codes_are_documented():
    from lionbench.cli import EXIT_CODES

    text = (ROOT / "docs" / "commands.md").read_text()
    assert set(EXIT_CODES) == {0, 1, 130, 143}
    for code in EXIT_CODES:
        assert f"**{code}**" in text, code
    assert "--wait" in text and "--max-attempts" in text


@pytest.mark.parametrize("name", ["LICENSE"])
def test_the_wheel_carries_the_license_and_the_catalogs(name):
    """What .ci/run's wheel smoke test relies on: package data declared for the catalogs."""
    text = (ROOT / "pyproject.toml").read_text()
    assert 'lionbench = ["assets/*"]' in text and (ROOT / name).exists()
    for asset in ("methods.json", "backbones.json", "datasets.json"):
        assert json.loads((ROOT / "lionbench" / "assets" / asset).read_text())
