"""Comparison tables: the paper's Tables 1-4 re-rendered from results/paper_results.csv must
match golden files (checked by eye against the paper), and a small synthetic set of runs must
render identically in every format.

Goldens are only rewritten on request: ``LIONBENCH_UPDATE_GOLDEN=1 pytest tests/test_tables.py``
(then read the diff before committing it).
"""

from __future__ import annotations

import filecmp
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from lionbench.report import build_table, render_table
from lionbench.report import paper as ref
from lionbench.report.render import latex_escape, rich_to_text

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("LIONBENCH_UPDATE_GOLDEN") == "1"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"golden {path} missing; create it with LIONBENCH_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


def synthetic_runs() -> pd.DataFrame:
    """2 backbones x 3 methods x 2 datasets x 2 seeds, less one cell (resnet50/lion/digits),
    with a dirty run, an old-protocol run, a random-init head-tuning run and a failed run."""
    rows = []
    base = {"lion": 0.80, "head-tuning": 0.70, "fine-tuning": 0.78}
    params = {"lion": 97_000, "head-tuning": 20_490, "fine-tuning": 23_528_522}
    for b, bb in enumerate(["demo-resnet", "resnet50"]):
        for method in ["lion", "head-tuning", "fine-tuning"]:  # not the paper's order
            for d, ds in enumerate(["digits", "cifar10"]):  # not the paper's order either
                if (bb, method, ds) == ("resnet50", "lion", "digits"):
                    continue
                for seed in (0, 1):
                    rows.append(dict(
                        method=method, backbone=bb, dataset=ds, seed=seed, weights="pretrained",
                        status="done", test_top1=base[method] + 0.05 * b - 0.1 * d + 0.01 * seed,
                        test_top5=float("nan"), params_trainable=params[method] + 1000 * seed,
                        params_trainable_no_head=params[method] // 2, git_dirty=False,
                        protocol_version=1, run_hash=f"{bb}-{method}-{ds}-{seed}"))
    runs = pd.DataFrame(rows)
    runs.loc[(runs.backbone == "demo-resnet") & (runs.method == "fine-tuning")
             & (runs.dataset == "cifar10") & (runs.seed == 1), "git_dirty"] = True
    runs.loc[(runs.backbone == "resnet50") & (runs.method == "fine-tuning")
             & (runs.dataset == "cifar10") & (runs.seed == 0), "protocol_version"] = 0
    extra = [dict(rows[0], method="head-tuning", weights="none", test_top1=0.25, seed=0,
                  params_trainable=20_490, run_hash="rand"),
             dict(rows[0], status="failed", test_top1=0.01, run_hash="failed")]
    return pd.concat([runs, pd.DataFrame(extra)], ignore_index=True)


@pytest.mark.parametrize("preset", ["table1", "table2", "table3", "table4"])
@pytest.mark.parametrize("fmt,ext", [("markdown", "md"), ("latex", "tex")])
def test_paper_tables_golden(preset: str, fmt: str, ext: str) -> None:
    """The paper's numbers are single published values: no seeds to pair, so the paper's own
    bold (its highest value) is shown as printed (``stats=False``)."""
    table = build_table(ref.paper_runs(preset), preset=preset, stats=False)
    check_golden(f"paper_{preset}.{ext}", render_table(table, fmt))


@pytest.mark.parametrize("preset", ["table1", "table2", "table3", "table4"])
def test_paper_tables_hold_every_paper_number(preset: str) -> None:
    """Independent of the goldens: every cell equals the CSV, no cell is empty or averaged."""
    df = ref.load_paper_results()
    table = build_table(ref.paper_runs(), preset=preset)  # all tables, deduplicated
    p = ref.PRESETS[preset]
    assert [r.method for r in table.rows] == list(p.methods) * len(p.backbones)
    want = df[(df.table == preset) & (df.metric == "top1")]
    got = {(r.backbone, r.method, c.dataset): table.cells[i][j]
           for i, r in enumerate(table.rows) for j, c in enumerate(table.columns)}
    assert len(want) == len(got)
    for w in want.itertuples():
        cell = got[(w.our_backbone, w.our_method, w.our_dataset)]
        assert cell.n == 1 and cell.mean == pytest.approx(w.value, abs=1e-12)
    params = df[(df.table == preset) & (df.metric == "params_m")]
    for w in params.itertuples():
        i = [(r.backbone, r.method) for r in table.rows].index((w.our_backbone, w.our_method))
        assert table.params_m[i] == pytest.approx(w.value, abs=1e-9)


@pytest.mark.parametrize("fmt,name", [("markdown", "synthetic.md"), ("latex", "synthetic.tex"),
                                      ("csv", "synthetic.csv"), ("rich", "synthetic.txt")])
def test_synthetic_golden(fmt: str, name: str) -> None:
    out = render_table(build_table(synthetic_runs(), current_protocol=1), fmt)
    check_golden(name, rich_to_text(out, width=160) if fmt == "rich" else out)


