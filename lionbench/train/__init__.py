"""train: the training loop and what it needs around it.

Owns the loop (loop.py: ``train_run``, one function that reads top to bottom), epoch
checkpoints (checkpoint.py), the head-tuning feature cache (feature_cache.py), device choice,
thread count and the runtime stored with each run (device.py), opt-in ``torch.compile``
(accel.py), pretraining a backbone (pretrain.py), parameter counts per method and backbone
(params.py), run configs from names (configs.py) and the check that a run's weights and data
are its own before a worker trains it (verify.py). May import methods, data, store and the
core modules; never the runner, executors, reports or the CLI.
"""

from .device import device_name, select_device
from .loop import RunResult, evaluate, train_run

__all__ = ["RunResult", "device_name", "evaluate", "select_device", "train_run"]
