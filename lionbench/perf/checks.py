"""Extra measurements of ``lionbench bench``: equilibrium memory and the feature cache.

- :func:`deq_memory_check`: LION's input prompt P1 (an equilibrium layer over the image), forward
  plus implicit backward, at a few solver iteration counts with ``tol=0`` so every iteration runs.
  An equilibrium layer keeps no iterate for backward, so memory must not grow with iterations.
  P1's output conv is re-initialised at PyTorch's default scale: at LION's deliberately small
  initialisation the solve reaches a floating-point fixed point within a few iterations (its
  residual is then exactly 0 and it stops), which would not exercise 50 iterations.
- :func:`feature_cache_check`: one head-tuning run without the cache and the same run with it
  (cold: features computed; warm: a second run reusing them), same seed, comparing per-epoch
  training time and the accuracies.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import torch
from torch import nn

from lionbench.methods.lion import ConvBranch, EquilibriumPrompt, LionConfig
from lionbench.train import feature_cache, train_run
from lionbench.train.configs import create_run_config

from .memory import MB, saved_for_backward_bytes, step_peak_bytes


def deq_memory_check(image_size: int, batch_size: int, iterations: list[int],
                     device: torch.device) -> dict[str, Any]:
    """Peak step memory and bytes saved for backward of P1 per iteration count."""
    cfg = LionConfig()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(device)
    r = torch.randn(x.shape, generator=gen).to(device)
    rows = []
    for n in iterations:
        solver = dataclasses.replace(cfg.solver_config(), max_iter=n, tol=0.0,
                                     backward_max_iter=n, backward_tol=0.0)
        torch.manual_seed(0)
        branch = ConvBranch(3, cfg.p1_channels)
        conv2 = branch.conv2.layer
        conv2.reset_parameters()  # see the module docstring
        block = EquilibriumPrompt([branch], cfg.contraction, solver).to(device).train()

        def step(block: nn.Module = block) -> None:
            (block(x) * r).sum().backward()

        step()  # warm-up: allocator, kernels
        block.tracker.reset()
        start = time.perf_counter()
        peak = step_peak_bytes(step, device)
        seconds = time.perf_counter() - start
        stats = block.tracker.summary()
        saved = saved_for_backward_bytes(step, [*block.parameters(), *block.buffers(), x])
        rows.append({"iterations": n, "fwd_iterations_mean": stats.get("fwd_iterations_mean"),
                     "bwd_iterations_mean": stats.get("bwd_iterations_mean"),
                     "step_peak_mb": None if peak is None else peak / MB,
                     "saved_mb": saved / MB, "seconds_profiled": seconds})
    first, last = rows[0], rows[-1]
    ratio = (last["step_peak_mb"] / first["step_peak_mb"]
             if first["step_peak_mb"] and last["step_peak_mb"] is not None else None)
    return {"block": "lion p1", "image_size": image_size, "batch_size": batch_size,
            "rows": rows, "peak_ratio_last_to_first": ratio,
            "saved_ratio_last_to_first": last["saved_mb"] / first["saved_mb"]
            if first["saved_mb"] else None}


def feature_cache_check(backbone: str, image_size: int, batch_size: int, device: torch.device,
                        dataset: str = "digits", epochs: int = 2, max_train_samples: int = 160,
                        weights: str = "none", seed: int = 0) -> dict[str, Any]:
    """Head-tuning with and without cached features: per-epoch time and accuracy, same seed."""
    overrides = {"epochs": epochs, "image_size": image_size, "batch_size": batch_size,
                 "max_train_samples": max_train_samples, "augment": "none"}
    config = create_run_config("head-tuning", backbone, dataset, seed, weights, overrides)
    old = os.environ.get(feature_cache.ENV)
    out: dict[str, Any] = {"backbone": backbone, "dataset": dataset, "image_size": image_size,
                           "batch_size": batch_size, "epochs": epochs,
                           "max_train_samples": max_train_samples, "weights": weights}
    heads = {}
    try:
        for name, mode in (("uncached", "off"), ("cached_cold", "memory"),
                           ("cached_warm", "memory")):
            os.environ[feature_cache.ENV] = mode
            if name == "cached_cold":
                feature_cache.clear_memory_cache()
            start = time.perf_counter()
            result = train_run(config, device=device, keep_model=True)
            heads[name] = result.model.head().weight.detach().clone()
            out[name] = {"wall_seconds": time.perf_counter() - start,
                         "train_seconds_per_epoch": result.train_seconds / epochs,
                         "test_top1": result.test_top1, "val_top1": result.val_top1,
                         "history": result.extra["history"]}
    finally:
        feature_cache.clear_memory_cache()
        if old is None:
            os.environ.pop(feature_cache.ENV, None)
        else:
            os.environ[feature_cache.ENV] = old
    un, warm, cold = out["uncached"], out["cached_warm"], out["cached_cold"]
    out["epoch_speedup"] = un["train_seconds_per_epoch"] / warm["train_seconds_per_epoch"]
    out["run_speedup_cold"] = un["wall_seconds"] / cold["wall_seconds"]
    out["run_speedup_warm"] = un["wall_seconds"] / warm["wall_seconds"]
    out["same_accuracy"] = all(un[k] == c[k] for c in (cold, warm)
                               for k in ("test_top1", "val_top1"))
    out["head_max_abs_diff"] = float((heads["uncached"] - heads["cached_cold"]).abs().max())
    return out