def test_compare_with_paper_golden() -> None:
    runs = synthetic_runs()
    runs = runs[runs.backbone == "resnet50"]
    table = build_table(runs, preset="table1", compare="paper", current_protocol=1)
    check_golden("compare_table1.md", render_table(table, "markdown"))
    check_golden("compare_table1.csv", render_table(table, "csv"))
    lion = table.rows.index(next(r for r in table.rows if r.method == "lion"))
    cell = table.cells[lion][0]  # ours 0.755 vs the paper's 0.8628
    assert cell.paper == 0.8628 and cell.delta == pytest.approx(0.755 - 0.8628)


def test_aggregation_flags_and_rows() -> None:
    table = build_table(synthetic_runs(), current_protocol=1)
    labels = [(r.backbone, r.method_label) for r in table.rows]
    assert labels == [("demo-resnet", "head-tuning"), ("demo-resnet", "head-tuning (weights=none)"),
                      ("demo-resnet", "fine-tuning"), ("demo-resnet", "lion"),
                      ("resnet50", "head-tuning"), ("resnet50", "fine-tuning"),
                      ("resnet50", "lion")]
    assert [c.dataset for c in table.columns] == ["cifar10", "digits"]
    assert table.excluded == {"not done": 1}
    lion50 = table.cells[6]
    assert lion50[1].n == 0 and lion50[1].mean is None  # the missing cell
    ft_demo = table.cells[2][0]
    assert ft_demo.n == 2 and ft_demo.flags == ("dirty",)
    assert ft_demo.std == pytest.approx(math.sqrt(0.01**2 / 2))
    assert table.cells[5][0].flags == ("protocol",)
    assert table.params_m[2] == pytest.approx(23.529522)  # the max over seeds, with head
    # two seeds per cell: no interval, so nothing is bold and every cell with a value is tied
    assert not any(c.best for line in table.cells for c in line)
    assert all(c.tie for line in table.cells for c in line if c.mean is not None)
    plain = build_table(synthetic_runs(), current_protocol=1, stats=False)  # --no-stats
    best = [[c.best for c in line] for line in plain.cells]
    assert best[3] == [True, True] and best[6] == [True, False]


def test_clean_only_drops_flagged_runs() -> None:
    table = build_table(synthetic_runs(), current_protocol=1, clean_only=True, stats=False)
    assert table.excluded["dirty tree or old protocol"] == 2
    # no dirty or protocol flag is left; cells that lost a seed say so
    assert {c.flags for line in table.cells for c in line} == {(), ("seeds",)}
    assert table.cells[2][0].n == 1 and table.cells[2][0].flags == ("seeds",)
    assert table.footnotes() == ["\u00b6 fewer seeds than the table's most (2)"]


def test_rich_marks_best_in_bold() -> None:
    rt = render_table(build_table(ref.paper_runs("table4"), preset="table4", stats=False),
                      "rich")
    lion_row = [col._cells[7] for col in rt.columns[2:]]  # ViT-B LION: best everywhere
    assert all("bold" in str(t.spans[0].style) for t in lion_row)


def test_latex_escapes_specials() -> None:
    assert latex_escape("vit_base 5% & #1 ± x†") == r"vit\_base 5\% \& \#1 $\pm$ x\dag{}"


def test_packaged_copy_matches_results_csv() -> None:
    root = Path(__file__).parent.parent
    assert filecmp.cmp(root / "results" / ref.FILENAME,
                       root / "lionbench" / "assets" / ref.FILENAME, shallow=False)


def test_bad_arguments() -> None:
    runs = synthetic_runs()
    with pytest.raises(ValueError, match="preset"):
        build_table(runs, preset="table9")
    with pytest.raises(ValueError, match="top-1"):
        build_table(runs, metric="test_top5", compare="paper")
    with pytest.raises(ValueError, match="format"):
        render_table(build_table(runs), "html")


def test_empty_runs_and_odd_names_render() -> None:
    empty = synthetic_runs().iloc[:0]
    assert render_table(build_table(empty), "markdown").startswith("| Backbone | Method |")
    assert render_table(build_table(empty, preset="table4"), "markdown").count(" - ") == 24
    odd = synthetic_runs().iloc[:2].assign(dataset="folder:/x_y", weights="ckpt/w_1.pt")
    latex = render_table(build_table(odd), "latex")  # weights shared: a footnote, by file stem
    assert r"folder:/x\_y" in latex and r"runs share: weights=w\_1}" in latex
    assert r"lion (weights" not in latex
    odd.loc[1, "weights"] = "other/w_2.safetensors"  # weights differ in the column: labels
    latex = render_table(build_table(odd), "latex")
    assert r"lion (weights=w\_1)" in latex and r"lion (weights=w\_2)" in latex
    assert "ckpt" not in latex and "other/" not in latex and r"\P{}" not in latex
