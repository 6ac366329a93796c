"""Tuning noise, report side: which stored runs are tuning candidates, and whether a choice's
margin over the runner-up is larger than the noise of the validation scores it rests on.

Why: ``lionbench tune`` trains every candidate at its tuning seeds and the winner again at the
final seeds. The tuning runs are the winner's *selection*, not its result: averaging a tuning
seed into the final cell (a tuned database used to show ``(n=4)`` cells: seeds 0-2 and tuning
seed 3) lets the run that won on validation luck flatter the reported mean. So plain ``table``
leaves them out (:func:`mark_tuning_runs`), and a choice is only as firm as its margin:

**The noise of a margin** (winner's mean validation top-1 minus the runner-up's, over the tuning
seeds) is the standard error of that difference of two means:

- with k >= 2 tuning seeds: ``sqrt((s_w^2 + s_r^2) / k)``, ``s`` the sample standard deviation
  of each candidate's validation top-1 over its tuning seeds (what a seed moves);
- with one tuning seed (the default) no seed spread is measured; the binomial standard error of
  two accuracies on the same n validation images, taken as independent,
  ``sqrt((p_w (1 - p_w) + p_r (1 - p_r)) / n)``: the sampling of the validation images alone
  (as if the candidates erred on unrelated images), not what a seed moves. ``n`` is the
  validation set's size each run records ("...: 500 images").

A choice is **inside the noise** when its margin is below :data:`Z` standard errors (the margin's
normal 95 % interval includes 0): another tuning seed or validation sample could well have
chosen the runner-up. ``table --selected`` marks such cells and says the numbers.

:func:`candidate_summary` and :func:`selection_margin` work on the candidate records that
``lionbench tune`` stores (``Task.record()["candidates"]``), so the tune command can print each
candidate's mean and std and the winner's margin with the same definitions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Z = 1.959963984540054  # the standard normal's 97.5 % quantile
IMAGES = re.compile(r"(\d[\d,]*) images\s*$")


def mark_tuning_runs(runs: list[dict[str, Any]], tunings: Iterable[dict[str, Any]]) -> int:
    """Set ``tuning_candidate`` on each run that some tuning trained to choose (its run hash is
    a candidate's) and that is not a final run of a tuning's winner (winner cell, final seed);
    returns how many."""
    candidates: set[str] = set()
    finals: set[tuple[str, int]] = set()
    for t in tunings:
        for c in t.get("candidates") or []:
            candidates.update(c.get("run_hashes") or [])
        if t.get("winner_cell_hash"):
            finals.update((t["winner_cell_hash"], int(s)) for s in t.get("final_seeds") or [])
    count = 0
    for r in runs:
        seed = r.get("seed")
        final = seed is not None and (r.get("cell_hash"), int(seed)) in finals
        r["tuning_candidate"] = r.get("run_hash") in candidates and not final
        count += r["tuning_candidate"]
    return count


def candidate_summary(candidate: dict[str, Any]) -> tuple[float | None, float | None, int]:
    """(mean, sample std, number of scores) of a candidate's validation top-1 over its tuning
    seeds; the std is None below 2 scores, the mean None when a score is missing."""
    scores = candidate.get("val_scores") or []
    if not scores or any(s is None for s in scores):
        return None, None, len(scores)
    n = len(scores)
    mean = math.fsum(scores) / n
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / (n - 1)) if n > 1 else None
    return mean, std, n


@dataclass(frozen=True)
class Margin:
    """The winner's validation lead over the runner-up, and the noise it is measured against."""

    winner: float  # mean validation top-1 over the tuning seeds
    runner_up: float
    runner_up_values: dict[str, Any] = field(default_factory=dict)
    seeds: int = 1  # tuning seeds per candidate
    noise: float | None = None  # standard error of the margin (None: not known)
    noise_kind: str = ""  # how the noise was measured, in words

    @property
    def margin(self) -> float:
        return self.winner - self.runner_up

    @property
    def inside(self) -> bool:
        """The margin is below Z standard errors (False where the noise is not known)."""
        return self.noise is not None and self.margin < Z * self.noise


def selection_margin(candidates: list[dict[str, Any]], winner_cell_hash: str | None,
                     val_images: int | None = None) -> Margin | None:
    """The winner's margin over the best other finished candidate, with its noise (see the
    module's docstring); None without a winner or a runner-up. ``val_images``: the validation
    set's size, needed for the noise of a single tuning seed."""
    scored = [(c, candidate_summary(c)) for c in candidates]
    finished = [(c, s) for c, s in scored if s[0] is not None and c.get("status", "done") == "done"]
    win = next(((c, s) for c, s in finished if c.get("cell_hash") == winner_cell_hash), None)
    others = [(c, s) for c, s in finished if c.get("cell_hash") != winner_cell_hash]
    if win is None or not others:
        return None
    runner, (r_mean, r_std, _) = max(others, key=lambda cs: cs[1][0])
    (w_mean, w_std, k) = win[1]
    noise, kind = None, ""
    if k >= 2 and w_std is not None and r_std is not None:
        noise = math.sqrt((w_std ** 2 + r_std ** 2) / k)
        kind = f"standard error from the std over {k} tuning seeds"
    elif val_images:
        noise = math.sqrt((w_mean * (1 - w_mean) + r_mean * (1 - r_mean)) / val_images)
        kind = f"binomial standard error, one tuning seed, {val_images} validation images"
    return Margin(w_mean, r_mean, dict(runner.get("values") or {}), k, noise, kind)


def validation_images(extra: Any) -> int | None:
    """The validation set's size a run recorded in its ``extra`` ("...: 500 images")."""
    import json

    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return None
    text = (extra or {}).get("validation") if isinstance(extra, dict) else None
    match = IMAGES.search(text) if isinstance(text, str) else None
    return int(match.group(1).replace(",", "")) if match else None


__all__ = ["Margin", "Z", "candidate_summary", "mark_tuning_runs", "selection_margin",
           "validation_images"]
