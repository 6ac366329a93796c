"""Settings: the one vocabulary in which every validated config declares its fields.

A field of a config dataclass (training, every method, the equilibrium solver) is declared with
:func:`setting`, which records its kind, its valid range or choices and a line of help next to
its default::

    @dataclass
    class AdapterConfig(MethodConfig):
        bottleneck: int = setting(8, low=1, high=4096, help="hidden width of each adapter")
        cnn_fraction: float = setting(1 / 64, low=1e-6, high=1.0, help="...")

and the config checks itself with :func:`check_settings` on construction (``MethodConfig`` and
``TrainConfig`` do so in ``__post_init__``). Why one vocabulary: every setting is refused the
same way (``bottleneck=8.0`` like ``deq_layers=2.0``: an integer setting takes integers), the
message names the field and what is valid, and the same metadata describes the setting to users
(``lionbench list methods --settings``) and checks ``--set`` values before torch loads: it is
plain data (:meth:`Setting.to_dict`) that the method catalog ``lionbench/assets/methods.json``
carries, and :func:`check_values` checks values against that data alone.

Kinds: ``int`` (a Python int, never a bool or a float such as ``8.0``), ``float`` (an int or a
float, stored as a float: ``weight_decay=0`` and ``0.0`` are one setting with one identity;
finite), ``bool`` (true or false only) and ``str``. ``low``/``high`` bound numbers (closed,
unless ``low_open``/``high_open``), ``choices`` lists the valid values, ``optional`` admits
None, ``also`` admits further literal values (LION's ``p2_width`` is an integer or ``'auto'``).

A bound that depends on another setting is a rule, declared on the class as data too:
``rules = (when("tau_mode", "quantile", tau={"high": 1.0, "high_open": True}),)`` narrows
``tau`` to [0, 1) when ``tau_mode`` is ``quantile``. Checks that need more than this (a method
that refuses a backbone family) belong in the method's ``check_backbone`` hook.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from lionbench.errors import ConfigError

KINDS = ("int", "float", "bool", "str")
METADATA_KEY = "setting"


@dataclass(frozen=True)
class Setting:
    """What a setting accepts, and one line of help."""

    kind: str
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    optional: bool = False
    also: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"setting kind {self.kind!r}; valid: {', '.join(KINDS)}")

    # --- checking ---------------------------------------------------------------------------
    def check(self, name: str, value: Any) -> Any:
        """``value`` as the config stores it (an int given for a float becomes a float), or a
        ConfigError naming ``name``, the value and what is valid."""
        if value is None and self.optional:
            return None
        if any(value == a and type(value) is type(a) for a in self.also):
            return value
        if not self._right_kind(value):
            raise self.error(name, value)
        if self.kind == "float":
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"invalid {name}={value!r}: not a finite number; give a finite "
                                  "value")
        if self.choices and value not in self.choices:
            raise self.error(name, value)
        if not self._in_range(value):
            raise self.error(name, value)
        return value

    def _right_kind(self, value: Any) -> bool:
        if isinstance(value, bool):
            return self.kind == "bool"
        return {"int": isinstance(value, int), "float": isinstance(value, int | float),
                "bool": False, "str": isinstance(value, str)}[self.kind]

    def _in_range(self, value: Any) -> bool:
        if self.kind not in ("int", "float"):
            return True
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None
                    and (value >= self.high if self.high_open else value > self.high))

    def error(self, name: str, value: Any) -> ConfigError:
        if self.choices:
            return ConfigError(f"invalid {name}={value!r}; valid: "
                               f"{', '.join(map(_show, self.choices))}")
        return ConfigError(f"invalid {name}={value!r}; must be {self.describe()}")

    # --- describing -------------------------------------------------------------------------
    def describe(self) -> str:
        """What is valid, in words: ``an integer in [1, 4096]``, ``a number in (0, 1)``,
        ``one of quantile, absolute``, ``true or false``, ``... or 'auto'``."""
        if self.choices:
            text = "one of " + ", ".join(map(_show, self.choices))
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "a string"
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            bounds = self.range_text()
            both = self.low is not None and self.high is not None
            text = f"{noun} {'in ' if both else ''}{bounds}".rstrip()
        extra = [repr(a) for a in self.also] + (["none"] if self.optional else [])
        return text + "".join(f" or {e}" for e in extra)

    def range_text(self) -> str:
        """``[1, 4096]``, ``(0, 1)``, ``>= 1``, ``> 0`` or '' (numbers only)."""
        low, high = self.low, self.high
        if low is not None and high is not None:
            return (f"{'(' if self.low_open else '['}{_show(low)}, {_show(high)}"
                    f"{')' if self.high_open else ']'}")
        if low is not None:
            return f"{'>' if self.low_open else '>='} {_show(low)}"
        if high is not None:
            return f"{'<' if self.high_open else '<='} {_show(high)}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON): only what differs from the defaults, plus the kind."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "kind" and value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Setting:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()
                  if k in known}
        return cls(**values)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Rule:
    """While setting ``field`` equals ``value``, other settings take narrower metadata."""

    field: str
    value: Any
    changes: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "value": self.value, "changes": self.changes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        return cls(data["field"], data["value"], dict(data["changes"]))


def when(field_name: str, value: Any, **changes: dict[str, Any]) -> Rule:
    """A rule: ``when("tau_mode", "quantile", tau={"high": 1.0, "high_open": True})``."""
    return Rule(field_name, value, changes)


def setting(default: Any, *, help: str = "", kind: str | None = None, low: float | None = None,
            high: float | None = None, low_open: bool = False, high_open: bool = False,
            choices: tuple[Any, ...] | list[Any] = (), optional: bool = False,
            also: tuple[Any, ...] | list[Any] = ()) -> Any:
    """A dataclass field with its :class:`Setting` (the kind inferred from ``default`` unless
    given: ``setting(None, kind="int", optional=True, ...)``)."""
    if kind is None:
        kind = next((k for k, t in (("bool", bool), ("int", int), ("float", float),
                                    ("str", str)) if isinstance(default, t)), None)
        if kind is None:
            raise ValueError(f"give kind= for a setting whose default is {default!r}")
    spec = Setting(kind, help, low, high, low_open, high_open, tuple(choices), optional,
                   tuple(also))
    spec.check("default", default)  # a default must itself be valid
    return field(default=default, metadata={METADATA_KEY: spec})


def inherit(cls: type, name: str, **changes: Any) -> Any:
    """A field declared like ``cls``'s field ``name`` (same default and metadata), e.g. LION's
    copy of the solver's ``tol``; ``changes`` replace parts of its Setting."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    spec = dataclasses.replace(f.metadata[METADATA_KEY], **changes)
    return field(default=f.default, metadata={METADATA_KEY: spec})


