"""Which device a run trains on, and how it is described in the run's provenance."""

from __future__ import annotations

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
