"""Dataset registry: ``register_dataset``, ``get_dataset``, ``list_datasets``.

Names are registered specs (``digits``, ``cifar10``, ...), ``folder:PATH`` for a user's tree,
or a registered name with a derivation suffix (see ``register_derivation``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lionbench.errors import UnknownNameError

from .base import DatasetSpec, ImageSet
from .builtin import BUILTIN_DATASETS, folder_spec

__all__ = ["DatasetSpec", "ImageSet", "get_dataset", "list_datasets", "register_dataset",
           "register_derivation"]

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


def get_dataset(name: str) -> DatasetSpec:
    """The spec for ``name``, or an error listing the valid names."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for pattern, build in _DERIVATIONS:
        match = pattern.fullmatch(name)
        if match:
            return build(get_dataset(match.group("base")), match)
    if name.startswith("folder:"):
        return folder_spec(name[len("folder:"):])
    raise UnknownNameError("dataset", name, list(_REGISTRY) + ["folder:PATH"])


for _spec in BUILTIN_DATASETS:
    register_dataset(_spec)
