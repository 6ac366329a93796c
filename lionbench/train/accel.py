"""Opt-in ``torch.compile`` for the training loop and the benchmark, outside a run's identity.

``LIONBENCH_COMPILE=1`` (or ``lionbench bench --compile``) wraps the module the training loop
calls in ``torch.compile``. It is a run-time option, not a ``TrainConfig`` field, so it does not
enter the run hash: compiled kernels reorder floating-point work, which can move results in the
last bits but not by the amounts the protocol version guards against. It stays opt-in because
compilation costs minutes up front (on CPU it needs a C++ compiler), graph-breaks on LION's
data-dependent solver loop, and pays off only on long runs (see results/perf/NOTES.md).
"""

from __future__ import annotations

import os

import torch
from torch import nn

COMPILE_ENV = "LIONBENCH_COMPILE"


def compile_requested() -> bool:
    """True when ``LIONBENCH_COMPILE`` is set to 1/true/yes."""
    return os.environ.get(COMPILE_ENV, "").strip().lower() in ("1", "true", "yes")


def maybe_compile(module: nn.Module, enabled: bool | None = None) -> nn.Module:
    """``torch.compile(module)`` when asked (``enabled``, else the environment), else as is.

    Parameters and state stay the module's own: the compiled wrapper shares them, so optimizers,
    checkpoints and ``state_dict`` keep working on the original module.
    """
    if enabled is None:
        enabled = compile_requested()
    if not enabled:
        return module
    import torch._functorch.config as functorch_config

    # LION's implicit backward re-enters autograd on the retained forward graph
    # (lionbench.deq), which compiled graphs with donated buffers refuse.
    functorch_config.donated_buffer = False
    return torch.compile(module)
