"""``lionbench compare A B``: per backbone x dataset, A minus B with its seed-paired interval.

Why a command of its own: a table's tie marks compare each cell with its column's best; a
reader who asks "is LION-R better than LION here?" wants that one difference, its interval, how
many seed pairs it rests on and which seeds they are, so that the claim can be checked by hand
(``lionbench export`` has every run). A and B name rows as ``lionbench table`` labels them
(``lion``, ``lion (lr=0.01)``) or a method with one row per backbone; the cells are the table's
(one configuration each, tuning candidates left out), and the statistics those of
``lionbench.report.stats``.

Formats as for ``table``: rich, markdown, latex, csv (plain numbers, one line per comparison),
json (everything, for scripts).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from .marks import reference_row
from .render import _md_escape, _pad, latex_escape
from .stats import Difference, difference
from .tables import ComparisonTable, format_number

FORMATS = ("rich", "markdown", "latex", "csv", "json")


@dataclass
class ComparisonLine:
    """A minus B on one backbone x dataset."""

    backbone: str
    dataset: str
    column: str  # the dataset's label in the table
    a_label: str
    b_label: str
    a_mean: float
    b_mean: float
    a_n: int
    b_n: int
    difference: Difference


@dataclass
class MethodComparison:
    a: str
    b: str
    metric: str
    level: float
    interval: str
    lines: list[ComparisonLine] = field(default_factory=list)


def compare_rows(table: ComparisonTable, a: str, b: str) -> MethodComparison:
    """A minus B in every backbone block and column where both rows have runs."""
    if a == b:
        raise ValueError(f"compare needs two different rows; got '{a}' twice")
    out = MethodComparison(a, b, table.metric, table.level, table.interval)
    for start, stop in table.blocks():
        ia, ib = reference_row(table, a, start, stop), reference_row(table, b, start, stop)
        if ia is None or ib is None or ia == ib:
            continue
        for j, col in enumerate(table.columns):
            ca, cb = table.cells[ia][j], table.cells[ib][j]
            if not ca.samples or not cb.samples:
                continue
            d = difference(ca.samples, cb.samples, level=table.level, interval=table.interval)
            out.lines.append(ComparisonLine(
                table.rows[ia].backbone_label, col.dataset,
                f"{col.group} {col.label}" if col.group else col.label,
                table.rows[ia].method_label, table.rows[ib].method_label,
                ca.mean, cb.mean, ca.n, cb.n, d))  # type: ignore[arg-type]
    if not out.lines:
        labels = sorted({r.method_label for r in table.rows if not r.candidate})
        raise ValueError(f"no backbone x dataset has runs of both '{a}' and '{b}'; rows: "
                         + (", ".join(labels) or "none"))
    return out


def _excludes(d: Difference) -> str:
    return "-" if d.excludes_zero is None else "yes" if d.excludes_zero else "no"


def _interval(d: Difference) -> str:
    if not d.has_interval:
        return "-"
    return f"[{d.low:+.4f}, {d.high:+.4f}]"


HEADERS = ("Backbone", "Dataset", "A", "B", "A - B", "interval", "test", "pairs", "seeds",
           "excludes 0")


def _rows(cmp: MethodComparison) -> list[list[str]]:
    out = []
    for line in cmp.lines:
        d = line.difference
        out.append([line.backbone, line.column, f"{format_number(line.a_mean)} (n={line.a_n})",
                    f"{format_number(line.b_mean)} (n={line.b_n})",
                    format_number(d.mean, signed=True), _interval(d), d.test, str(d.pairs),
                    d.seeds_text(), _excludes(d)])
    return out


def _title(cmp: MethodComparison) -> str:
    kind = "t" if cmp.interval == "t" else "bootstrap"
    return (f"{cmp.a} - {cmp.b}: {cmp.metric}, seed-paired differences with "
            f"{cmp.level * 100:g} % {kind} intervals")


def _notes(cmp: MethodComparison) -> list[str]:
    notes = ["A - B: mean of the differences of runs with the same seed and data split (paired "
             "tests); Welch: unpaired, the difference of the means; none: no interval",
             "seeds: the pairs' seeds (paired), or A's | B's (unpaired)"]
    for line in cmp.lines:
        if line.difference.reason:
            notes.append(f"{line.backbone} / {line.column}: {line.difference.reason}")
    return notes


def render_comparison(cmp: MethodComparison, fmt: str = "markdown") -> Any:
    """As a rich Table, or markdown / latex / csv / json text."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")
    headers = list(HEADERS)
    headers[2], headers[3] = f"A: {cmp.a}", f"B: {cmp.b}"
    if fmt == "json":
        return json.dumps(to_records(cmp), indent=2) + "\n"
    if fmt == "csv":
        return _csv(cmp)
    return render_rows(headers, _rows(cmp), fmt, _title(cmp), _notes(cmp), right_from=2)


