"""Which device a run trains on, and how it is described in the run's provenance."""

from __future__ import annotations

import os
from typing import Any

import torch

from lionbench.store.provenance import cpu_model


def select_device(name: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """``cuda:<GPU name>`` or ``cpu:<CPU model> xN threads`` (threads change CPU numbers)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{cpu_model()} x{torch.get_num_threads()} threads"


def set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (None: leave torch's default, the physical cores). The
    same count on machines of one CPU kind gives the same CPU numbers; see runtime_settings."""
    if threads is not None:
        torch.set_num_threads(threads)


def runtime_settings() -> dict[str, Any]:
    """What besides the config decides a run's exact numbers on this machine, stored with it:
    the kernels chosen for the CPU's instruction set, torch's thread counts (a reduction split
    over another number of threads sums in another order), and the determinism switches."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
