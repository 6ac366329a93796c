"""``lionbench compare``, ``rank``, ``plot cd`` and ``table --vs`` on a stored database.

Runs are synthetic (stored pending, claimed, marked done with made-up metrics): nothing trains.
Every number is checked against scipy computed here from the same values.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from scipy import stats as sps
from test_cells import configs, store_done
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.report.cdplot import read_cd
from lionbench.store import Store

runner = CliRunner()
# test top-1 by (method, dataset, seed): LION-R ahead of LION on digits by a seed-dependent
# margin; on cifar10 they trade places; head-tuning far behind everywhere
TOP1 = {("lion", "digits"): [0.800, 0.812, 0.795], ("lion-r", "digits"): [0.810, 0.830, 0.801],
        ("head-tuning", "digits"): [0.600, 0.640, 0.610],
        ("lion", "cifar10"): [0.500, 0.470, 0.520], ("lion-r", "cifar10"): [0.490, 0.480, 0.500],
        ("head-tuning", "cifar10"): [0.300, 0.320, 0.310],
        ("lion", "pets"): [0.700, 0.690, 0.710], ("lion-r", "pets"): [0.690, 0.700, 0.720],
        ("head-tuning", "pets"): [0.500, 0.520, 0.510]}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("cmp") / "runs.db")
    runs = configs(["lion", "lion-r", "head-tuning"], {"epochs": 1}, seeds=(0, 1, 2),
                   datasets=("digits", "cifar10", "pets"))
    store_done(Store(path), runs, lambda c: TOP1[(c.method, c.dataset)][c.seed])
    return path


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_compare_csv_is_the_paired_t_interval(db: str) -> None:
    result = invoke("compare", "lion-r", "lion", "--db", db, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = {r["dataset"]: r for r in csv.DictReader(io.StringIO(result.output))}
    assert set(rows) == {"digits", "cifar10", "pets"}
    for dataset, row in rows.items():
        a, b = TOP1[("lion-r", dataset)], TOP1[("lion", dataset)]
        ci = sps.ttest_rel(a, b).confidence_interval(0.95)
        assert float(row["low"]) == pytest.approx(ci.low, abs=1e-6)
        assert float(row["high"]) == pytest.approx(ci.high, abs=1e-6)
        assert float(row["difference"]) == pytest.approx(sum(a) / 3 - sum(b) / 3, abs=1e-6)
        assert row["test"] == "paired t" and row["pairs"] == "3" and row["seeds"] == "0 1 2"
        assert row["excludes_zero"] == str(int(ci.low > 0 or ci.high < 0))
    head = invoke("compare", "lion", "head-tuning", "--db", db, "--format", "csv")
    assert {r["excludes_zero"] for r in csv.DictReader(io.StringIO(head.output))} == {"1"}


def test_compare_formats(db: str) -> None:
    md = invoke("compare", "lion-r", "lion", "--db", db, "--format", "markdown").output
    assert "lion-r - lion: test_top1, seed-paired differences with 95 % t intervals" in md
    assert "| test_resnet | digits" in md and "paired t" in md
    data = json.loads(invoke("compare", "lion-r", "lion", "--db", db, "--format",
                             "json").output)
    assert data["a"] == "lion-r" and len(data["comparisons"]) == 3
    assert data["comparisons"][0]["seeds"] == [0, 1, 2]
    latex = invoke("compare", "lion-r", "lion", "--db", db, "--format", "latex").output
    assert r"\begin{tabular}" in latex and r"\toprule" in latex
    rich = invoke("compare", "lion-r", "lion", "--db", db)
    assert rich.exit_code == 0 and "lion-r - lion" in rich.output and "paired" in rich.output
    boot = invoke("compare", "lion-r", "lion", "--db", db, "--format", "csv", "--bootstrap")
    assert {r["test"] for r in csv.DictReader(io.StringIO(boot.output))} == {"paired bootstrap"}


def test_compare_bad_input_is_one_line(db: str) -> None:
    result = invoke("compare", "lion", "adapter", "--db", db)
    assert result.exit_code == 1
    assert result.output.startswith("error: no backbone x dataset has runs of both 'lion' and "
                                    "'adapter'; rows: head-tuning, lion, lion-r")
    assert "Traceback" not in result.output
    bad = invoke("compare", "lion", "lion-r", "--db", db, "--format", "html")
    assert bad.exit_code == 1 and "valid: rich, markdown, latex, csv, json" in bad.output


def test_compare_unpaired_and_too_few(tmp_path: Path) -> None:
    path = str(tmp_path / "u.db")
    runs = (configs(["lion"], {"epochs": 1}, seeds=(0, 1, 2))
            + configs(["vpt"], {"epochs": 1}, seeds=(3, 4, 5))
            + configs(["bias"], {"epochs": 1}, seeds=(0, 1)))
    store_done(Store(path), runs, lambda c: 0.5 + c.seed / 50 + (0.1 if c.method == "vpt"
                                                                 else 0))
    rows = list(csv.DictReader(io.StringIO(invoke("compare", "vpt", "lion", "--db", path,
                                                  "--format", "csv").output)))
    (row,) = rows
    ci = sps.ttest_ind([0.66, 0.68, 0.70], [0.5, 0.52, 0.54], equal_var=False
                       ).confidence_interval(0.95)
    assert row["test"] == "Welch" and row["seeds"] == "3 4 5 | 0 1 2"
    assert float(row["low"]) == pytest.approx(ci.low, abs=1e-6)
    assert row["reason"].startswith("unpaired: 0 seed pairs")
    (few,) = csv.DictReader(io.StringIO(invoke("compare", "bias", "lion", "--db", path,
                                               "--format", "csv").output))
    assert few["test"] == "none" and few["low"] == "" and few["excludes_zero"] == ""
    assert "2 seed pairs" in few["reason"]


def test_table_vs_column(db: str) -> None:
    result = invoke("table", "--db", db, "--vs", "lion", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    r = next(r for r in rows if r["method"] == "lion-r" and r["dataset"] == "digits")
    ci = sps.ttest_rel(TOP1[("lion-r", "digits")], TOP1[("lion", "digits")]
                       ).confidence_interval(0.95)
    assert r["vs"] == "lion" and float(r["vs_low"]) == pytest.approx(ci.low, abs=1e-6)
    md = invoke("table", "--db", db, "--vs", "lion", "--format", "markdown").output
    lion = next(line for line in md.splitlines() if line.split("|")[2].strip() == "lion")
    assert "digits Δ vs lion" in md and lion.count(" ref ") == 3  # one per dataset
    bad = invoke("table", "--db", db, "--vs", "adapter")
    assert bad.exit_code == 1 and "no row 'adapter' to compare with" in bad.output


def test_rank_against_scipy(db: str) -> None:
    result = invoke("rank", "--db", db, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["methods"] == ["head-tuning", "lion", "lion-r"]
    means = {k: sum(v) / 3 for k, v in TOP1.items()}
    columns = [[means[(m, d)] for d in ("cifar10", "digits", "pets")]
               for m in data["methods"]]
    assert data["blocks"] == ["test_resnet / cifar10", "test_resnet / digits",
                              "test_resnet / pets"]
    expected = sps.friedmanchisquare(*columns)
    assert data["friedman_p"] == pytest.approx(expected.pvalue, abs=1e-9)
    assert data["mean_ranks"] == pytest.approx([3.0, 5 / 3, 4 / 3])
    pair = next(p for p in data["pairs"] if (p["a"], p["b"]) == ("lion", "lion-r"))
    assert pair["p"] == pytest.approx(sps.wilcoxon(columns[1], columns[2],
                                                   zero_method="zsplit").pvalue, abs=1e-9)
    md = invoke("rank", "--db", db, "--format", "markdown").output
    assert "Friedman chi2" in md and "Nemenyi critical difference" in md
    assert "Pairwise Wilcoxon signed-rank tests" in md
    assert invoke("rank", "--db", db).exit_code == 0
    sub = json.loads(invoke("rank", "--db", db, "--format", "json", "-m", "lion,lion-r").output)
    assert sub["methods"] == ["lion", "lion-r"] and sub["friedman"] is None
    bad = invoke("rank", "--db", db, "-m", "lion,adapter")
    assert bad.exit_code == 1 and "no row 'adapter' in the table" in bad.output
    assert invoke("rank", "--db", db, "--alpha", "2").exit_code == 1


def test_plot_cd_draws_the_ranks(db: str, tmp_path: Path) -> None:
    result = invoke("plot", "cd", "--db", db, "-o", str(tmp_path / "cd"), "--format",
                    "png,pdf")
    assert result.exit_code == 0, result.output
    assert "3 methods over 3 blocks" in result.output
    ranking = json.loads(invoke("rank", "--db", db, "--format", "json").output)
    for suffix in ("png", "pdf"):
        drawn = read_cd(tmp_path / f"cd.{suffix}")
        assert drawn["mean_ranks"] == pytest.approx(dict(zip(ranking["methods"],
                                                             ranking["mean_ranks"],
                                                             strict=True)))
        assert drawn["critical_difference"] == pytest.approx(ranking["critical_difference"])
        assert [c["methods"] for c in drawn["cliques"]] == ranking["cliques"]
    # k = 3, N = 3: CD = 2.343 * sqrt(3 * 4 / 18) = 1.91 > 3 - 4/3, so one group of all three
    assert ranking["cliques"] == [["lion-r", "lion", "head-tuning"]]


def test_empty_database_is_one_line(tmp_path: Path) -> None:
    path = str(tmp_path / "e.db")
    Store(path)
    for args in (["compare", "lion", "vpt"], ["rank"], ["plot", "cd", "-o",
                                                         str(tmp_path / "x")]):
        result = invoke(*args, "--db", path)
        assert result.exit_code == 1 and result.output.startswith("error: no done runs")


def test_compare_a_row_with_itself_and_contradictory_table_options(db: str) -> None:
    same = invoke("compare", "lion", "lion", "--db", db)
    assert same.exit_code == 1 and "two different rows; got 'lion' twice" in same.output
    both = invoke("table", "--db", db, "--selected", "--all-seeds")
    assert both.exit_code == 1 and both.output.startswith("error: --selected shows")


def test_rank_names_a_method_across_backbones_with_other_weights() -> None:
    from lionbench.report import build_table
    from lionbench.report.rank_report import method_names, ranking_of

    def run(backbone, method, weights, dataset, value):
        return dict(backbone=backbone, method=method, weights=weights, dataset=dataset,
                    seed=0, status="done", test_top1=value)

    runs = []
    for d, shift in (("digits", 0.0), ("other", 0.1)):
        runs += [run("a", "lion", "pretrained", d, 0.8 + shift),
                 run("a", "vpt", "pretrained", d, 0.7 + shift),
                 run("b", "lion", "w/mb.safetensors", d, 0.6 + shift),
                 run("b", "vpt", "w/mb.safetensors", d, 0.65 + shift)]
    table = build_table(runs)
    assert "lion (weights=mb)" in [r.method_label for r in table.rows]
    assert set(method_names(table).values()) == {"lion", "vpt"}
    ranking = ranking_of(table)
    assert ranking.blocks == ["a / digits", "a / other", "b / digits", "b / other"]
    assert ranking.mean_ranks == [1.5, 1.5]
    two_rows = build_table(runs + [run("a", "vpt", "none", "digits", 0.1)])
    names = set(method_names(two_rows).values())  # vpt has two rows on a: labels apart
    assert {"lion", "vpt", "vpt (weights=none)", "vpt (weights=mb)"} == names
