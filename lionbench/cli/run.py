"""``lionbench run`` and ``lionbench ablate``: plan a matrix, run what is not stored, print the
table of its runs.

Like every command module here, this one imports the library inside each command: building
the app must not load torch, so that ``lionbench table`` and ``status`` start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .options import (
    BackbonesOption,
    DataRootOption,
    DatasetsOption,
    DbOption,
    DeviceOption,
    DryRunOption,
    ForceOption,
    MethodsOption,
    SeedsOption,
    SetOption,
    ThreadsOption,
    console,
    err_console,
    handle_errors,
)
from .results import print_table

if TYPE_CHECKING:
    from lionbench.executors import ExecOptions
    from lionbench.runner import Plan


# --- run ---------------------------------------------------------------------------------------
@handle_errors
def run(
    config: Path | None = typer.Argument(None, help="YAML matrix file (optional)."),
    methods: MethodsOption = None,
    backbones: BackbonesOption = None,
    datasets: DatasetsOption = None,
    seeds: SeedsOption = None,
    set_: SetOption = None,
    weights: str | None = typer.Option(None, "--weights", help="pretrained (alias timm) | none "
                                       "| FILE (.safetensors or torch state dict)."),
    data_root: DataRootOption = None,
    db: DbOption = None,
    dry_run: DryRunOption = False,
    force: ForceOption = False,
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Rerun failed runs."),
    device: DeviceOption = "auto",
    show_table: bool = typer.Option(True, "--table/--no-table", help="Print the table after."),
    executor: str | None = typer.Option(None, "--executor", rich_help_panel="Execution",
                                        help="inline | local | ray | slurm (default: local "
                                        "with --workers or --gpus, else inline)."),
    workers: int | None = typer.Option(None, "--workers", rich_help_panel="Execution",
                                       help="Local CPU worker processes (Ray/Slurm: most runs "
                                       "in flight)."),
    gpus: str | None = typer.Option(None, "--gpus", rich_help_panel="Execution",
                                    help="Local workers, one per GPU: 0,1,2,3."),
    fresh_process: bool | None = typer.Option(None, "--fresh-process/--reuse-process",
                                              rich_help_panel="Execution",
                                              help="A new process per run (default: with "
                                              "--gpus only)."),
    address: str | None = typer.Option(None, "--address", rich_help_panel="Execution",
                                       help="Ray cluster (default: $RAY_ADDRESS, else a local "
                                       "one)."),
    gpus_per_run: float | None = typer.Option(None, "--gpus-per-run", rich_help_panel="Execution",
                                              help="Ray/Slurm: GPUs per run (default 1 where "
                                              "there are GPUs)."),
    partition: str | None = typer.Option(None, "--partition", rich_help_panel="Execution",
                                         help="Slurm partition."),
    time_limit: str | None = typer.Option(None, "--time", rich_help_panel="Execution",
                                          help="Slurm time per run: minutes or D-HH:MM:SS."),
    cpus_per_run: int | None = typer.Option(None, "--cpus-per-run", rich_help_panel="Execution",
                                            help="Slurm CPUs per run (default 8)."),
    mem_gb: float | None = typer.Option(None, "--mem-gb", rich_help_panel="Execution",
                                        help="Slurm memory per run."),
    slurm_extra: list[str] | None = typer.Option(None, "--slurm", rich_help_panel="Execution",
                                                 help="More #SBATCH KEY=VALUE (account=..., "
                                                 "qos=...), repeatable."),
    checkpoints: bool = typer.Option(True, "--checkpoints/--no-checkpoints",
                                     rich_help_panel="Execution",
                                     help="Save each run at every epoch's end; resume there."),
    checkpoint_dir: Path | None = typer.Option(None, "--checkpoint-dir",
                                               rich_help_panel="Execution",
                                               help="Default: checkpoints/ next to a SQLite "
                                               "database, else results/checkpoints."),
    max_attempts: int = typer.Option(3, "--max-attempts", rich_help_panel="Execution",
                                     help="Claims a run may lose to dying workers before it "
                                     "is marked failed."),
    threads: ThreadsOption = None,
) -> None:
    """Run a matrix of methods x backbones x datasets x seeds; skip what is stored."""
    from lionbench.executors import make_options
    from lionbench.runner.plan import build_plan

    executor, exec_options = make_options(
        executor=executor, workers=workers, gpus=gpus, fresh_process=fresh_process,
        address=address, gpus_per_run=gpus_per_run, partition=partition, time=time_limit,
        cpus_per_run=cpus_per_run, mem_gb=mem_gb, slurm_extra=slurm_extra,
        checkpoints=checkpoints, checkpoint_dir=checkpoint_dir, max_attempts=max_attempts,
        threads=threads)
    plan = build_plan(config, methods, backbones, datasets, seeds, set_, weights, db)
    execute_plan(plan, dry_run=dry_run, force=force, retry_failed=retry_failed,
                 data_root=data_root, device=device, show_table=show_table, executor=executor,
                 exec_options=exec_options)


@handle_errors
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
    weights: str = typer.Option("pretrained", "--weights", help="pretrained | none | FILE."),
    data_root: DataRootOption = None,
    db: DbOption = None,
    dry_run: DryRunOption = False,
    force: ForceOption = False,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
) -> None:
    """Run LION's ablations (Table 4) or its sensitivity sweeps (Figure 3)."""
    from lionbench.executors import make_options
    from lionbench.runner.ablation import build_ablation_plan

    plan = build_ablation_plan(backbones, datasets, variant=variant, taus=tau,
                               deq_layers=deq_layers, seeds=seeds, set_items=set_,
                               weights=weights, db=db)
    executor, exec_options = make_options(threads=threads)
    execute_plan(plan, dry_run=dry_run, force=force, retry_failed=False, data_root=data_root,
                 device=device, show_table=True, executor=executor, exec_options=exec_options)


def execute_plan(plan: Plan, *, dry_run: bool, force: bool, retry_failed: bool,
                 data_root: Path | None, device: str, show_table: bool,
                 executor: str = "inline", exec_options: ExecOptions | None = None) -> None:
    """Print the defaults used and the plan (dry run), or run it with progress, then the table
    of its runs."""
    from lionbench.errors import WeightsError
    from lionbench.runner.plan import check_weights_available

    from .progress import print_plan, run_with_progress

    for note in plan.notes:
        console.print(note, highlight=False, markup=False)
    if dry_run:
        print_plan(console, plan, force, retry_failed)
    try:  # before any progress bar: offline without weights fails in seconds, nothing stored
        if exec_options is None or exec_options.run_fn is None:
            check_weights_available(plan.to_run(force, retry_failed))
    except WeightsError as exc:
        if not dry_run:
            raise
        err_console.print(f"warning: a real run would stop here: {exc}", highlight=False,
                          markup=False, soft_wrap=True)
    if dry_run:
        return
    summary = run_with_progress(console, plan, force=force, retry_failed=retry_failed,
                                data_root=data_root, device=device, executor=executor,
                                options=exec_options)
    if show_table and summary.done + summary.skipped:
        print_table(plan.store, hashes=plan.hashes, method_order=plan.method_order)
    for row in plan.store.runs_with_warnings(plan.hashes):
        err_console.print(f"warning: {row['method']} / {row['backbone']} / {row['dataset']} / "
                          f"seed {row['seed']}: {'; '.join(row['warnings'])}", highlight=False,
                          markup=False, soft_wrap=True)
    if summary.exit_code:  # the exit rule: lionbench.runner.run.RunSummary.exit_code
        err_console.print(summary.problem_line(), highlight=False, markup=False)
        raise typer.Exit(summary.exit_code)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(ablate)
