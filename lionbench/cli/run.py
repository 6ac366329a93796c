"""The ``lionbench`` command line: each command parses, calls one library function, renders.

User errors (:class:`LionbenchError`) become one line on stderr and exit code 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from lionbench import __version__
from lionbench.cli_common import DATA_ROOT_HELP, DB_HELP, console, err_console, handle_errors
from lionbench.commands import register_commands
from lionbench.errors import ConfigError

app = typer.Typer(help="Benchmark parameter-efficient transfer learning in vision (LION and "
                       "baselines): run matrices, store results, render the paper's tables.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
list_app = typer.Typer(help="List registered methods, backbones or datasets.",
                       no_args_is_help=True)
app.add_typer(list_app, name="list")


def _version(value: bool) -> None:
    if value:
        console.print(f"lionbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(version: bool = typer.Option(False, "--version", callback=_version,
                                               is_eager=True, help="Show the version.")) -> None:
    """lionbench: parameter-efficient transfer learning benchmarks."""


# --- run ---------------------------------------------------------------------------------------
@app.command()
@handle_errors
def run(
    config: Path | None = typer.Argument(None, help="YAML matrix file (optional)."),
    methods: str | None = typer.Option(None, "--methods", "-m", help="Comma-separated methods."),
    backbones: str | None = typer.Option(None, "--backbones", "-b", help="Comma-separated."),
    datasets: str | None = typer.Option(None, "--datasets", "-d", help="Comma-separated."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma-separated seeds (default 0)."),
    set_: list[str] | None = typer.Option(None, "--set", help="key=value override, repeatable "
                                          "(training key, method key, or method.key)."),
    weights: str | None = typer.Option(None, "--weights", help="pretrained (alias timm) | none "
                                       "| FILE (.safetensors or torch state dict)."),
    data_root: Path | None = typer.Option(None, "--data-root", help=DATA_ROOT_HELP),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and stop."),
    force: bool = typer.Option(False, "--force", help="Rerun runs already stored."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Rerun failed runs."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
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
) -> None:
    """Run a matrix of methods x backbones x datasets x seeds; skip what is stored."""
    from lionbench.api import build_plan
    from lionbench.executors import make_options

    executor, exec_options = make_options(
        executor=executor, workers=workers, gpus=gpus, fresh_process=fresh_process,
        address=address, gpus_per_run=gpus_per_run, partition=partition, time=time_limit,
        cpus_per_run=cpus_per_run, mem_gb=mem_gb, slurm_extra=slurm_extra,
        checkpoints=checkpoints, checkpoint_dir=checkpoint_dir, max_attempts=max_attempts)
    plan, store, tags = build_plan(config, methods, backbones, datasets, seeds, set_, weights, db)
    _run_plan(plan, store, tags, dry_run=dry_run, force=force, retry_failed=retry_failed,
              data_root=data_root, device=device, show_table=show_table, executor=executor,
              exec_options=exec_options)


def _run_plan(plan: Any, store: Any, tags: str, *, dry_run: bool, force: bool,
              retry_failed: bool, data_root: Path | None, device: str, show_table: bool,
              method_order: tuple[str, ...] | None = None, executor: str = "inline",
              exec_options: Any = None) -> None:
    from .cli_render import print_plan, run_with_progress

    if dry_run:
        print_plan(console, plan, force, retry_failed)
        return
    summary = run_with_progress(console, store, plan, force=force, retry_failed=retry_failed,
                                data_root=data_root, device=device, tags=tags,
                                executor=executor, options=exec_options)
    if show_table and summary.done + summary.skipped:
        _print_table(store, hashes=[c.run_hash for c in plan.configs], method_order=method_order)
    if summary.failed:
        err_console.print(f"{summary.failed} run(s) failed; see `lionbench status`",
                          highlight=False)


# --- ablate ------------------------------------------------------------------------------------
@app.command()
@handle_errors
def ablate(
    backbones: str = typer.Option(..., "--backbones", "-b", help="Comma-separated."),
    datasets: str = typer.Option(..., "--datasets", "-d", help="Comma-separated."),
    variant: str | None = typer.Option(None, "--variant", help="lion-p1 | lion-p2 | lion-r | "
                                       "all: run LION and the variant(s) (Table 4)."),
    tau: str | None = typer.Option(None, "--tau", help="Sweep robust training's tau, e.g. "
                                   "0.2,0.4,0.6,0.8 (Figure 3, left)."),
    deq_layers: str | None = typer.Option(None, "--deq-layers", help="Sweep the layers per "
                                          "equilibrium block, e.g. 1,2,3,4 (Figure 3, right)."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma-separated seeds (default 0)."),
    set_: list[str] | None = typer.Option(None, "--set", help="key=value override, repeatable."),
    weights: str = typer.Option("pretrained", "--weights", help="pretrained | none | FILE."),
    data_root: Path | None = typer.Option(None, "--data-root", help=DATA_ROOT_HELP),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and stop."),
    force: bool = typer.Option(False, "--force", help="Rerun runs already stored."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
) -> None:
    """Run LION's ablations (Table 4) or its sensitivity sweeps (Figure 3)."""
    from lionbench.ablation import TABLE4_ORDER, create_ablation_matrices
    from lionbench.config import parse_set_options
    from lionbench.matrix import expand_matrix
    from lionbench.runner import plan_runs
    from lionbench.store import Store

    matrices = create_ablation_matrices(backbones, datasets, variant=variant, taus=tau,
                                        deq_layers=deq_layers, seeds=seeds,
                                        overrides=parse_set_options(set_), weights=weights)
    configs = expand_matrix(matrices)
    store = Store(db)
    _run_plan(plan_runs(store, configs), store, "ablation", dry_run=dry_run, force=force,
              retry_failed=False, data_root=data_root, device=device, show_table=True,
              method_order=TABLE4_ORDER)


