"""Dataset registry: ``register_dataset``, ``get_dataset``, ``list_datasets``.

Names are registered specs (``digits``, ``cifar10``, ``vtab-caltech101``, ...), ``folder:PATH``
for a user's tree, ``vtab:PATH`` for one VTAB-1k task folder (vtab.py),
or either with derivation suffixes (``-lt-ir100``, ``-8shot``; see ``register_derivation``).
A ``folder:PATH`` whose PATH exists as written is taken literally, so a folder may have a name
that looks like a suffix (``folder:data/pets-8shot``); otherwise suffixes are peeled off the end
(``folder:data/cifar10-jpeg-lt-ir100`` is ``data/cifar10-jpeg`` made long-tailed).

data owns datasets: specs and the registry (base.py, here), the built-in and folder sets
(builtin.py), the paper's suite (suite.py), derived long-tailed and K-shot sets (derive.py),
splits (split.py), decoding and transforms (pipeline.py), the catalog behind
``lionbench datasets`` (catalog.py) and a dataset's digest (digest.py). May import only the
core modules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from lionbench.errors import UnknownNameError

from .base import DatasetSpec, ImageSet
from .builtin import BUILTIN_DATASETS, folder_spec
from .derive import DERIVATIONS
from .suite import SUITE_DATASETS
from .vtab import VTAB_DATASETS, expand_suites
from .vtab import path_spec as vtab_path_spec

__all__ = ["DatasetSpec", "ImageSet", "derivation_patterns", "expand_suites", "get_dataset",
           "list_datasets",
           "register_dataset", "register_derivation"]

_REGISTRY: dict[str, DatasetSpec] = {}
# (pattern on the full name, builder(base_spec, match) -> spec); pattern group 'base' names the base
_DERIVATIONS: list[tuple[re.Pattern[str], Callable[[DatasetSpec, re.Match[str]], DatasetSpec]]] = []


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    _REGISTRY[spec.name] = spec
    return spec


def register_derivation(pattern: str,
                        build: Callable[[DatasetSpec, re.Match[str]], DatasetSpec]) -> None:
    """Register a name suffix such as ``-lt-ir100``; ``pattern`` must capture ``(?P<base>...)``."""
    _DERIVATIONS.append((re.compile(pattern), build))


def list_datasets() -> list[str]:
    return list(_REGISTRY)


def derivation_patterns() -> list[str]:
    """The name patterns of the derived datasets (``(?P<base>.+)-lt-ir(?P<ratio>\\d+)``, ...)."""
    return [pattern.pattern for pattern, _ in _DERIVATIONS]


def get_dataset(name: str) -> DatasetSpec:
    """The spec for ``name``, or an error listing the valid names."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    folder = name.startswith("folder:")
    if folder and Path(name[len("folder:"):]).expanduser().is_dir():
        return folder_spec(name[len("folder:"):])
    vtab = name.startswith("vtab:")
    if vtab and Path(name[len("vtab:"):]).expanduser().is_dir():
        return vtab_path_spec(name[len("vtab:"):])
    for pattern, build in _DERIVATIONS:
        match = pattern.fullmatch(name)
        if match:
            return build(get_dataset(match.group("base")), match)
    if folder:
        return folder_spec(name[len("folder:"):])
    if vtab:
        return vtab_path_spec(name[len("vtab:"):])
    raise UnknownNameError("dataset", name, list(_REGISTRY) + [
        "vtab-1k (its 19 tasks)", "folder:PATH", "vtab:PATH", "NAME-lt-irR", "NAME-Kshot"])


for _spec in BUILTIN_DATASETS + SUITE_DATASETS + VTAB_DATASETS:
    register_dataset(_spec)
for _pattern, _build in DERIVATIONS:
    register_derivation(_pattern, _build)
