"""Registry of PETL methods: ``register_method``, ``get_method``, ``list_methods``,
``create_model``.

Each built-in method lives in its own module here and registers itself at import. To add a method,
read :mod:`lionbench.methods.base`, write ``methods/<name>.py``, add its module name to
``_BUILTIN_MODULES`` and rewrite the catalog the reports read (``python -m lionbench.methods``).

The catalog (``lionbench/assets/methods.json``, :func:`describe_methods`) is the registry as plain
data: each method's description, default settings, whether it starts from pretrained weights,
and the schema of its settings (kind, range or choices, help: lionbench.settings). Tables and
plots label a run by what differs from those defaults, and the CLI names methods and checks
``--set`` values against the schema, all without importing torch; ``tests/test_house.py`` fails
when the file and the registry disagree.
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from lionbench.errors import ConfigError, UnknownNameError
from lionbench.settings import schema_of

from .base import MethodConfig, ParameterCount, PetlModel, count_parameters

__all__ = [
    "MethodConfig", "MethodSpec", "ParameterCount", "PetlModel", "count_parameters",
    "create_model", "describe_methods", "get_method", "list_methods", "register_method",
    "write_method_catalog",
]

# lionbench's package data (methods/ is installed as lionbench.methods but lives beside it)
CATALOG_PATH = Path(str(importlib.resources.files("lionbench"))) / "assets" / "methods.json"


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its model class, default config values and how it starts."""

    name: str
    model_class: type[PetlModel]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = True  # False: the backbone starts from random init (retraining)
    paper_name: str = ""
    source: str = ""  # where the method comes from: its paper, and the library that runs it

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
_BUILTIN_MODULES = ["retraining", "head_tuning", "fine_tuning", "lion", "adapter", "bias", "vpt",
                    "lora", "ia3", "loha", "lokr", "ssf", "adaptformer"]
# Sources of the methods whose modules do not name one (LION's own family).
_SOURCES = {name: "Wang et al., Implicit Vision Prompt Tuning (LION); lionbench's reference "
                  "implementation" for name in ("lion", "lion-p1", "lion-p2", "lion-r")}


def register_method(name: str, model_class: type[PetlModel], *, description: str,
                    defaults: dict[str, Any] | None = None, pretrained: bool = True,
                    paper_name: str = "", source: str = "") -> MethodSpec:
    """Register a method under ``name``; a variant is the same class with other defaults.
    ``source`` names the paper it comes from and the library that runs it, if any."""
    spec = MethodSpec(name, model_class, description, dict(defaults or {}), pretrained,
                      paper_name or name, source or _SOURCES.get(name, ""))
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


def describe_methods() -> dict[str, dict[str, Any]]:
    """Every registered method as plain data: ``{name: {order, pretrained, paper_name,
    source, description, settings, schema}}``: ``order`` is :func:`list_methods`'s, ``settings`` the
    default config (``MethodConfig.to_dict``), ``schema`` the settings' declarations
    (lionbench.settings.schema_of; each ``default`` the method's own, so a variant shows its
    defaults)."""
    out = {}
    for order, name in enumerate(list_methods()):
        spec = _REGISTRY[name]
        defaults = spec.make_config().to_dict()
        schema = schema_of(spec.config_class)
        for entry in schema["settings"]:
            entry["default"] = defaults[entry["name"]]
        out[name] = {"order": order, "pretrained": spec.pretrained, "paper_name": spec.paper_name,
                     "source": spec.source, "description": spec.description,
                     "settings": defaults, "schema": schema}
    return out


def write_method_catalog(path: Path = CATALOG_PATH) -> Path:
    """Write :func:`describe_methods` as JSON (sorted keys, one method per block)."""
    path.write_text(json.dumps(describe_methods(), indent=1, sort_keys=True) + "\n")
    return path


_load_builtins()
