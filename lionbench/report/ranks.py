"""Methods compared across datasets: mean ranks, Friedman's test, Wilcoxon-Holm and Nemenyi.

Why: a paired interval (``lionbench.report.stats``) answers "is A better than B on this dataset";
a claim over a suite ("LION is the best PETL method") needs a test over datasets. Demšar
(JMLR 7, 2006, "Statistical comparisons of classifiers over multiple data sets") recommends,
and this module follows:

- each *block* (here: a backbone x dataset column of a table, with a value for every method)
  ranks the methods, 1 = best, tied values sharing the mean of their ranks (Sec. 3.2.2);
- **Friedman's test** of "all methods are equal" on those ranks: scipy's
  ``friedmanchisquare`` (its chi-square carries the tie correction of R's ``friedman.test``),
  and the Iman-Davenport F that Demšar prefers (less conservative), on (k-1, (k-1)(N-1))
  degrees of freedom;
- **pairwise Wilcoxon signed-rank tests** over the blocks (scipy's ``wilcoxon`` with
  ``zero_method="zsplit"``: zero differences' ranks split between the two sums, Demšar's rule,
  Sec. 3.1.3), their p-values adjusted for the k(k-1)/2 comparisons by Holm's step-down method;
- **the Nemenyi critical difference** ``CD = q_alpha sqrt(k(k+1) / (6N))``, ``q_alpha`` the
  studentized range quantile (infinite degrees of freedom) over sqrt(2): two methods whose mean
  ranks differ by less than CD are not significantly different (the critical-difference diagram,
  ``lionbench plot cd``, joins them with a bar).

With few blocks every test is weak (4 methods on 2 datasets cannot reach p < 0.05); the report
says how many blocks it had and which it left out (a method without a value there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .stats import holm

ALPHA = 0.05


@dataclass(frozen=True)
class PairTest:
    """One pairwise Wilcoxon signed-rank test over the blocks."""

    a: str
    b: str
    mean_difference: float  # mean over blocks of a - b
    wins: int  # blocks where a is above b
    losses: int
    p: float
    p_holm: float

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_holm < alpha


@dataclass
class Ranking:
    """Everything ``lionbench rank`` prints and ``plot cd`` draws."""

    methods: list[str]
    blocks: list[str]  # "backbone / dataset"
    values: list[list[float]]  # [block][method]
    ranks: list[list[float]]  # [block][method], 1 = best
    mean_ranks: list[float]
    alpha: float = ALPHA
    friedman: float | None = None  # chi-square (tie-corrected, as scipy)
    friedman_p: float | None = None
    iman_davenport: float | None = None
    iman_davenport_p: float | None = None
    q_alpha: float | None = None
    cd: float | None = None  # Nemenyi critical difference
    pairs: list[PairTest] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # blocks without a value for every method
    notes: list[str] = field(default_factory=list)

    @property
    def order(self) -> list[int]:
        """Method indices, best mean rank first (ties: the given order)."""
        return sorted(range(len(self.methods)), key=lambda i: self.mean_ranks[i])

    def cliques(self) -> list[list[str]]:
        """Maximal groups of methods, consecutive by mean rank, whose ranks span less than CD
        (Nemenyi: not significantly different); groups of one left out."""
        if self.cd is None:
            return []
        order = self.order
        spans = []
        for i, first in enumerate(order):
            j = i
            while j + 1 < len(order) and \
                    self.mean_ranks[order[j + 1]] - self.mean_ranks[first] < self.cd:
                j += 1
            if j > i and not any(s <= i and j <= e for s, e in spans):
                spans.append((i, j))
        return [[self.methods[order[k]] for k in range(s, e + 1)] for s, e in spans]


def average_ranks(row: list[float], higher_is_better: bool = True) -> list[float]:
    """Ranks 1..k of one block's values, 1 = best, ties sharing their mean rank."""
    from scipy.stats import rankdata

    return [float(r) for r in rankdata([-v if higher_is_better else v for v in row])]


