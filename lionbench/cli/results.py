"""CLI commands for stored results: ``table``, ``status``, ``export``, ``import`` and
``plot sensitivity|tradeoff``.

Thin on purpose: each parses its options, calls one function of ``lionbench.report`` or
``lionbench.store``, and prints what it did (on stderr when the data itself goes to stdout, so
``lionbench export --format csv > runs.csv`` stays clean). None of them imports torch; reports
(pandas) and plots (matplotlib) are imported by the commands that draw them, so that
``status`` and ``export`` start in a fraction of a second.

``table``, ``status``, ``export`` and ``plot`` open the database read-only (``Store(...,
read_only=True)``): they never create, migrate or change a database, read one in a read-only
folder, and read an older schema as it is. An output file (``-o``) is checked to be writable
before anything is read or drawn.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from lionbench.errors import ConfigError
from lionbench.files import check_writable, write_output
from lionbench.matrix import split_names
from lionbench.store import SCHEMA_VERSION, Store
from lionbench.store.exchange import export_runs, import_into
from lionbench.text import printable

from .options import (
    AllSeedsOption,
    BootstrapOption,
    CleanOnlyOption,
    DbOption,
    SelectedOption,
    console,
    handle_errors,
    new_typer,
    say,
    styled,
)

plot_app = new_typer(help="Draw figures from stored runs (PNG and PDF).", no_args_is_help=True)


@handle_errors
def table(
    db: DbOption = None,
    fmt: str = typer.Option("rich", "--format", "-f", help="rich | markdown | latex | csv."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to FILE."),
    preset: str | None = typer.Option(None, "--preset", help="table1 | table2 | table3 | "
                                      "table4 | petl-vit."),
    compare: str | None = typer.Option(None, "--compare", help="'paper': show the paper's "
                                       "value beside ours."),
    clean_only: CleanOnlyOption = False,
    mark_imported: bool = typer.Option(True, "--mark-imported/--no-mark-imported",
                                       help="Mark results imported from elsewhere with ‡ "
                                       "(their metrics cannot be re-derived here)."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Render the (empty) layout "
                                     "even when no run is done; by default say so on stderr "
                                     "and print nothing."),
    selected: SelectedOption = False,
    versus: str | None = typer.Option(None, "--vs", metavar="METHOD", help="Add, after each "
                                      "dataset column, each row minus METHOD's row (a method "
                                      "or a row label): mean seed-paired difference and its "
                                      "95 % interval."),
    stats: bool = typer.Option(True, "--stats/--no-stats", help="Bold a column's best only "
                               "where significantly better than every other cell (seed-paired "
                               "95 % interval), tie-mark (≈) the cells not significantly "
                               "worse; --no-stats bolds the highest mean."),
    bootstrap: BootstrapOption = False,
    all_seeds: AllSeedsOption = False,
) -> None:
    """Render stored results in the paper's layout (mean ± std over seeds; best, ties marked)."""
    from lionbench.report.paper import PRESETS
    from lionbench.report.render import FORMATS

    if fmt not in FORMATS:  # every option checked before the database is read
        raise ConfigError(f"unknown table format '{fmt}'; valid: {', '.join(FORMATS)}")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; valid: {', '.join(PRESETS)}")
    if compare not in (None, "paper"):
        raise ConfigError(f"unknown --compare '{compare}'; valid: paper")
    if selected and all_seeds:
        raise ConfigError("--selected shows the chosen configurations' final seeds only and "
                          "--all-seeds adds the tuning runs: give one of them")
    if output is not None:
        check_writable(output, "table")
    print_table(Store(db, read_only=True), fmt=fmt, output=output, preset=preset,
                compare=compare, clean_only=clean_only, mark_imported=mark_imported,
                allow_empty=allow_empty, selected=selected, versus=versus, stats=stats,
                interval="bootstrap" if bootstrap else "t", all_seeds=all_seeds)


