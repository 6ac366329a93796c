"""The registries as plain data: names, settings and weights arguments checked without torch.

Why: importing torch and timm takes seconds (6 s on a loaded 2-core machine), and a typo in a
method name, a malformed ``--set`` or an unknown dataset must be refused at once, before any of
that. Each registry writes itself out as a JSON file in ``lionbench/assets/`` (generated, never
edited by hand; ``tests/test_house.py`` fails while one is stale):

- ``methods.json``: every method, its defaults and the schema of its settings
  (``python -m lionbench.methods``; lionbench.settings);
- ``backbones.json``: the built-in backbones (timm name, input size, description) and every
  ``timm.list_models()`` name, with the timm version they came from
  (``python -m lionbench.backbones``). With another timm installed the names are asked of timm
  itself (which imports torch): a name is never refused because the list is old;
- ``datasets.json``: every registered dataset (classes, description) and the name patterns of
  the derived ones, ``-lt-irR`` and ``-Kshot`` (``python -m lionbench.data``).

The full checks run again when the plan is built from the registries themselves; these catalogs
only make the refusal fast. :func:`check_weights_argument` likewise tells, from a file's first
bytes, a weights file from anything else (whether it fits the backbone needs the model: torch).
Core module: imports nothing of lionbench but errors and settings.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import struct
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from lionbench.errors import UnknownNameError, WeightsError
from lionbench.settings import check_values

ASSETS = Path(__file__).parent / "assets"
DERIVED_FORMS = ["folder:PATH", "vtab:PATH", "NAME-lt-irR", "NAME-Kshot"]


@cache
def load_asset(name: str) -> Any:
    return json.loads((ASSETS / name).read_text(encoding="utf-8"))


# --- methods -----------------------------------------------------------------------------------
def method_catalog() -> dict[str, dict[str, Any]]:
    """``{method: {order, pretrained, paper_name, description, settings, schema}}``."""
    return load_asset("methods.json")


def method_names() -> list[str]:
    catalog = method_catalog()
    return sorted(catalog, key=lambda n: catalog[n].get("order", 0))


def method_entry(name: str) -> dict[str, Any]:
    """The catalog entry of method ``name``, or UnknownNameError listing the valid names."""
    catalog = method_catalog()
    if name not in catalog:
        raise UnknownNameError("method", name, catalog)
    return catalog[name]


def method_setting_names(name: str) -> set[str]:
    return {s["name"] for s in method_entry(name)["schema"]["settings"]}


def check_method_values(name: str, values: dict[str, Any],
                        base: dict[str, Any] | None = None) -> None:
    """Check method settings ``values`` against the method's schema (its rules with the
    method's defaults, updated by ``base``, for the settings not in ``values``)."""
    entry = method_entry(name)
    check_values(entry["schema"], values, {**entry["settings"], **(base or {})})


# --- backbones ---------------------------------------------------------------------------------
def backbone_catalog() -> dict[str, Any]:
    """``{"timm": version, "builtin": [{name, timm_name, image_size, description}, ...],
    "timm_models": [...]}``."""
    return load_asset("backbones.json")


def installed_timm_version() -> str | None:
    try:
        return importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        return None


@lru_cache(maxsize=1)
def timm_model_names() -> frozenset[str]:
    """Every ``timm.list_models()`` name: from the catalog when it was written by the timm
    installed here, else from timm itself (slower: imports torch)."""
    catalog = backbone_catalog()
    if catalog.get("timm") == installed_timm_version():
        return frozenset(catalog["timm_models"])
    import timm

    return frozenset(timm.list_models())


def check_backbone(name: str) -> None:
    """A built-in name or a timm architecture (optionally ``arch.tag``); else UnknownNameError."""
    builtin = [b["name"] for b in backbone_catalog()["builtin"]]
    if name in builtin or name.split(".")[0] in timm_model_names():
        return
    raise UnknownNameError("backbone", name, list(builtin) + sorted(timm_model_names()))


# --- datasets ----------------------------------------------------------------------------------
def dataset_catalog() -> dict[str, Any]:
    """``{"datasets": [{name, classes, description}, ...], "derivations": [pattern, ...],
    "prefixes": ["folder:", "vtab:"], "suites": {"vtab-1k": [task, ...]}}``."""
    return load_asset("datasets.json")


def check_dataset(name: str) -> None:
    """What ``lionbench.data.get_dataset`` accepts (and a suite such as ``vtab-1k``, which a
    matrix expands into its tasks), decided from the catalog: a registered name, ``folder:PATH``
    or ``vtab:PATH``, or any of them with derivation suffixes; else UnknownNameError."""
    catalog = dataset_catalog()
    names = [d["name"] for d in catalog["datasets"]]
    if name in names or name in catalog.get("suites", {}):
        return
    prefix = next((p for p in catalog.get("prefixes", []) if name.startswith(p)), None)
    if prefix and Path(name[len(prefix):]).expanduser().is_dir():
        return
    for pattern in catalog["derivations"]:
        match = re.fullmatch(pattern, name)
        if match:
            check_dataset(match.group("base"))
            return
    if prefix:
        return
    suites = [f"{s} (its {len(tasks)} tasks)" for s, tasks in catalog.get("suites", {}).items()]
    raise UnknownNameError("dataset", name, names + suites + DERIVED_FORMS)


def expand_dataset_suites(names: list[str]) -> list[str]:
    """A suite name on the datasets axis is its tasks (``lionbench.data.expand_suites``)."""
    suites = dataset_catalog().get("suites", {})
    out: list[str] = []
    for name in names:
        out += suites.get(name, [name])
    return list(dict.fromkeys(out))


# --- weights -----------------------------------------------------------------------------------
NAMED_WEIGHTS = ("pretrained", "timm", "none")
WEIGHTS_HELP = ("--weights takes 'pretrained', 'none', or a path to a .safetensors / torch "
                "state-dict file")


def check_weights_argument(weights: str) -> None:
    """``pretrained``, ``timm``, ``none``, or a readable regular file that starts like a
    safetensors file or a torch checkpoint (a zip archive, or a pickle for the legacy format);
    a WeightsError naming the problem otherwise."""
    if weights in NAMED_WEIGHTS:
        return
    path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsError(f"weights file '{weights}' not found; {WEIGHTS_HELP}")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a device, FIFO or socket)"
        raise WeightsError(f"weights '{weights}' is {kind}; {WEIGHTS_HELP}")
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"cannot read weights file '{weights}': {exc.strerror or exc}"
                           ) from None
    if not _looks_like_weights(head, size):
        raise WeightsError(f"cannot read weights file '{weights}' (neither safetensors nor a "
                           "torch checkpoint); give a .safetensors file or a torch state dict "
                           "of tensors")


def _looks_like_weights(head: bytes, size: int) -> bool:
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch zip; legacy pickle
        return True
    if len(head) == 9:  # safetensors: little-endian u64 header length, then a JSON object
        (length,) = struct.unpack("<Q", head[:8])
        return 2 <= length <= size - 8 and head[8:9] == b"{"
    return False


__all__ = ["NAMED_WEIGHTS", "backbone_catalog", "check_backbone", "check_dataset",
           "check_method_values", "check_weights_argument", "dataset_catalog",
           "expand_dataset_suites", "load_asset",
           "method_catalog", "method_entry", "method_names", "method_setting_names",
           "timm_model_names"]
