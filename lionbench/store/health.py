"""Health warnings stored with a run: one line each, read by ``table``, ``status`` and ``run``.

Why a stored column: a run whose equilibrium solves did not converge has finite but wrong
outputs and gradients (the solver returns its best iterate, never NaN), so its accuracy must not
pass silently into a comparison. The solver statistics live in the run's ``extra`` JSON, which
``lionbench table`` does not decode (10,000 runs answer in under a second); the warnings are
derived once, when the run is stored (and by migration 6 for runs stored before), into the
``warnings`` column: a JSON list of one-line strings, ``[]`` for a healthy run.

The rule: a block (``p1``, ``p2``: any ``<block>_fwd_not_converged`` key of ``extra``) is flagged
when more than ``MAX_UNCONVERGED_SHARE`` of its per-sample forward or backward solves ended
without meeting their tolerance. Older runs recorded counts without the number of solves; any
unconverged solve flags them.
"""

from __future__ import annotations

import json
from typing import Any

MAX_UNCONVERGED_SHARE = 0.01  # "a small share": 1 % of a block's sample solves
_DIRECTIONS = (("fwd", "forward"), ("bwd", "backward"))


def run_warnings(extra: dict[str, Any] | None) -> list[str]:
    """One-line warnings for a run's ``extra`` metrics (empty when healthy)."""
    if not isinstance(extra, dict):
        return []
    blocks = sorted({k[: -len("_fwd_not_converged")] for k in extra
                     if k.endswith("_fwd_not_converged")})
    out = []
    for block in blocks:
        for key, word in _DIRECTIONS:
            count = _number(extra.get(f"{block}_{key}_not_converged"))
            if not count:
                continue
            samples = _number(extra.get(f"{block}_{key}_samples"))
            if samples:
                share = count / samples
                if share > MAX_UNCONVERGED_SHARE:
                    out.append(f"{block}: {share:.1%} of {word} solves did not converge "
                               f"({count:,.0f} of {samples:,.0f})")
            else:
                out.append(f"{block}: {count:,.0f} {word} solves did not converge")
    return out


def warnings_json(extra: dict[str, Any] | None) -> str:
    """What the ``warnings`` column holds."""
    return json.dumps(run_warnings(extra))


def has_warnings(value: Any) -> bool:
    """Whether a stored ``warnings`` value holds any warning (None or ``[]``: no)."""
    return isinstance(value, str) and value.strip() not in ("", "[]")


def warning_lines(value: Any) -> list[str]:
    """The stored ``warnings`` value as a list of lines."""
    if not has_warnings(value):
        return []
    try:
        lines = json.loads(value)
    except json.JSONDecodeError:
        return [str(value)]
    return [str(line) for line in lines] if isinstance(lines, list) else [str(lines)]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
