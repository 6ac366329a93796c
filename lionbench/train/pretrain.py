"""``lionbench pretrain``: train a backbone from scratch on a source dataset and save it.

This is how the embedded ``demo-resnet`` checkpoint was made (docs/commands.md): the protocol of
every benchmark run (train minus a stratified validation hold-out, epoch selected on validation,
test measured once), fine-tuning from random weights, then the backbone's state dict without
its classifier is written as safetensors with a JSON sidecar recording the command, the source
test accuracy and the machine.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionbench.config import RunConfig, TrainConfig, check_overrides
from lionbench.files import check_writable, write_output
from lionbench.methods import get_method
from lionbench.store.provenance import git_state, package_versions

from .configs import create_run_config
from .device import device_name, select_device
from .loop import ProgressFn, train_run


@dataclass
class PretrainResult:
    output: Path
    test_top1: float
    val_top1: float
    best_epoch: int
    seconds: float
    size_bytes: int


def pretrain_backbone(backbone: str, dataset: str, output: Path, *, train: dict[str, Any],
                      seed: int = 0, data_root: Path | None = None, device: str = "auto",
                      progress: ProgressFn | None = None) -> PretrainResult:
    """Train ``backbone`` from random init on ``dataset`` and save it to ``output``.

    ``output`` and its JSON sidecar are checked to be writable first: a typo in ``-o`` must
    not cost a pretraining run."""
    output = check_writable(output, "checkpoint")
    check_writable(output.with_suffix(".json"), "checkpoint record")
    check_overrides(train, {"fine-tuning": get_method("fine-tuning").config_class.field_names()})
    config: RunConfig = create_run_config("fine-tuning", backbone, dataset, seed, "none", train)
    start = time.perf_counter()
    dev = select_device(device)
    result = train_run(config, data_root, dev, progress=progress, keep_model=True)
    seconds = time.perf_counter() - start
    net = result.model.backbone
    head = {id(p) for p in net.get_classifier().parameters()}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict(keep_vars=True).items()
             if id(v) not in head}
    from safetensors.torch import save

    write_output(output, save(state), "checkpoint")
    commit, dirty = git_state()
    record = {
        "backbone": backbone, "source_dataset": dataset, "seed": seed,
        "command": "lionbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "train": TrainConfig(**config.train.__dict__).__dict__, "pipeline": config.pipeline,
        "source_test_top1": result.test_top1, "source_val_top1": result.val_top1,
        "best_epoch": result.best_epoch, "seconds": round(seconds, 1),
        "device": device_name(dev), "git_commit": commit, "git_dirty": dirty,
        "versions": package_versions(), "history": result.extra.get("history"),
    }
    write_output(output.with_suffix(".json"), json.dumps(record, indent=2) + "\n",
                 "checkpoint record")
    return PretrainResult(output, result.test_top1, result.val_top1, result.best_epoch, seconds,
                          output.stat().st_size)
