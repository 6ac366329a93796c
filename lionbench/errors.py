"""User-facing errors.

Every mistake a user can make (a wrong name, a malformed option, a missing file, an unreachable
database) raises a subclass of :class:`LionbenchError`. The CLI prints the message on one line
and exits with code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LionbenchError(Exception):
    """Base class of every error that is the user's to fix."""


class UnknownNameError(LionbenchError):
    """A method, backbone, dataset or preset name that is not registered."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        shown = ", ".join(valid[:40]) + (", ..." if len(valid) > 40 else "")
        super().__init__(f"unknown {kind} '{name}'.{hint} Valid: {shown}")
        self.kind, self.name, self.valid = kind, name, valid


class ConfigError(LionbenchError, ValueError):
    """A malformed option, override, or configuration file (also a ``ValueError``: library
    callers that pass a bad value get the exception Python code expects)."""


class DatasetError(LionbenchError):
    """Data that cannot be found or read: names the path and the expected layout."""


class WeightsError(LionbenchError):
    """Weights that cannot be loaded: offline hub, missing file, mismatching keys."""


class OutputError(LionbenchError):
    """An output file (table, plot, checkpoint, export) that cannot be written there."""


class StoreError(LionbenchError):
    """The results database cannot be reached or is of an unknown schema."""


class TrainingFailed(LionbenchError):
    """A run that failed for a reason worth storing (NaN loss, out of memory)."""
