"""Per-method recipes (``--set vpt.lr``, per-method YAML blocks) and ``lionbench tune``: the
grid per method, the choice on validation only (ties to the cheaper), the stored choice, the
winner's final seeds, ``table --selected`` and the exit code.

Most runs here are scripted (``scripted_run`` below replaces training through ``run_fn``): the
choice logic is tested in a second; one CLI test trains for real at the tiny settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_SET
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.config import RunConfig, split_overrides
from lionbench.errors import ConfigError
from lionbench.executors import ExecOptions
from lionbench.matrix import Matrix, load_matrix_file, parse_grid
from lionbench.report import render_stored_table
from lionbench.runner import expand_matrix
from lionbench.runner.tune import (
    Candidate,
    TunePlan,
    choose,
    create_tasks,
    method_grid,
    run_tune,
)
from lionbench.store import Store

runner = CliRunner()
VAL = {1e-3: 0.50, 1e-2: 0.80, 1e-1: 0.30}  # validation top-1 by lr: 1e-2 is best ...
SCRIPTED = ExecOptions(run_fn="test_tune:scripted_run", checkpoints=False)


def scripted_run(config: RunConfig, data_root: Any = None, device: Any = None, *,
                 progress: Any = None, checkpoint_path: Any = None) -> dict[str, Any]:
    """... and test top-1 is anti-correlated with it (1 - val): a choice that looked at the
    test split would pick lr 1e-1. weight_decay 0.5 fails; prompt_length costs parameters."""
    if config.train.weight_decay == 0.5:
        raise RuntimeError("scripted failure")
    val = VAL[config.train.lr] + config.train.weight_decay
    params = 100 + config.method_config.get("prompt_length", 0)
    return {"val_top1": val, "test_top1": round(1 - val + config.seed / 1000, 6),
            "best_epoch": 0, "params_trainable": params, "params_total": 10 * params,
            "train_seconds": 0.0}


def matrix(methods: list[str], grid: dict, seeds: list[int] | None = None, **overrides: Any
           ) -> Matrix:
    return Matrix(methods=methods, backbones=["test_resnet"], datasets=["digits"],
                  seeds=seeds or [0, 1], overrides={"epochs": 1, **overrides}, grid=grid,
                  name="t")


def tune(store: Store, m: Matrix, **kwargs: Any):
    plan = TunePlan(store, create_tasks([m], **kwargs), "t")
    return run_tune(plan, executor="inline", options=SCRIPTED)


# --- per-method recipes ------------------------------------------------------------------------
def test_method_scoped_training_key_wins_whatever_the_order() -> None:
    fields = {"prompt_length", "deep"}
    for overrides in ({"lr": 1e-3, "vpt.lr": 1e-2}, {"vpt.lr": 1e-2, "lr": 1e-3}):
        assert split_overrides(overrides, "vpt", fields)[0] == {"lr": 1e-2}
        assert split_overrides(overrides, "lion", set())[0] == {"lr": 1e-3}
    configs = expand_matrix([Matrix(["vpt", "head-tuning"], ["test_resnet"], ["digits"],
                                    overrides={"vpt.lr": 1e-2, "epochs": 1})])
    assert {c.method: c.train.lr for c in configs} == {"vpt": 1e-2, "head-tuning": 1e-3}
    with pytest.raises(ConfigError, match="method 'vpt' has no setting 'lrr'; valid: .*lr"):
        expand_matrix([Matrix(["vpt"], ["test_resnet"], ["digits"], overrides={"vpt.lrr": 1})])


def test_an_int_for_a_float_setting_is_the_same_configuration() -> None:
    """``--grid weight_decay=0,1e-3`` gave int 0, hashed apart from the default 0.0: the tuned
    candidate at lionbench's default recipe and the fixed-recipe run were two cells."""
    def one(overrides: dict) -> RunConfig:
        return expand_matrix([Matrix(["lion"], ["test_resnet"], ["digits"],
                                     overrides={"epochs": 1, **overrides})])[0]

    default = one({})
    assert one({"weight_decay": 0}).run_hash == default.run_hash
    assert one({"lion.weight_decay": 0, "lion.lr": 1e-3}).run_hash == default.run_hash
    assert one({"lion.blend_logit_alpha": 2}).run_hash == \
        one({"lion.blend_logit_alpha": 2.0}).run_hash
    assert isinstance(one({"weight_decay": 0}).train.weight_decay, float)
    assert one({"epochs": 2}).train.epochs == 2  # ints stay ints where the default is one


