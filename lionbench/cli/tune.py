"""``lionbench tune``: choose each method's configuration on validation, then run its seeds.

Thin: parses, calls ``lionbench.runner.tune`` (imported inside the command: torch), renders the
candidates' validation scores and the choices, then the table of the chosen configurations.
Exit code 1 with ``N of M runs failed; see lionbench status`` when any run of the invocation
failed (a candidate or a final run), 0 when every run is done or was already stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from lionbench.report.cells import format_value
from lionbench.text import printable

from .options import (
    EXECUTION,
    PLANNING,
    BackbonesOption,
    DatasetsOption,
    MethodsOption,
    SeedsOption,
    SetOption,
    console,
    handle_errors,
    say,
    with_groups,
)
from .results import print_table

if TYPE_CHECKING:
    from lionbench.runner.tune import Task


@handle_errors
@with_groups(PLANNING, EXECUTION)
def tune(
    config: Path | None = typer.Argument(None, help="YAML matrix file with a 'grid:' "
                                         "(optional)."),
    methods: MethodsOption = None,
    backbones: BackbonesOption = None,
    datasets: DatasetsOption = None,
    seeds: SeedsOption = None,
    set_: SetOption = None,
    grid: list[str] | None = typer.Option(None, "--grid", help="KEY=V1,V2,... to choose from "
                                          "on validation, repeatable: a training key (lr, "
                                          "weight_decay, epochs), a method key (prompt_length) "
                                          "or method.key (vpt.lr)."),
    tune_seeds: str | None = typer.Option(None, "--tune-seeds", help="Seeds of the candidate "
                                          "runs, disjoint from --seeds (default: one seed "
                                          "after the final seeds)."),
    planning: dict[str, Any] | None = None,
    execution: dict[str, Any] | None = None,
) -> None:
    """Per method x backbone x dataset: run a grid, choose on validation top-1 (ties: the
    cheaper), store the choice, run the winner's final seeds. The test split chooses nothing."""
    from .inputs import check_tune_inputs
    from .run import prepare_execution

    p, e = planning or {}, execution or {}
    check_tune_inputs(config, methods, backbones, datasets, seeds, set_, grid, tune_seeds,
                      p["weights"])
    executor, exec_options = prepare_execution(e, p)
    from lionbench.runner.plan import check_weights_available  # torch: inputs checked by now
    from lionbench.runner.tune import build_tune_plan, run_tune

    from .progress import print_plan, progress_events

    plan = build_tune_plan(config, methods, backbones, datasets, seeds, set_, grid, tune_seeds,
                           p["weights"], p["db"])
    for note in plan.notes:
        say(printable(note))
    n_cand = sum(len(t.candidates) for t in plan.tasks)
    say(f"tuning {len(plan.tasks)} method x backbone x dataset task(s): {n_cand} candidate "
        "configuration(s), chosen on validation top-1")
    if p["dry_run"]:
        print_plan(console, plan.candidate_plan(), p["force"], p["retry_failed"])
        finals = {tuple(t.final_seeds) for t in plan.tasks}
        say(f"then each task's winner runs its final seeds "
            f"{', '.join(','.join(map(str, s)) for s in finals)}")
        retrained = final_on_train_val(plan.tasks)
        if retrained:
            say(f"  (on train + val, the last epoch kept, as the protocol of "
                f"{', '.join(retrained)} does: train_on_val)")
        return
    candidates = plan.candidate_plan()  # fail before anything is stored when weights are missing
    check_weights_available(candidates.to_run(p["force"], p["retry_failed"]))
    phase = {"name": "candidates"}

    def on_phase(name: str, stage: Any) -> None:
        phase["name"] = name
        if name == "finals":
            print_choices(plan.tasks)
            say(f"final runs of the chosen configurations: {len(stage.configs)}")

    with progress_events(console, show_test=lambda: phase["name"] == "finals") as on_event:
        result = run_tune(plan, force=p["force"], retry_failed=p["retry_failed"],
                          on_phase=on_phase, data_root=p["data_root"],
                          device=exec_options.device, on_event=on_event, executor=executor,
                          options=exec_options)
    if p["show_table"] and any(t.winner for t in plan.tasks):
        print_table(plan.store, selected=True)
    summary = result.summary  # the exit rule of run and ablate: RunSummary.exit_code
    if summary.note_line():
        say(summary.note_line(), err=True)
    if summary.exit_code:
        say(summary.problem_line(), err=True)
        raise typer.Exit(summary.exit_code)


def print_choices(tasks: list[Task]) -> None:
    """Each task's candidates with their validation top-1; the winner marked."""
    for task in tasks:
        keys = list(task.grid)
        t = Table(*keys, "val top-1", "trainable", "status", "chosen",
                  title=printable(f"{task.method} / {task.backbone} / {task.dataset}: tuning "
                                  f"seeds {','.join(map(str, task.tune_seeds))}"))
        for c in task.candidates:
            score = "-" if c.val_top1 is None else f"{c.val_top1:.4f}"
            t.add_row(*(printable(format_value(c.values[k])) for k in keys), score,
                      "-" if c.params is None else f"{c.params:,}", c.status,
                      "yes" if c is task.winner else "")
        console.print(t)
        if task.winner is None:
            say("  no candidate finished: nothing chosen, no final runs")


def register(app: typer.Typer) -> None:
    app.command()(tune)


def final_on_train_val(tasks: list[Any]) -> list[str]:
    """The tasks' datasets whose protocol retrains the final runs on train + val (VTAB-1k)."""
    from lionbench.data import get_dataset

    names = dict.fromkeys(t.dataset for t in tasks)
    shown = [n for n in names if get_dataset(n).final_on_train_val]
    return shown[:3] + ([f"{len(shown) - 3} more"] if len(shown) > 3 else [])
