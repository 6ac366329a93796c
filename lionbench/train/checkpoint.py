"""Epoch-end checkpoints, so a run cut off by a crash, a preemption or Ctrl-C resumes mid-training.

A checkpoint holds everything the training loop carries from one epoch to the next: the model's
trainable state (trainable parameters and all buffers; frozen weights are rebuilt from the same
seed or file), the optimizer and scheduler, the best epoch so far and its state, the history, and
the RNG states of torch and of the shuffling generator. Resuming from it gives the same numbers
as an uninterrupted run (same seed, CPU). It is written to a temporary file (unpredictable name,
created exclusively: lionbench.files.atomic_path) and renamed over the checkpoint, so a kill at
any moment leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lionbench.files import atomic_path

FORMAT = 1
DEFAULT_DIR = "results/checkpoints"


@dataclass
class LoopState:
    """What the training loop carries across epochs; ``next_epoch`` is where it goes on."""

    next_epoch: int = 0
    best_val: float = -1.0
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    seen: int = 0


def checkpoint_dir(path: str | Path | None = None) -> Path:
    """``path``, else ``$LIONBENCH_CHECKPOINTS``, else ``results/checkpoints``."""
    return Path(path or os.environ.get("LIONBENCH_CHECKPOINTS") or DEFAULT_DIR).expanduser()


def checkpoint_path(run_hash: str, directory: str | Path | None = None) -> Path:
    return checkpoint_dir(directory) / f"{run_hash}.pt"


def save_checkpoint(path: Path, run_hash: str, loop: LoopState, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, gen: torch.Generator,
                    trainable: dict[str, torch.Tensor]) -> None:
    """Write the loop's state atomically (temporary file in the same folder, then rename)."""
    state = {
        "format": FORMAT, "run_hash": run_hash, "loop": vars(loop),
        "model": trainable, "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng_torch": torch.get_rng_state(), "rng_gen": gen.get_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "metrics": _metrics_state(model),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())


def load_checkpoint(path: Path, run_hash: str, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    gen: torch.Generator) -> LoopState | None:
    """Restore model, optimizer, scheduler and RNGs from ``path``; None (start over) when the
    file is absent, unreadable, belongs to another run, or does not fit the model (code that
    changed under it): such a file is discarded with a one-line warning, since a bad file
    must cost its epochs, never the run.

    Everything is checked before the first value is applied (tensor shapes against the model,
    parameter groups against the optimizer), so a discarded file leaves the model untouched.
    """
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("not a lionbench checkpoint of this version")
        if state.get("run_hash") != run_hash:
            raise ValueError("written for another run")
        misfit = _misfit(state, model, optimizer)
        if misfit:
            raise ValueError(f"does not fit the model ({misfit})")
    except Exception as exc:  # nothing applied yet
        _discard(path, exc)
        return None
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_torch"])
    gen.set_state(state["rng_gen"])
    if state["rng_cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    loader = getattr(model, "load_metrics_state_dict", None)
    if loader is not None and state["metrics"] is not None:
        loader(state["metrics"])
    return LoopState(**state["loop"])


def _discard(path: Path, exc: BaseException) -> None:
    """Warn in one line (never torch's advice to unpickle untrusted files) and delete the file."""
    if isinstance(exc, ValueError) and str(exc):
        why = str(exc).splitlines()[0][:200]
    else:
        why = f"unreadable ({type(exc).__name__})"
    warnings.warn(f"ignoring checkpoint {path}: {why}; the run starts over", stacklevel=3)
    path.unlink(missing_ok=True)


def _misfit(state: dict[str, Any], model: torch.nn.Module,
            optimizer: torch.optim.Optimizer) -> str:
    """What in ``state`` does not fit ``model`` and ``optimizer`` (empty when all fits)."""
    own = model.state_dict()
    saved = state.get("model")
    if not isinstance(saved, dict) or not isinstance(state.get("loop"), dict):
        return "no model state"
    unknown = [k for k in saved if k not in own]
    if unknown:
        return f"{len(unknown)} unknown tensor(s), e.g. {unknown[0]}"
    for key, value in saved.items():
        if not isinstance(value, torch.Tensor) or value.shape != own[key].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
            return f"{key}: {shape} saved, {tuple(own[key].shape)} in the model"
    opt = state.get("optimizer")
    if not isinstance(opt, dict) or "param_groups" not in opt:
        return "no optimizer state"
    groups = [len(g["params"]) for g in optimizer.param_groups]
    if [len(g.get("params", ())) for g in opt["param_groups"]] != groups:
        return "optimizer parameter groups differ"
    params = [p for g in optimizer.param_groups for p in g["params"]]
    ids = [i for g in opt["param_groups"] for i in g["params"]]
    for index, param in zip(ids, params, strict=True):
        for name, value in (opt.get("state", {}).get(index) or {}).items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                return f"optimizer state '{name}' of a {tuple(param.shape)} parameter is " \
                       f"{tuple(value.shape)}"
    return ""


def _metrics_state(model: torch.nn.Module) -> Any:
    """Optional hook: a method whose ``extra_metrics`` accumulate over epochs can implement
    ``metrics_state_dict()``/``load_metrics_state_dict()`` to carry them across a resume."""
    getter = getattr(model, "metrics_state_dict", None)
    return getter() if getter is not None else None
