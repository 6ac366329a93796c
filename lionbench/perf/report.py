"""What ``lionbench bench`` reports: rows, the machine they ran on, checks; JSON and tables.

Every number comes with the machine (CPU model, cores, torch threads, GPU, library versions) and
the load average at the start and end of the run: timings on a shared machine are only
comparable within one report, which is why the ratios (to the floor, to fine-tuning) are the
numbers to compare across machines.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lionbench.files import write_output


@dataclass
class BenchRow:
    """One configuration on one backbone (see :mod:`lionbench.perf.bench` and
    :mod:`lionbench.perf.memory`)."""

    label: str
    method: str
    backbone: str
    image_size: int
    batch_size: int
    step_seconds: float  # median over the timed repetitions
    step_seconds_all: list[float]
    images_per_second: float
    ratio_to_floor: float  # median of per-repetition ratios
    ratio_to_fine_tuning: float
    params_trainable: int
    persistent_mb: float
    step_peak_mb: float | None
    peak_mb: float | None
    saved_mb: float
    overrides: dict[str, Any] = field(default_factory=dict)
    solver: dict[str, float] = field(default_factory=dict)
    warmup_seconds_all: list[float] = field(default_factory=list)  # incl. compilation


@dataclass
class BenchReport:
    """Rows plus where and how they were measured; ``checks`` holds extra measurements
    (DEQ memory against iterations, the feature cache) keyed by name."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    rows: list[BenchRow] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "settings": self.settings,
                "rows": [asdict(r) for r in self.rows], "checks": self.checks}

    def write_json(self, path: Path) -> None:
        write_output(path, json.dumps(self.to_dict(), indent=2, default=str) + "\n",
                     "benchmark report")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchReport:
        return cls(d["machine"], d["settings"], [BenchRow(**r) for r in d["rows"]],
                   d.get("checks", {}))

    def row(self, label: str, backbone: str | None = None) -> BenchRow:
        for r in self.rows:
            if r.label == label and backbone in (None, r.backbone):
                return r
        raise KeyError(label)


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, threads, GPU, versions and the load average now."""
    import timm

    cpu = platform.processor() or platform.machine()
    cpuinfo: dict[str, str] = {}
    try:  # the first processor's entry
        for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines():
            key, _, value = line.partition(":")
            cpuinfo[key.strip()] = value.strip()
    except OSError:
        pass
    cpu = cpuinfo.get("model name", cpu)
    info: dict[str, Any] = {
        "cpu": cpu, "cpu_family": cpuinfo.get("cpu family"), "cpu_model": cpuinfo.get("model"),
        "virtualized": "hypervisor" in cpuinfo.get("flags", "").split(),
        "cpu_count": os.cpu_count(), "memory_gb": _memory_gb(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "timm": timm.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "device": str(device),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _solver(row: BenchRow) -> str:
    parts = []
    for block in ("p1", "p2"):
        f, b = row.solver.get(f"{block}_fwd_iterations_mean"), row.solver.get(
            f"{block}_bwd_iterations_mean")
        if f is not None:
            parts.append(f"{block} {f:.1f}/{_fmt(b, '.1f')}")
    return ", ".join(parts)


COLUMNS = ["config", "s/step", "img/s", "x floor", "x FT", "trainable", "peak MB", "step MB",
           "saved MB", "solver it fwd/bwd"]


def table_rows(report: BenchReport, backbone: str) -> list[list[str]]:
    """One backbone's rows as strings, in the order of COLUMNS."""
    return [[r.label, f"{r.step_seconds:.3f}", f"{r.images_per_second:.1f}",
             f"{r.ratio_to_floor:.2f}", f"{r.ratio_to_fine_tuning:.2f}",
             f"{r.params_trainable:,}", _fmt(r.peak_mb, ".0f"), _fmt(r.step_peak_mb, ".0f"),
             f"{r.saved_mb:.0f}", _solver(r)] for r in report.rows if r.backbone == backbone]


def backbones(report: BenchReport) -> list[str]:
    return list(dict.fromkeys(r.backbone for r in report.rows))


def _caption(report: BenchReport) -> str:
    s, m = report.settings, report.machine
    return (f"{s['image_size']} px, batch {s['batch_size']}, median of {s['steps']} steps after "
            f"{s['warmup']} warm-up; {m.get('gpu') or m['cpu']}, torch {m['torch']}, "
            f"{m['torch_threads']} threads, load average {_load(m.get('load_average_start'))} "
            f"-> {_load(m.get('load_average_end'))}")


def _load(values: list[float] | None) -> str:
    return "n/a" if not values else "/".join(f"{v:.1f}" for v in values)


def render_rich(report: BenchReport) -> list:  # rich.table.Table, one per backbone
    from rich.table import Table

    tables = []
    for backbone in backbones(report):
        t = Table(*COLUMNS, title=f"Training-step cost: {backbone}", caption=_caption(report))
        for row in table_rows(report, backbone):
            t.add_row(*row)
        tables.append(t)
    return tables


def render_markdown(report: BenchReport) -> str:
    """The tables plus the checks, as Markdown (results/perf/*.md). Columns: seconds per
    training step (median), images/s, ratios to the floor and to fine-tuning (medians of
    per-repetition ratios), trainable parameters, memory (lionbench.perf.memory), LION's mean
    solver iterations per block."""
    lines = [f"_{_caption(report)}_"]
    for backbone in backbones(report):
        lines += ["", f"### {backbone}", "", "| " + " | ".join(COLUMNS) + " |",
                  "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(r) + " |" for r in table_rows(report, backbone)]
    for name, check in report.checks.items():
        lines += ["", f"### check: {name}", "", "```json",
                  json.dumps(check, indent=2, default=str), "```"]
    return "\n".join(lines) + "\n"
