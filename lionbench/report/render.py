"""Renderers for ``ComparisonTable``: rich (terminal), markdown, LaTeX (booktabs) and CSV.

Why several: rich for reading results in a terminal, markdown for READMEs and issues, LaTeX to
paste into a paper (best values in ``\\textbf``, booktabs rules, backbone on the first row of
its block, no multirow package needed), CSV for machines (plain numbers: mean, std and n as
separate columns, one line per cell, nothing rounded for display).

Why not pandas' writers: ``Styler.to_latex`` (tried, pandas 3.1) sets the backbone with
``\\multirow`` (an extra package) and separates blocks with ``\\cline`` where the paper uses
booktabs' ``\\midrule``, has no ``\\cmidrule`` under grouped headers (Table 3) and cannot bold
only the mean of ``mean ± std``, so the golden tests (tests/golden/) cannot pass with it;
``DataFrame.to_markdown`` needs the ``tabulate`` package and has no two-level header; and for
CSV the standard library's ``csv`` writes the same lines without the quarter second that
importing pandas costs every ``lionbench table`` on a 2-core machine.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from .marks import versus_text
from .stats import Difference
from .tables import Column, ComparisonTable, cell_text, format_number

FORMATS = ("rich", "markdown", "latex", "csv")
CSV_COLUMNS = ("backbone", "method", "weights", "backbone_label", "method_label", "dataset",
               "column_label", "metric", "mean", "std", "n", "best", "flags", "params_m",
               "candidate", "tie", "best_diff", "best_low", "best_high", "best_test",
               "best_seeds")
CSV_PAPER_COLUMNS = ("paper", "delta", "paper_params_m")
CSV_VERSUS_COLUMNS = ("vs", "vs_diff", "vs_low", "vs_high", "vs_test", "vs_seeds")
PARAM_DIGITS = 3


def render_table(table: ComparisonTable, fmt: str = "markdown") -> Any:
    """Render as "rich" (a rich.table.Table), "markdown", "latex" or "csv" (strings)."""
    renderers = {"rich": to_rich, "markdown": to_markdown, "latex": to_latex, "csv": to_csv}
    if fmt not in renderers:
        raise ValueError(f"unknown format '{fmt}'; choose from {', '.join(FORMATS)}")
    return renderers[fmt](table)


def _params_text(table: ComparisonTable, i: int) -> tuple[str, str]:
    ours, paper = table.params_m[i], table.paper_params_m[i]
    extra = ""
    if paper is not None:
        extra = f" (paper {format_number(paper, PARAM_DIGITS)}"
        if ours is not None:
            extra += f", {format_number(ours - paper, PARAM_DIGITS, signed=True)}"
        extra += ")"
    return format_number(ours, PARAM_DIGITS), extra


def _visible(table: ComparisonTable) -> list[Column]:
    """The rendered value columns: each dataset column, and with ``--vs`` its difference column
    after it (same group, label "Δ vs REF")."""
    if table.versus is None:
        return list(table.columns)
    out = []
    for c in table.columns:
        label = f"\u0394 vs {table.versus}"
        out += [c, Column(c.dataset, label if c.group else f"{c.label} {label}", c.group)]
    return out


def _grid(table: ComparisonTable) -> list[list[tuple[str, str, bool]]]:
    """Body cells as (main, extra, bold); the backbone only on its block's first row."""
    out = []
    for i, row in enumerate(table.rows):
        first = i == 0 or table.rows[i - 1].backbone != row.backbone
        line = [(row.backbone_label if first else "", "", False), (row.method_label, "", False)]
        for c in table.cells[i]:
            line.append((*cell_text(c, show_n=table.max_seeds > 1), c.best))
            if table.versus is not None:
                text = versus_text(c.versus) if c.mean is not None else "-"
                line.append(("ref" if i in table.reference_rows and c.mean is not None
                             else text, "", False))
        if table.show_params:
            line.append((*_params_text(table, i), False))
        out.append(line)
    return out


