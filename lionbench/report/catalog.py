"""The registered methods as plain data, for labels: default settings and starting weights.

Reports name a run by what differs from its method's defaults (``lion (tau=0.2)``) and by
weights other than the method's usual ones (``head-tuning (weights=none)``). Both come from
``lionbench/assets/methods.json``, the registry written out by ``python -m lionbench.methods``,
so that rendering a table never imports torch or the method modules. A method the file does not
know (registered by a user who has not rewritten it) counts as having no defaults: its settings
never make a label, and it starts from pretrained weights.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def load_method_catalog() -> dict[str, dict[str, Any]]:
    """``{method: {"pretrained": bool, "paper_name": str, "settings": {...}}}``."""
    text = (resources.files("lionbench") / "assets" / "methods.json").read_text()
    return json.loads(text)


def method_defaults(method: str) -> dict[str, Any] | None:
    """The method's default settings, or None for a method the catalog does not know."""
    entry = load_method_catalog().get(method)
    return dict(entry["settings"]) if entry else None


def default_weights(method: str) -> str:
    """The weights a method normally starts from: none for retraining, pretrained otherwise."""
    entry = load_method_catalog().get(method)
    return "pretrained" if entry is None or entry["pretrained"] else "none"


def non_default_settings(method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The run's method settings that differ from the catalog's defaults, in the run's order."""
    defaults = method_defaults(method) or {}
    return {k: v for k, v in settings.items() if k in defaults and defaults[k] != v}
