"""Shared fixtures: tiny, fast settings (digits, timm's test_resnet at 16 px, one epoch)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)  # small ops: a second thread only adds contention on 2 cores

TINY = {"epochs": 1, "image_size": 16, "max_train_samples": 300}
TINY_SET = [f"--set={k}={v}" for k, v in TINY.items()]


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"