def _headers(table: ComparisonTable) -> tuple[list[str], list[str] | None]:
    """One header line, or two when columns have groups (upper: group on its first column)."""
    columns = _visible(table)
    grouped = any(c.group for c in columns)
    tail = [table.params_label] if table.show_params else []
    if not grouped:
        return ["Backbone", "Method"] + [c.label for c in columns] + tail, None
    upper, lower, prev = ["Backbone", "Method"], ["", ""], None
    for c in columns:
        upper.append("" if c.group and c.group == prev else (c.group or c.label))
        lower.append(c.label if c.group else "")
        prev = c.group
    return upper + tail, lower + [""] * len(tail)


def _pad(lines: list[list[str]], right: list[bool]) -> list[list[str]]:
    widths = [max(len(line[j]) for line in lines) for j in range(len(lines[0]))]
    return [[s.rjust(w) if r else s.ljust(w)
             for s, w, r in zip(line, widths, right, strict=True)] for line in lines]


def _md_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")


def _bold(s: str, pattern: str) -> str:
    return pattern.format(s) if s else s


def to_markdown(table: ComparisonTable) -> str:
    """A GitHub table; best in **bold**; Table 3's lower header as the first body line."""
    upper, lower = _headers(table)
    body = [[_bold(_md_escape(m), "**{}**" if b else "{}") + _md_escape(x) for m, x, b in line]
            for line in _grid(table)]
    lines = [[_md_escape(h) for h in upper]] + ([lower] if lower else []) + body
    right = [False, False] + [True] * (len(upper) - 2)
    padded = _pad(lines, right)
    rule = [("-" * (len(s) - 1) + ":") if r else ("-" * len(s))
            for s, r in zip(padded[0], right, strict=True)]
    out = ["| " + " | ".join(line) + " |" for line in [padded[0], rule, *padded[1:]]]
    notes = [_md_escape(n) for n in table.footnotes()]
    return "\n".join(out + ([""] + notes if notes else [])) + "\n"


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                   "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                   "^": r"\textasciicircum{}", "\u00b1": r"$\pm$", "\u2020": r"\dag{}",
                   "\u2021": r"\ddag{}", "\u00a7": r"\S{}",
                   "\u00b6": r"\P{}", "\u2248": r"$\approx$", "\u0394": r"$\Delta$",
                   "\u00b0": r"$^\circ$"}


def latex_escape(s: str) -> str:
    """Escape LaTeX specials (_ % & $ # { } ~ ^ \\) and spell ±, †, ‡, §, ¶, ≈, Δ and ° as
    LaTeX."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in s)


def to_latex(table: ComparisonTable) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); best in \\textbf{}."""
    upper, lower = _headers(table)
    ncols = len(upper)
    head = [latex_escape(h) for h in upper]
    rules = ""
    columns = _visible(table)
    if lower:  # merge each group into one \multicolumn and rule under it
        head, rules, j = head[:2], "", 2
        while j < 2 + len(columns):
            k, group = j + 1, columns[j - 2].group
            while group and k < 2 + len(columns) and columns[k - 2].group == group:
                k += 1
            head.append(latex_escape(upper[j]) if k == j + 1 and not group else
                        rf"\multicolumn{{{k - j}}}{{c}}{{{latex_escape(group or '')}}}")
            if group:
                rules += rf"\cmidrule(lr){{{j + 1}-{k}}} "
            j = k
        head += [latex_escape(h) for h in upper[2 + len(columns):]]
    body = [[_bold(latex_escape(m), r"\textbf{{{}}}" if b else "{}") + latex_escape(x)
             for m, x, b in line] for line in _grid(table)]
    # header line(s) padded with the body, except a grouped upper line (multicolumns)
    lines = [[latex_escape(h) for h in lower] if lower else head] + body
    padded = _pad(lines, [False, False] + [True] * (ncols - 2))
    starts = {start for start, _ in table.blocks()} - {0}
    out = [r"% requires \usepackage{booktabs}",
           rf"\begin{{tabular}}{{ll{'r' * (ncols - 2)}}}", r"\toprule"]
    if lower:
        out += [" & ".join(head) + r" \\", rules.strip()]
    out += [" & ".join(padded[0]) + r" \\", r"\midrule"]
    for i, line in enumerate(padded[1:]):
        if i in starts:
            out.append(r"\midrule")
        out.append(" & ".join(line) + r" \\")
    out.append(r"\bottomrule")
    out += [rf"\multicolumn{{{ncols}}}{{l}}{{\footnotesize {latex_escape(n)}}} \\"
            for n in table.footnotes()]
    out.append(r"\end{tabular}")
    return "\n".join(out) + "\n"


