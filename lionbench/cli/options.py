"""What every CLI command shares: the consoles, the error handler and the options.

Each option used by more than one command is declared once here as an ``Annotated`` type
(``db: DbOption = None``), so its flag, help and parsing cannot drift between commands; the
options of a whole concern are declared once as an :class:`OptionGroup` and added to a command
by :func:`with_groups`: ``run``, ``tune`` and ``ablate`` share the planning options (database,
weights, dry run, ...) and the execution options (device, executors, local workers, Ray,
Slurm, checkpoints, attempts, threads, ``--wait``), which reach the command as one dict each.

The consoles never parse rich markup: what lionbench prints is full of user text (dataset and
folder names, failure reasons, paths) in which ``[...]`` is data, not a style, and a name like
``folder:runs[/tmp]`` must print as typed instead of crashing every later command. Styles are
applied with :func:`styled` (a ``rich.text.Text``), never with markup in strings; user and
stored text passes :func:`lionbench.text.printable` (control characters shown escaped). Without
a terminal (a log, a pipe, CI) the consoles are as wide as a line needs: tables and hashes are
never cut to 80 columns.

Help is click's plain layout (``rich_markup_mode=None`` on every Typer, :func:`new_typer`):
types of values (``<int>``), never of flags, and help text printed as written.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer
from rich.console import Console, ConsoleDimensions
from rich.text import Text

from lionbench.errors import LionbenchError
from lionbench.text import printable

LOG_WIDTH = 100_000  # without a terminal: wide enough that no line of lionbench's is cut


class LogConsole(Console):
    """A rich Console as wide as its lines when it writes to a file or a pipe (rich assumes 80
    columns there, and cuts table cells to ``d5173d9…``)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(LOG_WIDTH, size.height)
        return size


console = LogConsole(markup=False)
err_console = LogConsole(stderr=True, markup=False)
F = TypeVar("F", bound=Callable[..., Any])


def new_typer(**kwargs: Any) -> typer.Typer:
    """A Typer app or group with lionbench's help layout (plain; see the module docstring)."""
    return typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, **kwargs)


def styled(text: str, style: str) -> Text:
    """``text`` in ``style``, as a Text: never parsed as markup."""
    return Text(text, style=style)


def say(line: str | Text, *, err: bool = False) -> None:
    """Print one line of lionbench's (user text already passed through ``printable``)."""
    (err_console if err else console).print(line, markup=False, highlight=False,
                                            soft_wrap=True)


def _nonempty_db(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise typer.BadParameter("empty; give a database file path or URL (default: "
                                 "$LIONBENCH_DB or results/lionbench.db)")
    return value

DB_HELP = "Database URL or SQLite path (default: $LIONBENCH_DB or results/lionbench.db)."
DATA_ROOT_HELP = "Where datasets live (default: ./data)."

DbOption = Annotated[str | None, typer.Option("--db", help=DB_HELP, callback=_nonempty_db)]
DataRootOption = Annotated[Path | None, typer.Option("--data-root", help=DATA_ROOT_HELP)]
DeviceOption = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N "
                                           "(checked against this machine's GPUs).")]
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
    "--threads", help="CPU: torch threads per run, 1 to 1024 (default: torch's, the physical "
    "cores). CPU numbers depend on it; the count is stored with each run.")]
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


WeightsOption = Annotated[str | None, typer.Option(
    "--weights", help="pretrained (alias timm) | none | FILE (.safetensors or torch state "
    "dict) (default: pretrained).")]


# --- option groups: declared once, added to run, tune and ablate by with_groups ---------------
@dataclass(frozen=True)
class OptionGroup:
    """Options of one concern; a command taking the group gets them as one dict, keyed by
    parameter name, under the parameter named ``name``."""

    name: str
    options: tuple[tuple[str, Any, Any], ...]  # (parameter, Annotated type, default)

    def names(self) -> list[str]:
        return [name for name, _, _ in self.options]


