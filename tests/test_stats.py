"""The statistics behind ``compare``, ``rank`` and the table marks, against scipy on fixed
numbers (to 1e-9) and against a published worked example.

The published example is Demšar, "Statistical comparisons of classifiers over multiple data
sets", JMLR 7 (2006) 1-30: the AUC of C4.5 with and without tuning m and cf on 14 UCI data sets
(Table 6), whose mean ranks (3.143, 2.000, 2.893, 1.964), Friedman statistic (9.28, no tie
correction), Iman-Davenport F (3.69; critical F(3, 39) = 2.85 at 0.05), Nemenyi q (2.569) and
critical difference (1.25) are printed in Sec. 3.2.2; Sec. 3.1.3 works the Wilcoxon test of
C4.5 against C4.5+m on the same data (Table 2): R+ = 93, R- = 12, so T = 12, below the critical
21 for N = 14. The AUC values are scipy's copy of Table 6 (scipy/stats/tests/test_stats.py,
``test_friedmanchisquare``), which writes voting's C4.5+cf as 0.9751 so that its rank (2, above
C4.5+m+cf's 0.975) is the one the paper prints.
"""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from lionbench.report.ranks import (
    critical_difference,
    friedman_from_ranks,
    iman_davenport,
    nemenyi_q,
    rank_methods,
)
from lionbench.report.stats import (
    Difference,
    bootstrap,
    difference,
    holm,
    pair_key,
    paired_t,
    welch,
)

A = [0.812, 0.795, 0.830, 0.801, 0.822]
B = [0.790, 0.781, 0.826, 0.779, 0.800]
C = [0.770, 0.801, 0.760, 0.790]

DEMSAR_DATASETS = ["adult (sample)", "breast cancer", "breast cancer wisconsin", "cmc",
                   "ionosphere", "iris", "liver disorders", "lung cancer", "lymphography",
                   "mushroom", "primary tumor", "rheum", "voting", "wine"]
