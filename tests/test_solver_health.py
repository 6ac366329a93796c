"""Solver health made visible: warnings derived when a run is stored (lionbench.store.health),
a flag and footnote in tables, a list in `status`, a line from `run`."""

from __future__ import annotations

import json

from conftest import TINY_SET
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.report.render import render_table
from lionbench.report.tables import build_table
from lionbench.store import Store
from lionbench.store.health import MAX_UNCONVERGED_SHARE, run_warnings


def test_warnings_flag_blocks_over_the_share_forward_and_backward():
    assert MAX_UNCONVERGED_SHARE == 0.01
    healthy = {"p1_fwd_not_converged": 1.0, "p1_fwd_samples": 100.0,  # 1 %: not over
               "p2_fwd_not_converged": 0.0, "p2_fwd_samples": 100.0}
    assert run_warnings(healthy) == [] and run_warnings(None) == []
    sick = {**healthy, "p2_fwd_not_converged": 2.0, "p1_bwd_not_converged": 40.0,
            "p1_bwd_samples": 80.0}
    assert run_warnings(sick) == [
        "p1: 50.0% of backward solves did not converge (40 of 80)",
        "p2: 2.0% of forward solves did not converge (2 of 100)"]
    # stored before solve counts were recorded: any unconverged solve is flagged
    assert run_warnings({"p1_fwd_not_converged": 3.0}) == [
        "p1: 3 forward solves did not converge"]


def _record(method: str, seed: int, warnings: str | None) -> dict:
    return {"method": method, "backbone": "test_resnet", "dataset": "digits", "seed": seed,
            "status": "done", "test_top1": 0.5 + seed / 100, "params_trainable": 1000,
            "protocol_version": 1, "git_dirty": False, "weights": "pretrained",
            "config": {"method_config": {}}, "warnings": warnings}


def test_table_marks_cells_with_unconverged_runs_and_explains_the_mark():
    runs = [_record("lion", 0, json.dumps(["p1: 5.0% of forward solves did not converge"])),
            _record("lion", 1, "[]"), _record("head-tuning", 0, "[]"),
            _record("head-tuning", 1, None)]
    table = build_table(runs, current_protocol=1)
    flags = {row.method: cells[0].flags for row, cells in zip(table.rows, table.cells,
                                                              strict=True)}
    assert flags == {"head-tuning": (), "lion": ("solver",)}
    text = render_table(table, "markdown")
    assert "0.5050 ± 0.0071 (n=2)\u00a7" in text
    assert "\u00a7 includes runs whose equilibrium solves did not converge" in text
    assert "\\S{}" in render_table(table, "latex")


def test_run_warns_then_table_and_status_show_the_unconverged_run(tmp_path):
    """max_iter=1: no solve can meet its tolerance, so the run must not pass silently."""
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    runner = CliRunner()
    args = ["run", "-m", "lion", "-b", "test_resnet", "-d", "digits", "--weights", "none",
            *TINY_SET, "--set", "max_train_samples=64", "--db", db]
    bad = runner.invoke(app, [*args, "--set", "max_iter=1"])
    assert bad.exit_code == 0, bad.output
    line = ("warning: lion / test_resnet / digits / seed 0: p1: 100.0% of forward solves did "
            "not converge")
    assert line in bad.output
    good = runner.invoke(app, args)  # the defaults converge: no warning
    assert good.exit_code == 0 and "warning:" not in good.output
    table = runner.invoke(app, ["table", "--db", db, "--format", "markdown"])
    assert "\u00a7 includes runs whose equilibrium solves did not converge" in table.output
    rows = {line.split("|")[2].strip(): line for line in table.output.splitlines()
            if line.startswith("|") and "lion" in line}
    assert "\u00a7" in rows["lion (weights=none, max_iter=1)"]
    assert "\u00a7" not in rows["lion (weights=none)"]
    status = runner.invoke(app, ["status", "--db", db])
    assert "runs with solver warnings" in status.output
    assert "p1: 100.0% of forward solves did not converge" in status.output
    assert len(Store(db).runs_with_warnings()) == 1


def test_import_of_an_export_without_warnings_derives_them(tmp_path):
    from lionbench.config import RunConfig
    from lionbench.store.exchange import export_runs, import_runs

    source = Store(f"sqlite:///{tmp_path / 'a.db'}")
    config = RunConfig("lion", "test_resnet", "digits", seed=0)
    source.add_pending([config])
    row = source.claim_next("w:1")
    extra = {"p1_fwd_not_converged": 10.0, "p1_fwd_samples": 20.0}
    assert source.mark_done(row["id"], {"test_top1": 0.5}, extra, {}, attempt=row["attempts"])
    export = tmp_path / "runs.json"
    export_runs(source, "json", export)
    doc = json.loads(export.read_text())
    del doc["runs"][0]["warnings"]  # as an export from before schema 6
    export.write_text(json.dumps(doc))
    target = Store(f"sqlite:///{tmp_path / 'b.db'}")
    assert import_runs(target, export).added == 1
    assert target.runs_with_warnings()[0]["warnings"] == [
        "p1: 50.0% of forward solves did not converge (10 of 20)"]
