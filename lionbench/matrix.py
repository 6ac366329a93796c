"""Experiment matrices: methods x backbones x datasets x seeds, from flags or a YAML file.

A YAML file holds the same keys as the flags; ``runs:`` may list several blocks, each a matrix of
its own, with the top-level keys as defaults::

    name: quickstart
    methods: [head-tuning, fine-tuning]
    backbones: [demo-resnet]
    datasets: [digits]
    seeds: [0, 1]
    set: {epochs: 5, lr: 0.001}
    runs:
      - {}                                   # the matrix above
      - {methods: [head-tuning], weights: none}   # plus head-tuning from random init

Per-method recipes: a mapping under ``set`` named after a method holds that method's own values,
training keys included (the same as ``--set vpt.lr=1e-2``); it wins over the plain keys::

    set:
      lr: 1.0e-3                          # every method ...
      vpt: {lr: 1.0e-2, prompt_length: 10}   # ... but VPT
      head-tuning: {lr: 1.0e-2}

A block's ``set`` adds to the top-level one key by key (``vpt.lr`` in a block replaces only
VPT's lr). ``lionbench tune`` reads two more keys, in the same shape: ``grid`` (lists of values
to choose from on validation, plain or per method: ``grid: {lr: [1.0e-3, 1.0e-2], vpt:
{prompt_length: [5, 10]}}``) and ``tune_seeds``; ``lionbench run`` refuses a file with a grid.

This module only reads and shapes matrices (plain data, no torch): names and values are checked
against the registries by ``lionbench.runner.plan.expand_matrix`` before anything runs or is
stored (and, by the CLI, against the generated catalogs before torch loads). YAML is read
without aliases (lionbench.config.NoAliasLoader: an alias bomb is refused at once), from files
of at most ``MAX_FILE_BYTES``; a matrix holds at most ``MAX_SEEDS`` seeds and an invocation at
most ``MAX_RUNS`` runs (sane bounds: a typo such as ``--seeds 0-99999`` must not plan for
minutes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lionbench.config import check_finite, load_yaml
from lionbench.errors import ConfigError

MAX_SEED = 2**32 - 1  # numpy's and most libraries' limit
MAX_SEEDS = 1_000  # seeds of one matrix
MAX_RUNS = 10_000  # runs of one invocation (every block of a file together)
MAX_FILE_BYTES = 1 << 20  # a matrix file is a page of YAML
# What a matrix runs when an axis is left out. Offline and on 2 CPU cores the defaults must run
# and still mean something: the paper's own methods (Table 1's rows), on the embedded backbone
# pretrained by lionbench on CIFAR-10 (demo-resnet, 1.5 MB) and scikit-learn's digits (1,797
# real images shipped with scikit-learn), one seed. The paper's backbones and datasets need
# downloads; name them to use them.
DEFAULT_AXES: dict[str, list[Any]] = {
    "methods": ["retraining", "head-tuning", "fine-tuning", "adapter", "bias", "vpt", "lion"],
    "backbones": ["demo-resnet"],
    "datasets": ["digits"],
    "seeds": [0],
}
MATRIX_KEYS = {"name", "methods", "backbones", "datasets", "seeds", "weights", "set", "runs",
               "description", "notes", "grid", "tune_seeds"}


@dataclass
class Matrix:
    """One block of a matrix: the cartesian product of its lists, with shared overrides.

    An empty list is an axis left out: it takes its default when the matrix is expanded
    (``lionbench.runner.plan.DEFAULT_AXES``: the paper's methods, demo-resnet, digits, seed 0).
    """

    methods: list[str] = field(default_factory=list)
    backbones: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    weights: str = "pretrained"
    overrides: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    grid: dict[str, list[Any]] = field(default_factory=dict)  # lionbench tune: key -> values
    tune_seeds: list[int] | None = None  # lionbench tune: seeds of the candidate runs


def fill_default_axes(matrix: Matrix) -> list[str]:
    """Give every empty axis of ``matrix`` its default; one line per default used, as printed
    before the plan (``datasets: digits (default; pass --datasets to choose)``)."""
    notes = []
    for axis, default in DEFAULT_AXES.items():
        if getattr(matrix, axis):
            continue
        setattr(matrix, axis, list(default))
        notes.append(f"{axis}: {','.join(map(str, default))} (default; pass --{axis} to choose)")
    return notes


def check_matrix_size(matrices: list[Matrix]) -> int:
    """The number of runs of ``matrices`` (axes filled), or a ConfigError past the bounds."""
    total = 0
    for m in matrices:
        if len(m.seeds) > MAX_SEEDS:
            raise ConfigError(f"{len(m.seeds):,} seeds in one matrix; at most {MAX_SEEDS:,} "
                              "(e.g. --seeds 0,1,2)")
        total += len(m.methods) * len(m.backbones) * len(m.datasets) * len(m.seeds)
    if total > MAX_RUNS:
        raise ConfigError(f"the matrix has {total:,} runs; at most {MAX_RUNS:,} per invocation: "
                          "fewer seeds or names, or several invocations on one database")
    return total


def split_names(value: str | list[str] | None) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def parse_seeds(value: str | list[int] | int | None) -> list[int]:
    """``"0,1,2"``, ``[0, 1, 2]`` or ``0`` -> a non-empty list of seeds in [0, 2**32); None
    (not given) -> [] (the matrix's default seeds, lionbench.runner.plan.DEFAULT_AXES)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value] if isinstance(value, int) else None
    if items is None and isinstance(value, str) and value.count(",") >= MAX_SEEDS:
        raise ConfigError(f"{value.count(',') + 1:,} seeds given; at most {MAX_SEEDS:,} per "
                          "matrix (e.g. --seeds 0,1,2)")
    if items is not None and len(items) > MAX_SEEDS:
        raise ConfigError(f"{len(items):,} seeds given; at most {MAX_SEEDS:,} per matrix")
    try:
        if isinstance(value, bool) or (items is None and not isinstance(value, str)):
            raise ValueError
        seeds = [_seed(s) for s in (items if items is not None else split_names(value))]
    except ValueError:
        raise ConfigError(f"invalid seeds {value!r}; expected integers in [0, {MAX_SEED}] like "
                          "0,1,2") from None
    if not seeds:
        raise ConfigError("no seeds given; expected integers like 0,1,2")
    return seeds


def _seed(item: Any) -> int:
    if isinstance(item, bool) or isinstance(item, float):
        raise ValueError(item)
    seed = int(str(item).strip())
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(item)
    return seed


def _names(doc: dict[str, Any], key: str, path: Path) -> list[str]:
    """A list of names from a YAML key: a comma-separated string or a list of strings."""
    value = doc.get(key)
    if value is None:
        return []
    if isinstance(value, str) or (isinstance(value, list)
                                  and all(isinstance(v, str) for v in value)):
        return split_names(value)
    raise ConfigError(f"config file '{path}': '{key}' must be a list of names or a "
                      f"comma-separated string, not {value!r}")


def _mapping(value: Any, what: str, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"config file '{path}': '{what}' must be a mapping of key: value "
                          f"(e.g. set: {{epochs: 5, lr: 0.001}}), not {value!r}")
    return value


def coerce_number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-5`` (no dot) as a string; take it as the number it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def flatten_settings(values: Any, path: Path, key: str = "set") -> dict[str, Any]:
    """``{lr: 1e-3, vpt: {lr: 1e-2}}`` -> ``{"lr": 0.001, "vpt.lr": 0.01}`` (numbers coerced)."""
    out: dict[str, Any] = {}
    for name, value in _mapping(values, key, path).items():
        if isinstance(value, dict):  # a method's own block
            for inner, v in _mapping(value, f"{key}: {name}", path).items():
                out[f"{name}.{inner}"] = _coerce_all(v)
        else:
            out[str(name)] = _coerce_all(value)
    return out


def _coerce_all(value: Any) -> Any:
    return [coerce_number(v) for v in value] if isinstance(value, list) else coerce_number(value)


def parse_grid(items: list[str] | None) -> dict[str, list[Any]]:
    """``--grid lr=1e-3,1e-2 --grid vpt.prompt_length=5,10`` -> ``{"lr": [0.001, 0.01], ...}``."""
    grid: dict[str, list[Any]] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not sep or not key.strip() or not values:
            raise ConfigError(f"malformed --grid '{item}'; expected KEY=V1,V2,..., e.g. "
                              "--grid lr=1e-3,1e-2")
        parsed = [coerce_number(load_yaml(v, f"malformed --grid '{item}': '{v}'"))
                  for v in values]
        check_finite(key.strip(), parsed, f"--grid {item}")
        grid[key.strip()] = parsed
    return grid


def load_matrix_file(path: Path, overrides: dict[str, Any] | None = None) -> list[Matrix]:
    """Read a YAML matrix; ``overrides`` (from ``--set``) apply on top of the file's ``set``."""
    file = Path(path)
    try:
        if not file.exists():
            raise FileNotFoundError
        if not file.is_file():
            raise ConfigError(f"config file '{path}' is not a regular file; give a YAML file")
        if file.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"config file '{path}' is {file.stat().st_size:,} bytes; a matrix "
                              f"file is at most {MAX_FILE_BYTES:,}")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc}") from None
    doc = load_yaml(text, f"config file '{path}'")
    if not isinstance(doc, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping with keys "
                          f"{', '.join(sorted(MATRIX_KEYS))}")
    unknown = set(doc) - MATRIX_KEYS
    if unknown:
        raise ConfigError(f"config file '{path}': unknown keys {', '.join(sorted(unknown))}; "
                          f"valid: {', '.join(sorted(MATRIX_KEYS))}")
    blocks = doc.get("runs") or [{}]
    if not isinstance(blocks, list):
        raise ConfigError(f"config file '{path}': 'runs' must be a list of blocks (mappings), "
                          f"not {blocks!r}")
    matrices = []
    for block in blocks:
        if not isinstance(block, dict) or set(block) - MATRIX_KEYS or "runs" in block:
            raise ConfigError(f"config file '{path}': each entry of 'runs' must be a mapping "
                              f"with keys among {', '.join(sorted(MATRIX_KEYS - {'runs'}))}")
        merged = {**doc, **block}
        sets = flatten_settings(doc.get("set"), path) | flatten_settings(block.get("set"), path)
        for key, value in sets.items():
            check_finite(key, value, f"set {key}={value!r} in '{path}'")
        sets |= dict(overrides or {})
        grid = (flatten_settings(doc.get("grid"), path, "grid")
                | flatten_settings(block.get("grid"), path, "grid"))
        bad = [k for k, v in grid.items() if not isinstance(v, list) or not v]
        if bad:
            raise ConfigError(f"config file '{path}': grid values must be non-empty lists; "
                              f"see {', '.join(bad)}")
        for key, values in grid.items():
            check_finite(key, values, f"grid {key}={values!r} in '{path}'")
        weights = merged.get("weights", "pretrained")
        if not isinstance(weights, str):
            raise ConfigError(f"config file '{path}': 'weights' must be pretrained, none or a "
                              f"file path, not {weights!r}")
        try:
            seeds = parse_seeds(merged.get("seeds"))
            tune_seeds = merged.get("tune_seeds")
            tune_seeds = None if tune_seeds is None else parse_seeds(tune_seeds)
        except ConfigError as exc:
            raise ConfigError(f"config file '{path}': {exc}") from None
        matrices.append(Matrix(
            methods=_names(merged, "methods", path),
            backbones=_names(merged, "backbones", path),
            datasets=_names(merged, "datasets", path),
            seeds=seeds, weights=weights, overrides=sets,
            name=str(doc.get("name", Path(path).stem)), grid=grid, tune_seeds=tune_seeds))
    return matrices


