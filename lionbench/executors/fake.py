"""A stand-in for ``train_run`` that trains nothing: for testing and timing the executors.

``--run-fn``-style injection (``ExecOptions.run_fn = "lionbench.executors.fake:fake_run"``) lets
a test drive hundreds of runs through claiming, heartbeats, crashes and resubmission in seconds,
without importing torch. Each "epoch" sleeps ``$LIONBENCH_FAKE_EPOCH_SECONDS`` (default 0.02 s);
epochs come from the run's config. The result records which process and GPU ran it and when.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lionbench.config import RunConfig
from lionbench.files import atomic_path


def fake_run(config: RunConfig, data_root: Path | None = None, device: Any = "cpu", *,
             progress: Callable[[str, int, int], None] | None = None,
             checkpoint_path: Path | None = None) -> dict[str, Any]:
    """Sleep through the config's epochs (resuming from ``checkpoint_path``); a method_config
    ``{"fail": "why"}`` raises instead, ``{"stubborn": true}`` ignores SIGINT and SIGTERM.
    Accuracy is a function of the run hash alone."""
    if config.method_config.get("fail"):
        raise RuntimeError(str(config.method_config["fail"]))
    if config.method_config.get("stubborn"):  # a run that will not stop on Ctrl-C or SIGTERM
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    epoch_seconds = float(os.environ.get("LIONBENCH_FAKE_EPOCH_SECONDS", "0.02"))
    start, first = time.time(), 0
    if checkpoint_path is not None and checkpoint_path.exists():
        first = json.loads(checkpoint_path.read_text())["next_epoch"]
    for epoch in range(first, config.train.epochs):
        time.sleep(epoch_seconds)
        if checkpoint_path is not None:
            with atomic_path(checkpoint_path) as tmp:
                tmp.write_text(json.dumps({"next_epoch": epoch + 1}))
        if progress:
            progress("epoch", epoch + 1, config.train.epochs,
                     {"epoch": epoch + 1, "epochs": config.train.epochs,
                      "train_loss": 1.0 / (epoch + 1), "val_top1": 0.5,
                      "seconds": epoch_seconds})
    if checkpoint_path is not None:
        checkpoint_path.unlink(missing_ok=True)
    digest = int(hashlib.sha256(config.run_hash.encode()).hexdigest()[:8], 16)
    ray = sys.modules.get("ray")  # inside a Ray task: the GPUs Ray gave it
    gpu_ids = [int(g) for g in ray.get_gpu_ids()] if ray and ray.is_initialized() else []
    return {"test_top1": (digest % 1000) / 1000, "val_top1": 0.5, "best_epoch": 0,
            "params_trainable": 1, "params_total": 1, "train_seconds": time.time() - start,
            "extra": {"pid": os.getpid(), "start": start, "end": time.time(),
                      "resumed_from_epoch": first, "ray_gpu_ids": gpu_ids,
                      "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}}
