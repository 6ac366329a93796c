"""The protocol: seeded, stratified validation hold-out; selection on validation; test once;
the same seed gives the same numbers on CPU."""

from __future__ import annotations

import torch

from lionbench.data import get_dataset
from lionbench.data.split import stratified_split
from lionbench.matrix import Matrix
from lionbench.runner import expand_matrix
from lionbench.train import train_run


def config(tiny, seed=0, method="head-tuning"):
    return expand_matrix([Matrix(methods=[method], backbones=["test_resnet"],
                                 datasets=["digits"], seeds=[seed], weights="none",
                                 overrides={**tiny, "epochs": 2})])[0]


def test_same_seed_same_numbers_other_seed_other_numbers(tiny):
    a, b = train_run(config(tiny)), train_run(config(tiny))
    assert (a.test_top1, a.val_top1, a.extra["history"]) == (b.test_top1, b.val_top1,
                                                             b.extra["history"])
    c = train_run(config(tiny, seed=1))
    assert c.extra["history"] != a.extra["history"]


def test_validation_hold_out_is_stratified_seeded_and_disjoint():
    labels = get_dataset("digits").load(None, "train").labels
    keep, held = stratified_split(labels, 0.1, seed=0)
    assert not set(keep.tolist()) & set(held.tolist())
    assert len(keep) + len(held) == len(labels)
    for c in range(10):
        share = (labels[held] == c).sum().item() / (labels == c).sum().item()
        assert abs(share - 0.1) < 0.02
    again, _ = stratified_split(labels, 0.1, seed=0)
    other, _ = stratified_split(labels, 0.1, seed=1)
    assert torch.equal(keep, again) and not torch.equal(keep, other)


def test_test_split_is_read_once_after_training(tiny, monkeypatch):
    import lionbench.train.loop as train_mod

    calls: list[str] = []
    real_evaluate = train_mod.evaluate

    def spy(model, images, labels, *args, **kwargs):
        calls.append("top5" if kwargs.get("top5") else "val")
        return real_evaluate(model, images, labels, *args, **kwargs)

    monkeypatch.setattr(train_mod, "evaluate", spy)
    result = train_run(config(tiny))
    # one validation pass per epoch, then exactly one test pass (the only one asking top-5)
    assert calls == ["val", "val", "top5"]
    assert result.best_epoch in (0, 1) and result.test_top5 is not None
