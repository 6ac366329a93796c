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


def test_checkpoint_of_another_run_is_ignored_and_a_misfit_one_discarded(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "x.pt"
    save_checkpoint(path, "hash-a", LoopState(next_epoch=2, seen=10), model, opt, None, gen,
                    model.state_dict())
    with pytest.warns(UserWarning, match="another run"):
        assert load_checkpoint(path, "hash-b", model, opt, None, gen) is None
    save_checkpoint(path, "hash-a", LoopState(next_epoch=2, seen=10), model, opt, None, gen,
                    model.state_dict())
    state = load_checkpoint(path, "hash-a", model, opt, None, gen)
    assert state.next_epoch == 2 and state.seen == 10
    # a checkpoint whose shapes do not fit (code changed under it) is discarded like an
    # unreadable one: one line, the run starts over, the model untouched
    other = torch.nn.Linear(4, 2)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.warns(UserWarning) as caught:
        assert load_checkpoint(path, "hash-a", other, torch.optim.Adam(other.parameters()),
                               None, gen) is None
    message = str(caught[0].message)
    assert "does not fit" in message and "weight" in message and "\n" not in message
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    assert not path.exists()


def test_unreadable_checkpoint_warns_in_one_line_without_torch_advice(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "x.pt"
    torch.save({"format": 1, "obj": object.__new__(LoopState)}, path)  # not weights-only safe
    with pytest.warns(UserWarning) as caught:
        assert load_checkpoint(path, "hash-a", model, opt, None, gen) is None
    message = str(caught[0].message)
    assert "unreadable" in message and "weights_only" not in message and "\n" not in message
    assert not path.exists()
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        assert load_checkpoint(path, "hash-a", model, opt, None, gen) is None


def test_optimizer_state_of_other_shapes_is_discarded_before_anything_loads(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "x.pt"
    save_checkpoint(path, "h", LoopState(next_epoch=1), model, opt, None, gen,
                    model.state_dict())
    state = torch.load(path, weights_only=True)
    state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(5, 5)  # shape of another model
    torch.save(state, path)
    fresh = torch.optim.Adam(model.parameters())
    with pytest.warns(UserWarning, match="optimizer state 'exp_avg'"):
        assert load_checkpoint(path, "h", model, fresh, None, gen) is None
    assert fresh.state_dict()["state"] == {}
