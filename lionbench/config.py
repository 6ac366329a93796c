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
    the paper's values explicitly.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    image_size: int | None = None  # None: the backbone's pretrained input size
    augment: str = "auto"  # auto: the dataset's default (no flips for digits)
    eval_batch_size: int = 256
    max_train_samples: int | None = None  # seeded, stratified subset of the train split
    lr_schedule: str = "constant"  # constant | cosine (per step, to zero at the last epoch)
    # Train on the train and validation images together and keep the last epoch: nothing is
    # held out, so nothing is selected (VTAB-1k's final runs: train800val200). Part of a run's
    # identity only when true, so runs stored before it existed keep their identity.
    train_on_val: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def positive(name: str, value: Any, kind: type = int) -> None:
            if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"invalid {name}={value!r}; must be a positive {kind.__name__}")

        floats_as_floats(self)
        for f in dataclasses.fields(self):
            check_finite(f.name, getattr(self, f.name))
        positive("epochs", self.epochs)
        positive("batch_size", self.batch_size)
        positive("eval_batch_size", self.eval_batch_size)
        positive("lr", self.lr, float)
        if not isinstance(self.weight_decay, int | float) or self.weight_decay < 0:
            raise ConfigError(f"invalid weight_decay={self.weight_decay!r}; must be >= 0")
        if not isinstance(self.val_fraction, float | int) or not 0 < self.val_fraction < 1:
            raise ConfigError(f"invalid val_fraction={self.val_fraction!r}; must lie in (0, 1)")
        if self.image_size is not None:
            positive("image_size", self.image_size)
        if self.max_train_samples is not None:
            positive("max_train_samples", self.max_train_samples)
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(f"invalid augment={self.augment!r}; "
                              f"valid: {', '.join(AUGMENTATIONS)}")
        if not isinstance(self.train_on_val, bool):
            raise ConfigError(f"invalid train_on_val={self.train_on_val!r}; valid: true, false")
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(f"invalid lr_schedule={self.lr_schedule!r}; "
                              f"valid: {', '.join(SCHEDULES)}")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


def floats_as_floats(config: Any) -> None:
    """Store an int given for a float setting as a float (``weight_decay=0`` as 0.0): the same
    setting must give the same identity, and canonical JSON writes ``0`` and ``0.0`` apart."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if (isinstance(f.default, float) and isinstance(value, int)
                and not isinstance(value, bool)):
            setattr(config, f.name, float(value))


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


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """Parse ``--set key=value`` items; values are YAML scalars (``1e-3``, ``true``, ``[1,2]``)."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"malformed --set '{item}'; expected key=value, e.g. --set lr=1e-4")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"malformed --set '{item}': cannot parse value '{raw}'") from None
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


def check_overrides(overrides: dict[str, Any], methods: dict[str, set[str]]) -> None:
    """Reject an override that no method in the matrix, nor training, understands."""
    train_fields = TrainConfig.field_names()
    for key in overrides:
        prefix, dot, name = key.rpartition(".")
        if dot:
            if prefix not in methods:
                raise ConfigError(f"--set {key}: '{prefix}' is not a method of this matrix; "
                                  f"methods: {', '.join(methods)}")
            if name not in methods[prefix] and name not in train_fields:
                valid = sorted(methods[prefix]) + sorted(train_fields)
                raise ConfigError(f"--set {key}: method '{prefix}' has no setting '{name}'; "
                                  f"valid: {', '.join(valid)}")
        elif key not in train_fields and not any(key in f for f in methods.values()):
            valid = sorted(train_fields | set().union(*methods.values()))
            raise ConfigError(f"unknown setting '{key}' in --set; valid: {', '.join(valid)}")


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