def friedman_from_ranks(mean_ranks: list[float], n: int) -> float:
    """Friedman's chi-square from mean ranks, without tie correction (Demšar, eq. in 3.2.2):
    ``12N / (k(k+1)) * (sum R_j^2 - k(k+1)^2 / 4)``."""
    k = len(mean_ranks)
    return 12 * n / (k * (k + 1)) * (math.fsum(r * r for r in mean_ranks) - k * (k + 1) ** 2 / 4)


def iman_davenport(chi2: float, n: int, k: int) -> tuple[float, float]:
    """Iman and Davenport's F = (N-1) chi2 / (N(k-1) - chi2) and its p-value on (k-1,
    (k-1)(N-1)) degrees of freedom."""
    from scipy.stats import f

    denominator = n * (k - 1) - chi2
    if denominator <= 0:  # every block ranks the methods alike: the strongest evidence
        return math.inf, 0.0
    stat = (n - 1) * chi2 / denominator
    return stat, float(f.sf(stat, k - 1, (k - 1) * (n - 1)))


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """Nemenyi's q_alpha: the studentized range quantile (k groups, infinite df) / sqrt(2)
    (Demšar's Table 5a: 1.960, 2.343, 2.569, ... for k = 2, 3, 4 at alpha 0.05)."""
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(1 - alpha, k, math.inf)) / math.sqrt(2)


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks for k methods over n blocks."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))


def rank_methods(methods: list[str], blocks: list[str], values: list[list[float | None]], *,
                 alpha: float = ALPHA, higher_is_better: bool = True) -> Ranking:
    """Rank ``methods`` over the ``blocks`` (``values[block][method]``, None where missing:
    that block is left out and named in ``dropped``)."""
    from scipy.stats import friedmanchisquare, wilcoxon

    complete = [(b, row) for b, row in zip(blocks, values, strict=True)
                if all(v is not None for v in row)]
    kept_blocks = [b for b, _ in complete]
    rows: list[list[float]] = [[float(v) for v in row] for _, row in complete]  # type: ignore
    dropped = [b for b in blocks if b not in kept_blocks]
    k, n = len(methods), len(rows)
    ranks = [average_ranks(row, higher_is_better) for row in rows]
    mean_ranks = [math.fsum(r[j] for r in ranks) / n if n else math.nan for j in range(k)]
    out = Ranking(list(methods), kept_blocks, rows, ranks, mean_ranks, alpha, dropped=dropped)
    if n < 2 or k < 2:
        out.notes.append(f"{n} complete block(s) and {k} method(s): ranking needs 2 or more "
                         "of each; no test")
        return out
    if k >= 3:
        columns = [[row[j] for row in rows] for j in range(k)]
        if all(len(set(row)) == 1 for row in rows):
            out.friedman, out.friedman_p = 0.0, 1.0  # every block a full tie
        else:
            result = friedmanchisquare(*columns)
            out.friedman, out.friedman_p = float(result.statistic), float(result.pvalue)
        out.iman_davenport, out.iman_davenport_p = iman_davenport(out.friedman, n, k)
    else:
        out.notes.append("Friedman's test needs 3 or more methods; see the Wilcoxon test")
    out.q_alpha = nemenyi_q(k, alpha)
    out.cd = out.q_alpha * math.sqrt(k * (k + 1) / (6 * n))
    raw: list[tuple[int, int, float]] = []
    for i in range(k):
        for j in range(i + 1, k):
            x, y = [row[i] for row in rows], [row[j] for row in rows]
            if all(a == b for a, b in zip(x, y, strict=True)):
                p = 1.0
            else:
                p = float(wilcoxon(x, y, zero_method="zsplit").pvalue)
            raw.append((i, j, p))
    adjusted = holm([p for _, _, p in raw])
    sign = 1 if higher_is_better else -1
    for (i, j, p), p_holm in zip(raw, adjusted, strict=True):
        d = [row[i] - row[j] for row in rows]
        out.pairs.append(PairTest(methods[i], methods[j], math.fsum(d) / n,
                                  sum(sign * x > 0 for x in d), sum(sign * x < 0 for x in d),
                                  p, p_holm))
    return out


__all__ = ["ALPHA", "PairTest", "Ranking", "average_ranks", "critical_difference",
           "friedman_from_ranks", "iman_davenport", "nemenyi_q", "rank_methods"]
