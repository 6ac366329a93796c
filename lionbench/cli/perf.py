"""``lionbench bench``: training-step time, throughput, memory and solver iterations per method
and backbone, with ratios to the frozen-backbone floor and to fine-tuning (lionbench.perf.bench)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from lionbench.config import parse_set_options
from lionbench.files import check_writable, write_output
from lionbench.text import printable

from .options import console, handle_errors, say


@handle_errors
def bench(
    preset: Path | None = typer.Option(None, "--preset", help="YAML preset, e.g. "
                                       "benchmarks/perf/cpu-resnet50.yaml; flags replace its "
                                       "values."),
    methods: str | None = typer.Option(None, "--methods", "-m", help="Comma-separated; a variant "
                                       "as method:key=value:key=value; 'all' for every method."),
    backbones: str | None = typer.Option(None, "--backbones", "-b", help="Comma-separated."),
    image_size: int | None = typer.Option(None, "--image-size", help="Input size in pixels."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step."),
    steps: int | None = typer.Option(None, "--steps", help="Timed steps per configuration."),
    warmup: int | None = typer.Option(None, "--warmup", help="Untimed steps first."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N."),
    set_: list[str] | None = typer.Option(None, "--set", help="key=value for every method "
                                          "(method.key for one), repeatable."),
    compile_: bool | None = typer.Option(None, "--compile/--no-compile",
                                         help="torch.compile every model (opt-in)."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads for the "
                                       "run (default: the process's)."),
    checks: bool = typer.Option(True, "--checks/--no-checks", help="Run the preset's checks "
                                "(DEQ memory, feature cache)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the report as JSON."),
    markdown_path: Path | None = typer.Option(None, "--markdown", help="Write table + checks "
                                              "as Markdown."),
) -> None:
    """Time one training step per method x backbone, side by side in this one process."""
    from lionbench.perf.preset import BenchOptions, check_numbers, load_preset

    for path, what in ((json_path, "benchmark report"), (markdown_path, "benchmark table")):
        if path is not None:  # before minutes of timing, not after
            check_writable(path, what)
    options = load_preset(preset) if preset else BenchOptions()
    for name, value in (("methods", methods), ("backbones", backbones)):
        if value:
            setattr(options, name, [s.strip() for s in value.split(",") if s.strip()])
    for name, value in (("image_size", image_size), ("batch_size", batch_size), ("steps", steps),
                        ("warmup", warmup), ("device", device), ("compile", compile_),
                        ("threads", threads)):
        if value is not None:
            setattr(options, name, value)
    options.set = {**options.set, **parse_set_options(set_)}
    if not checks:
        options.deq_memory = options.feature_cache = None
    check_bench_inputs(options, check_numbers)
    from lionbench.perf.preset import run_bench  # torch: every input is checked by now
    from lionbench.perf.report import render_markdown, render_rich

    with console.status("benchmarking ...") as status:
        report = run_bench(options, progress=lambda msg: status.update(msg))
    # piped output gets 150 columns (rich would assume 80 and squeeze the columns)
    out = console if console.is_terminal else Console(width=150, markup=False)
    for table in render_rich(report):
        out.print(table)
    for name, check in report.checks.items():
        console.print(_check_line(name, check))
    if json_path:
        report.write_json(json_path)
        say(f"wrote {printable(json_path)}", err=True)
    if markdown_path:
        write_output(markdown_path, render_markdown(report), "benchmark table")
        say(f"wrote {printable(markdown_path)}", err=True)


def check_bench_inputs(options: Any, check_numbers: Any) -> None:
    """Names, numbers, device and settings of a benchmark, before torch loads."""
    from lionbench.catalog import check_backbone, method_entry, method_names
    from lionbench.executors.gpus import check_device

    from .inputs import check_settings_of

    check_numbers(options)
    check_device(options.device)
    entries = options.methods if isinstance(options.methods, list) else [options.methods]
    names = []
    for entry in entries:
        name = entry.get("method") if isinstance(entry, dict) else str(entry).split(":")[0]
        names += method_names() if name == "all" else [str(name)]
    names = [n for n in dict.fromkeys(names) if n != "floor"]  # the frozen-backbone floor
    for name in names:
        method_entry(name)
    for name in options.backbones:
        check_backbone(name)
    check_settings_of(names, options.set)


def _check_line(name: str, check: dict) -> str:
    if name == "deq_memory":
        rows = ", ".join(f"{r['iterations']} it: peak {r['step_peak_mb']:.1f} MB, saved "
                         f"{r['saved_mb']:.1f} MB" for r in check["rows"]
                         if r["step_peak_mb"] is not None)
        return f"DEQ memory (P1 fwd+bwd): {rows}; peak ratio {check['peak_ratio_last_to_first']}"
    if name == "feature_cache":
        return (f"feature cache: {check['epoch_speedup']:.1f}x per epoch, run "
                f"{check['run_speedup_cold']:.2f}x cold / {check['run_speedup_warm']:.1f}x warm, "
                f"same accuracy: {check['same_accuracy']}")
    return f"{name}: {check}"


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