def settings_of(cls: Any) -> dict[str, Setting]:
    """Field name -> Setting, for the fields of a config class (or instance) declared with
    :func:`setting`."""
    return {f.name: f.metadata[METADATA_KEY] for f in dataclasses.fields(cls)
            if METADATA_KEY in f.metadata}


def undeclared_fields(cls: Any) -> list[str]:
    """Fields of a config class declared without :func:`setting` (house rule: none)."""
    return [f.name for f in dataclasses.fields(cls) if METADATA_KEY not in f.metadata]


def check_settings(config: Any) -> None:
    """Check (and store coerced) every declared field of ``config``, then its class's rules.
    Fields declared without :func:`setting` keep the old rule: an int given where the default
    is a float is stored as a float (one setting, one identity)."""
    specs = settings_of(config)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in specs:
            setattr(config, f.name, specs[f.name].check(f.name, value))
        elif (isinstance(f.default, float) and isinstance(value, int)
              and not isinstance(value, bool)):
            setattr(config, f.name, float(value))
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    check_rules(specs, getattr(config, "rules", ()), values)


def check_rules(specs: dict[str, Setting], rules: Any, values: dict[str, Any]) -> None:
    for rule in rules:
        if rule.field not in values or values[rule.field] != rule.value:
            continue
        for name, changes in rule.changes.items():
            if name in values and name in specs:
                narrowed = dataclasses.replace(specs[name], **changes)
                try:
                    narrowed.check(name, values[name])
                except ConfigError as exc:
                    raise ConfigError(f"{exc} (with {rule.field}={rule.value!r})") from None


def schema_of(cls: Any) -> dict[str, Any]:
    """Plain data describing a config class: ``{"settings": [{name, kind, default, ...,
    help}, ...], "rules": [...]}``, settings in field order (what the method catalog stores)."""
    settings = []
    for f in dataclasses.fields(cls):
        if METADATA_KEY in f.metadata:
            default = f.default if f.default is not dataclasses.MISSING else None
            settings.append({"name": f.name, **f.metadata[METADATA_KEY].to_dict(),
                             "default": default})
    return {"settings": settings, "rules": [r.to_dict() for r in getattr(cls, "rules", ())]}


def check_values(schema: dict[str, Any], values: dict[str, Any],
                 defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check ``values`` (a subset of the settings) against a schema from :func:`schema_of`,
    rules included (the other settings at ``defaults``, else the schema's defaults); the
    values as the config would store them. What ``--set`` is checked with before torch
    loads."""
    specs = {d["name"]: Setting.from_dict(d) for d in schema["settings"]}
    checked = {name: specs[name].check(name, value) for name, value in values.items()
               if name in specs}
    base = {d["name"]: d.get("default") for d in schema["settings"]}
    current = {**base, **(defaults or {}), **checked}
    check_rules(specs, [Rule.from_dict(r) for r in schema.get("rules", [])], current)
    return {**values, **checked}


__all__ = ["KINDS", "Rule", "Setting", "check_rules", "check_settings", "check_values",
           "inherit", "schema_of", "setting", "settings_of", "undeclared_fields", "when"]