def test_yaml_per_method_blocks(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("methods: [head-tuning, vpt]\nbackbones: [test_resnet]\ndatasets: [digits]\n"
                 "set:\n  epochs: 1\n  lr: 1e-3\n  vpt: {lr: 1e-2, prompt_length: 3}\n"
                 "runs:\n  - {}\n  - {seeds: [1], set: {vpt: {lr: 0.1}}}\n")
    matrices = load_matrix_file(f)
    assert matrices[0].overrides == {"epochs": 1, "lr": 1e-3, "vpt.lr": 1e-2,
                                     "vpt.prompt_length": 3}
    assert matrices[1].overrides["vpt.lr"] == 0.1  # the block replaces VPT's lr only ...
    assert matrices[1].overrides["vpt.prompt_length"] == 3  # ... and keeps its prompt length
    got = {(c.method, c.seed): (c.train.lr, c.method_config.get("prompt_length"))
           for c in expand_matrix(matrices)}
    assert got == {("head-tuning", 0): (1e-3, None), ("vpt", 0): (1e-2, 3),
                   ("head-tuning", 1): (1e-3, None), ("vpt", 1): (0.1, 3)}


def test_cli_accepts_vpt_lr(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "-m", "vpt", "-b", "test_resnet", "-d", "digits",
                                 "--set", "vpt.lr=1e-2", "--dry-run",
                                 "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 0 and "1 to run" in result.output


# --- the grid ----------------------------------------------------------------------------------
def test_grid_applies_per_method_the_specific_key_winning() -> None:
    grid = {"lr": [1e-3, 1e-2], "prompt_length": [5, 10], "vpt.lr": [0.1]}
    fields = {"prompt_length", "deep"}
    assert method_grid("vpt", grid, {}, fields) == {"lr": [0.1], "prompt_length": [5, 10]}
    assert method_grid("lion", grid, {}, {"tau"}) == {"lr": [1e-3, 1e-2]}
    # a scoped set value beats a plain grid key: lion's lr stays fixed
    assert method_grid("lion", {"lr": [1e-3]}, {"lion.lr": 5e-3}, {"tau"}) == {}
    assert parse_grid(["lr=1e-3,1e-2", "vpt.prompt_length=5, 10"]) == \
        {"lr": [1e-3, 1e-2], "vpt.prompt_length": [5, 10]}


@pytest.mark.parametrize("grid,error", [
    ({}, "nothing to tune"),
    ({"lrr": [1]}, "unknown setting 'lrr'"),
    ({"epochs": [1, 2]}, "epochs: both set and in the grid"),
    ({"lr": [-1.0]}, "invalid lr=-1.0"),
])
def test_bad_grids_fail_before_anything_runs(grid: dict, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        create_tasks([matrix(["head-tuning"], grid)])


def test_malformed_grid_option_and_run_refuses_a_grid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="malformed --grid 'lr'"):
        parse_grid(["lr"])
    f = tmp_path / "g.yaml"
    f.write_text("methods: [lion]\nbackbones: [test_resnet]\ndatasets: [digits]\n"
                 "grid: {lr: [1.0e-3, 1.0e-2]}\n")
    result = runner.invoke(app, ["run", str(f), "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 1 and "has a grid" in result.output
    assert not (tmp_path / "r.db").exists()
    assert load_matrix_file(f)[0].grid == {"lr": [1e-3, 1e-2]}


# --- the choice --------------------------------------------------------------------------------
def candidate(val: float | None, params: int = 100, epochs: int = 1, lr: float = 1e-3,
              status: str = "done") -> Candidate:
    config = expand_matrix([Matrix(["head-tuning"], ["test_resnet"], ["digits"],
                                   overrides={"epochs": epochs, "lr": lr})])[0]
    return Candidate({"lr": lr, "epochs": epochs}, {}, [config], [val], params, status)


def test_choice_is_best_validation_then_the_cheaper() -> None:
    assert choose([candidate(0.5), candidate(0.7, lr=1e-2)]).val_top1 == 0.7
    # ties: fewer trainable parameters, then fewer epochs, then the smaller lr, then grid order
    assert choose([candidate(0.7, params=200), candidate(0.7, params=100, lr=1e-2)]).params == 100
    assert choose([candidate(0.7, epochs=3), candidate(0.7, epochs=2, lr=1e-2)]
                  ).configs[0].train.epochs == 2
    assert choose([candidate(0.7, lr=1e-2), candidate(0.7, lr=1e-4)]).configs[0].train.lr == 1e-4
    first, second = candidate(0.7), candidate(0.7)
    assert choose([first, second]) is first
    # failed or unfinished candidates never win; nothing finished: no choice
    assert choose([candidate(0.9, status="failed"), candidate(0.1)]).val_top1 == 0.1
    assert choose([candidate(None, status="pending")]) is None


def test_test_split_never_influences_the_choice(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "t.db"))
    result = tune(store, matrix(["head-tuning", "lion"], {"lr": [1e-3, 1e-2, 1e-1]}))
    assert result.failed == 0 and result.total == 2 * (3 + 2)
    for task in result.tasks:  # best validation (1e-2), though its test top-1 is the worst
        assert task.winner.values == {"lr": 1e-2}
        assert [c.val_top1 for c in task.candidates] == [0.5, 0.8, 0.3]
    stored = store.fetch_tunings()
    assert len(stored) == 2 and stored[0]["winner_values"] == {"lr": 1e-2}
    assert stored[0]["grid"] == {"lr": [1e-3, 1e-2, 1e-1]}
    assert stored[0]["tune_seeds"] == [2] and stored[0]["final_seeds"] == [0, 1]
    assert [c["val_top1"] for c in stored[0]["candidates"]] == [0.5, 0.8, 0.3]
    assert "test_top" not in repr(stored)  # no test number is ever part of a choice
    # the same grid with other test numbers chooses the same: test top-1 is not read at all
    store.execute("UPDATE runs SET test_top1 = 1.0 - test_top1")
    again = tune(store, matrix(["head-tuning", "lion"], {"lr": [1e-3, 1e-2, 1e-1]}))
    assert [t.winner.values for t in again.tasks] == [{"lr": 1e-2}] * 2
    assert again.candidates.skipped == 6 and again.finals.skipped == 4  # nothing ran twice
    assert len(store.fetch_tunings()) == 2  # the choice rewritten, not duplicated


def test_selected_table_shows_the_winner_final_seeds_only(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    tune(store, matrix(["head-tuning", "vpt"], {"lr": [1e-3, 1e-2], "prompt_length": [2, 4]}))
    md = render_stored_table(store, fmt="markdown", selected=True)
    lines = [line for line in md.splitlines() if line.startswith("| test_resnet")
             or line.startswith("|  ")]
    assert len(lines) == 2  # one row per method
    # the final seeds 0 and 1 of the winner: test 1 - 0.8 + seed/1000; the tuning seed (2) out
    assert "0.2005 ± 0.0007 (n=2)" in md and "(n=3)" not in md
    assert "vpt / test_resnet chosen on validation: digits lr=0.01, prompt_length=2" in md
    assert "head-tuning / test_resnet chosen on validation: digits lr=0.01" in md
    # the plain table: final seeds only, the tuning runs (seed 2) counted in a footnote
    plain = render_stored_table(store, fmt="markdown")
    assert "(n=3)" not in plain and "candidate" not in plain.split("\n\n")[0]
    assert "6 tuning run(s) of `lionbench tune` not shown" in plain
    # --all-seeds: every candidate in a row of its own, never averaged into the final cell
    full = render_stored_table(store, fmt="markdown", all_seeds=True)
    assert "vpt (candidate, prompt_length=4, lr=0.01)" in full and "(n=3)" not in full
    assert "vpt (candidate, prompt_length=2, lr=0.01)" in full  # the winner's tuning run


def test_failed_candidate_is_left_out_and_counted(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "f.db"))
    result = tune(store, matrix(["head-tuning"], {"weight_decay": [0.0, 0.5]}))
    task = result.tasks[0]
    assert [c.status for c in task.candidates] == ["done", "failed"]
    assert task.winner.values == {"weight_decay": 0.0}  # 0.5 would score higher, had it run
    assert result.failed == 1 and result.total == 4


def test_no_finished_candidate_means_no_choice_and_no_final_runs(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "n.db"))
    result = tune(store, matrix(["head-tuning"], {"weight_decay": [0.5]}))
    assert result.tasks[0].winner is None and result.finals.done == 0
    assert store.fetch_tunings()[0]["winner_cell_hash"] is None
    with pytest.raises(ConfigError, match="no tuning with a chosen configuration"):
        render_stored_table(store, selected=True)


def test_a_version_6_database_gains_the_tunings_table(tmp_path: Path) -> None:
    from sqlalchemy import text

    from lionbench.store import create_db_engine, resolve_url

    url = f"sqlite:///{tmp_path / 'v6.db'}"
    Store(url).add_pending(expand_matrix([matrix(["lion"], {})]))
    engine = create_db_engine(resolve_url(url))
    with engine.begin() as conn:  # the database as lionbench with schema 6 left it
        conn.execute(text("DROP TABLE tunings"))
        conn.execute(text("UPDATE meta SET value = '6' WHERE key = 'schema_version'"))
    engine.dispose()
    assert Store(url, read_only=True).fetch_tunings() == []  # read as it is, not migrated
    with pytest.raises(ConfigError, match="no tuning with a chosen configuration"):
        render_stored_table(Store(url, read_only=True), selected=True)
    store = Store(url)
    assert store.execute("select value from meta")[0][0] == "7"
    assert len(store.fetch_runs()) == 2  # the runs untouched
    store.save_tuning({"tuning_hash": "h", "method": "lion", "backbone": "b", "dataset": "d",
                       "weights_id": "w", "grid": {"lr": [1]}, "tune_seeds": [2],
                       "final_seeds": [0], "metric": "val_top1", "rule": "r",
                       "candidates": [], "winner_cell_hash": "c", "winner_values": {"lr": 1}})
    assert store.selected_cells() == {("b", "lion", "d"): {"cell_hash": "c", "seeds": (0,),
                                                           "values": {"lr": 1}}}


# --- the command -------------------------------------------------------------------------------
def test_cli_tune_trains_chooses_and_shows_the_selected_table(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    args = ["tune", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits", "--weights",
            "none", *TINY_SET, "--grid", "lr=1e-3,1e-2", "--seeds", "0", "--db", db]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "val top-1" in result.output and "chosen on validation" in result.output
    assert "test top-1" in result.output.split("final runs of the chosen")[1]
    assert "test top-1" not in result.output.split("final runs of the chosen")[0]
    assert len(Store(db).list_runs("done")) == 3  # two candidates (seed 1), one final (seed 0)
    table = runner.invoke(app, ["table", "--selected", "--db", db, "--format", "csv"])
    assert table.exit_code == 0 and table.output.count("head-tuning") == 2  # one row
    # the figure keeps the same choice: one series, the final seed's test top-1 only
    from lionbench.report.plots import read_series

    every = runner.invoke(app, ["plot", "tradeoff", "--db", db, "-o", str(tmp_path / "all"),
                                "--format", "png"])
    assert every.exit_code == 0 and len(read_series(tmp_path / "all.png")) == 2  # both lrs
    chosen = runner.invoke(app, ["plot", "tradeoff", "--selected", "--db", db, "-o",
                                 str(tmp_path / "sel"), "--format", "png"])
    assert chosen.exit_code == 0, chosen.output
    (series,) = read_series(tmp_path / "sel.png")
    final = [r for r in Store(db).fetch_runs("done") if r["seed"] == 0]
    assert series.n == [1] and series.y == [pytest.approx(final[0]["test_top1"])]


def test_cli_tune_exit_code_names_failed_runs(tmp_path: Path, monkeypatch) -> None:
    db = str(tmp_path / "x.db")
    monkeypatch.setattr("lionbench.executors.execute.DEFAULT_RUN_FN", "test_tune:scripted_run")
    args = ["tune", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits", "--weights", "none",
            "--set", "epochs=1", "--grid", "weight_decay=0,0.5", "--seeds", "0,1", "--db", db]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "1 of 4 runs failed; see lionbench status" in result.output
    again = runner.invoke(app, args[:-2] + ["--grid", "weight_decay=0", "--db", db])
    assert again.exit_code == 0, again.output  # every run done or already stored


def test_table_selected_without_tuning_is_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")
    Store(db)  # an existing database without tunings
    result = runner.invoke(app, ["table", "--selected", "--db", db])
    assert result.exit_code == 1 and result.output.startswith("error: no tuning")


# --- the tuned presets -------------------------------------------------------------------------
@pytest.mark.parametrize("name,tasks,per_method", [
    ("table1", 98, {"vpt": 48, "lion": 16, "retraining": 16}),
    ("table2", 98, {"vpt": 48, "head-tuning": 16}),
    ("table3", 128, {"vpt": 48, "fine-tuning": 16}),
    ("table4", 24, {"lion-r": 16, "lion": 16}),
])
def test_tuned_presets_beside_the_papers(name: str, tasks: int, per_method: dict) -> None:
    """Same methods, backbones, datasets, epochs and seeds as the paper's preset; a grid per
    method instead of its one lr (which stays in the paper's file, as the paper states it)."""
    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    paper = expand_matrix(load_matrix_file(bench / f"{name}.yaml"))
    tuned = create_tasks(load_matrix_file(bench / f"{name}-tuned.yaml"))
    assert len(tuned) == tasks
    shape = {(c.method, c.backbone, c.dataset, c.train.epochs) for c in paper}
    assert {(t.method, t.backbone, t.dataset, t.candidates[0].configs[0].train.epochs)
            for t in tuned} == shape
    assert {t.tune_seeds[0] for t in tuned} == {3} and {tuple(t.final_seeds) for t in tuned} \
        == {(0, 1, 2)}
    for t in tuned:
        assert "lr" in t.grid and t.grid["weight_decay"] == [0, 1e-4, 1e-3, 1e-2]
        if t.method in per_method:
            assert len(t.candidates) == per_method[t.method]
        if t.method not in ("retraining", "head-tuning"):  # the paper's recipe is a candidate
            assert 1e-5 in t.grid["lr"]
    assert {c.train.lr for c in paper} == {1e-5}


def test_cli_tune_names_the_axis_defaults_it_used(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tune", "-m", "head-tuning", "--grid", "lr=1e-3,1e-2",
                                 "--threads", "1", "--dry-run", "--db", str(tmp_path / "d.db")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "backbones: demo-resnet (default; pass --backbones to choose)" in lines
    assert "datasets: digits (default; pass --datasets to choose)" in lines
    assert "methods" not in result.output.split("tuning 1 method")[0]  # given, so no default
