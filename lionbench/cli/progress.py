"""Rich rendering of a run: the plan of a dry run, progress bars while it runs. No logic."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lionbench.runner import Plan, RunSummary, run_plan


def print_plan(console: Console, plan: Plan, force: bool, retry_failed: bool) -> None:
    rows = plan.rows(force, retry_failed)
    t = Table("hash", "method", "backbone", "dataset", "seed", "weights", "stored", "action",
              title=f"plan: {len(rows)} runs")
    for r in rows:
        t.add_row(r["run_hash"], r["method"], r["backbone"], r["dataset"], str(r["seed"]),
                  r["weights"], r["stored"], r["action"])
    console.print(t)
    n_run = sum(r["action"] == "run" for r in rows)
    console.print(f"{n_run} to run, {len(rows) - n_run} already stored (dry run: nothing ran)")


def run_with_progress(console: Console, plan: Plan, **kwargs: Any) -> RunSummary:
    """Run the plan with one bar for the matrix and one for the epochs of the current run."""
    with progress_events(console) as on_event:
        return run_plan(plan, on_event=on_event, **kwargs)


@contextmanager
def progress_events(console: Console, show_test: Callable[[], bool] = lambda: True
                    ) -> Iterator[Callable[[str, dict[str, Any]], None]]:
    """An ``on_event`` for ``run_plan`` that draws the bars; each plan's "start" resets them
    (``lionbench tune`` runs two plans: the candidates, then the winners' final seeds).
    ``show_test() == False`` prints a finished run's validation score only: while tuning, no
    one should see the candidates' test numbers."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
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
                c = info["config"]
                progress.update(epoch_task, visible=True, completed=0, total=c.train.epochs,
                                description=f"  {c.method} / {c.backbone} / {c.dataset} / "
                                            f"seed {c.seed}")
            elif kind == "progress":
                progress.update(epoch_task, completed=info["done"])
            elif kind == "done":
                r, c = info["result"], info["config"]
                progress.advance(matrix_task)
                score = (f"test top-1 {r.test_top1:.4f} (val {r.val_top1:.4f})" if show_test()
                         else f"val top-1 {r.val_top1:.4f}")
                progress.console.print(
                    f"  done  {c.method} / {c.backbone} / {c.dataset} / seed {c.seed}: "
                    f"{score}, {r.params_trainable:,} trainable, {r.train_seconds:.1f} s",
                    highlight=False)
            elif kind == "failed":
                c = info["config"]
                progress.advance(matrix_task)
                progress.console.print(f"  [red]failed[/] {c.method} / {c.backbone} / "
                                       f"{c.dataset} / seed {c.seed}: {info['reason']}",
                                       highlight=False)
            elif kind == "end":
                progress.update(epoch_task, visible=False)

        yield on_event
