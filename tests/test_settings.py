"""The settings vocabulary (lionbench.settings): one way to declare, check and describe every
config's fields, so that every method refuses a wrong value the same way, and the CLI can check
``--set`` values from the catalog alone (before torch loads)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import pytest
from lionbench.methods import describe_methods, get_method, list_methods
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.config import TrainConfig
from lionbench.deq import SolverConfig
from lionbench.errors import ConfigError
from lionbench.settings import (
    Setting,
    check_settings,
    check_values,
    schema_of,
    setting,
    settings_of,
    undeclared_fields,
    when,
)


@dataclass
class Toy:
    n: int = setting(3, low=1, high=8, help="an int")
    x: float = setting(0.5, low=0.0, high=1.0, high_open=True, help="a float")
    flag: bool = setting(True, help="a bool")
    mode: str = setting("a", choices=("a", "b"), help="a choice")
    width: int | str = setting("auto", kind="int", low=1, high=64, also=("auto",), help="int|auto")
    size: int | None = setting(None, kind="int", optional=True, low=1, help="optional")

    rules = (when("mode", "b", x={"high": 0.25}),)

    def __post_init__(self) -> None:
        check_settings(self)


@pytest.mark.parametrize(("values", "message"), [
    ({"n": 2.0}, "invalid n=2.0; must be an integer in [1, 8]"),  # 2.0 is not an integer
    ({"n": 1.5}, "invalid n=1.5; must be an integer in [1, 8]"),
    ({"n": True}, "invalid n=True; must be an integer in [1, 8]"),
    ({"n": 9}, "invalid n=9; must be an integer in [1, 8]"),
    ({"n": "3"}, "invalid n='3'; must be an integer in [1, 8]"),
    ({"x": 1.0}, "invalid x=1.0; must be a number in [0, 1)"),  # open upper bound
    ({"x": -0.1}, "invalid x=-0.1; must be a number in [0, 1)"),
    ({"x": math.nan}, "invalid x=nan: not a finite number"),
    ({"x": False}, "invalid x=False; must be a number in [0, 1)"),
    ({"flag": 1}, "invalid flag=1; must be true or false"),
    ({"flag": "yes"}, "invalid flag='yes'; must be true or false"),
    ({"mode": "c"}, "invalid mode='c'; valid: a, b"),
    ({"mode": 1}, "invalid mode=1; valid: a, b"),
    ({"width": "wide"}, "invalid width='wide'; must be an integer in [1, 64] or 'auto'"),
    ({"width": 0}, "invalid width=0; must be an integer in [1, 64] or 'auto'"),
    ({"size": 0}, "invalid size=0; must be an integer >= 1 or none"),
    ({"mode": "b", "x": 0.5}, "invalid x=0.5; must be a number in [0, 0.25) (with mode='b')"),
])
def test_every_wrong_value_is_refused_naming_field_and_what_is_valid(values, message):
    with pytest.raises(ConfigError) as info:
        Toy(**values)
    assert str(info.value).startswith(message), str(info.value)


def test_valid_values_pass_and_ints_are_stored_as_floats_for_float_settings():
    toy = Toy(n=8, x=0, flag=False, mode="b", width=64, size=None)
    assert toy.x == 0.0 and isinstance(toy.x, float)  # one setting, one identity
    assert Toy(width="auto").width == "auto" and Toy(size=7).size == 7
    assert Toy(mode="a", x=0.9).x == 0.9  # the rule binds only while mode == "b"


def test_a_default_must_itself_be_valid():
    with pytest.raises(ConfigError, match="invalid default=0"):
        setting(0, low=1)


def test_schema_round_trips_through_plain_data_and_checks_like_the_class():
    schema = json.loads(json.dumps(schema_of(Toy)))  # what the catalog stores
    assert [s["name"] for s in schema["settings"]] == [f.name for f in dataclasses.fields(Toy)]
    assert check_values(schema, {"x": 0}) == {"x": 0.0}
    for values in ({"n": 2.0}, {"mode": "b", "x": 0.5}, {"flag": 1}, {"width": "wide"}):
        with pytest.raises(ConfigError) as from_data:
            check_values(schema, values)
        with pytest.raises(ConfigError) as from_class:
            Toy(**values)
        assert str(from_data.value) == str(from_class.value)
    with pytest.raises(ConfigError, match=r"\(with mode='b'\)"):  # the rule with other defaults
        check_values(schema, {"x": 0.5}, defaults={"mode": "b"})


def test_describe_says_what_is_valid():
    assert Setting("int", low=1).describe() == "an integer >= 1"
    assert Setting("float", low=0, low_open=True).describe() == "a number > 0"
    assert Setting("float", low=0, high=1, low_open=True, high_open=True).describe() == \
        "a number in (0, 1)"
    assert Setting("str", choices=("a", "b")).describe() == "one of a, b"


# --- the house rule: every config speaks the vocabulary ---------------------------------------
def config_classes():
    classes = {TrainConfig, SolverConfig}
    classes |= {get_method(name).config_class for name in list_methods()}
    return sorted(classes, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", config_classes(), ids=lambda c: c.__name__)
def test_every_field_of_every_config_is_a_declared_setting(cls):
    assert undeclared_fields(cls) == [], (
        f"{cls.__name__}: declare these fields with lionbench.settings.setting(...)")
    for name, spec in settings_of(cls).items():
        assert spec.help, f"{cls.__name__}.{name} has no help"


@pytest.mark.parametrize(("method", "values"), [
    ("adapter", {"bottleneck": 8.0}), ("head-tuning", {"unfreeze_blocks": 1.5}),
    ("lion", {"deq_layers": 2.0}), ("vpt", {"prompt_length": 5.0}), ("vpt", {"deep": 1}),
    ("lion", {"use_p1": 0}), ("lion", {"tau": 1.0}), ("lion", {"p2_width": 2.5}),
])
def test_methods_refuse_non_integers_and_non_booleans_alike(method, values):
    with pytest.raises(ConfigError, match=f"invalid {next(iter(values))}="):
        get_method(method).make_config(values)


def test_the_catalog_carries_each_methods_schema_with_its_own_defaults():
    catalog = describe_methods()
    lion_p1 = {s["name"]: s for s in catalog["lion-p1"]["schema"]["settings"]}
    assert lion_p1["use_p1"]["default"] is False  # the variant's default, not the class's
    assert catalog["lion"]["schema"]["rules"] == [
        {"field": "tau_mode", "value": "quantile",
         "changes": {"tau": {"high": 1.0, "high_open": True}}}]
    for name, entry in catalog.items():  # the data alone refuses what the class refuses
        for s in entry["schema"]["settings"]:
            bad = {s["name"]: [1]}  # a list is valid for no setting
            with pytest.raises(ConfigError) as from_data:
                check_values(entry["schema"], bad)
            with pytest.raises(ConfigError) as from_class:
                get_method(name).make_config(bad)
            assert str(from_data.value) == str(from_class.value)


def test_list_methods_settings_prints_each_setting_default_range_and_help():
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["list", "methods", "--settings",
                                                            "adapter", "lion"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "bottleneck" in out and "an integer in [1, 4096]" in out
    assert "hidden width of each adapter" in out
    assert "with tau_mode=quantile: tau must be a number in [0, 1)" in out
    assert "p2_width" in out and "or 'auto'" in out
    everything = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["list", "methods", "--settings"])
    assert everything.exit_code == 0 and "training (every method" in everything.output
    assert "a number in (0, 100]" in everything.output  # lr
    unknown = CliRunner().invoke(app, ["list", "methods", "dora", "--settings"])
    assert unknown.exit_code == 1 and "unknown method 'dora'" in unknown.output
