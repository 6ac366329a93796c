"""Epoch-end checkpoints: a run cut off after an epoch and resumed equals an uninterrupted one."""

from __future__ import annotations

import pytest
import torch

from lionbench.runner import expand_matrix
from lionbench.runner.plan import create_matrices
from lionbench.train import train_run
from lionbench.train.checkpoint import LoopState, load_checkpoint, save_checkpoint

TINY = {"epochs": 3, "image_size": 8, "max_train_samples": 64, "batch_size": 16,
        "lr_schedule": "cosine"}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core machine, 2 threads spin against each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Cut(Exception):
    """Stands for a crash right after an epoch's checkpoint was written."""


def tiny_config(method: str):
    matrices = create_matrices(methods=method, backbones="test_resnet", datasets="digits",
                               overrides=TINY, weights="none")
    return expand_matrix(matrices)[0]


@pytest.mark.parametrize("method", ["head-tuning", "fine-tuning"])
def test_resumed_run_equals_uninterrupted_run(method, tmp_path):
    config = tiny_config(method)
    whole = train_run(config, keep_model=True)

    ckpt = tmp_path / f"{config.run_hash}.pt"

    def cut_after_first_epoch(phase: str, done: int, total: int) -> None:
        if done == 1:
            raise Cut

    with pytest.raises(Cut):
        train_run(config, checkpoint_path=ckpt, progress=cut_after_first_epoch)
    assert ckpt.exists()
    resumed = train_run(config, checkpoint_path=ckpt, keep_model=True)
    assert not ckpt.exists()  # deleted once the run is done

    for key in ("test_top1", "test_top5", "val_top1", "best_epoch"):
        assert getattr(resumed, key) == getattr(whole, key), key
    assert resumed.extra["history"] == whole.extra["history"]  # losses equal to the bit
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_checkpoint_of_another_run_is_ignored_and_a_misfit_one_named(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "x.pt"
    save_checkpoint(path, "hash-a", LoopState(next_epoch=2, seen=10), model, opt, None, gen,
                    model.state_dict())
    with pytest.warns(UserWarning, match="another run"):
        assert load_checkpoint(path, "hash-b", model, opt, None, gen) is None
    state = load_checkpoint(path, "hash-a", model, opt, None, gen)
    assert state.next_epoch == 2 and state.seen == 10
    other = torch.nn.Linear(4, 2)
    with pytest.raises(RuntimeError, match="does not fit"):
        load_checkpoint(path, "hash-a", other, torch.optim.Adam(other.parameters()), None, gen)
    assert not path.exists()
