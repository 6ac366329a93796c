"""What every CLI command shares: the consoles, the error handler and the options.

Each option used by more than one command is declared once here as an ``Annotated`` type
(``db: DbOption = None``), so its flag, help and parsing cannot drift between commands.

The consoles never parse rich markup: what lionbench prints is full of user text (dataset and
folder names, failure reasons, paths) in which ``[...]`` is data, not a style, and a name like
``folder:runs[/tmp]`` must print as typed instead of crashing every later command. Styles are
applied with :func:`styled` (a ``rich.text.Text``), never with markup in strings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from lionbench.errors import LionbenchError

console = Console(markup=False)
err_console = Console(stderr=True, markup=False)
F = TypeVar("F", bound=Callable[..., Any])


def styled(text: str, style: str) -> Text:
    """``text`` in ``style``, as a Text: never parsed as markup."""
    return Text(text, style=style)

DB_HELP = "Database URL or SQLite path (default: $LIONBENCH_DB or results/lionbench.db)."
DATA_ROOT_HELP = "Where datasets live (default: ./data)."

DbOption = Annotated[str | None, typer.Option("--db", help=DB_HELP)]
DataRootOption = Annotated[Path | None, typer.Option("--data-root", help=DATA_ROOT_HELP)]
DeviceOption = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")]
SeedsOption = Annotated[str | None, typer.Option("--seeds", help="Comma-separated seeds "
                                                                  "(default 0).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="key=value override, "
                                                     "repeatable (training key, method key, "
                                                     "or method.key).")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan and stop.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Rerun runs already stored.")]
MethodsOption = Annotated[str | None, typer.Option(
    "--methods", "-m", help="Comma-separated methods (default: the paper's: retraining, "
    "head-tuning, fine-tuning, adapter, bias, vpt, lion).")]
BackbonesOption = Annotated[str | None, typer.Option(
    "--backbones", "-b", help="Comma-separated timm names (default: demo-resnet, the embedded "
    "CIFAR-10-pretrained backbone).")]
DatasetsOption = Annotated[str | None, typer.Option(
    "--datasets", "-d", help="Comma-separated (default: digits, shipped with scikit-learn).")]
ThreadsOption = Annotated[int | None, typer.Option(
    "--threads", rich_help_panel="Execution",
    help="CPU: torch threads per run (default: torch's, the physical cores). CPU numbers depend "
    "on it; the count is stored with each run.")]
CleanOnlyOption = Annotated[bool, typer.Option("--clean-only", help="Exclude runs from a dirty "
                                               "git tree or an older protocol version.")]
SelectedOption = Annotated[bool, typer.Option(
    "--selected", help="Only the configurations `lionbench tune` chose on validation (their "
    "final seeds): one row per method, the chosen values in a footnote.")]
AllSeedsOption = Annotated[bool, typer.Option(
    "--all-seeds", help="Also show the runs `lionbench tune` trained to choose (its tuning "
    "seeds), in rows of their own labelled 'candidate'; never averaged into a result.")]
BootstrapOption = Annotated[bool, typer.Option(
    "--bootstrap", help="Percentile bootstrap intervals over the seed pairs (10,000 resamples, "
    "seed 0) instead of Student's t.")]


def handle_errors(fn: F) -> F:
    """Turn LionbenchError into one line on stderr and exit code 1 (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LionbenchError as exc:
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]
