"""``lionbench bench``: the cost of one training step per method x backbone, measured fairly.

For each backbone (random weights: speed does not depend on them) every configuration gets its
own model built from the same seed, and one fixed batch of ``batch_size`` images. A training
step is what ``lionbench.train.loop`` does per batch: zero the gradients, forward under the device's
autocast, cross-entropy, backward, ``optimizer.step()`` (the method's own optimizer, so LION's
robust-training rule is included), with ``torch.cuda.synchronize`` around it on GPU. Models
and the batch are channels-last on every device, as in training. The data pipeline (uint8 to
normalised floats on the device) is the same for every method and is left out.

The **floor** is the least any input-prompt method on a frozen backbone can cost: the frozen
backbone's forward plus the backward to an input that requires grad, on the same batch.
Fine-tuning is always measured too. Ratios to both are taken *per repetition* and their median
reported: repetitions are round-robin over all configurations (the order rotated each time),
so background load on a shared machine hits every configuration alike.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lionbench.backbones import create_backbone, get_backbone_spec
from lionbench.config import TrainConfig, check_overrides, parse_set_options, split_overrides
from lionbench.errors import ConfigError
from lionbench.methods import count_parameters, create_model, get_method, list_methods
from lionbench.train import select_device
from lionbench.train.accel import maybe_compile

from .memory import MB, persistent_bytes, saved_for_backward_bytes, step_peak_bytes
from .report import BenchReport, BenchRow, machine_info

FLOOR = "floor"
REFERENCE = "fine-tuning"
ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class BenchEntry:
    """One row to time: a registered method (or the floor) with its own settings."""

    method: str
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    compile: bool | None = None  # torch.compile this entry; None: the run's --compile


def parse_entries(items: list[str | dict[str, Any]] | str) -> list[BenchEntry]:
    """Entries from names, ``name:key=value:key=value`` strings or ``{method, label, set,
    compile}`` maps; ``all`` expands to every registered method; ``floor`` may appear with other
    settings (e.g. compiled). Fine-tuning is added where missing (the ratios refer to it)."""
    if isinstance(items, str):
        items = [s.strip() for s in items.split(",") if s.strip()]
    entries: list[BenchEntry] = []
    for item in items:
        compile_ = None
        if isinstance(item, dict):
            unknown = set(item) - {"method", "label", "set", "compile"}
            if unknown or "method" not in item:
                raise ConfigError(f"bench entry {item!r}: expected keys method, label, set, "
                                  "compile")
            method, sets = str(item["method"]), dict(item.get("set") or {})
            label = str(item.get("label") or method)
            compile_ = None if item.get("compile") is None else bool(item["compile"])
        elif item == "all":
            entries.extend(BenchEntry(m, m) for m in list_methods())
            continue
        else:
            method, *pairs = str(item).split(":")
            sets, label = parse_set_options(pairs), str(item)
        if method != FLOOR:
            get_method(method)
        entries.append(BenchEntry(method, label, sets, compile_))
    if not any(e.method == REFERENCE and not e.overrides and not e.compile for e in entries):
        entries.append(BenchEntry(REFERENCE, REFERENCE))
    labels = [FLOOR] + [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"bench entries need distinct labels (and none named '{FLOOR}'); "
                          f"got {', '.join(labels[1:])}")
    return entries


@dataclass
class _Subject:
    """A configuration being timed: its step function and what it measured."""

    entry: BenchEntry
    module: nn.Module
    optimizer: torch.optim.Optimizer | None
    step: Callable[[], None]
    params_trainable: int
    times: list[float] = field(default_factory=list)
    warmup_times: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def _train_step(forward: Callable[[torch.Tensor], torch.Tensor],
                optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                amp: bool) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        optimizer.step()
    return step


def _floor_step(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                y: torch.Tensor, amp: bool) -> Callable[[], None]:
    def step() -> None:
        xi = x.detach().requires_grad_(True)  # the input a prompt would produce
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(forward(xi), y)
        loss.backward()
    return step


def _build(entry: BenchEntry, backbone: str, image_size: int, x: torch.Tensor, y: torch.Tensor,
           overrides: dict[str, Any], compile_: bool) -> _Subject:
    device, amp = x.device, x.device.type == "cuda"
    compile_ = compile_ if entry.compile is None else entry.compile
    torch.manual_seed(0)  # the same random backbone for every configuration
    net = create_backbone(backbone, 10, "none", image_size)
    if entry.method == FLOOR:
        net = net.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
        return _Subject(entry, net, None, _floor_step(maybe_compile(net, compile_), x, y, amp), 0)
    spec = get_method(entry.method)
    train_values, method_values = split_overrides(overrides, entry.method,
                                                  spec.config_class.field_names())
    train = TrainConfig(**train_values)
    model = create_model(entry.method, net, {**method_values, **entry.overrides})
    model = model.to(device, memory_format=torch.channels_last)  # as lionbench.train does
    model.train()
    opt = model.create_optimizer(train.lr, train.weight_decay)
    step = _train_step(maybe_compile(model, compile_), opt, x, y, amp)
    return _Subject(entry, model, opt, step, count_parameters(model).trainable)


def _timed(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _paired_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def run_benchmark(methods: list[str | dict[str, Any]] | str, backbones: list[str],
                  image_size: int = 224, batch_size: int = 16, steps: int = 5, warmup: int = 1,
                  device: str = "auto", overrides: dict[str, Any] | None = None,
                  compile_: bool = False, progress: ProgressFn | None = None,
                  threads: int | None = None) -> BenchReport:
    """Time every entry of ``methods`` on every backbone in this one process (module docstring).

    ``overrides`` are ``--set`` values: training keys (lr, weight_decay) and method settings,
    ``method.key`` for one method; an entry's own ``set`` wins over them. ``threads``: torch's
    CPU threads for the run (restored after); None keeps the process's setting.
    """
    entries = parse_entries(methods)
    overrides = dict(overrides or {})
    check_overrides(overrides, {e.method: get_method(e.method).config_class.field_names()
                                for e in entries if e.method != FLOOR})
    if steps < 1 or warmup < 0 or batch_size < 1 or image_size < 1:
        raise ConfigError(f"invalid steps={steps}, warmup={warmup}, batch size={batch_size} or "
                          f"image size={image_size}; steps, batch size and image size must be "
                          ">= 1, warmup >= 0")
    if threads is not None and threads < 1:
        raise ConfigError(f"invalid --threads {threads}; must be >= 1")
    for backbone in backbones:
        get_backbone_spec(backbone)
    dev = select_device(device)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        report = BenchReport(machine=machine_info(dev), settings={
            "image_size": image_size, "batch_size": batch_size, "steps": steps,
            "warmup": warmup, "device": str(dev), "compile": compile_, "threads": threads,
            "overrides": overrides, "entries": [vars(e) for e in entries]})
        for backbone in backbones:
            report.rows.extend(_bench_backbone(backbone, entries, image_size, batch_size, steps,
                                               warmup, dev, overrides, compile_,
                                               progress or (lambda _msg: None)))
    finally:
        torch.set_num_threads(previous_threads)
    report.machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") \
        else None
    return report


def _bench_backbone(backbone: str, entries: list[BenchEntry], image_size: int, batch_size: int,
                    steps: int, warmup: int, dev: torch.device, overrides: dict[str, Any],
                    compile_: bool, say: ProgressFn) -> list[BenchRow]:
    """Build every configuration on ``backbone``, time them round robin, measure memory."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(
        dev, memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), generator=gen).to(dev)
    subjects = []
    for entry in [BenchEntry(FLOOR, FLOOR), *entries]:
        say(f"{backbone}: building {entry.label}")
        subjects.append(_build(entry, backbone, image_size, x, y, overrides, compile_))
    for rep in range(warmup + steps):  # round robin, rotated: load hits all alike
        if rep == warmup:
            for s in subjects:
                getattr(s.module, "reset_metrics", lambda: None)()
        say(f"{backbone}: repetition {rep + 1}/{warmup + steps}"
            f"{' (warm-up)' if rep < warmup else ''}")
        for i in range(len(subjects)):
            s = subjects[(i + rep) % len(subjects)]
            seconds = _timed(s.step, dev)
            (s.times if rep >= warmup else s.warmup_times).append(seconds)
    for s in subjects:
        s.metrics = dict(getattr(s.module, "extra_metrics", dict)())
    say(f"{backbone}: memory")
    return _rows(backbone, subjects, image_size, batch_size, x, dev)


