"""Run configurations: validated dataclasses, ``--set`` overrides, and the run identity hash.

A run's identity is the SHA-256 of its canonical config (method and its resolved settings,
backbone, weights identity, dataset, seed, training settings, data pipeline) plus
``PROTOCOL_VERSION``. Its *cell* is the same without the seed: runs of one cell differ only by
seed, and a comparison table averages them into one cell. Bump the protocol version whenever a
change to the code would change the numbers of an otherwise identical config (split rule,
selection rule, transforms): old results are then flagged instead of silently mixed with new
ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from lionbench.errors import ConfigError
from lionbench.settings import check_settings, setting

# 2: folder datasets read their own val/ or validation/ split (version 1 held validation out of
#    train/ even when val/ existed) and ignore dot-folders; VPT on Swin averages the prompt
#    outputs with the patch tokens, as VPT's reference code does (version 1: patches only).
#    LION v2 (issue 14): robust training ranks each prompt tensor on its own, `contraction` is
#    the exact Lipschitz bound of a unit (operator-normalised weights). A stored LION run of
#    protocol 1 used other equations under the same setting names, so it is flagged (†).
PROTOCOL_VERSION = 2

AUGMENTATIONS = ("auto", "none", "flip-crop", "crop")
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Training hyperparameters shared by every method (paper Sec. 4.3: Adam, batch 64).

    The paper trains with learning rate 1e-5 and does not state epochs; the default here (1e-3,
    10 epochs) suits the small embedded quickstart, and the paper presets in ``benchmarks/`` set
    the paper's values explicitly. Every field is declared in the settings vocabulary
    (lionbench.settings): its kind, bounds and help.
    """

    epochs: int = setting(10, low=1, high=100_000, help="training epochs; the best epoch on "
                          "validation is the run's model")
    batch_size: int = setting(64, low=1, high=65_536, help="images per training step")
    lr: float = setting(1e-3, low=0.0, high=100.0, low_open=True, help="learning rate (Adam)")
    weight_decay: float = setting(0.0, low=0.0, high=100.0, help="Adam's weight decay")
    val_fraction: float = setting(0.1, low=0.0, high=1.0, low_open=True, high_open=True,
                                  help="share of the train split held out for validation "
                                  "(datasets without a validation split of their own)")
    image_size: int | None = setting(None, kind="int", optional=True, low=1, high=8192,
                                     help="input size in pixels; none: the backbone's "
                                     "pretrained input size")
    augment: str = setting("auto", choices=AUGMENTATIONS, help="training augmentation; auto: "
                           "the dataset's default (no flips for digits)")
    eval_batch_size: int = setting(256, low=1, high=65_536, help="images per evaluation step")
    max_train_samples: int | None = setting(None, kind="int", optional=True, low=1,
                                            high=1_000_000_000, help="a seeded, stratified "
                                            "subset of the train split of this size; none: all")
    lr_schedule: str = setting("constant", choices=SCHEDULES, help="constant, or cosine (per "
                               "step, to zero at the last epoch)")
    train_on_val: bool = setting(False, help="train on the train and validation images "
                                 "together and keep the last epoch: nothing is held out, so "
                                 "nothing is selected (VTAB-1k's final runs on train800val200); "
                                 "in a run's identity only when true")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_settings(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


@dataclass
class RunConfig:
    """Everything that determines one run's numbers; ``run_hash`` is its identity."""

    method: str
    backbone: str
    dataset: str
    seed: int = 0
    weights: str = "pretrained"  # pretrained | none | a file path (as given)
    weights_id: str = "pretrained"  # what identifies the weights: 'none', 'timm:<tag>', 'sha256:..'
    method_config: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    pipeline: dict[str, Any] = field(default_factory=dict)  # resolved transforms, recorded

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["train"]["train_on_val"]:  # the default: absent, as in every older run
            del d["train"]["train_on_val"]
        d["protocol_version"] = PROTOCOL_VERSION
        return d

    def identity(self) -> dict[str, Any]:
        """The fields that make up the hash (``weights`` as typed is replaced by its identity)."""
        return identity_of(self.to_dict())

    @property
    def run_hash(self) -> str:
        return config_hash(self.identity())

    @property
    def cell_hash(self) -> str:
        return cell_hash_of(self.to_dict())


def identity_of(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config (``RunConfig.to_dict``) without ``weights`` as typed: what is hashed."""
    return {k: v for k, v in stored.items() if k != "weights"}


def run_hash_of(stored: dict[str, Any]) -> str:
    """The run hash of a stored config (what ``RunConfig.run_hash`` gave when it was stored)."""
    return config_hash(identity_of(stored))


def cell_hash_of(stored: dict[str, Any]) -> str:
    """The hash of a stored config's identity without its seed: one table cell."""
    return config_hash({k: v for k, v in identity_of(stored).items() if k != "seed"})


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


class NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (``*name``, and ``<<: *name`` merges): a few lines of
    nested aliases expand to billions of nodes (the "billion laughs"), which ``safe_load``
    builds in full, for minutes and gigabytes. Matrices and ``--set`` values never need them,
    so an alias is refused as soon as the parser meets it, before anything is built."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"YAML aliases (*name) are not supported (line {mark.line + 1}); "
                              "write the values out")
        return super().compose_node(parent, index)


def load_yaml(text: str, where: str) -> Any:
    """``text`` parsed with :class:`NoAliasLoader`; ConfigError naming ``where`` on any
    problem (malformed, an alias, nesting too deep for the parser)."""
    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where} is not valid YAML{at}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read") from None


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """Parse ``--set key=value`` items; values are YAML scalars (``1e-3``, ``true``, ``[1,2]``)."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"malformed --set '{item}'; expected key=value, e.g. --set lr=1e-4")
        value = load_yaml(raw, f"malformed --set '{item}'")
        if isinstance(value, str) and _looks_numeric(value):
            value = float(value)
        check_finite(key, value, f"--set {item}")
        result[key] = value
    return result


def check_finite(key: str, value: Any, where: str | None = None) -> None:
    """Reject NaN and infinity anywhere in a setting's value (``lr=nan`` must not start runs:
    every comparison with NaN is false, so range checks alone let it through)."""
    items = value if isinstance(value, list | tuple) else (
        value.values() if isinstance(value, dict) else [value])
    for item in items:
        if isinstance(item, list | tuple | dict):
            check_finite(key, item, where)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"invalid {where or f'{key}={value!r}'}: {item} is not a finite "
                              "number; give a finite value")


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def split_overrides(overrides: dict[str, Any], method: str, method_fields: set[str]
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route overrides to the training config or to ``method``'s config.

    ``key`` goes to training if TrainConfig has it, else to the method if its config has it.
    ``method.key`` targets one method only, training keys included: ``vpt.lr=1e-2`` is VPT's
    learning rate (a per-method recipe, issue 15), and it wins over a plain ``lr`` whatever
    their order. Keys no method of the matrix knows are rejected by :func:`check_overrides`
    before anything runs.
    """
    train: dict[str, Any] = {}
    method_values: dict[str, Any] = {}
    train_fields = TrainConfig.field_names()
    plain = [(k, v) for k, v in overrides.items() if "." not in k]
    scoped = [(k.rpartition(".")[2], v) for k, v in overrides.items()
              if "." in k and k.rpartition(".")[0] == method]
    for key, value in plain + scoped:
        if key in train_fields:
            train[key] = value
        elif key in method_fields:
            method_values[key] = value
    return train, method_values