def print_table(store: Store, *, hashes: list[str] | None = None, fmt: str = "rich",
                output: Path | None = None, preset: str | None = None,
                compare: str | None = None, clean_only: bool = False,
                method_order: tuple[str, ...] | None = None, mark_imported: bool = True,
                allow_empty: bool = True, selected: bool = False, **options: Any) -> None:
    """Render the store's table to stdout or ``output`` (what ``table`` and ``run`` print).
    Without done runs and ``allow_empty``: one line on stderr, nothing on stdout, exit 0.
    ``options``: versus, stats, interval, all_seeds (``render_stored_table``)."""
    from lionbench.report import render_stored_table  # not for status or export

    rendered = render_stored_table(store, hashes=hashes, fmt=fmt, preset=preset,
                                   compare=compare, clean_only=clean_only,
                                   method_order=method_order, mark_imported=mark_imported,
                                   allow_empty=allow_empty, selected=selected, **options)
    if rendered is None:
        say(f"no done runs in {store.safe_url}; run `lionbench run` first (--allow-empty renders "
            "the empty layout)", err=True)
        return
    emit(rendered, output, "table")


def emit(rendered: Any, output: Path | None, what: str) -> None:
    """Print a rendered report (text or a rich renderable) or write it to ``output``."""
    from lionbench.report.render import rich_to_text

    if output:
        text = rendered if isinstance(rendered, str) else rich_to_text(rendered)
        write_output(output, text, what)
        say(f"wrote {printable(output)}")
    elif isinstance(rendered, str):
        sys.stdout.write(rendered if rendered.endswith("\n") else rendered + "\n")
    else:
        console.print(rendered)


@handle_errors
def status(db: DbOption = None) -> None:
    """Counts of pending, running, done and failed runs, and the failures' reasons."""
    print_status(Store(db, read_only=True))


def print_status(store: Store) -> None:
    """Counts per status, the running runs with their heartbeats, the runs stored with solver
    warnings, the failures' reasons. Everything is read before anything is printed (a database
    that fails mid-way, locked for instance, gives its one error line and nothing else), and
    every stored text is printed inert (lionbench.text.printable)."""
    counts = store.count_by_status()
    columns = ("run_hash", "method", "backbone", "dataset", "seed", "worker", "heartbeat_at",
               "attempts", "failure_reason")
    running = store.fetch_runs("running", columns)
    flagged = store.runs_with_warnings()
    failed = store.fetch_runs("failed", columns)

    say(f"database: {store.safe_url}")
    t = Table("status", "runs")
    for name, n in counts.items():
        t.add_row(name, str(n))
    console.print(t)
    if store.schema_version < SCHEMA_VERSION:
        say(f"(schema {store.schema_version}, read as it is; the next `lionbench run` or "
            "`lionbench import` on it upgrades it)")
    if running:
        r = Table("method", "backbone", "dataset", "seed", "worker", "last heartbeat",
                  title="running")
        for row in running:
            r.add_row(*(Text(printable(row[k])) for k in ("method", "backbone", "dataset",
                                                          "seed", "worker", "heartbeat_at")))
        console.print(r)
    if flagged:
        console.print(Text.assemble(styled("runs with solver warnings", "bold"),
                                    " (flagged \u00a7 in tables):"))
        for row in flagged:
            say(printable(f"  {row['run_hash']} {row['method']} / {row['backbone']} / "
                          f"{row['dataset']} / seed {row['seed']}: "
                          f"{'; '.join(row['warnings'])}"))
    if failed:
        console.print(Text.assemble(styled("failed runs", "bold"), ":"))
        for row in failed:
            say(printable(f"  {row['run_hash']} {row['method']} / {row['backbone']} / "
                          f"{row['dataset']} / seed {row['seed']} (attempt {row['attempts']}): "
                          f"{row['failure_reason']}"))
        say("retry them with `lionbench run ... --retry-failed`")


@handle_errors
def export_cmd(
    fmt: str = typer.Option("csv", "--format", "-f", help="csv | json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to FILE "
                                       "(default: stdout)."),
    db: DbOption = None,
    status: str | None = typer.Option(None, "--status", help="Only runs of this status "
                                      "(pending | running | done | failed)."),
) -> None:
    """Export runs, one record each with its config, metrics and provenance."""
    if output is not None:
        check_writable(output, "export")
    n = export_runs(Store(db, read_only=True), fmt, output, status=status)
    say(f"exported {n} run(s)" + (f" to {printable(output)}" if output else ""),
        err=output is None)


@handle_errors
def import_cmd(
    source: str = typer.Argument(..., help="A .csv / .json export, an SQLite database file, "
                                 "or a database URL."),
    db: DbOption = None,
) -> None:
    """Merge runs gathered elsewhere; present runs are skipped, done runs never overwritten."""
    report = import_into(db, source)
    say(printable(report.summary()))