DEMSAR_METHODS = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
DEMSAR_AUC = [  # [data set][method], Table 6
    [0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569], [0.954, 0.971, 0.968, 0.967],
    [0.628, 0.661, 0.654, 0.657], [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931],
    [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625], [0.775, 0.838, 0.866, 0.875],
    [1.000, 1.000, 1.000, 1.000], [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
    [0.972, 0.981, 0.9751, 0.975], [0.957, 0.978, 0.946, 0.970]]


def samples(values, first_seed=0):
    return [((first_seed + i, None, None, None), v) for i, v in enumerate(values)]


# --- against scipy, fixed numbers --------------------------------------------------------------
def test_paired_t_interval_equals_scipy() -> None:
    ci = sps.ttest_rel(A, B).confidence_interval(0.95)
    mean, low, high = paired_t([a - b for a, b in zip(A, B, strict=True)])
    assert (low, high) == (pytest.approx(ci.low, abs=1e-9), pytest.approx(ci.high, abs=1e-9))
    assert mean == pytest.approx(sum(A) / 5 - sum(B) / 5, abs=1e-12)
    ci90 = sps.ttest_rel(A, B).confidence_interval(0.90)
    assert paired_t([a - b for a, b in zip(A, B, strict=True)], 0.90)[1] == \
        pytest.approx(ci90.low, abs=1e-9)


def test_welch_interval_equals_scipy() -> None:
    ci = sps.ttest_ind(A, C, equal_var=False).confidence_interval(0.95)
    mean, low, high = welch(A, C)
    assert (low, high) == (pytest.approx(ci.low, abs=1e-9), pytest.approx(ci.high, abs=1e-9))
    assert mean == pytest.approx(sum(A) / 5 - sum(C) / 4, abs=1e-12)


def test_wilcoxon_holm_and_friedman_equal_scipy() -> None:
    """A hand-made table: 4 methods over 6 blocks, one tie inside a block, one zero difference."""
    methods = ["lion", "vpt", "bias", "head"]
    values = [[0.91, 0.88, 0.86, 0.70], [0.72, 0.73, 0.69, 0.55], [0.65, 0.61, 0.61, 0.50],
              [0.83, 0.80, 0.81, 0.74], [0.55, 0.57, 0.50, 0.49], [0.77, 0.77, 0.74, 0.66]]
    blocks = [f"b{i}" for i in range(6)]
    out = rank_methods(methods, blocks, values)
    columns = [[row[j] for row in values] for j in range(4)]
    expected = sps.friedmanchisquare(*columns)
    assert out.friedman == pytest.approx(expected.statistic, abs=1e-9)
    assert out.friedman_p == pytest.approx(expected.pvalue, abs=1e-9)
    f_stat = 5 * expected.statistic / (6 * 3 - expected.statistic)
    assert out.iman_davenport == pytest.approx(f_stat, abs=1e-9)
    assert out.iman_davenport_p == pytest.approx(sps.f.sf(f_stat, 3, 15), abs=1e-9)
    raw = {}
    for i in range(4):
        for j in range(i + 1, 4):
            raw[(methods[i], methods[j])] = sps.wilcoxon(columns[i], columns[j],
                                                         zero_method="zsplit").pvalue
    ordered = sorted(raw, key=raw.get)  # Holm by hand: p_(k) * (m - k), running maximum
    by_hand, running = {}, 0.0
    for k, pair in enumerate(ordered):
        running = max(running, min(1.0, (6 - k) * raw[pair]))
        by_hand[pair] = running
    for test in out.pairs:
        assert test.p == pytest.approx(raw[(test.a, test.b)], abs=1e-9)
        assert test.p_holm == pytest.approx(by_hand[(test.a, test.b)], abs=1e-9)
    # ranks by hand: lion 1,2,1,1,2,1.5; vpt 2,1,2.5,3,1,1.5; bias 3,3,2.5,2,3,3; head 4s
    assert out.mean_ranks == pytest.approx([8.5 / 6, 11 / 6, 2.75, 4.0], abs=1e-12)
    lion_vpt = next(t for t in out.pairs if (t.a, t.b) == ("lion", "vpt"))
    assert (lion_vpt.wins, lion_vpt.losses) == (3, 2)  # one zero difference: neither


def test_holm_by_hand() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, 0.001, 0.5, 0.01]) == pytest.approx([0.4, 0.004, 0.5, 0.03])
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == []


