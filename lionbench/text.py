"""Printing text that came from users or from a database: the one sanitiser.

Names, paths, failure reasons and warnings reach the terminal from a user's flags, from files
and from databases written elsewhere (an import). A control character in them must never act:
``ESC[2J`` clears the screen, ``ESC]0;...BEL`` sets the window title, a newline forges a
second ``error:`` line, a bidirectional override reorders what is shown. :func:`printable`
shows each such character escaped instead (``\\x1b``, ``\\n``), and leaves every other
character, non-ASCII letters included, as it is. Every place that prints user or stored text
(the CLI's messages and tables, the reports' labels) passes it through here.
"""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the bidirectional
# embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: Any) -> str:
    """``str(text)`` with every control character shown escaped: one line, inert."""
    return _UNSAFE.sub(_escape, str(text))


def printable_data(value: Any) -> Any:
    """``value`` with :func:`printable` applied to every string inside (dicts, lists, tuples;
    dict keys too); other values as they are."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(printable_data(v) for v in value)
    return value


__all__ = ["printable", "printable_data"]
