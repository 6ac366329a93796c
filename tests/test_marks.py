"""Best and tie marks by seed-paired intervals, in every table format, and ``table --vs``.

The goldens (tests/golden/stats*) hold a table with a significant best (LION on digits, bold)
and ties (cifar10: LION, VPT and Bias's two seeds cannot be told apart). The property test
recomputes every interval with scipy's own t-tests and fails if a tie is marked where the
interval excludes zero, or a best is bold that is not above every other cell.
"""

from __future__ import annotations

import csv
import io
import random

import pytest
from scipy import stats as sps
from test_tables import check_golden, synthetic_runs

from lionbench.report import build_table, render_table
from lionbench.report.marks import TIE_MARK
from lionbench.report.render import rich_to_text

VALUES = {
    ("lion", "digits"): [0.900, 0.912, 0.905],
    ("vpt", "digits"): [0.850, 0.866, 0.853],
    ("bias", "digits"): [0.850, 0.845, 0.858],  # seeds 3-5: no pair, Welch's interval
    ("head-tuning", "digits"): [0.700, 0.710, 0.690],
    ("lion", "cifar10"): [0.610, 0.640, 0.600],
    ("vpt", "cifar10"): [0.620, 0.600, 0.615],
    ("bias", "cifar10"): [0.580, 0.560],  # two seeds: no interval
    ("head-tuning", "cifar10"): [0.500, 0.520, 0.510],
}


def stats_runs() -> list[dict]:
    """One backbone, four methods, two datasets, seeds 0-2 (Bias on digits: seeds 3-5)."""
    rows = []
    for (method, dataset), values in VALUES.items():
        first = 3 if (method, dataset) == ("bias", "digits") else 0
        for k, value in enumerate(values):
            rows.append(dict(method=method, backbone="demo-resnet", dataset=dataset,
                             seed=first + k, weights="pretrained", status="done",
                             test_top1=value, params_trainable=1000, git_dirty=False,
                             protocol_version=1))
    return rows


@pytest.mark.parametrize("fmt,name", [("markdown", "stats.md"), ("latex", "stats.tex"),
                                      ("csv", "stats.csv"), ("rich", "stats.txt")])
def test_stats_golden(fmt: str, name: str) -> None:
    out = render_table(build_table(stats_runs(), current_protocol=1), fmt)
    check_golden(name, rich_to_text(out, width=160) if fmt == "rich" else out)


@pytest.mark.parametrize("fmt,name", [("markdown", "stats_vs.md"), ("latex", "stats_vs.tex"),
                                      ("csv", "stats_vs.csv")])
def test_versus_golden(fmt: str, name: str) -> None:
    table = build_table(stats_runs(), current_protocol=1, versus="head-tuning")
    check_golden(name, render_table(table, fmt))


def cell(table, method: str, dataset: str):
    i = [r.method for r in table.rows].index(method)
    j = [c.dataset for c in table.columns].index(dataset)
    return table.cells[i][j]


def test_marks_of_the_stats_table() -> None:
    table = build_table(stats_runs(), current_protocol=1)
    lion = cell(table, "lion", "digits")
    assert lion.best and not lion.tie  # above VPT (paired) and Bias (Welch) and head-tuning
    assert lion.versus_best.test == "paired t" and lion.versus_best.seeds == (0, 1, 2)
    assert cell(table, "bias", "digits").versus_best.test == "Welch"
    assert not any(cell(table, m, "digits").tie for m in ("vpt", "bias", "head-tuning"))
    # cifar10: nothing bold; LION, VPT and Bias (2 seeds, no interval) tied; head-tuning worse
    assert not any(cell(table, m, "cifar10").best for m in ("lion", "vpt", "bias", "head-tuning"))
    assert [cell(table, m, "cifar10").tie for m in ("lion", "vpt", "bias", "head-tuning")] == \
        [True, True, True, False]
    assert cell(table, "bias", "cifar10").versus_best.test == "none"
    md = render_table(table, "markdown")
    assert "**0.9057 ± 0.0060 (n=3)**" in md and f"0.6117 ± 0.0104 (n=3){TIE_MARK}" in md
    assert f"{TIE_MARK} not significantly worse than its column's best" in md


