"""The training loop: one function, ``train_run``, that reads from top to bottom.

Protocol (stored with every run, ``PROTOCOL_VERSION`` in config.py):
train on the train split minus a seeded, stratified validation hold-out (or the dataset's own
``val`` split where it has one); after every epoch measure validation top-1 and keep the
trainable state of the best epoch; at the end restore that state and measure test top-1/top-5
once. The test split never influences any choice. The same seed gives the same numbers on CPU
for the same torch version, CPU kernel capability and torch thread count (the run stores all
three in its ``runtime``; a reduction split over other threads sums in another order).
Validation must not be empty (``check_selection_sets``): selection on nothing keeps epoch 0.
With ``train_on_val`` (VTAB-1k's final runs) the validation images join the training set and
the last epoch is kept: nothing is selected, and the run's ``val_top1`` is empty.
"""

from __future__ import annotations

import inspect
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lionbench.backbones import create_backbone
from lionbench.config import RunConfig
from lionbench.data import DatasetSpec, ImageSet, get_dataset
from lionbench.data.pipeline import Pipeline, decode_images, iterate_batches
from lionbench.data.split import stratified_subset
from lionbench.errors import DatasetError, TrainingFailed
from lionbench.methods import count_parameters, create_model, get_method

from .accel import maybe_compile
from .checkpoint import LoopState, load_checkpoint, save_checkpoint
from .device import select_device
from .feature_cache import cached_run

# (phase, done, total[, info]); info (the epoch's numbers) only for callbacks taking a 4th arg
ProgressFn = Callable[..., None]


@dataclass
class RunResult:
    """Metrics of one finished run, as stored."""

    test_top1: float
    test_top5: float | None
    val_top1: float
    best_epoch: int
    params_trainable: int
    params_trainable_no_head: int
    params_total: int
    train_seconds: float
    images_per_second: float
    peak_memory_mb: float
    extra: dict[str, Any] = field(default_factory=dict)
    model: torch.nn.Module | None = field(default=None, repr=False)  # with keep_model=True


def train_run(config: RunConfig, data_root: Path | None = None, device: torch.device | None = None,
              progress: ProgressFn | None = None, keep_model: bool = False,
              checkpoint_path: Path | None = None) -> RunResult:
    """Train and evaluate one configuration; raise on failure (the runner stores the reason).

    With ``checkpoint_path``, the loop's state is saved there at every epoch's end and a run
    that finds the file resumes after its epoch with the same result (lionbench.train.checkpoint);
    the file is deleted once the run is done.
    """
    device = device or select_device()
    cfg = config.train
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)  # shuffling and augmentation
    use_cuda = device.type == "cuda"

    # 1. data: train and validation (a seeded hold-out, the dataset's own val split, or K-shot's
    # choice: DatasetSpec.load_train_val); test untouched until the end
    spec = get_dataset(config.dataset)
    pipeline = Pipeline(image_size=config.pipeline["image_size"],
                        mean=tuple(config.pipeline["mean"]), std=tuple(config.pipeline["std"]),
                        train_augment=config.pipeline["train_augment"])
    # (train_on_val: train on both and keep the last epoch; nothing is held out to select on)
    if cfg.train_on_val:
        train_set, val_set = spec.load_train_plus_val(data_root, config.seed,
                                                      cfg.val_fraction), None
    else:
        train_set, val_set = spec.load_train_val(data_root, config.seed, cfg.val_fraction)
    if cfg.max_train_samples:
        train_set = train_set.subset(stratified_subset(train_set.labels, cfg.max_train_samples,
                                                       config.seed))
    validation = (check_selection_sets(spec, train_set, val_set, cfg.val_fraction)
                  if val_set is not None else NO_SELECTION)
    size = pipeline.image_size
    train_x, train_y = decode_images(train_set, size), train_set.labels
    val_x, val_y = ((decode_images(val_set, size), val_set.labels) if val_set is not None
                    else (None, None))

    # 2. model: a timm backbone wrapped by the method, never copied
    method = get_method(config.method)
    weights = config.weights if method.pretrained else "none"
    # the bytes loaded are checked against the run's identity first (backbones.verify_weights_id)
    backbone = create_backbone(config.backbone, spec.num_classes, weights, size,
                               expected_id=config.weights_id)
    model = create_model(config.method, backbone, config.method_config).to(device)
    # channels-last on every device: CNN steps are 11-16% faster on CPU too (results/perf/NOTES.md)
    model = model.to(memory_format=torch.channels_last)
    optimizer = model.create_optimizer(cfg.lr, cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(train_y) / cfg.batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
                 if cfg.lr_schedule == "cosine" else None)
    counts = count_parameters(model)
    if use_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    # what the loop calls: the model, or (head-tuning without augmentation) its head on features
    # computed once (feature_cache.py); compiled with LIONBENCH_COMPILE=1 (accel.py)
    net, cached = model, cached_run(config, model, pipeline, cfg.eval_batch_size, device)
    if cached is not None:
        net, pipeline = cached.net, cached.pipeline
        train_x = cached.features(train_x, cfg.batch_size)
        val_x = cached.features(val_x) if val_x is not None else None
    net = maybe_compile(net)

    # 3. train; select the epoch on validation top-1 (resume from an epoch-end checkpoint)
    model.reset_metrics()
    loop = (load_checkpoint(checkpoint_path, config.run_hash, model, optimizer, scheduler, gen)
            if checkpoint_path is not None else None) or LoopState()
    best_val, best_epoch, best_state = loop.best_val, loop.best_epoch, loop.best_state
    history: list[dict[str, float]] = loop.history
    train_seconds, seen = loop.train_seconds, loop.seen
    for epoch in range(loop.next_epoch, cfg.epochs):
        model.train()
        start, losses = time.perf_counter(), []
        for step, (xb, yb) in enumerate(iterate_batches(train_x, train_y, cfg.batch_size,
                                                        shuffle=True, gen=gen)):
            x = to_device(pipeline(xb.to(device), train=True, gen=gen))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_cuda):
                loss = F.cross_entropy(net(x), yb.to(device))
            if not torch.isfinite(loss):
                raise TrainingFailed(f"loss is {loss.item()} at epoch {epoch}, step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
            losses.append(loss.item())
            seen += len(yb)
        train_seconds += time.perf_counter() - start
        val_top1 = (evaluate(net, val_x, val_y, pipeline, cfg.eval_batch_size, device)[0]
                    if val_x is not None else None)
        history.append({"epoch": epoch, "train_loss": sum(losses) / max(1, len(losses)),
                        "val_top1": val_top1})
        if val_top1 is not None and val_top1 > best_val:
            best_val, best_epoch, best_state = val_top1, epoch, trainable_state(model)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, config.run_hash,
                            LoopState(epoch + 1, best_val, best_epoch, best_state, history,
                                      train_seconds, seen),
                            model, optimizer, scheduler, gen, trainable_state(model))
        if progress:
            report_progress(progress, "epoch", epoch + 1, cfg.epochs,
                            {"epoch": epoch + 1, "epochs": cfg.epochs,
                             "train_loss": history[-1]["train_loss"], "val_top1": val_top1,
                             "seconds": time.perf_counter() - start})
    if val_x is None:  # nothing to select on: the last epoch is the result
        best_val, best_epoch, best_state = math.nan, cfg.epochs - 1, trainable_state(model)
    extra = {"history": history, "params_by_component": counts.by_component,
             "validation": validation, **model.extra_metrics()}

    # 4. test once, at the selected epoch
    model.load_state_dict(best_state, strict=False)
    test_set = spec.load(data_root, "test")
    test_x = decode_images(test_set, size)
    test_top1, test_top5 = evaluate(net, cached.features(test_x) if cached else test_x,
                                    test_set.labels, pipeline, cfg.eval_batch_size, device,
                                    top5=spec.num_classes > 5)
    if checkpoint_path is not None:
        checkpoint_path.unlink(missing_ok=True)  # done: nothing left to resume
    return RunResult(
        test_top1=test_top1, test_top5=test_top5, val_top1=best_val, best_epoch=best_epoch,
        params_trainable=counts.trainable, params_trainable_no_head=counts.trainable_without_head,
        params_total=counts.total, train_seconds=train_seconds,
        images_per_second=seen / train_seconds if train_seconds else math.nan,
        peak_memory_mb=peak_memory_mb(device), extra=extra, model=model if keep_model else None)