def _plain(x: float | None, digits: int = 6) -> str:
    return "" if x is None else repr(round(x, digits))


def _difference_fields(d: Difference | None) -> list[str]:
    """diff, low, high, test, seeds of a difference (empty where there is none)."""
    if d is None:
        return [""] * 5
    return [_plain(d.mean), _plain(d.low), _plain(d.high), d.test, d.seeds_text()]


def to_csv(table: ComparisonTable) -> str:
    """Long form, one line per (row, column) cell, empty mean and n=0 where there is no run.

    ``tie`` (1: the tie mark) and ``best_*`` (the best minus this cell; on the best's own line,
    the best minus the next) are empty where a cell was not compared (no statistics, a tuning
    candidate, the only value of its column); with ``--vs``,
    ``vs_*`` hold this cell minus the reference row's. ``*_seeds`` name the seeds of the pairs
    (unpaired: ``a seeds | b seeds``), so each interval can be recomputed by hand."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    compare = table.compare == "paper"
    w.writerow(CSV_COLUMNS + (CSV_PAPER_COLUMNS if compare else ())
               + (CSV_VERSUS_COLUMNS if table.versus is not None else ()))
    for i, row in enumerate(table.rows):
        for col, c in zip(table.columns, table.cells[i], strict=True):
            line = [row.backbone, row.method, row.weights, row.backbone_label, row.method_label,
                    col.dataset, f"{col.group} {col.label}" if col.group else col.label,
                    table.metric, _plain(c.mean), _plain(c.std), c.n, int(c.best),
                    ";".join(c.flags), _plain(table.params_m[i]), int(row.candidate),
                    "" if c.versus_best is None else int(c.tie),
                    *_difference_fields(c.versus_best)]
            if compare:
                line += [_plain(c.paper), _plain(c.delta), _plain(table.paper_params_m[i])]
            if table.versus is not None:
                line += [table.versus, *_difference_fields(c.versus)]
            w.writerow(line)
    return buf.getvalue()


def to_rich(table: ComparisonTable) -> Any:
    """A rich.table.Table: best in bold, a rule between backbone blocks, footnotes as caption."""
    from rich.table import Table
    from rich.text import Text

    upper, lower = _headers(table)
    rt = Table(title=table.title or None, caption="\n".join(table.footnotes()) or None,
               caption_justify="left")
    for j, h in enumerate(upper):
        label = f"{h}\n{lower[j]}" if lower else h
        rt.add_column(label, justify="left" if j < 2 else "right", no_wrap=True)
    blocks_end = {stop - 1 for _, stop in table.blocks()}
    for i, line in enumerate(_grid(table)):
        texts = [Text.assemble((m, "bold" if b else ""), x) for m, x, b in line]
        rt.add_row(*texts, end_section=i in blocks_end)
    return rt


def rich_to_text(renderable: Any, width: int = 100_000) -> str:
    """Plain text of a rich renderable (no colours), e.g. for tests or a log file: as wide as
    its lines need (``width`` is a limit), never cut."""
    from rich.console import Console

    console = Console(record=True, width=width, file=io.StringIO(), color_system=None,
                      force_terminal=False, markup=False)  # names are data, not markup
    console.print(renderable)
    return console.export_text()
