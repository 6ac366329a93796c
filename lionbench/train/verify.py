"""What a worker checks before it trains a run: the weights and data are those of the run.

Why: a run's identity holds the *digest* of its weights (``weights_id``), not the path a worker
loads, and names its dataset, not the images behind the name. A file rewritten since planning,
a path that names other bytes on a cluster node, or an import crafted or made elsewhere could
otherwise train a run on other weights or data while its record still names the originals.
So before training, every worker resolves both *here, now* and compares:

- weights: the digest of the file it would load must be the run's ``weights_id``
  (:func:`lionbench.backbones.verify_weights_id`; ``train_run`` checks the very bytes it loads
  again);
- data: the digest of the dataset as read here (:mod:`lionbench.data.digest`) must be the one
  recorded when the run was planned. A run planned without one (its data was absent then)
  records the digest of what it trains on; an *imported* run without one is refused, since
  nothing says its data is the data here.

A mismatch is a one-line error stored as the run's failure reason; ``lionbench run ... --force``
on the run is how a user says "train it here, on this machine's data".
"""

from __future__ import annotations

from pathlib import Path

from lionbench.backbones import verify_weights_id
from lionbench.config import RunConfig
from lionbench.data import get_dataset
from lionbench.data.digest import dataset_digest
from lionbench.errors import DatasetError
from lionbench.methods import get_method


def check_run_inputs(config: RunConfig, data_root: Path | None, data_id: str | None = None,
                     imported_from: str | None = None) -> str:
    """Raise WeightsError / DatasetError unless the weights and data here are the run's; return
    the digest of the data here (stored with the run)."""
    weights = config.weights if get_method(config.method).pretrained else "none"
    verify_weights_id(config.backbone, weights, config.weights_id)
    local = dataset_digest(get_dataset(config.dataset), data_root)
    where = f" (imported from {imported_from})" if imported_from else ""
    if data_id is None and imported_from:
        raise DatasetError(f"run imported from {imported_from} records no data digest, so "
                           f"nothing says '{config.dataset}' here is the data it was planned on; "
                           "`lionbench run ... --force` on it trains it on the data here")
    if data_id is not None and data_id != local:
        raise DatasetError(f"dataset '{config.dataset}' is {local} here, not {data_id} as when "
                           f"the run was planned{where}: other files or sizes; refusing to train "
                           "on other data (`lionbench run ... --force` trains it on the data here)")
    return local
