"""CLI commands for stored results: ``export``, ``import`` and ``plot sensitivity|tradeoff``.

Thin on purpose: each parses its options, calls one function of ``lionbench.exchange`` or
``lionbench.plots``, and prints one line of what it did (on stderr when the data itself goes to
stdout, so ``lionbench export --format csv > runs.csv`` stays clean).
"""

from __future__ import annotations

from pathlib import Path

import typer

from lionbench.cli_common import DB_HELP, console, err_console, handle_errors

plot_app = typer.Typer(help="Draw figures from stored runs (PNG and PDF).", no_args_is_help=True)


@handle_errors
def export_cmd(
    fmt: str = typer.Option("csv", "--format", "-f", help="csv | json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to FILE "
                                       "(default: stdout)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    status: str | None = typer.Option(None, "--status", help="Only runs of this status "
                                      "(pending | running | done | failed)."),
) -> None:
    """Export runs, one record each with its config, metrics and provenance."""
    from lionbench.exchange import export_runs
    from lionbench.store import Store

    n = export_runs(Store(db), fmt, output, status=status)
    target = console if output is not None else err_console
    target.print(f"exported {n} run(s)" + (f" to {output}" if output else ""), highlight=False)


@handle_errors
def import_cmd(
    source: str = typer.Argument(..., help="A .csv / .json export, an SQLite database file, "
                                 "or a database URL."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Merge runs gathered elsewhere; present runs are skipped, done runs never overwritten."""
    from lionbench.exchange import import_runs
    from lionbench.store import Store

    report = import_runs(Store(db), source)
    console.print(report.summary(), highlight=False, markup=False)


def _formats(value: str) -> tuple[str, ...]:
    return tuple(f.strip().lower().lstrip(".") for f in value.split(",") if f.strip())


@plot_app.command("sensitivity")
@handle_errors
def plot_sensitivity_cmd(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    output: Path = typer.Option(Path("results/figures/sensitivity"), "--output", "-o",
                                help="Output prefix; .png / .pdf are appended."),
    fmt: str = typer.Option("png,pdf", "--format", "-f", help="Comma-separated: png, pdf."),
    method: str = typer.Option("lion", "--method", help="The method whose sweep to plot."),
    clean_only: bool = typer.Option(False, "--clean-only", help="Exclude runs from a dirty "
                                    "git tree or an older protocol version."),
) -> None:
    """Figure 3: top-1 against tau and against the number of DEQ layers (figure3.yaml)."""
    from lionbench.plots import plot_sensitivity
    from lionbench.store import Store

    paths = plot_sensitivity(Store(db).list_runs("done"), output, _formats(fmt), method=method,
                             clean_only=clean_only)
    _report(paths)


@plot_app.command("tradeoff")
@handle_errors
def plot_tradeoff_cmd(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    output: Path = typer.Option(Path("results/figures/tradeoff"), "--output", "-o",
                                help="Output prefix; .png / .pdf are appended."),
    fmt: str = typer.Option("png,pdf", "--format", "-f", help="Comma-separated: png, pdf."),
    datasets: str | None = typer.Option(None, "--datasets", "-d", help="Comma-separated "
                                        "datasets (default: all with runs)."),
    variants: bool = typer.Option(False, "--variants", help="Also plot runs with non-default "
                                  "method settings (sweeps), each as its own series."),
    clean_only: bool = typer.Option(False, "--clean-only", help="Exclude runs from a dirty "
                                    "git tree or an older protocol version."),
) -> None:
    """Top-1 against trainable parameters (log scale), per method and backbone, per dataset."""
    from lionbench.matrix import split_names
    from lionbench.plots import plot_tradeoff
    from lionbench.store import Store

    paths = plot_tradeoff(Store(db).list_runs("done"), output, _formats(fmt),
                          datasets=split_names(datasets) or None, variants=variants,
                          clean_only=clean_only)
    _report(paths)


def _report(paths: list[Path]) -> None:
    n = len(getattr(paths, "series", []))
    console.print(f"wrote {', '.join(map(str, paths))} ({n} series)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.command("import")(import_cmd)
    app.add_typer(plot_app, name="plot")
