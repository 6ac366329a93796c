"""``lionbench rank``: a table's rows ranked over its backbone x dataset columns, with
Friedman's test, the pairwise Wilcoxon-Holm tests and the Nemenyi critical difference
(``lionbench.report.ranks``), as text, and the data ``lionbench plot cd`` draws.

A *method* is a method where it has one row per backbone block (its rows in other blocks may
name other weights: ``lion (weights=mobilenetv2_100.imagenet)`` is still ``lion``), else each
of its rows by its label (``head-tuning``, ``head-tuning (weights=none)``). Each backbone x
dataset column where every chosen method has a value is one block (Demšar's "data set"); the
others are left out and named. A cell's value is its mean over seeds.
"""

from __future__ import annotations

import json
from typing import Any

from .compare import render_rows
from .ranks import Ranking, rank_methods
from .tables import ComparisonTable

FORMATS = ("rich", "markdown", "latex", "json")


def ranking_of(table: ComparisonTable, methods: list[str] | None = None, *,
               alpha: float = 0.05) -> Ranking:
    """Rank the table's methods (every one, or ``methods`` in that order) over its blocks."""
    names = method_names(table)
    labels = list(dict.fromkeys(names.values()))
    if methods:
        unknown = [m for m in methods if m not in labels]
        if unknown:
            raise ValueError(f"no row {', '.join(repr(m) for m in unknown)} in the table; "
                             f"rows: {', '.join(labels)}")
        labels = list(dict.fromkeys(methods))
    blocks, values = [], []
    for start, stop in table.blocks():
        rows = {names[i]: i for i in range(start, stop) if i in names}
        for j, col in enumerate(table.columns):
            blocks.append(f"{table.rows[start].backbone_label} / "
                          + (f"{col.group} {col.label}" if col.group else col.label))
            values.append([table.cells[rows[m]][j].mean if m in rows else None
                           for m in labels])
    keep = [k for k, row in enumerate(values) if any(v is not None for v in row)]
    return rank_methods(labels, [blocks[k] for k in keep], [values[k] for k in keep],
                        alpha=alpha)


def method_names(table: ComparisonTable) -> dict[int, str]:
    """Row index -> the name it is ranked under: its method where that method has one row in
    every backbone block (rows of other backbones may carry other weights in their labels:
    still the same method), else its full label. Tuning candidates are left out."""
    per_block: dict[str, int] = {}
    for start, stop in table.blocks():
        counts: dict[str, int] = {}
        for i in range(start, stop):
            if not table.rows[i].candidate:
                counts[table.rows[i].method] = counts.get(table.rows[i].method, 0) + 1
        for method, n in counts.items():
            per_block[method] = max(per_block.get(method, 0), n)
    return {i: row.method if per_block[row.method] == 1 else row.method_label
            for i, row in enumerate(table.rows) if not row.candidate}


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def render_ranking(r: Ranking, fmt: str = "markdown") -> Any:
    """The mean ranks (best first), then the tests, as rich / markdown / latex / json."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(to_records(r), indent=2) + "\n"
    n, k = len(r.blocks), len(r.methods)
    rank_rows = [[str(pos + 1), r.methods[i], f"{r.mean_ranks[i]:.3f}"]
                 for pos, i in enumerate(r.order)]
    notes = [f"{n} block(s) (backbone / dataset), {k} methods; rank 1 = highest mean test "
             "top-1 in a block, ties share the mean rank"]
    if r.friedman is not None:
        notes.append(f"Friedman chi2 = {r.friedman:.3f} (tie-corrected, df {k - 1}), "
                     f"p = {_p(r.friedman_p)}; Iman-Davenport F = {r.iman_davenport:.3f} "
                     f"(df {k - 1}, {(k - 1) * (n - 1)}), p = {_p(r.iman_davenport_p)}")
    if r.cd is not None:
        groups = "; ".join(", ".join(c) for c in r.cliques()) or "none"
        notes.append(f"Nemenyi critical difference at alpha {r.alpha:g}: CD = {r.cd:.3f} "
                     f"(q = {r.q_alpha:.3f}); not significantly different (mean ranks within "
                     f"CD): {groups}")
    notes += r.notes
    if r.dropped:
        notes.append(f"left out (a method without a value): {', '.join(r.dropped)}")
    first = render_rows(["#", "Method", "mean rank"], rank_rows, fmt, "Mean rank over "
                        f"{n} block(s)", notes, right_from=2)
    if not r.pairs:
        return first
    pair_rows = [[t.a, t.b, f"{t.mean_difference:+.4f}", f"{t.wins}/{t.losses}", _p(t.p),
                  _p(t.p_holm), "yes" if t.significant(r.alpha) else "no"] for t in r.pairs]
    second = render_rows(["A", "B", "mean A - B", "A wins/losses", "p", "p (Holm)",
                          f"p (Holm) < {r.alpha:g}"], pair_rows, fmt,
                         "Pairwise Wilcoxon signed-rank tests over the blocks, Holm-adjusted",
                         ["zero differences split between the signed-rank sums (Demšar 2006)"],
                         right_from=2)
    if fmt == "rich":
        from rich.console import Group

        return Group(first, second)
    return first + "\n" + second


def to_records(r: Ranking) -> dict[str, Any]:
    return {"methods": r.methods, "blocks": r.blocks, "values": r.values, "ranks": r.ranks,
            "mean_ranks": r.mean_ranks, "alpha": r.alpha, "friedman": r.friedman,
            "friedman_p": r.friedman_p, "iman_davenport": r.iman_davenport,
            "iman_davenport_p": r.iman_davenport_p, "q_alpha": r.q_alpha,
            "critical_difference": r.cd, "cliques": r.cliques(),
            "pairs": [{"a": t.a, "b": t.b, "mean_difference": t.mean_difference,
                       "wins": t.wins, "losses": t.losses, "p": t.p, "p_holm": t.p_holm,
                       "significant": t.significant(r.alpha)} for t in r.pairs],
            "dropped": r.dropped, "notes": r.notes}


__all__ = ["FORMATS", "ranking_of", "render_ranking", "to_records"]
