"""What every CLI command shares: the consoles and the error handler."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from lionbench.errors import LionbenchError

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DB_HELP = "Database URL or SQLite path (default: $LIONBENCH_DB or results/lionbench.db)."
DATA_ROOT_HELP = "Where datasets live (default: ./data)."


def handle_errors(fn: F) -> F:
    """Turn LionbenchError into one line on stderr and exit code 1 (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LionbenchError as exc:
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]
