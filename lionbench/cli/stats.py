"""CLI commands that say whether a difference is real: ``compare A B``, ``rank`` and
``plot cd`` (library: ``lionbench.report.compare``, ``rank_report``, ``ranks``, ``cdplot``).

Thin like the other result commands: read the store read-only, build the table's cells (one
configuration each, tuning candidates left out), compute, render. No torch; scipy and (for the
diagram) matplotlib are imported by the command that needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from lionbench.errors import ConfigError
from lionbench.files import check_writable
from lionbench.matrix import split_names
from lionbench.store import Store
from lionbench.text import printable

from .options import (
    BootstrapOption,
    CleanOnlyOption,
    DbOption,
    SelectedOption,
    console,
    handle_errors,
)
from .results import _check_plot_outputs, _formats, emit, plot_app

MethodsFilter = typer.Option(None, "--methods", "-m", help="Comma-separated row labels or "
                             "methods to rank (default: every row of the table).")
AlphaOption = typer.Option(0.05, "--alpha", help="Significance level of the tests (0 < alpha "
                           "< 1).")


def _table(db: str | None, *, selected: bool, clean_only: bool, bootstrap: bool = False,
           level: float = 0.95) -> Any:
    from lionbench.report.stored import stored_table

    table = stored_table(Store(db, read_only=True), selected=selected, clean_only=clean_only,
                         stats=False, interval="bootstrap" if bootstrap else "t", level=level)
    if not any(c.samples for line in table.cells for c in line):
        raise ConfigError("no done runs to compare; run `lionbench run` first")
    return table


def _alpha(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ConfigError(f"invalid --alpha {alpha!r}; must lie in (0, 1), e.g. 0.05")
    return alpha


@handle_errors
def compare(
    a: str = typer.Argument(..., help="A method or a row label as `lionbench table` shows it."),
    b: str = typer.Argument(..., help="The method or row label to subtract."),
    db: DbOption = None,
    fmt: str = typer.Option("rich", "--format", "-f", help="rich | markdown | latex | csv | "
                            "json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to FILE."),
    bootstrap: BootstrapOption = False,
    selected: SelectedOption = False,
    clean_only: CleanOnlyOption = False,
) -> None:
    """A minus B per backbone x dataset: seed-paired difference, 95 % interval, its seeds.

    The interval is Student's t over the seed pairs (--bootstrap: a percentile bootstrap); with
    fewer than 3 pairs, Welch's unpaired interval when each side has 3 runs, else none, and
    the reason. A and B are methods or row labels as `lionbench table` prints them."""
    from lionbench.report.compare import FORMATS, compare_rows, render_comparison

    if fmt not in FORMATS:
        raise ConfigError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")
    if output is not None:
        check_writable(output, "compare")
    table = _table(db, selected=selected, clean_only=clean_only, bootstrap=bootstrap)
    try:
        result = compare_rows(table, a, b)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    emit(render_comparison(result, fmt), output, "compare")


def _ranking(db: str | None, methods: str | None, selected: bool, clean_only: bool,
             alpha: float) -> Any:
    from lionbench.report.rank_report import ranking_of

    table = _table(db, selected=selected, clean_only=clean_only)
    try:
        return ranking_of(table, split_names(methods) or None, alpha=_alpha(alpha))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@handle_errors
def rank(
    db: DbOption = None,
    fmt: str = typer.Option("rich", "--format", "-f", help="rich | markdown | latex | json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to FILE."),
    methods: str | None = MethodsFilter,
    alpha: float = AlphaOption,
    selected: SelectedOption = False,
    clean_only: CleanOnlyOption = False,
) -> None:
    """Mean rank per method over datasets: Friedman, Wilcoxon-Holm, Nemenyi's CD.

    Each backbone x dataset column of `lionbench table` where every method has a value is one
    block; methods are its row labels (or --methods)."""
    from lionbench.report.rank_report import FORMATS, render_ranking

    if fmt not in FORMATS:
        raise ConfigError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")
    if output is not None:
        check_writable(output, "rank")
    emit(render_ranking(_ranking(db, methods, selected, clean_only, alpha), fmt), output,
         "rank")


@plot_app.command("cd")
@handle_errors
def plot_cd_cmd(
    db: DbOption = None,
    output: Path = typer.Option(Path("results/figures/cd"), "--output", "-o",
                                help="Output prefix; .png / .pdf are appended."),
    fmt: str = typer.Option("png,pdf", "--format", "-f", help="Comma-separated: png, pdf."),
    methods: str | None = MethodsFilter,
    alpha: float = AlphaOption,
    selected: SelectedOption = False,
    clean_only: CleanOnlyOption = False,
) -> None:
    """The critical-difference diagram of `lionbench rank`: mean ranks, Nemenyi groups."""
    from lionbench.report.cdplot import plot_cd

    _check_plot_outputs(output, fmt)
    ranking = _ranking(db, methods, selected, clean_only, alpha)
    paths = plot_cd(ranking, output, _formats(fmt))
    console.print(printable(f"wrote {', '.join(map(str, paths))} ({len(ranking.methods)} "
                            f"methods over {len(ranking.blocks)} blocks, CD {ranking.cd:.3f})"),
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(compare)
    app.command()(rank)