def _formats(value: str) -> tuple[str, ...]:
    return tuple(f.strip().lower().lstrip(".") for f in value.split(",") if f.strip())


@plot_app.command("sensitivity")
@handle_errors
def plot_sensitivity_cmd(
    db: DbOption = None,
    output: Path = typer.Option(Path("results/figures/sensitivity"), "--output", "-o",
                                help="Output prefix; .png / .pdf are appended."),
    fmt: str = typer.Option("png,pdf", "--format", "-f", help="Comma-separated: png, pdf."),
    method: str = typer.Option("lion", "--method", help="The method whose sweep to plot."),
    clean_only: CleanOnlyOption = False,
) -> None:
    """Figure 3: top-1 against tau and against the number of DEQ layers (figure3.yaml)."""
    store = Store(db, read_only=True)
    _check_plot_outputs(output, fmt)
    if not any(r["method"] == method and r["test_top1"] is not None
               for r in store.fetch_runs("done", ("method", "test_top1"))):
        raise ConfigError(f"no done '{printable(method)}' runs with a test top-1 to plot; run "
                          "benchmarks/figure3.yaml first (lionbench run benchmarks/figure3.yaml)")
    from lionbench.report.plots import plot_sensitivity  # matplotlib: only when plotting

    paths = plot_sensitivity(store.list_runs("done"), output, _formats(fmt), method=method,
                             clean_only=clean_only)
    _report(paths)


@plot_app.command("tradeoff")
@handle_errors
def plot_tradeoff_cmd(
    db: DbOption = None,
    output: Path = typer.Option(Path("results/figures/tradeoff"), "--output", "-o",
                                help="Output prefix; .png / .pdf are appended."),
    fmt: str = typer.Option("png,pdf", "--format", "-f", help="Comma-separated: png, pdf."),
    datasets: str | None = typer.Option(None, "--datasets", "-d", help="Comma-separated "
                                        "datasets (default: all with runs)."),
    variants: bool = typer.Option(False, "--variants", help="Also plot runs with non-default "
                                  "method settings (sweeps), each as its own series."),
    clean_only: CleanOnlyOption = False,
    selected: bool = typer.Option(False, "--selected", help="Only the configurations "
                                  "`lionbench tune` chose on validation (their final seeds)."),
) -> None:
    """Top-1 against trainable parameters (log scale), per method and backbone, per dataset."""
    store = Store(db, read_only=True)
    _check_plot_outputs(output, fmt)
    from lionbench.report.plots import plot_tradeoff  # matplotlib: only when plotting
    from lionbench.report.stored import load_selection

    choice = load_selection(store) if selected else None
    paths = plot_tradeoff(store.list_runs("done"), output, _formats(fmt),
                          datasets=split_names(datasets) or None, variants=variants,
                          clean_only=clean_only, selected=choice)
    _report(paths)


PLOT_FORMATS = ("png", "pdf")  # lionbench.report.plots.FORMATS, without importing matplotlib


def plot_file(output: Path, fmt: str) -> Path:
    """lionbench.report.plots.plot_path without matplotlib (seconds to import): ``output.<fmt>``
    (a trailing .png/.pdf dropped); tests/test_faults.py checks that both agree."""
    output = Path(output)
    if output.suffix.lstrip(".") in PLOT_FORMATS:
        output = output.with_suffix("")
    return output.parent / f"{output.name}.{fmt}"


def _check_plot_outputs(output: Path, fmt: str) -> None:
    """Fail before drawing (before matplotlib loads) when a format is unknown or a plot file
    cannot be written."""
    formats = _formats(fmt)
    bad = [f for f in formats if f not in PLOT_FORMATS]
    if bad or not formats:
        raise ConfigError(f"unsupported format {', '.join(bad) or '(none)'}; valid: "
                          f"{', '.join(PLOT_FORMATS)}")
    for f in formats:
        check_writable(plot_file(output, f), "plot")


def _report(paths: list[Path]) -> None:
    n = len(getattr(paths, "series", []))
    say(printable(f"wrote {', '.join(map(str, paths))} ({n} series)"))


def register(app: typer.Typer) -> None:
    app.command()(table)
    app.command()(status)
    app.command("export")(export_cmd)
    app.command("import")(import_cmd)
    app.add_typer(plot_app, name="plot")
