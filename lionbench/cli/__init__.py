"""cli: the ``lionbench`` command line, one module per command group.

Each command parses its options, calls one library function and renders the result; a
:class:`~lionbench.errors.LionbenchError` becomes one line on stderr and exit code 1
(options.py, which also declares every shared option once). Modules: run.py (run, ablate),
tune.py (tune), results.py (table, status, export, import, plot), stats.py (compare, rank,
plot cd), models.py (list, params,
pretrain), data.py (datasets), perf.py (bench); progress.py renders a running plan. The CLI
may import every part of lionbench; nothing imports the CLI. Command modules import the heavy parts
(torch, methods, the runner) inside the command that needs them, so that ``table``, ``status``
and ``export`` start without torch.
"""

from __future__ import annotations

import sys

import typer

from lionbench import __version__
from lionbench.executors.interrupts import exit_code
from lionbench.text import printable

from . import data, models, perf, results, run, stats, tune
from .options import console, new_typer, say

app = new_typer(help="Benchmark parameter-efficient transfer learning in vision (LION and "
                     "baselines): run matrices, store results, render the paper's tables.",
                no_args_is_help=True, add_completion=False)


def _version(value: bool) -> None:
    if value:
        console.print(f"lionbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(version: bool = typer.Option(False, "--version", callback=_version,
                                               is_eager=True, help="Show the version.")) -> None:
    """lionbench: parameter-efficient transfer learning benchmarks."""


for _module in (run, tune, results, stats, models, data, perf):  # the order of `lionbench --help`
    _module.register(app)


INTERRUPTED = 130
# Exit status of every command: 0 success; 1 bad input (one line on stderr, nothing created or
# changed) or, for run/ablate/tune, a run that failed or was left pending (RunSummary.exit_code);
# 130 after Ctrl-C and 143 after SIGTERM (the run in progress given back, resumable).
EXIT_CODES = {0: "success", 1: "bad input, or a run failed or was left pending",
              130: "interrupted (Ctrl-C)", 143: "stopped by SIGTERM"}


def main() -> None:
    """Entry point: usage errors (an unknown option, a missing value) also become one line and
    exit code 1; Ctrl-C and SIGTERM end with the shell's code for the signal (130, 143) after
    giving runs back."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # typer >= 0.28 vendors click: its usage errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # `lionbench`: the help, printed
            sys.exit(0)
        say(usage_line(exc), err=True)
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        code = INTERRUPTED
    if code == INTERRUPTED:  # typer turns KeyboardInterrupt into a silent return of 130
        say("interrupted: the run in progress went back to pending; rerun the same command to "
            "resume", err=True)
        sys.exit(exit_code(INTERRUPTED))
    sys.exit(code if isinstance(code, int) else 0)


def usage_line(exc: BaseException) -> str:
    """click's message on one line (what the user typed shown inert), pointing at the help
    that lists what is valid."""
    message = printable(" ".join(exc.format_message().split()))  # type: ignore[attr-defined]
    names, ctx = [], getattr(exc, "ctx", None)
    while ctx is not None and ctx.parent is not None:  # the root's name is the program's
        names.append(ctx.info_name)
        ctx = ctx.parent
    return f"error: {message} (see `{' '.join(['lionbench', *reversed(names)])} --help`)"


__all__ = ["EXIT_CODES", "app", "main"]
