"""Per-configuration memory of one training step, measured the same way on CPU and GPU.

A process's peak RSS is one high-water mark for everything it ever held (every model of the
benchmark, the allocator's caches), so it cannot tell configurations apart. Reported instead, per
configuration:

- ``persistent_mb``: what lives between steps: parameters, buffers and optimizer state (unique
  storages; a frozen backbone counts once);
- ``step_peak_mb``: the highest amount of tensor memory allocated *during* one step above what
  was allocated before it (activations, gradients, solver workspaces, temporaries). On CUDA from
  ``torch.cuda.max_memory_allocated``; on CPU from the allocation events that
  ``torch.profiler`` records with ``profile_memory=True`` (every tensor allocation and free of
  the step, summed in time order; frees of tensors allocated before the step are not recorded,
  so this is an upper bound where a step releases older tensors);
- ``peak_mb = persistent_mb + step_peak_mb``: the memory the configuration needs on its own;
- ``saved_mb``: unique storages saved for backward (``saved_tensors_hooks``), not counting
  parameters or buffers: the activation memory that grows with depth or with unrolled iterations.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

MB = 2**20


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def unique_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen: dict[tuple[int, int], int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            key = _storage_key(t)
            seen[key] = key[1]
    return sum(seen.values())


def persistent_bytes(module: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Parameters, buffers and optimizer state of one configuration."""
    tensors = [*module.parameters(), *module.buffers()]
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors.extend(v for v in state.values() if isinstance(v, torch.Tensor))
    return unique_bytes(tensors)


def saved_for_backward_bytes(fn: Callable[[], object], exclude: Iterable[torch.Tensor] = ()
                             ) -> int:
    """Unique storages saved for backward while ``fn`` runs, minus those of ``exclude``."""
    excluded = {_storage_key(t) for t in exclude}
    saved: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in excluded:
            saved[key] = key[1]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(saved.values())


def step_peak_bytes(fn: Callable[[], object], device: torch.device) -> int | None:
    """Peak tensor memory allocated above the starting level while ``fn`` runs (None: unknown)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    return _profiled_peak(fn)


def _profiled_peak(fn: Callable[[], object]) -> int | None:
    """CPU: the running sum of the allocation events ``torch.profiler`` records, at its maximum.

    Uses the profiler's event tree (``experimental_event_tree``, an experimental API): where it
    is missing, the answer is None rather than a guess.
    """
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU],
                                            profile_memory=True) as prof:
        fn()
    try:
        roots = prof.profiler.kineto_results.experimental_event_tree()
    except AttributeError:
        return None
    events: list[tuple[int, int]] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        size = getattr(node.extra_fields, "alloc_size", None)
        if size is not None and getattr(node.extra_fields, "device", None) is not None \
                and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, int(size)))
        stack.extend(node.children)
    level = peak = 0
    for _, size in sorted(events):
        level += size
        peak = max(peak, level)
    return peak


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: the profiler's native library logs a few lines per
    session there (start/stop markers, a GPU probe on CPU-only machines). Python exceptions
    still propagate and print after the descriptor is restored."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
