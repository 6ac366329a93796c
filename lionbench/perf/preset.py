"""Benchmark presets (``benchmarks/perf/*.yaml``) and the one call behind ``lionbench bench``.

A preset holds the options of ``lionbench bench`` as YAML, plus the checks to run after the
timing table::

    description: the must-show CPU run
    backbones: [resnet50]
    image_size: 224
    batch_size: 16
    steps: 5
    warmup: 1
    device: cpu
    methods:
      - head-tuning
      - {method: lion, label: lion-prompted, set: {p2_input: prompted}}
    set: {lr: 0.001}
    deq_memory: {iterations: [5, 50]}
    feature_cache: {dataset: digits, epochs: 2, max_train_samples: 160}

Command-line flags replace the preset's values (``--set`` adds to its ``set``). Reading and
checking a preset imports no torch (``lionbench bench`` refuses a bad preset or flag at once);
running it does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lionbench.config import load_yaml
from lionbench.errors import ConfigError
from lionbench.settings import Setting

if TYPE_CHECKING:
    from .bench import ProgressFn
    from .report import BenchReport

# sane bounds of the numbers of a benchmark (lionbench.settings' vocabulary)
BOUNDS = {"image_size": Setting("int", low=8, high=8192),
          "batch_size": Setting("int", low=1, high=65_536),
          "steps": Setting("int", low=1, high=100_000),
          "warmup": Setting("int", low=0, high=100_000),
          "threads": Setting("int", low=1, high=1024)}


@dataclass
class BenchOptions:
    """Everything one ``lionbench bench`` invocation measures."""

    methods: list[Any] = field(default_factory=lambda: ["head-tuning", "fine-tuning", "lion"])
    backbones: list[str] = field(default_factory=lambda: ["resnet50"])
    image_size: int = 224
    batch_size: int = 16
    steps: int = 5
    warmup: int = 1
    device: str = "auto"
    set: dict[str, Any] = field(default_factory=dict)
    compile: bool = False
    threads: int | None = None  # torch CPU threads; None: the process's default
    deq_memory: dict[str, Any] | None = None  # {iterations: [5, 50]}
    feature_cache: dict[str, Any] | None = None  # feature_cache_check keyword arguments
    description: str = ""


def load_preset(path: Path) -> BenchOptions:
    """Read a preset; unknown keys are an error naming the valid ones."""
    try:
        if Path(path).exists() and not Path(path).is_file():
            raise IsADirectoryError(21, "not a regular file")
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"preset '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read preset '{path}' ({getattr(exc, 'strerror', None) or exc});"
                          " give a YAML file such as benchmarks/perf/quick.yaml") from None
    doc = load_yaml(text, f"preset '{path}'") or {}
    valid = {f.name for f in fields(BenchOptions)}
    if not isinstance(doc, dict) or set(doc) - valid:
        extra = sorted(set(doc) - valid) if isinstance(doc, dict) else []
        raise ConfigError(f"preset '{path}': unknown keys {', '.join(extra) or '(not a map)'}; "
                          f"valid: {', '.join(sorted(valid))}")
    for key in ("methods", "backbones"):
        if isinstance(doc.get(key), str):
            doc[key] = [s.strip() for s in doc[key].split(",") if s.strip()]
    return BenchOptions(**doc)


def check_numbers(options: BenchOptions) -> None:
    """Every number of ``options`` within BOUNDS (``--batch-size 0`` is refused at once)."""
    for name, spec in BOUNDS.items():
        value = getattr(options, name)
        if value is None:  # threads: the process's default
            continue
        try:
            spec.check(name, value)
        except ConfigError:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"invalid {flag} {value}; must be {spec.describe()}") from None


def run_bench(options: BenchOptions, progress: ProgressFn | None = None) -> BenchReport:
    """The timing table, then the preset's checks, on the same device in the same process."""
    import torch

    from .bench import run_benchmark
    from .checks import deq_memory_check, feature_cache_check

    check_numbers(options)
    previous_threads = torch.get_num_threads()
    if options.threads:  # for the checks too (run_benchmark sets and restores its own)
        torch.set_num_threads(options.threads)
    try:
        report = run_benchmark(options.methods, options.backbones, options.image_size,
                               options.batch_size, options.steps, options.warmup,
                               options.device, options.set, options.compile, progress,
                               options.threads)
        report.settings["description"] = options.description
        device = torch.device(report.settings["device"])
        if options.deq_memory is not None:
            if progress:
                progress("check: DEQ memory against solver iterations")
            iterations = [int(i) for i in options.deq_memory.get("iterations", [5, 50])]
            report.checks["deq_memory"] = deq_memory_check(
                int(options.deq_memory.get("image_size", options.image_size)),
                int(options.deq_memory.get("batch_size", options.batch_size)), iterations,
                device)
        if options.feature_cache is not None:
            if progress:
                progress("check: head-tuning with and without cached features")
            kwargs = {"backbone": options.backbones[0], "image_size": options.image_size,
                      "batch_size": options.batch_size, **options.feature_cache}
            report.checks["feature_cache"] = feature_cache_check(device=device, **kwargs)
    finally:
        torch.set_num_threads(previous_threads)
    if hasattr(os, "getloadavg"):
        report.machine["load_average_end"] = list(os.getloadavg())
    return report
