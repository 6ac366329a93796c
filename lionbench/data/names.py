"""The dataset registry as plain data (``lionbench/assets/datasets.json``), for checks without
torch.

``lionbench run -d NAME`` must refuse an unknown dataset at once, before torch loads
(lionbench.catalog reads this file). It holds every registered dataset (classes, description)
and the patterns of the derived names (``-lt-irR``, ``-Kshot``). Rewrite it after registering a
dataset: ``python -m lionbench.data`` (``tests/test_house.py`` fails while it is stale).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import derivation_patterns, expand_suites, get_dataset, list_datasets
from .vtab import SUITE_NAME

# names whose rest is a path: folder:PATH (a user's tree), vtab:PATH (a VTAB-1k task folder)
PATH_PREFIXES = ["folder:", "vtab:"]

CATALOG_PATH = Path(__file__).resolve().parent.parent / "assets" / "datasets.json"


def describe_dataset_names() -> dict[str, Any]:
    """``{"datasets": [{name, classes, description}, ...], "derivations": [pattern, ...],
    "prefixes": [...], "suites": {name: [task, ...]}}``, datasets in the registry's order."""
    return {"datasets": [{"name": name, "classes": get_dataset(name).num_classes,
                          "description": get_dataset(name).description}
                         for name in list_datasets()],
            "derivations": derivation_patterns(), "prefixes": PATH_PREFIXES,
            "suites": {SUITE_NAME: expand_suites([SUITE_NAME])}}


def write_dataset_catalog(path: Path = CATALOG_PATH) -> Path:
    path.write_text(json.dumps(describe_dataset_names(), indent=1, sort_keys=True) + "\n")
    return path