# --- params ------------------------------------------------------------------------------------
@app.command()
@handle_errors
def params(
    methods: str = typer.Option(..., "--methods", "-m", help="Comma-separated methods."),
    backbones: str = typer.Option(..., "--backbones", "-b", help="Comma-separated."),
    num_classes: int = typer.Option(10, "--num-classes", help="Size of the new head."),
    set_: list[str] | None = typer.Option(None, "--set", help="Method key=value override."),
    fmt: str = typer.Option("rich", "--format", "-f", help="rich | json | csv."),
) -> None:
    """Count trainable parameters per method and backbone (built without weights or training)."""
    from lionbench.config import parse_set_options
    from lionbench.matrix import split_names
    from lionbench.params import count_method_parameters

    from .cli_render import print_params

    if fmt not in ("rich", "json", "csv"):
        raise ConfigError(f"unknown format '{fmt}'; valid: rich, json, csv")
    records = count_method_parameters(split_names(methods), split_names(backbones), num_classes,
                                      parse_set_options(set_))
    print_params(console, records, fmt)


# --- table -------------------------------------------------------------------------------------
@app.command()
@handle_errors
def table(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    fmt: str = typer.Option("rich", "--format", "-f", help="rich | markdown | latex | csv."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to FILE."),
    preset: str | None = typer.Option(None, "--preset", help="table1 | table2 | table3 | table4."),
    compare: str | None = typer.Option(None, "--compare", help="'paper': show the paper's "
                                       "value beside ours."),
    clean_only: bool = typer.Option(False, "--clean-only", help="Exclude runs from a dirty git "
                                    "tree or an older protocol version."),
) -> None:
    """Render stored results in the paper's layout (mean ± std over seeds, best marked)."""
    from lionbench.store import Store

    _print_table(Store(db), fmt=fmt, output=output, preset=preset, compare=compare,
                 clean_only=clean_only)


def _print_table(store: Any, *, hashes: list[str] | None = None, fmt: str = "rich",
                 output: Path | None = None, preset: str | None = None,
                 compare: str | None = None, clean_only: bool = False,
                 method_order: tuple[str, ...] | None = None) -> None:
    from lionbench.api import render_stored_table

    rendered = render_stored_table(store, hashes=hashes, fmt=fmt, preset=preset,
                                   compare=compare, clean_only=clean_only,
                                   method_order=method_order)
    if output:
        text = rendered if isinstance(rendered, str) else _to_text(rendered)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        console.print(f"wrote {output}")
    elif isinstance(rendered, str):
        sys.stdout.write(rendered if rendered.endswith("\n") else rendered + "\n")
    else:
        console.print(rendered)


def _to_text(renderable: Any) -> str:
    rec = Console(record=True, width=200, file=open("/dev/null", "w"))  # noqa: SIM115
    rec.print(renderable)
    return rec.export_text()


# --- status ------------------------------------------------------------------------------------
@app.command()
@handle_errors
def status(db: str | None = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Counts of pending, running, done and failed runs, and the failures' reasons."""
    from lionbench.store import Store

    from .cli_render import print_status

    print_status(console, Store(db))


# --- pretrain ----------------------------------------------------------------------------------
@app.command()
@handle_errors
def pretrain(
    backbone: str = typer.Option("test_resnet", "--backbone", "-b", help="timm name."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Source dataset, e.g. "
                                "folder:data/cifar10-jpeg."),
    output: Path = typer.Option(..., "--output", "-o", help="Checkpoint (.safetensors)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Training key=value."),
    seed: int = typer.Option(0, "--seed"),
    data_root: Path | None = typer.Option(None, "--data-root", help=DATA_ROOT_HELP),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Pretrain a backbone from scratch on a source dataset and save its weights."""
    from lionbench.config import parse_set_options
    from lionbench.pretrain import pretrain_backbone

    overrides = parse_set_options(set_)
    with console.status("pretraining ...") as st:
        result = pretrain_backbone(
            backbone, dataset, output, train=overrides, seed=seed, data_root=data_root,
            device=device, progress=lambda _p, i, n: st.update(f"pretraining: epoch {i}/{n}"))
    console.print(f"saved {result.output} ({result.size_bytes / 1e6:.2f} MB): source test top-1 "
                  f"{result.test_top1:.4f} (val {result.val_top1:.4f}, epoch "
                  f"{result.best_epoch}), {result.seconds:.0f} s")


# --- list --------------------------------------------------------------------------------------
@list_app.command("methods")
@handle_errors
def list_methods_cmd() -> None:
    """Registered methods."""
    from lionbench.methods import get_method, list_methods

    t = Table("method", "paper name", "init", "description")
    for name in list_methods():
        spec = get_method(name)
        t.add_row(name, spec.paper_name, "pretrained" if spec.pretrained else "random",
                  spec.description)
    console.print(t)


@list_app.command("backbones")
@handle_errors
def list_backbones_cmd() -> None:
    """Built-in backbones (any other timm model name works too)."""
    from lionbench.backbones import BUILTIN_BACKBONES, get_backbone_info

    t = Table("backbone", "timm model", "input", "description",
              caption="Any timm.list_models() name is accepted as well.")
    for spec in BUILTIN_BACKBONES.values():
        t.add_row(spec.name, spec.timm_name, str(get_backbone_info(spec.name).image_size),
                  spec.description)
    console.print(t)


@list_app.command("datasets")
@handle_errors
def list_datasets_cmd() -> None:
    """Registered datasets (see `lionbench datasets` for where they are)."""
    from lionbench.data import get_dataset, list_datasets

    t = Table("dataset", "classes", "description", caption="Also: folder:PATH (train/ and "
              "test/ class folders), NAME-lt-irR (long-tailed), NAME-Kshot (few-shot).")
    for name in list_datasets():
        spec = get_dataset(name)
        t.add_row(name, str(spec.num_classes), spec.description)
    console.print(t)


register_commands(app)


def main() -> None:
    """Entry point: click's own usage errors also become one line and exit code 1."""
    try:
        from typer._click import exceptions as click_exc  # typer >= 0.22 vendors click
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions as click_exc
    try:
        code = app(standalone_mode=False)
    except click_exc.NoArgsIsHelpError:
        sys.exit(0)
    except click_exc.ClickException as exc:
        err_console.print(f"error: {exc.format_message()}", markup=False, highlight=False)
        sys.exit(1)
    except (KeyboardInterrupt, getattr(click_exc, "Abort", KeyboardInterrupt)):
        err_console.print("interrupted: the run in progress went back to pending; rerun the "
                          "same command to resume", highlight=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