def check_overrides(overrides: dict[str, Any], methods: dict[str, set[str]],
                    option: str = "--set") -> None:
    """Reject an override that no method in the matrix, nor training, understands (``option``:
    where it was given, ``--set`` or ``--grid``, for the message)."""
    train_fields = TrainConfig.field_names()
    for key in overrides:
        prefix, dot, name = key.rpartition(".")
        if dot:
            if prefix not in methods:
                raise ConfigError(f"{option} {key}: '{prefix}' is not a method of this matrix; "
                                  f"methods: {', '.join(methods)}")
            if name not in methods[prefix] and name not in train_fields:
                valid = sorted(methods[prefix]) + sorted(train_fields)
                raise ConfigError(f"{option} {key}: method '{prefix}' has no setting '{name}'; "
                                  f"valid: {', '.join(valid)}")
        elif key not in train_fields and not any(key in f for f in methods.values()):
            valid = sorted(train_fields | set().union(*methods.values()))
            raise ConfigError(f"unknown setting '{key}' in {option}; valid: {', '.join(valid)}")


def make_train_config(values: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"training config: {exc}") from None


def run_config_from_dict(d: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from its stored JSON (``RunConfig.to_dict``)."""
    d = {k: v for k, v in d.items() if k != "protocol_version"}
    d["train"] = TrainConfig(**d.get("train", {}))
    return RunConfig(**d)
