"""Differences between two table cells that a reader can check: seed-paired intervals.

Why: a table of means says which number is higher, not whether the difference would survive
other seeds. Two runs of different methods with the same seed see the same training order, the
same validation hold-out and the same test images, so their difference cancels most of what the
seed moves; the interval of the *paired* differences is what says whether A beats B here
(Dietterich 1998; Bouthillier et al. 2021 on variance in ML benchmarks). None of the PETL
anchors reports it.

The rules, one place for every report (``table`` marks, ``table --vs``, ``compare``):

- **A pair** is one run of each cell with the same :data:`PairKey`: the same seed and the same
  data split (see :func:`pair_key`). A key that occurs twice in one cell (records without a
  configuration) pairs with nothing.
- **3 pairs or more**: the mean of the paired differences ``a - b`` and its Student-t interval
  (``mean ± t(1 - alpha/2, n - 1) · sd / sqrt(n)``); or, on request, a percentile bootstrap over
  the pairs (:data:`BOOTSTRAP_RESAMPLES` resamples from ``numpy.random.default_rng(seed)``,
  seed :data:`BOOTSTRAP_SEED` unless given: the same numbers every time). The bootstrap is
  optimistic with few pairs (3 pairs have 10 distinct resamples); the t interval is the default.
- **Fewer than 3 pairs but 3 runs or more on each side** (cells run with other seeds or another
  split): Welch's interval of the difference of the means (unequal variances,
  Welch-Satterthwaite degrees of freedom), reported as unpaired.
- **Otherwise** no interval: the difference of the cell means, and the reason.

Every result names the seeds it used (``Difference.seeds``), so an interval can be recomputed
by hand from ``lionbench export``. Quantiles come from scipy (``scipy.special.stdtrit``),
imported only when an interval is computed: ``lionbench table`` stays fast where none is.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LEVEL = 0.95
MIN_PAIRS = 3  # fewer pairs (and fewer runs a side): no interval
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
INTERVALS = ("t", "bootstrap")

# (seed, val_fraction, max_train_samples, data digest): what decides a run's data split
PairKey = tuple[Any, ...]
Sample = tuple[PairKey, float]  # one run: its pair key and its value


def pair_key(run: dict[str, Any]) -> PairKey:
    """The seed and what, besides it, decides a run's train/validation split.

    The test split is fixed per dataset; the validation hold-out (and a seeded subset of the
    training images, ``max_train_samples``) is drawn from the seed with ``val_fraction``
    (``DatasetSpec.load_train_val``). Two runs with equal keys on one dataset therefore train and
    validate on the same images; the data digest (``data_id``, where recorded) rules out a
    dataset name that held other files when one of the two ran.
    """
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    train = config.get("train") or {}
    seed = run.get("seed")
    return (int(seed) if seed is not None else None, train.get("val_fraction"),
            train.get("max_train_samples"), run.get("data_id"))


@dataclass(frozen=True)
class Difference:
    """``a - b`` for two cells: the estimate, its interval (if any) and what it rests on."""

    mean: float | None
    low: float | None = None
    high: float | None = None
    test: str = "none"  # "paired t" | "paired bootstrap" | "Welch" | "none"
    pairs: int = 0  # the number of seed pairs found (used only by the paired tests)
    seeds: tuple[Any, ...] = ()  # the pairs' seeds (paired tests)
    seeds_a: tuple[Any, ...] = ()  # every run's seed, a side (Welch and "none")
    seeds_b: tuple[Any, ...] = ()
    reason: str = ""  # why the interval is unpaired or missing
    level: float = LEVEL

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def excludes_zero(self) -> bool | None:
        """Whether the interval lies on one side of 0 (None: no interval)."""
        if not self.has_interval:
            return None
        return self.low > 0 or self.high < 0  # type: ignore[operator]

    @property
    def a_better(self) -> bool:
        """``a`` significantly above ``b``: the whole interval above 0."""
        return self.has_interval and self.low > 0  # type: ignore[operator]

    def seeds_text(self) -> str:
        """``0 1 2`` for pairs, ``0 1 2 | 3 4 5`` for the two sides of an unpaired result."""
        if self.test.startswith("paired"):
            return " ".join(map(str, self.seeds))
        return (" ".join(map(str, self.seeds_a)) + " | " + " ".join(map(str, self.seeds_b))
                ).strip()


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def _var(xs: Sequence[float]) -> float:
    m = _mean(xs)
    return math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1)


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (scipy; cached: a table's
    paired intervals share a few integer df)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


def paired_t(diffs: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of the paired differences and its two-sided Student-t interval (n >= 2)."""
    n = len(diffs)
    mean = _mean(diffs)
    half = t_quantile(1 - (1 - level) / 2, n - 1) * math.sqrt(_var(diffs) / n)
    return mean, mean - half, mean + half


