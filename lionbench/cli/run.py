"""``lionbench run`` and ``lionbench ablate``: plan a matrix, run what is not stored, print the
table of its runs.

Like every command module here, this one imports the library inside each command: building
the app must not load torch, so that ``lionbench table`` and ``status`` start fast. Every input
is checked first, torch-free (lionbench.cli.inputs, lionbench.executors.make_options,
lionbench.store.check_database); only then is the plan built (torch). A dry run reads the
database and writes nothing; a real run creates the database only once the plan's weights are
known to be there.

Exit status (the rule of ``lionbench.runner.run.RunSummary.exit_code``): 0 when no run of the
matrix failed and none is left (every run done, or running in another process sharing the
database: a note says so, and ``--wait`` waits for those); 1 for bad input (nothing ran or was
stored) and when a run failed or was left pending; 130 (Ctrl-C) and 143 (SIGTERM) after giving
the run in progress back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

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
    from lionbench.executors import ExecOptions
    from lionbench.runner import Plan


def prepare_execution(execution: dict[str, Any], planning: dict[str, Any]
                      ) -> tuple[str, ExecOptions]:
    """The execution options checked (devices, numbers, folders) and the database usable
    (nothing created), all before torch loads."""
    from lionbench.executors import make_options
    from lionbench.store import check_database

    executor, options = make_options(**execution)
    check_database(planning["db"], write=not planning["dry_run"])
    return executor, options


# --- run ---------------------------------------------------------------------------------------
@handle_errors
@with_groups(PLANNING, EXECUTION)
def run(
    config: Path | None = typer.Argument(None, help="YAML matrix file (optional)."),
    methods: MethodsOption = None,
    backbones: BackbonesOption = None,
    datasets: DatasetsOption = None,
    seeds: SeedsOption = None,
    set_: SetOption = None,
    planning: dict[str, Any] | None = None,
    execution: dict[str, Any] | None = None,
) -> None:
    """Run a matrix of methods x backbones x datasets x seeds; skip what is stored."""
    from .inputs import check_run_inputs

    p, e = planning or {}, execution or {}
    check_run_inputs(config, methods, backbones, datasets, seeds, set_, p["weights"])
    executor, exec_options = prepare_execution(e, p)
    from lionbench.runner.plan import build_plan  # torch: every input is checked by now

    plan = build_plan(config, methods, backbones, datasets, seeds, set_, p["weights"], p["db"])
    execute_plan(plan, planning=p, executor=executor, exec_options=exec_options)


@handle_errors
@with_groups(PLANNING, EXECUTION)
def ablate(
    backbones: BackbonesOption = None,
    datasets: DatasetsOption = None,
    variant: str | None = typer.Option(None, "--variant", help="lion-p1 | lion-p2 | lion-r | "
                                       "all: run LION and the variant(s) (Table 4)."),
    tau: str | None = typer.Option(None, "--tau", help="Sweep robust training's tau, e.g. "
                                   "0.2,0.4,0.6,0.8 (Figure 3, left)."),
    deq_layers: str | None = typer.Option(None, "--deq-layers", help="Sweep the layers per "
                                          "equilibrium block, e.g. 1,2,3,4 (Figure 3, right)."),
    seeds: SeedsOption = None,
    set_: SetOption = None,
    planning: dict[str, Any] | None = None,
    execution: dict[str, Any] | None = None,
) -> None:
    """Run LION's ablations (Table 4) or its sensitivity sweeps (Figure 3)."""
    from .inputs import check_ablate_inputs

    p, e = planning or {}, execution or {}
    check_ablate_inputs(backbones, datasets, variant, tau, deq_layers, seeds, set_,
                        p["weights"])
    executor, exec_options = prepare_execution(e, p)
    from lionbench.runner.ablation import build_ablation_plan  # torch

    plan = build_ablation_plan(backbones, datasets, variant=variant, taus=tau,
                               deq_layers=deq_layers, seeds=seeds, set_items=set_,
                               weights=p["weights"] or "pretrained", db=p["db"])
    execute_plan(plan, planning=p, executor=executor, exec_options=exec_options)


def execute_plan(plan: Plan, *, planning: dict[str, Any], executor: str = "inline",
                 exec_options: ExecOptions | None = None) -> None:
    """Print the defaults used and the plan (dry run), or run it with progress, then the table
    of its runs."""
    from lionbench.errors import WeightsError
    from lionbench.runner.plan import check_weights_available

    from .progress import print_plan, run_with_progress

    dry_run, force = planning["dry_run"], planning["force"]
    retry_failed = planning["retry_failed"]
    for note in plan.notes:
        say(printable(note))
    if dry_run:
        print_plan(console, plan, force, retry_failed)
    try:  # before any progress bar: offline without weights fails in seconds, nothing stored
        if exec_options is None or exec_options.run_fn is None:
            check_weights_available(plan.to_run(force, retry_failed))
    except WeightsError as exc:
        if not dry_run:
            raise
        say(f"warning: a real run would stop here: {printable(exc)}", err=True)
    if dry_run:
        return
    device = exec_options.device if exec_options is not None else "auto"
    summary = run_with_progress(console, plan, force=force, retry_failed=retry_failed,
                                data_root=planning["data_root"], device=device,
                                executor=executor, options=exec_options)
    if planning["show_table"] and summary.done + summary.skipped:
        print_table(plan.store, hashes=plan.hashes, method_order=plan.method_order)
    for row in plan.store.runs_with_warnings(plan.hashes):
        say(printable(f"warning: {row['method']} / {row['backbone']} / {row['dataset']} / "
                      f"seed {row['seed']}: {'; '.join(row['warnings'])}"), err=True)
    if summary.note_line():
        say(summary.note_line(), err=True)
    if summary.exit_code:  # the exit rule: lionbench.runner.run.RunSummary.exit_code
        say(summary.problem_line(), err=True)
        raise typer.Exit(summary.exit_code)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(ablate)