def test_no_stats_keeps_the_highest_mean_bold() -> None:
    table = build_table(stats_runs(), current_protocol=1, stats=False)
    assert cell(table, "lion", "cifar10").best and cell(table, "lion", "digits").best
    assert not any(c.tie for line in table.cells for c in line)
    md = render_table(table, "markdown")
    assert TIE_MARK not in md and "**0.6167 ± 0.0208 (n=3)**" in md
    rows = list(csv.DictReader(io.StringIO(render_table(table, "csv"))))
    assert {r["tie"] for r in rows} == {""}


def test_a_table_without_enough_seeds_says_so() -> None:
    table = build_table(synthetic_runs(), current_protocol=1)  # two seeds per cell at most
    assert not any(c.best for line in table.cells for c in line)
    assert all(c.tie for line in table.cells for c in line if c.mean is not None)
    assert any("no interval in this table" in n for n in table.footnotes())


def test_bootstrap_interval_on_request() -> None:
    t = build_table(stats_runs(), current_protocol=1, interval="bootstrap")
    d = cell(t, "lion", "digits").versus_best
    assert d.test == "paired bootstrap" and d.low <= d.mean <= d.high
    assert any("bootstrap interval" in n for n in t.footnotes())
    with pytest.raises(ValueError, match="unknown interval 'z'"):
        build_table(stats_runs(), interval="z")


def test_versus_unknown_row_is_an_error() -> None:
    with pytest.raises(ValueError, match="no row 'adapter' to compare with; rows: bias"):
        build_table(stats_runs(), versus="adapter")


def scipy_interval(best: dict[int, float], other: dict[int, float]):
    """The interval of best - other as scipy computes it, by the documented rule."""
    common = sorted(set(best) & set(other))
    if len(common) >= 3:
        return sps.ttest_rel([best[s] for s in common], [other[s] for s in common]
                             ).confidence_interval(0.95)
    if len(best) >= 3 and len(other) >= 3:
        return sps.ttest_ind(list(best.values()), list(other.values()), equal_var=False
                             ).confidence_interval(0.95)
    return None


@pytest.mark.parametrize("seed", range(12))
def test_ties_never_where_the_interval_excludes_zero(seed: int) -> None:
    """Random tables (1-5 seeds per cell, some on other seeds): every mark agrees with scipy."""
    rng = random.Random(seed)
    runs, by_cell = [], {}
    for method in ("lion", "vpt", "bias", "adapter"):
        level = rng.uniform(0.6, 0.7)
        for dataset in ("digits", "cifar10"):
            first = rng.choice([0, 0, 0, 2])
            seeds = range(first, first + rng.randint(1, 5))
            by_cell[(method, dataset)] = {}
            for s in seeds:
                value = level + rng.gauss(0, 0.02) + 0.01 * s
                by_cell[(method, dataset)][s] = value
                runs.append(dict(method=method, backbone="b", dataset=dataset, seed=s,
                                 weights="pretrained", status="done", test_top1=value))
    table = build_table(runs)
    for j, column in enumerate(table.columns):
        cells = {row.method: table.cells[i][j] for i, row in enumerate(table.rows)}
        values = {m: by_cell[(m, column.dataset)] for m in cells}
        best = max(cells, key=lambda m: cells[m].mean)
        worse = []
        for m in cells:
            if m == best:
                continue
            ci = scipy_interval(values[best], values[m])
            significant = ci is not None and ci.low > 0
            assert cells[m].tie == (not significant), (m, column.dataset, ci)
            if ci is not None:
                assert cells[m].versus_best.low == pytest.approx(ci.low, abs=1e-9)
                assert cells[m].versus_best.high == pytest.approx(ci.high, abs=1e-9)
            worse.append(significant)
        assert cells[best].best == all(worse) and cells[best].tie == (not all(worse))


def test_a_cell_ahead_on_the_shared_seeds_is_tied_not_worse() -> None:
    """The best by mean (5 seeds, two high ones) is below VPT on the 3 seeds they share: VPT is
    not worse (the paired interval lies below 0), so it carries the tie mark."""
    runs = [dict(method="lion", backbone="b", dataset="d", seed=s, status="done", test_top1=v)
            for s, v in enumerate([0.60, 0.61, 0.62, 0.95, 0.96])]
    runs += [dict(method="vpt", backbone="b", dataset="d", seed=s, status="done", test_top1=v)
             for s, v in enumerate([0.70, 0.705, 0.712])]
    table = build_table(runs)
    lion, vpt = cell(table, "lion", "d"), cell(table, "vpt", "d")
    assert lion.mean > vpt.mean and vpt.versus_best.high < 0
    assert vpt.tie and lion.tie and not lion.best