def _rows(backbone: str, subjects: list[_Subject], image_size: int, batch_size: int,
          x: torch.Tensor, dev: torch.device) -> list[BenchRow]:
    floor = subjects[0]
    reference = next(s for s in subjects if s.entry.method == REFERENCE and not s.entry.overrides
                     and not s.entry.compile)
    rows = []
    for s in subjects:
        if s.optimizer is not None:
            s.optimizer.zero_grad(set_to_none=True)
        peak = step_peak_bytes(s.step, dev)
        saved = saved_for_backward_bytes(s.step, [*s.module.parameters(), *s.module.buffers(), x])
        persistent = persistent_bytes(s.module, s.optimizer)
        median = statistics.median(s.times)
        rows.append(BenchRow(
            label=s.entry.label, method=s.entry.method, backbone=backbone,
            image_size=image_size, batch_size=batch_size, step_seconds=median,
            step_seconds_all=list(s.times), images_per_second=batch_size / median,
            ratio_to_floor=_paired_ratio(s.times, floor.times),
            ratio_to_fine_tuning=_paired_ratio(s.times, reference.times),
            params_trainable=s.params_trainable, persistent_mb=persistent / MB,
            step_peak_mb=None if peak is None else peak / MB,
            peak_mb=None if peak is None else (persistent + peak) / MB, saved_mb=saved / MB,
            overrides=dict(s.entry.overrides), solver=solver_summary(s.metrics),
            warmup_seconds_all=list(s.warmup_times)))
    return rows


def solver_summary(metrics: dict[str, float]) -> dict[str, float]:
    """LION's mean forward / backward solver iterations per block (p1, p2), as measured."""
    keep = ("fwd_iterations_mean", "bwd_iterations_mean", "fwd_not_converged",
            "bwd_not_converged")
    return {k: v for k, v in metrics.items() if k.split("_", 1)[-1] in keep}