PLANNING = OptionGroup("planning", (
    ("weights", WeightsOption, None),
    ("data_root", DataRootOption, None),
    ("db", DbOption, None),
    ("dry_run", DryRunOption, False),
    ("force", ForceOption, False),
    ("retry_failed", Annotated[bool, typer.Option("--retry-failed", help="Rerun failed runs.")],
     False),
    ("show_table", Annotated[bool, typer.Option("--table/--no-table", help="Print the table "
                                                "of the runs after.")], True),
))

EXECUTION = OptionGroup("execution", (
    ("device", DeviceOption, "auto"),
    ("executor", Annotated[str | None, typer.Option(
        "--executor", help="inline | local | ray | slurm (default: local with --workers or "
        "--gpus, else inline).")], None),
    ("workers", Annotated[int | None, typer.Option(
        "--workers", help="Local CPU worker processes (Ray/Slurm: most runs in flight).")],
     None),
    ("gpus", Annotated[str | None, typer.Option(
        "--gpus", help="Local workers, one per GPU of this machine: 0,1,2,3.")], None),
    ("fresh_process", Annotated[bool | None, typer.Option(
        "--fresh-process/--reuse-process", help="Local workers: a new process per run "
        "(default: with --gpus only).")], None),
    ("address", Annotated[str | None, typer.Option(
        "--address", help="Ray: the cluster (default: $RAY_ADDRESS, else a local one).")], None),
    ("gpus_per_run", Annotated[float | None, typer.Option(
        "--gpus-per-run", help="Ray/Slurm: GPUs per run (default 1 where there are GPUs).")],
     None),
    ("partition", Annotated[str | None, typer.Option("--partition", help="Slurm: partition.")],
     None),
    ("time", Annotated[str | None, typer.Option(
        "--time", help="Slurm: time per run, minutes or D-HH:MM:SS.")], None),
    ("cpus_per_run", Annotated[int | None, typer.Option(
        "--cpus-per-run", help="Slurm: CPUs per run (default 8).")], None),
    ("mem_gb", Annotated[float | None, typer.Option("--mem-gb", help="Slurm: memory per run.")],
     None),
    ("slurm_extra", Annotated[list[str] | None, typer.Option(
        "--slurm", help="Slurm: more #SBATCH KEY=VALUE (account=..., qos=...), repeatable.")],
     None),
    ("checkpoints", Annotated[bool, typer.Option(
        "--checkpoints/--no-checkpoints", help="Save each run at every epoch's end; resume "
        "there.")], True),
    ("checkpoint_dir", Annotated[Path | None, typer.Option(
        "--checkpoint-dir", help="Default: checkpoints/ next to a SQLite database, else "
        "results/checkpoints.")], None),
    ("max_attempts", Annotated[int | None, typer.Option(
        "--max-attempts", help="Claims a run may lose (a worker killed, a host gone, a job "
        "preempted) before it is marked failed (default 3).")], None),
    ("threads", ThreadsOption, None),
    ("wait", Annotated[bool, typer.Option(
        "--wait", help="At the end, wait for this matrix's runs that other processes are "
        "training, then exit by their outcome too.")], False),
))


def with_groups(*groups: OptionGroup) -> Callable[[F], F]:
    """Give a command every option of ``groups``: each group's parameter of ``fn`` (e.g.
    ``execution: dict``) is replaced, for typer, by the group's options, and ``fn`` receives
    their values as one dict under that name."""
    def decorate(fn: F) -> F:
        hints = get_type_hints(fn, include_extras=True)
        sig = inspect.signature(fn)
        by_name = {g.name: g for g in groups}
        params = []
        for p in sig.parameters.values():
            if p.name in by_name:
                params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                             default=default, annotation=annotation)
                           for name, annotation, default in by_name[p.name].options]
            else:
                params.append(p.replace(annotation=hints.get(p.name, p.annotation)))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for group in groups:
                kwargs[group.name] = {name: kwargs.pop(name) for name in group.names()}
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper  # type: ignore[return-value]
    return decorate


def handle_errors(fn: F) -> F:
    """Turn LionbenchError into one line on stderr and exit code 1 (no traceback); the message
    passes :func:`lionbench.text.printable` (it quotes what the user typed)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LionbenchError as exc:
            say(f"error: {printable(exc)}", err=True)
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]