NO_SELECTION = ("none: train_on_val trains on the train and validation images together and "
                "keeps the last epoch")


def check_selection_sets(spec: DatasetSpec, train_set: ImageSet, val_set: ImageSet,
                         val_fraction: float) -> str:
    """Refuse, before any training, sets that make model selection meaningless: an empty
    validation set would score 0 at every epoch and silently keep epoch 0. Returns where the
    validation images came from, with their number (stored in the run's ``extra``)."""
    source = spec.validation_source(val_fraction)
    if len(train_set) == 0:
        raise DatasetError(f"dataset '{spec.name}': no training images are left to train on")
    if len(val_set) == 0:
        raise DatasetError(f"dataset '{spec.name}': the validation set ({source}) is empty, so "
                           "no epoch can be selected; give every class at least two training "
                           "images, or images in its validation split")
    return f"{source}: {len(val_set)} images"


def report_progress(progress: ProgressFn, phase: str, done: int, total: int,
                    info: dict[str, Any]) -> None:
    """Call ``progress(phase, done, total, info)``, or without ``info`` for a callback written
    for three arguments (the older form), so both kinds keep working."""
    try:
        params = inspect.signature(progress).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: assume the older form
        params = []
    takes_info = any(p.kind is p.VAR_POSITIONAL for p in params) or sum(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) >= 4
    if takes_info:
        progress(phase, done, total, info)
    else:
        progress(phase, done, total)


def to_device(x: torch.Tensor) -> torch.Tensor:
    """Images channels-last, as the model's weights (features pass through unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             pipeline: Pipeline, batch_size: int, device: torch.device, top5: bool = False
             ) -> tuple[float, float | None]:
    """Top-1 (and top-5) accuracy as fractions."""
    model.eval()
    use_cuda = device.type == "cuda"
    correct1 = correct5 = 0
    for xb, yb in iterate_batches(images, labels, batch_size, shuffle=False):
        x = to_device(pipeline(xb.to(device), train=False))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_cuda):
            logits = model(x).float()
        yb = yb.to(device)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == yb).sum().item()
        correct5 += (top == yb[:, None]).any(dim=1).sum().item()
    n = max(1, len(labels))
    return correct1 / n, (correct5 / n if top5 else None)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of what training can change: trainable parameters and all buffers."""
    state = model.state_dict(keep_vars=True)
    return {k: v.detach().clone() for k, v in state.items()
            if not isinstance(v, torch.nn.Parameter) or v.requires_grad}


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated on GPU; the process's peak RSS on CPU (a process-wide high-water mark)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
