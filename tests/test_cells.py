"""A table cell is one configuration (issue 15): runs that differ in anything but the seed never
share a cell, in any table format or plot, and labels name what differs.

Runs are synthetic (stored as pending, claimed, marked done with made-up metrics): nothing trains.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from lionbench.config import RunConfig, TrainConfig
from lionbench.matrix import Matrix
from lionbench.report import build_table, render_stored_table
from lionbench.report.cells import format_value, short_weights
from lionbench.report.plots import plot_sensitivity, plot_tradeoff
from lionbench.report.render import rich_to_text
from lionbench.report.stored import load_done_runs
from lionbench.runner import expand_matrix
from lionbench.store import Store

PROVENANCE = {"host": "h", "device": "cpu", "git_commit": "abc", "git_dirty": False,
              "versions": "{}"}


def configs(methods: list[str], overrides: dict, seeds: tuple[int, ...] = (0,),
            datasets: tuple[str, ...] = ("digits",)) -> list[RunConfig]:
    return expand_matrix([Matrix(methods=methods, backbones=["test_resnet"],
                                 datasets=list(datasets), seeds=list(seeds),
                                 overrides=overrides)])


def store_done(store: Store, runs: list[RunConfig], top1) -> None:
    store.add_pending(runs)
    by_hash = {c.run_hash: c for c in runs}
    while (row := store.claim_next("t", list(by_hash))) is not None:
        c = by_hash[row["run_hash"]]
        store.mark_done(row["id"], {"test_top1": top1(c), "val_top1": 0.5,
                                    "params_trainable": 1000 + 10 * c.seed}, {}, PROVENANCE)


@pytest.fixture
def lr_store(tmp_path: Path) -> Store:
    """head-tuning at lr 1e-2 and 1e-5 (seed 0 both: the bug's case) and LION, epochs=2."""
    store = Store(str(tmp_path / "runs.db"))
    runs = (configs(["head-tuning"], {"epochs": 2, "lr": 1e-2})
            + configs(["head-tuning"], {"epochs": 2, "lr": 1e-5})
            + configs(["lion"], {"epochs": 2}, seeds=(0, 1)))
    store_done(store, runs, lambda c: {0.01: 0.80, 1e-5: 0.10}.get(c.train.lr, 0.5) + c.seed / 100)
    return store


def test_runs_differing_only_in_lr_are_two_rows_in_every_format(lr_store: Store) -> None:
    md = render_stored_table(lr_store, fmt="markdown")
    assert "| head-tuning (lr=0.01) |" in md.replace("  ", "")
    assert "head-tuning (lr=1e-5)" in md
    assert "0.8000 (n=1)" in md and "0.1000 (n=1)" in md  # never 0.45 ± 0.49 of one seed twice
    assert "0.5050 ± 0.0071 (n=2)" in md  # LION: two seeds of one configuration
    assert "runs share: epochs=2" in md  # what every run shares is said once
    latex = render_stored_table(lr_store, fmt="latex")
    assert "head-tuning (lr=0.01)" in latex and "head-tuning (lr=1e-5)" in latex
    text = rich_to_text(render_stored_table(lr_store, fmt="rich"), width=200)
    assert "head-tuning (lr=0.01)" in text and "head-tuning (lr=1e-5)" in text
    rows = list(csv.DictReader(io.StringIO(render_stored_table(lr_store, fmt="csv"))))
    head = {r["method_label"]: (float(r["mean"]), int(r["n"])) for r in rows
            if r["method"] == "head-tuning"}
    assert head == {"head-tuning (lr=0.01)": (0.8, 1), "head-tuning (lr=1e-5)": (0.1, 1)}
    # fewer seeds than the best-covered cell: marked, and the footnote says why
    assert {r["flags"] for r in rows if r["method"] == "head-tuning"} == {"seeds"}
    assert "\u00b6 fewer seeds than the table's most (2)" in md


def test_plots_split_by_lr_too(lr_store: Store, tmp_path: Path) -> None:
    files = plot_tradeoff(lr_store.list_runs("done"), tmp_path / "t", ("png",))
    by_label = {s.label: (s.y, s.n) for s in files.series}
    assert by_label == {"test_resnet / Head-tuning (lr=0.01)": ([0.8], [1]),
                        "test_resnet / Head-tuning (lr=1e-5)": ([0.1], [1]),
                        "test_resnet / LION": ([pytest.approx(0.505)], [2])}


def test_sensitivity_lines_split_by_training_settings(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    runs = [c for lr in (1e-3, 1e-2) for tau in (0.2, 0.4)
            for c in configs(["lion"], {"epochs": 1, "lr": lr, "lion.tau": tau})]
    store_done(store, runs, lambda c: c.method_config["tau"] + (0.5 if c.train.lr == 1e-2 else 0))
    files = plot_sensitivity(store.list_runs("done"), tmp_path / "s", ("png",))
    tau = {s.label: s.y for s in files.series if s.panel == "tau"}
    assert tau == {"test_resnet / digits": [0.2, 0.4],  # lr 1e-3: the default, unnamed
                   "test_resnet / digits (lr=0.01)": [0.7, 0.9]}


def test_column_wide_settings_are_a_footnote_not_a_label(tmp_path: Path) -> None:
    """The paper presets' epochs differ by dataset (30 on CIFAR, 100 on Flowers): a property of
    the column, not of the row; rows stay one per method."""
    store = Store(str(tmp_path / "c.db"))
    runs = (configs(["head-tuning", "lion"], {"epochs": 3, "lr": 1e-5}, datasets=("digits",))
            + configs(["head-tuning", "lion"], {"epochs": 7, "lr": 1e-5},
                      datasets=("cifar10",)))
    store_done(store, runs, lambda c: 0.5)
    table = build_table(load_done_runs(store))
    assert [r.method_label for r in table.rows] == ["head-tuning", "lion"]
    assert all(c.n == 1 for line in table.cells for c in line)
    assert table.notes == ["runs share: epochs=7 (cifar10), 3 (digits); lr=1e-5"]


def test_configurations_no_label_rule_names_still_split(tmp_path: Path) -> None:
    """Same settings, other pipeline (e.g. another timm version's normalisation): two cells,
    told apart by the keys where they differ."""
    base = configs(["head-tuning"], {"epochs": 1})[0]
    other = RunConfig(**{**base.__dict__, "pipeline": {**base.pipeline, "mean": [0.0, 0.0, 0.0]}})
    assert other.cell_hash != base.cell_hash
    store = Store(str(tmp_path / "p.db"))
    store_done(store, [base, other], lambda c: 0.9 if c.pipeline["mean"] == [0.0] * 3 else 0.3)
    table = build_table(load_done_runs(store))
    labels = sorted(r.method_label for r in table.rows)
    assert len(labels) == 2 and all("pipeline.mean=" in label for label in labels)
    assert sorted(line[0].mean for line in table.cells) == [0.3, 0.9]


def test_records_without_a_config_keep_one_cell_per_method_and_weights() -> None:
    runs = [dict(method="lion", backbone="b", dataset="d", seed=s, weights="pretrained",
                 status="done", test_top1=0.5 + s / 10, cell_hash=None) for s in (0, 1, 2)]
    table = build_table(runs)
    assert len(table.rows) == 1 and table.cells[0][0].n == 3 and table.max_seeds == 3


def test_values_and_weights_are_short() -> None:
    assert [format_value(v) for v in (0.01, 1e-5, 3e-4, 2, True, None, 1.5e10)] == \
        ["0.01", "1e-5", "0.0003", "2", "true", "none", "1.5e+10"]
    assert short_weights("../shared/weights/mobilenetv2_100.imagenet.safetensors") == \
        "mobilenetv2_100.imagenet"
    assert short_weights("none") == "none" and short_weights("/x/ckpt.pt") == "ckpt"


def test_stored_cell_hash_groups_the_seeds(lr_store: Store) -> None:
    runs = load_done_runs(lr_store)
    lion = [r for r in runs if r["method"] == "lion"]
    assert len({r["cell_hash"] for r in lion}) == 1 and len(lion) == 2
    assert all("seed" not in r["config"] for r in runs)
    assert json.dumps(runs[0]["config"]["train"], sort_keys=True) != \
        json.dumps(runs[1]["config"]["train"], sort_keys=True)
    assert TrainConfig().lr == 1e-3  # the default the labels compare with