def to_records(cmp: MethodComparison) -> dict[str, Any]:
    return {"a": cmp.a, "b": cmp.b, "metric": cmp.metric, "level": cmp.level,
            "interval": cmp.interval,
            "comparisons": [{
                "backbone": line.backbone, "dataset": line.dataset, "a_label": line.a_label,
                "b_label": line.b_label, "a_mean": line.a_mean, "b_mean": line.b_mean,
                "a_n": line.a_n, "b_n": line.b_n, "difference": line.difference.mean,
                "low": line.difference.low, "high": line.difference.high,
                "test": line.difference.test, "pairs": line.difference.pairs,
                "seeds": list(line.difference.seeds),
                "seeds_a": list(line.difference.seeds_a),
                "seeds_b": list(line.difference.seeds_b),
                "excludes_zero": line.difference.excludes_zero,
                "reason": line.difference.reason} for line in cmp.lines]}


CSV_COLUMNS = ("backbone", "dataset", "a", "b", "a_mean", "b_mean", "a_n", "b_n", "difference",
               "low", "high", "level", "test", "pairs", "seeds", "excludes_zero", "reason")


def _csv(cmp: MethodComparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for line in cmp.lines:
        d = line.difference
        w.writerow([line.backbone, line.dataset, line.a_label, line.b_label,
                    repr(round(line.a_mean, 6)), repr(round(line.b_mean, 6)), line.a_n,
                    line.b_n, repr(round(d.mean, 6)) if d.mean is not None else "",
                    "" if d.low is None else repr(round(d.low, 6)),
                    "" if d.high is None else repr(round(d.high, 6)), cmp.level, d.test,
                    d.pairs, d.seeds_text(), "" if d.excludes_zero is None
                    else int(d.excludes_zero), d.reason])
    return buf.getvalue()


def render_rows(headers: list[str], rows: list[list[str]], fmt: str, title: str,
                notes: list[str], right_from: int = 1) -> Any:
    """A plain table (no merged cells) as rich, markdown or latex, with a title and notes."""
    right = [j >= right_from for j in range(len(headers))]
    if fmt == "rich":
        from rich.table import Table

        rt = Table(title=title, caption="\n".join(notes) or None, caption_justify="left")
        for h, r in zip(headers, right, strict=True):
            rt.add_column(h, justify="right" if r else "left")  # wraps in a narrow terminal
        for row in rows:
            rt.add_row(*row)
        return rt
    if fmt == "markdown":
        lines = _pad([[_md_escape(c) for c in row] for row in [headers, *rows]], right)
        rule = [("-" * (len(s) - 1) + ":") if r else "-" * len(s)
                for s, r in zip(lines[0], right, strict=True)]
        out = [_md_escape(title), ""]
        out += ["| " + " | ".join(line) + " |" for line in [lines[0], rule, *lines[1:]]]
        return "\n".join(out + ([""] + [_md_escape(n) for n in notes] if notes else [])) + "\n"
    if fmt == "latex":
        lines = _pad([[latex_escape(c) for c in row] for row in [headers, *rows]], right)
        spec = "".join("r" if r else "l" for r in right)
        out = [r"% requires \usepackage{booktabs}", rf"% {latex_escape(title)}",
               rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(lines[0]) + r" \\",
               r"\midrule"]
        out += [" & ".join(line) + r" \\" for line in lines[1:]]
        out.append(r"\bottomrule")
        out += [rf"\multicolumn{{{len(headers)}}}{{l}}{{\footnotesize {latex_escape(n)}}} \\"
                for n in notes]
        out.append(r"\end{tabular}")
        return "\n".join(out) + "\n"
    raise ValueError(f"unknown format '{fmt}'")


__all__ = ["FORMATS", "ComparisonLine", "MethodComparison", "compare_rows",
           "render_comparison", "render_rows", "to_records"]