def welch(a: Sequence[float], b: Sequence[float], level: float = LEVEL
          ) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` and Welch's interval (2 or more values a side)."""
    va, vb = _var(a) / len(a), _var(b) / len(b)
    mean = _mean(a) - _mean(b)
    if va + vb == 0:  # no spread on either side: the difference is exact
        return mean, mean, mean
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile(1 - (1 - level) / 2, df) * math.sqrt(va + vb)
    return mean, mean - half, mean + half


def bootstrap(diffs: Sequence[float], level: float = LEVEL,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
              ) -> tuple[float, float, float]:
    """Mean of the paired differences and a percentile bootstrap interval: ``resamples`` draws
    of ``len(diffs)`` pairs with replacement from ``numpy.random.default_rng(seed)``, the
    interval between the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of their means."""
    import numpy as np

    d = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return _mean(list(diffs)), float(low), float(high)


def difference(a: Sequence[Sample], b: Sequence[Sample], *, level: float = LEVEL,
               interval: str = "t", resamples: int = BOOTSTRAP_RESAMPLES,
               seed: int = BOOTSTRAP_SEED) -> Difference:
    """``a - b`` for two cells given as (pair key, value) samples (see the module's rules)."""
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval '{interval}'; valid: {', '.join(INTERVALS)}")
    if not a or not b:
        raise ValueError("both cells need at least one run")
    unique_a, unique_b = _unique(a), _unique(b)
    common = sorted(set(unique_a) & set(unique_b), key=lambda k: tuple(map(repr, k)))
    if len(common) >= MIN_PAIRS:
        diffs = [unique_a[k] - unique_b[k] for k in common]
        mean, low, high = (paired_t(diffs, level) if interval == "t"
                           else bootstrap(diffs, level, resamples, seed))
        return Difference(mean, low, high, f"paired {interval}", len(common),
                          tuple(k[0] for k in common), level=level)
    va, vb = [v for _, v in a], [v for _, v in b]
    seeds_a, seeds_b = tuple(sorted(k[0] for k, _ in a)), tuple(sorted(k[0] for k, _ in b))
    few = f"{len(common)} seed pair{'s' if len(common) != 1 else ''}"
    if len(va) >= MIN_PAIRS and len(vb) >= MIN_PAIRS:
        mean, low, high = welch(va, vb, level)
        return Difference(mean, low, high, "Welch", len(common), (), seeds_a, seeds_b,
                          f"unpaired: {few} (same seed and data split)", level)
    return Difference(_mean(va) - _mean(vb), None, None, "none", len(common), (), seeds_a,
                      seeds_b, f"no interval: {few} and {len(va)} vs {len(vb)} runs (needs "
                      f"{MIN_PAIRS} pairs, or {MIN_PAIRS} runs a side unpaired)", level)


def _unique(samples: Sequence[Sample]) -> dict[PairKey, float]:
    """Samples whose key occurs once (a repeated key cannot be paired)."""
    counts = Counter(k for k, _ in samples)
    return {k: v for k, v in samples if counts[k] == 1}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input's order: the i-th smallest
    of m p-values is multiplied by m - i + 1 (i from 1), kept monotone and capped at 1."""
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "INTERVALS", "LEVEL", "MIN_PAIRS",
           "Difference", "PairKey", "Sample", "bootstrap", "difference", "holm", "pair_key",
           "paired_t", "t_quantile", "welch"]
