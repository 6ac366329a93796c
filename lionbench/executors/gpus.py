"""Which devices this machine has, asked without importing torch.

``--device cuda:7`` or ``--gpus 99`` on a machine without such a GPU must be refused at once,
not after torch loads (seconds) and certainly not after a run started (a traceback, a run left
``running``) or silently on the CPU. CUDA's view is cheap to read: the NVIDIA driver lists one
folder per GPU under ``/proc/driver/nvidia/gpus`` (else one ``/dev/nvidiaN`` node per GPU), and
``CUDA_VISIBLE_DEVICES`` narrows what a process may use (CUDA stops at the first entry that is
not a device; ``-1`` or an empty value hides every GPU). Where that view cannot be had (not
Linux, or AMD's ROCm build of torch, whose ``cuda`` devices are HIP GPUs: ``/dev/kfd``), the
count is asked of torch itself, only then and only because a GPU option was given.

``--device`` applies where runs train: for Ray and Slurm that is another machine, so it is not
checked against this one.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from lionbench.errors import LionbenchError

DEVICE_FORMS = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"(auto|cpu|cuda)(:(\d+))?")


class DeviceError(LionbenchError):
    """A device or GPU this machine does not have, or a malformed device name."""


def _driver_gpus() -> int | None:
    """NVIDIA GPUs the driver knows of; None when this cannot be read here."""
    if not sys.platform.startswith("linux"):
        return None
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return sum(1 for _ in proc.iterdir())
    nodes = [p for p in Path("/dev").glob("nvidia*") if p.name[len("nvidia"):].isdigit()]
    if not nodes and Path("/dev/kfd").exists():  # AMD ROCm: ask torch
        return None
    return len(nodes)


def _visible(env: str | None, count: int) -> int:
    """GPUs left by ``CUDA_VISIBLE_DEVICES`` (ids or UUIDs, comma-separated) out of ``count``."""
    if env is None:
        return count
    visible = 0
    for item in env.split(","):
        item = item.strip()
        if not item or item.startswith("-"):
            break
        visible += 1
    return min(visible, count)


def gpu_count() -> int:
    """CUDA GPUs this process may use (see the module docstring for how it is known)."""
    count = _driver_gpus()
    if count is None:  # pragma: no cover - not Linux, or ROCm
        import torch

        return torch.cuda.device_count()
    return _visible(os.environ.get("CUDA_VISIBLE_DEVICES"), count)


def _none_here(what: str) -> DeviceError:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = f" (CUDA_VISIBLE_DEVICES={env!r})" if env is not None else ""
    return DeviceError(f"{what}, but this machine has no CUDA GPU{seen}; use --device cpu "
                       "(or auto), or run where the GPUs are")


def check_device_name(device: str) -> re.Match[str]:
    """``device`` is one of auto, cpu, cuda, cuda:N (wherever the runs train)."""
    match = _DEVICE.fullmatch(device or "")
    if match is None or (match.group(2) and match.group(1) != "cuda"):
        raise DeviceError(f"invalid --device '{device}'; valid: {DEVICE_FORMS}")
    return match


def check_device(device: str) -> None:
    """``device`` is one of auto, cpu, cuda, cuda:N, and a CUDA one exists here."""
    match = check_device_name(device)
    if match.group(1) != "cuda":
        return
    count = gpu_count()
    if count == 0:
        raise _none_here(f"--device {device} asks for a GPU")
    index = int(match.group(3) or 0)
    if index >= count:
        raise DeviceError(f"invalid --device {device}: this machine has {count} CUDA GPU(s), "
                          f"cuda:0 to cuda:{count - 1}")


def check_gpus(gpus: list[int]) -> None:
    """Every id of ``--gpus`` is a CUDA GPU of this machine."""
    count = gpu_count()
    if count == 0:
        raise _none_here(f"--gpus {','.join(map(str, gpus))} asks for GPUs")
    missing = [g for g in gpus if g >= count]
    if missing:
        raise DeviceError(f"invalid --gpus {','.join(map(str, gpus))}: this machine has "
                          f"{count} CUDA GPU(s), ids 0 to {count - 1}")


__all__ = ["DEVICE_FORMS", "DeviceError", "check_device", "check_device_name", "check_gpus",
           "gpu_count"]