# --- Demšar (2006), the published worked example ------------------------------------------------
def test_demsar_friedman_nemenyi_example() -> None:
    out = rank_methods(DEMSAR_METHODS, DEMSAR_DATASETS, DEMSAR_AUC)
    assert [round(r, 3) for r in out.mean_ranks] == [3.143, 2.000, 2.893, 1.964]
    assert round(friedman_from_ranks(out.mean_ranks, 14), 2) == 9.28
    f_stat, p = iman_davenport(friedman_from_ranks(out.mean_ranks, 14), 14, 4)
    assert round(f_stat, 2) == 3.69 and p < 0.05
    assert round(sps.f.ppf(0.95, 3, 39), 2) == 2.85  # the paper's critical value
    assert round(out.q_alpha, 3) == 2.569 and round(out.cd, 2) == 1.25
    assert round(critical_difference(4, 14), 2) == 1.25
    # scipy's Friedman chi-square carries the tie correction (mushroom ties all four)
    assert out.friedman == pytest.approx(sps.friedmanchisquare(
        *[[row[j] for row in DEMSAR_AUC] for j in range(4)]).statistic, abs=1e-9)
    # "the post-hoc test is not powerful enough": no two mean ranks differ by 1.25 or more
    assert out.cliques() == [["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]]


def test_demsar_wilcoxon_example() -> None:
    c45, c45m = [row[0] for row in DEMSAR_AUC], [row[1] for row in DEMSAR_AUC]
    result = sps.wilcoxon(c45m, c45, zero_method="zsplit")
    assert result.statistic == 12.0  # T = min(R+, R-) = min(93, 12)
    out = rank_methods(["C4.5", "C4.5+m"], DEMSAR_DATASETS, [r[:2] for r in DEMSAR_AUC])
    (pair,) = out.pairs
    assert pair.p == pytest.approx(result.pvalue, abs=1e-12) and pair.p < 0.05
    assert (pair.wins, pair.losses) == (2, 10)  # C4.5 above C4.5+m on 2 sets, below on 10


def test_nemenyi_q_against_demsars_table() -> None:
    # Demšar's Table 5(a), alpha = 0.05, k = 2..10 (3 decimals; scipy's quantile rounds 2.344
    # and 2.948 where the table prints 2.343 and 2.949)
    table = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
    for k, q in zip(range(2, 11), table, strict=True):
        assert nemenyi_q(k) == pytest.approx(q, abs=1.5e-3)


# --- the pairing rules -------------------------------------------------------------------------
def test_pairs_need_the_same_seed_and_split() -> None:
    d = difference(samples(A), samples(B))
    assert d.test == "paired t" and d.pairs == 5 and d.seeds == (0, 1, 2, 3, 4)
    assert d.low == pytest.approx(sps.ttest_rel(A, B).confidence_interval(0.95).low, abs=1e-9)
    moved = difference(samples(A), samples(C, first_seed=10))  # other seeds: Welch, said so
    assert moved.test == "Welch" and moved.pairs == 0 and "unpaired" in moved.reason
    assert moved.seeds_text() == "0 1 2 3 4 | 10 11 12 13"
    other_split = [((s, 0.2, None, None), v) for (s, *_), v in samples(B)]
    assert difference(samples(A), other_split).test == "Welch"  # same seeds, other hold-out
    two = difference(samples(A[:2]), samples(B[:2]))
    assert two.test == "none" and not two.has_interval and two.excludes_zero is None
    assert two.mean == pytest.approx((A[0] + A[1] - B[0] - B[1]) / 2)
    assert "2 seed pairs" in two.reason and "needs 3 pairs" in two.reason
    some = difference(samples(A), samples(B[:2]) + samples(C, first_seed=5))
    assert some.test == "Welch" and some.pairs == 2  # 2 pairs, 5 and 6 runs: unpaired


def test_a_repeated_key_pairs_with_nothing() -> None:
    twice = samples(A) + [((0, None, None, None), 0.5)]
    d = difference(twice, samples(B))
    assert d.test == "paired t" and d.seeds == (1, 2, 3, 4)


def test_pair_key_reads_the_split_settings() -> None:
    run = {"seed": 2, "data_id": "data:ab", "config": {"train": {"val_fraction": 0.1,
                                                                   "max_train_samples": 500}}}
    assert pair_key(run) == (2, 0.1, 500, "data:ab")
    assert pair_key({"seed": 0}) == (0, None, None, None)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    diffs = [a - b for a, b in zip(A, B, strict=True)]
    first, again = bootstrap(diffs), bootstrap(diffs)
    assert first == again
    spread = [0.01, 0.035, -0.004, 0.022, 0.017, 0.03]
    assert bootstrap(spread, resamples=50, seed=1) != bootstrap(spread, resamples=50)
    mean, low, high = first
    assert min(diffs) <= low <= mean <= high <= max(diffs)
    assert bootstrap([0.02, 0.02, 0.02]) == (pytest.approx(0.02), 0.02, 0.02)
    d = difference(samples(A), samples(B), interval="bootstrap")
    assert d.test == "paired bootstrap" and (d.low, d.high) == pytest.approx(first[1:])


def test_difference_properties() -> None:
    assert Difference(0.1, 0.02, 0.2).a_better and Difference(0.1, 0.02, 0.2).excludes_zero
    assert not Difference(0.1, -0.02, 0.2).a_better
    assert Difference(-0.1, -0.2, -0.01).excludes_zero and \
        not Difference(-0.1, -0.2, -0.01).a_better
    with pytest.raises(ValueError, match="unknown interval"):
        difference(samples(A), samples(B), interval="normal")
    assert math.isclose(welch([0.5, 0.5, 0.5], [0.4, 0.4, 0.4])[1], 0.1)  # no spread: exact