# --- LION's ablations (paper Table 4) and sensitivity sweeps (Figure 3) -------------------------
VARIANTS = ("lion-p1", "lion-p2", "lion-r")
TABLE4_ORDER = ("lion-p1", "lion-p2", "lion-r", "lion")


def parse_values(text: str | None, kind: type, name: str) -> list[Any]:
    if not text:
        return []
    try:
        return [kind(v) for v in split_names(text)]
    except ValueError:
        raise ConfigError(f"invalid --{name} '{text}'; expected a comma-separated list of "
                          f"{kind.__name__}s, e.g. {'0.2,0.4' if kind is float else '1,2'}"
                          ) from None


def create_ablation_matrices(backbones: str | None = None, datasets: str | None = None, *,
                             variant: str | None = None,
                             taus: str | None = None, deq_layers: str | None = None,
                             seeds: str | None = None, overrides: dict[str, Any] | None = None,
                             weights: str = "pretrained") -> list[Matrix]:
    """Matrices for the requested ablation(s); at least one of variant/taus/deq_layers.
    Backbones, datasets and seeds left out take the matrix defaults (runner.plan.DEFAULT_AXES)."""
    if variant is None and not taus and not deq_layers:
        raise ConfigError("nothing to ablate; give --variant lion-p1|lion-p2|lion-r|all, "
                          "--tau VALUES or --deq-layers VALUES")
    if variant is not None and variant not in (*VARIANTS, "all"):
        raise ConfigError(f"unknown variant '{variant}'; valid: {', '.join(VARIANTS)}, all")
    base = dict(backbones=split_names(backbones), datasets=split_names(datasets),
                seeds=parse_seeds(seeds), weights=weights, name="ablation")
    overrides = dict(overrides or {})
    matrices = []
    if variant is not None:
        methods = ["lion", *(VARIANTS if variant == "all" else [variant])]
        matrices.append(Matrix(methods=methods, overrides=overrides, **base))
    for tau in parse_values(taus, float, "tau"):
        matrices.append(Matrix(methods=["lion"], overrides={**overrides, "lion.tau": tau}, **base))
    for layers in parse_values(deq_layers, int, "deq-layers"):
        matrices.append(Matrix(methods=["lion"],
                               overrides={**overrides, "lion.deq_layers": layers}, **base))
    return matrices
