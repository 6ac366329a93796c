"""CLI commands beyond the core ones, one module per area, each with ``register(app)``.

A module here defines its Typer commands as functions and attaches them in ``register``; keep
each command thin: parse, call one library function, render.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES: list[str] = ["data", "results", "perf"]


def register_commands(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(app)
