"""Rich rendering for the CLI: plans, progress, status. No logic of its own."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lionbench.runner import Plan, RunSummary, run_plan
from lionbench.store import Store


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


def run_with_progress(console: Console, store: Store, plan: Plan, **kwargs: Any) -> RunSummary:
    """Run the plan with one bar for the matrix and one for the epochs of the current run."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        matrix_task = progress.add_task("runs", total=None)
        epoch_task = progress.add_task("", total=None, visible=False)

        def on_event(kind: str, info: dict[str, Any]) -> None:
            if kind == "start":
                progress.update(matrix_task, total=info["total"],
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
                progress.console.print(
                    f"  done  {c.method} / {c.backbone} / {c.dataset} / seed {c.seed}: "
                    f"test top-1 {r.test_top1:.4f} (val {r.val_top1:.4f}), "
                    f"{r.params_trainable:,} trainable, {r.train_seconds:.1f} s", highlight=False)
            elif kind == "failed":
                c = info["config"]
                progress.advance(matrix_task)
                progress.console.print(f"  [red]failed[/] {c.method} / {c.backbone} / "
                                       f"{c.dataset} / seed {c.seed}: {info['reason']}",
                                       highlight=False)
            elif kind == "end":
                progress.update(epoch_task, visible=False)

        return run_plan(store, plan, on_event=on_event, **kwargs)


def print_status(console: Console, store: Store) -> None:
    counts = store.count_by_status()
    t = Table("status", "runs")
    console.print(f"database: {store.safe_url}", highlight=False)
    for name, n in counts.items():
        t.add_row(name, str(n))
    console.print(t)
    running = store.list_runs("running")
    if len(running):
        r = Table("method", "backbone", "dataset", "seed", "worker", "last heartbeat",
                  title="running")
        for row in running.itertuples():
            r.add_row(row.method, row.backbone, row.dataset, str(row.seed), str(row.worker),
                      str(row.heartbeat_at))
        console.print(r)
    failed = store.list_runs("failed")
    if len(failed):
        console.print("[bold]failed runs[/]:")
        for row in failed.itertuples():
            console.print(f"  {row.run_hash} {row.method} / {row.backbone} / {row.dataset} / "
                          f"seed {row.seed} (attempt {row.attempts}): {row.failure_reason}",
                          highlight=False, markup=False, soft_wrap=True)
        console.print("retry them with `lionbench run ... --retry-failed`")


def print_params(console: Console, records: list[dict[str, Any]], fmt: str) -> None:
    """Parameter counts as a rich table, JSON (one object per record) or CSV."""
    if fmt == "json":
        import json

        console.print_json(json.dumps(records, default=str))
        return
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        keys = ["backbone", "method", "num_classes", "trainable", "trainable_without_head",
                "head", "total"]
        writer = csv.DictWriter(buf, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
        console.print(buf.getvalue(), end="", markup=False, highlight=False)
        return
    t = Table("backbone", "method", "trainable", "without head", "head", "total",
              "by component")
    for r in records:
        parts = ", ".join(f"{k} {v:,}" for k, v in r["by_component"].items())
        t.add_row(r["backbone"], r["method"], f"{r['trainable']:,}",
                  f"{r['trainable_without_head']:,}", f"{r['head']:,}", f"{r['total']:,}", parts)
    console.print(t)
