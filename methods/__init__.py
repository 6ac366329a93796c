"""Registry of PETL methods: ``register_method``, ``get_method``, ``list_methods``,
``create_model``.

Each built-in method lives in its own module here and registers itself at import. To add a method,
read :mod:`lionbench.methods.base`, write ``methods/<name>.py`` and add its module name to
``_BUILTIN_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lionbench.errors import ConfigError, UnknownNameError

from .base import MethodConfig, ParameterCount, PetlModel, count_parameters

__all__ = [
    "MethodConfig", "MethodSpec", "ParameterCount", "PetlModel", "count_parameters",
    "create_model", "get_method", "list_methods", "register_method",
]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its model class, default config values and how it starts."""

    name: str
    model_class: type[PetlModel]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = True  # False: the backbone starts from random init (retraining)
    paper_name: str = ""

    @property
    def config_class(self) -> type[MethodConfig]:
        return self.model_class.config_class

    def make_config(self, overrides: dict[str, Any] | None = None) -> MethodConfig:
        values = {**self.defaults, **(overrides or {})}
        unknown = set(values) - self.config_class.field_names()
        if unknown:
            valid = ", ".join(sorted(self.config_class.field_names())) or "(none)"
            raise ConfigError(f"method '{self.name}' has no setting {', '.join(sorted(unknown))}; "
                              f"valid: {valid}")
        try:
            return self.config_class(**values)
        except TypeError as exc:
            raise ConfigError(f"method '{self.name}': {exc}") from None


_REGISTRY: dict[str, MethodSpec] = {}
_BUILTIN_MODULES = ["retraining", "head_tuning", "fine_tuning", "lion", "adapter", "bias", "vpt"]


def register_method(name: str, model_class: type[PetlModel], *, description: str,
                    defaults: dict[str, Any] | None = None, pretrained: bool = True,
                    paper_name: str = "") -> MethodSpec:
    """Register a method under ``name``; a variant is the same class with other defaults."""
    spec = MethodSpec(name, model_class, description, dict(defaults or {}), pretrained,
                      paper_name or name)
    spec.make_config()  # the defaults must validate
    _REGISTRY[name] = spec
    return spec


# The paper's row order (Tables 1-4); methods registered by users come after, in their order.
_PAPER_ORDER = ["retraining", "head-tuning", "fine-tuning", "adapter", "bias", "vpt",
                "vpt-shallow", "lion", "lion-p1", "lion-p2", "lion-r"]


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{module}")


def list_methods() -> list[str]:
    """Registered method names: the paper's row order, then the others as registered."""
    known = [m for m in _PAPER_ORDER if m in _REGISTRY]
    return known + [m for m in _REGISTRY if m not in _PAPER_ORDER]


def get_method(name: str) -> MethodSpec:
    """The spec of a registered method, or an error listing the valid names."""
    if name not in _REGISTRY:
        raise UnknownNameError("method", name, _REGISTRY)
    return _REGISTRY[name]


def create_model(name: str, backbone: nn.Module, overrides: dict[str, Any] | None = None
                 ) -> PetlModel:
    """Wrap ``backbone`` (a timm model with its classifier sized) with method ``name``."""
    spec = get_method(name)
    return spec.model_class(backbone, spec.make_config(overrides))


_load_builtins()
