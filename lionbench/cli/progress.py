"""Rendering a running plan: the plan of a dry run, then progress while it runs. No logic.

On a terminal: rich bars for the matrix and for the epochs of the current run. Without one
(nohup, CI, a Slurm log): bars would draw nothing until the end, so every event is one plain,
flushed line instead (a line per epoch with its train loss, validation top-1 and seconds, and
one per finished run). Names are data, never rich markup (see options.py), and are printed
inert (lionbench.text.printable: a control character in a name or a failure reason is shown
escaped, never acted on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from lionbench.executors.progress import epoch_line
from lionbench.runner import Plan, RunSummary, run_plan
from lionbench.text import printable


def print_plan(console: Console, plan: Plan, force: bool, retry_failed: bool) -> None:
    rows = plan.rows(force, retry_failed)
    t = Table("hash", "method", "backbone", "dataset", "seed", "weights", "stored", "action",
              title=f"plan: {len(rows)} runs")
    for r in rows:
        t.add_row(*(Text(printable(r[k])) for k in ("run_hash", "method", "backbone", "dataset",
                                                    "seed", "weights", "stored", "action")))
    console.print(t)
    print_validation(console, plan)
    n_run = sum(r["action"] == "run" for r in rows)
    console.print(f"{n_run} to run, {len(rows) - n_run} already stored (dry run: nothing ran)",
                  markup=False)


def run_label(c: Any) -> str:
    return printable(f"{c.method} / {c.backbone} / {c.dataset} / seed {c.seed}")


def done_line(info: dict[str, Any], show_test: bool = True) -> Text:
    r, c = info["result"], info["config"]
    val = r.val_top1 if r.val_top1 is not None and r.val_top1 == r.val_top1 else None
    val_text = "no validation: last epoch" if val is None else f"val {val:.4f}"
    score = (f"test top-1 {r.test_top1:.4f} ({val_text})" if show_test
             else f"val top-1 {val:.4f}" if val is not None else val_text)
    return Text(f"  done  {run_label(c)}: {score}, {r.params_trainable:,} trainable, "
                f"{r.train_seconds:.1f} s")


def failed_line(info: dict[str, Any]) -> Text:
    return Text.assemble("  ", ("failed", "red"), f" {run_label(info['config'])}: "
                         f"{printable(info['reason'])}")


def print_validation(console: Console, plan: Plan) -> None:
    """Where model selection reads validation from, per dataset of the plan."""
    for dataset, source in plan.validation_sources().items():
        console.print(printable(f"validation of {dataset}: {source}"), highlight=False,
                      markup=False, soft_wrap=True)


def run_with_progress(console: Console, plan: Plan, **kwargs: Any) -> RunSummary:
    """Run the plan with progress bars on a terminal, plain flushed lines otherwise."""
    with progress_events(console, plan) as on_event:
        return run_plan(plan, on_event=on_event, **kwargs)


@contextmanager
def progress_events(console: Console, plan: Plan | None = None,
                    show_test: Callable[[], bool] = lambda: True
                    ) -> Iterator[Callable[[str, dict[str, Any]], None]]:
    """An ``on_event`` for ``run_plan``: bars on a terminal (each plan's "start" resets them:
    ``lionbench tune`` runs two plans, the candidates, then the winners' final seeds), plain
    flushed lines otherwise. ``show_test() == False`` prints a finished run's validation score
    only: while tuning, no one should see the candidates' test numbers."""
    if plan is not None:
        print_validation(console, plan)
    if not console.is_terminal:
        yield plain_events(console, show_test)
        return
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        matrix_task = progress.add_task("runs", total=None)
        epoch_task = progress.add_task("", total=None, visible=False)

        def on_event(kind: str, info: dict[str, Any]) -> None:
            if kind == "start":
                progress.reset(matrix_task, total=info["total"],
                               description=f"runs on {info['device']} "
                                           f"({info['skipped']} already stored)")
            elif kind == "run":
                progress.update(epoch_task, visible=True, completed=0,
                                total=info["config"].train.epochs,
                                description=f"  {run_label(info['config'])}")
            elif kind == "progress":
                progress.update(epoch_task, completed=info["done"])
            elif kind in ("done", "failed"):
                progress.advance(matrix_task)
                line = done_line(info, show_test()) if kind == "done" else failed_line(info)
                progress.console.print(line, highlight=False, soft_wrap=True)
            elif kind == "end":
                progress.update(epoch_task, visible=False)
            elif kind == "waiting":
                progress.console.print(waiting_line(info), highlight=False, soft_wrap=True)

        yield on_event


def plain_events(console: Console, show_test: Callable[[], bool] = lambda: True) -> Any:
    """Events as plain lines, each flushed at once: what a log file of a long run shows."""
    state = {"started": 0, "total": 0}

    def say(line: str | Text) -> None:
        console.print(line, highlight=False, soft_wrap=True, markup=False)
        console.file.flush()

    def on_event(kind: str, info: dict[str, Any]) -> None:
        if kind == "start":
            state["started"], state["total"] = 0, info["total"]
            say(f"{info['total']} run(s) on {info['device']} ({info['skipped']} already stored)")
        elif kind == "run":
            state["started"] += 1
            say(f"run {state['started']}/{state['total']}: {run_label(info['config'])}")
        elif kind == "progress":
            say(epoch_line(info))
        elif kind == "done":
            say(done_line(info, show_test()))
        elif kind == "failed":
            say(failed_line(info))
        elif kind == "waiting":
            say(waiting_line(info))
    return on_event


def waiting_line(info: dict[str, Any]) -> str:
    return (f"waiting for {info['running']} run(s) of this matrix running in other processes "
            "(--wait)")
