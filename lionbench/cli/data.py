"""``lionbench datasets``: where every dataset is looked for, present or missing, how to get it;
``lionbench datasets prepare NAME``: download where the source allows it."""

from __future__ import annotations

import typer
from rich.table import Table

from lionbench.text import printable

from .options import DataRootOption, console, handle_errors, new_typer, styled

datasets_app = new_typer(help="Dataset catalog: presence on this machine, sources, layouts.",
                           invoke_without_command=True)


@datasets_app.callback()
@handle_errors
def datasets(ctx: typer.Context,
             data_root: DataRootOption = None,
             verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the source and "
                                          "the expected layout of every dataset.")) -> None:
    """List every dataset with classes, split sizes, where it looks and whether it is there."""
    if ctx.invoked_subcommand is not None:
        return
    from lionbench.data.catalog import describe_datasets

    t = Table("dataset", "classes", "splits", "present", "looks in",
              *(["source", "layout"] if verbose else []),
              caption="Missing ones: `lionbench datasets prepare NAME` where downloadable, "
                      "else put the files in the layout shown with -v and pass --data-root.")
    for d in describe_datasets(data_root):
        splits = ", ".join(f"{k} {v:,}" for k, v in (d.get("splits") or {}).items())
        present = styled("yes", "green") if d["present"] else styled("missing", "red")
        extra = [str(d.get("source", "")), str(d.get("layout", ""))] if verbose else []
        t.add_row(printable(d["name"]), str(d.get("classes", "")), splits, present,
                  printable(d.get("where", "")), *map(printable, extra))
    console.print(t)


@datasets_app.command("prepare")
@handle_errors
def prepare(name: str = typer.Argument(..., help="Dataset name, e.g. cifar10."),
            data_root: DataRootOption = None
            ) -> None:
    """Download a dataset where its source allows it (else: how to obtain it)."""
    from lionbench.catalog import check_dataset

    check_dataset(name)  # before torch loads
    from lionbench.data.catalog import prepare_dataset

    with console.status(f"preparing {name} ..."):
        path = prepare_dataset(name, data_root)
    console.print(printable(f"{name}: ready{f' in {path}' if path else ''}"), highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(datasets_app, name="datasets")
