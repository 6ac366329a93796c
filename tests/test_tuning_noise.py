"""Tuning noise, report side: the plain table of a tuned database shows the final seeds only
(the tuning runs on request, in rows of their own), and ``table --selected`` marks a choice
whose validation margin over the runner-up is inside the noise.

Runs are scripted (``scripted`` replaces training): validation top-1 by lr, the validation set's
size recorded as a real run records it.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.config import RunConfig
from lionbench.executors import ExecOptions
from lionbench.matrix import Matrix
from lionbench.report import render_stored_table
from lionbench.report.stored import load_done_runs, load_selection
from lionbench.report.tuning import (
    Z,
    candidate_summary,
    mark_tuning_runs,
    selection_margin,
    validation_images,
)
from lionbench.runner.tune import TunePlan, create_tasks, run_tune
from lionbench.store import Store

VAL = {1e-3: 0.50, 1e-2: 0.80, 3e-2: 0.78}  # 1e-2 wins over 3e-2 by 0.02 on 100 images
SCRIPTED = ExecOptions(run_fn="test_tuning_noise:scripted", checkpoints=False)


def scripted(config: RunConfig, data_root: Any = None, device: Any = None, *,
             progress: Any = None, checkpoint_path: Any = None) -> dict[str, Any]:
    val = VAL[config.train.lr] + (0.01 if config.method == "vpt" else 0.0)
    return {"val_top1": val, "test_top1": round(val - 0.1 + config.seed / 100, 6),
            "best_epoch": 0, "params_trainable": 100, "params_total": 1000,
            "train_seconds": 0.0,
            "extra": {"validation": "a seeded, stratified 0.1 hold-out of the train split: "
                                    "100 images"}}


def tuned_store(tmp_path: Path, grid: dict, tune_seeds: list[int] | None = None) -> Store:
    """head-tuning tuned over ``grid``, final seeds 0-2, tuning seed 3 (as the presets)."""
    store = Store(str(tmp_path / "t.db"))
    m = Matrix(methods=["head-tuning"], backbones=["test_resnet"], datasets=["digits"],
               seeds=[0, 1, 2], overrides={"epochs": 1}, grid=grid, name="t")
    plan = TunePlan(store, create_tasks([m], tune_seeds=tune_seeds or [3]), "t")
    run_tune(plan, executor="inline", options=SCRIPTED)
    return store


def test_plain_table_on_a_tuned_database_shows_final_seeds_only(tmp_path: Path) -> None:
    store = tuned_store(tmp_path, {"lr": [1e-3, 1e-2]})
    md = render_stored_table(store, fmt="markdown")
    body = md.split("\n\n")[0]
    # the winner (lr 1e-2): seeds 0-2 only, test 0.7 + seed/100; never (n=4) with seed 3
    assert "0.7100 ± 0.0100 (n=3)" in body and "(n=4)" not in md
    assert "candidate" not in body and "0.4" not in body  # the losing candidate is not a result
    assert "2 tuning run(s) of `lionbench tune` not shown" in md
    every = render_stored_table(store, fmt="markdown", all_seeds=True)
    assert "| head-tuning (candidate, lr=0.01) " in every.replace("  ", " ")
    assert "head-tuning (candidate) " in every and "0.4300 (n=1)" in every  # lr 1e-3, seed 3
    assert "0.7100 ± 0.0100 (n=3)" in every and "(n=4)" not in every
    lines = [line for line in every.splitlines() if "candidate" in line and "|" in line]
    assert lines and all("\u2248" not in line and "**" not in line and "\u00b6" not in line
                         for line in lines)  # candidates: never best, tied or short of seeds
    result = CliRunner().invoke(app, ["table", "--all-seeds", "--format", "csv", "--db",
                                      str(tmp_path / "t.db")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert sorted((r["method_label"], r["candidate"], r["tie"]) for r in rows) == [
        ("head-tuning (candidate)", "1", ""), ("head-tuning (candidate, lr=0.01)", "1", ""),
        ("head-tuning (lr=0.01)", "0", "")]  # the only result: nothing to tie with


def test_mark_tuning_runs_keeps_final_seeds_of_the_winner() -> None:
    tunings = [{"candidates": [{"run_hashes": ["a3", "b3"]}], "winner_cell_hash": "A",
                "final_seeds": [0, 1, 3]}]  # a tuning seed that is also a final seed
    runs = [{"run_hash": "a3", "cell_hash": "A", "seed": 3},
            {"run_hash": "b3", "cell_hash": "B", "seed": 3},
            {"run_hash": "a0", "cell_hash": "A", "seed": 0},
            {"run_hash": "b0", "cell_hash": "B", "seed": 0}]  # B at seed 0: a plain run
    assert mark_tuning_runs(runs, tunings) == 1
    assert [r["tuning_candidate"] for r in runs] == [False, True, False, False]


def candidate(cell: str, scores: list[float | None], **values: Any) -> dict[str, Any]:
    return {"cell_hash": cell, "val_scores": scores, "status": "done", "values": values}


def test_margin_noise_with_several_tuning_seeds() -> None:
    cands = [candidate("w", [0.80, 0.76]), candidate("r", [0.77, 0.75], lr=0.1),
             candidate("x", [0.2, 0.3])]
    assert candidate_summary(cands[0]) == (pytest.approx(0.78), pytest.approx(0.0008 ** 0.5), 2)
    m = selection_margin(cands, "w")
    s_w, s_r = math.sqrt(0.0008), math.sqrt(0.0002)  # std over the two tuning seeds
    assert m.margin == pytest.approx(0.02) and m.runner_up_values == {"lr": 0.1}
    assert m.noise == pytest.approx(math.sqrt((s_w ** 2 + s_r ** 2) / 2))
    assert m.inside and "2 tuning seeds" in m.noise_kind
    far = selection_margin([candidate("w", [0.80, 0.81]), candidate("r", [0.60, 0.61])], "w")
    assert not far.inside


def test_margin_noise_with_one_tuning_seed_is_binomial() -> None:
    cands = [candidate("w", [0.80]), candidate("r", [0.78])]
    m = selection_margin(cands, "w", val_images=100)
    assert m.noise == pytest.approx(math.sqrt((0.8 * 0.2 + 0.78 * 0.22) / 100))
    assert m.inside and "100 validation images" in m.noise_kind
    assert not selection_margin(cands, "w", val_images=100_000).inside  # 0.02 on 100k images
    assert selection_margin(cands, "w").noise is None  # size unknown: no claim either way
    assert not selection_margin(cands, "w").inside
    assert selection_margin([candidate("w", [0.8])], "w") is None  # no runner-up
    assert 0.02 < Z * m.noise  # the rule: margin below Z standard errors


def test_validation_images_parses_what_a_run_records() -> None:
    assert validation_images({"validation": "the dataset's own val split: 1,500 images"}) == 1500
    assert validation_images('{"validation": "x: 20 images"}') == 20
    assert validation_images({"validation": "unknown"}) is None and validation_images(None) is None


def test_selected_table_marks_a_choice_inside_the_noise(tmp_path: Path) -> None:
    store = tuned_store(tmp_path, {"lr": [1e-2, 3e-2]})  # 0.80 against 0.78 on 100 images
    selection = load_selection(store)
    (choice,) = selection.values()
    assert choice.values == {"lr": 0.01} and choice.margin.inside
    md = render_stored_table(store, fmt="markdown", selected=True)
    assert "(n=3)\u00b0" in md
    assert ("\u00b0 head-tuning / test_resnet, digits: validation top-1 0.8000 against 0.7800 "
            "for lr=0.03: margin 0.0200 < 1.96 x 0.0576 (binomial standard error, one tuning "
            "seed, 100 validation images)") in md
    clear = tuned_store(tmp_path / "c", {"lr": [1e-3, 1e-2]})  # 0.80 against 0.50
    assert "\u00b0" not in render_stored_table(clear, fmt="markdown", selected=True)


def test_tuning_runs_are_flagged_when_loaded(tmp_path: Path) -> None:
    store = tuned_store(tmp_path, {"lr": [1e-3, 1e-2]})
    runs = load_done_runs(store)
    assert sorted((r["seed"], r["tuning_candidate"]) for r in runs) == \
        [(0, False), (1, False), (2, False), (3, True), (3, True)]
