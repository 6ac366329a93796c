"""Which cells of a comparison table are marked best, tied, or compared with a reference row.

Why: bolding the highest mean tells a reader which number is larger, and a reader takes it as
"this method wins". With three seeds most such wins are inside the noise (the README's LION-R
ahead of LION by 0.022 on one seed). So, in each dataset column of each backbone block:

- the column's **best** is the cell with the highest mean; it is **bold** only where the
  seed-paired 95 % interval (``lionbench.report.stats.difference``) of "best minus cell" lies
  above zero for *every* other cell of the block, the next best included;
- every cell that is **not significantly worse** than the best (its interval includes 0, or no
  interval can be given: fewer than 3 seed pairs and fewer than 3 runs a side) carries the tie
  mark :data:`TIE_MARK`; so does the best itself when it is not bold: the marked cells are the
  group the data cannot separate;
- rows of tuning candidates (``Row.candidate``) are never best or tied.

``mark_plain`` is the old rule (``table --no-stats``): bold the highest mean of each column
(equal at the shown precision: all of them), no tie marks. ``mark_versus`` fills
``Cell.versus`` for ``table --vs``. Functions here take a ``ComparisonTable`` (tables.py) by its
attributes only, so that this module needs nothing of tables.py.
"""

from __future__ import annotations

from typing import Any

from .stats import MIN_PAIRS, Difference, difference

TIE_MARK = "\u2248"  # ≈
DIGITS = 4


def _column_cells(table: Any, start: int, stop: int, j: int) -> list[int]:
    """Row indices of a block's cells in column ``j`` with a value, candidates left out."""
    return [i for i in range(start, stop)
            if table.cells[i][j].mean is not None and not table.rows[i].candidate]


def mark_plain(table: Any) -> None:
    """Bold the highest mean of each column within each backbone block (equal at the shown
    precision: all of them); a block with a single value in a column marks nothing."""
    for start, stop in table.blocks():
        for j in range(len(table.columns)):
            idx = _column_cells(table, start, stop, j)
            if len(idx) < 2:
                continue
            top = max(round(table.cells[i][j].mean, DIGITS) for i in idx)
            for i in idx:
                table.cells[i][j].best = round(table.cells[i][j].mean, DIGITS) == top


def mark_significance(table: Any) -> None:
    """Best (bold) and tie marks by seed-paired intervals; see the module's docstring."""
    for start, stop in table.blocks():
        for j in range(len(table.columns)):
            idx = _column_cells(table, start, stop, j)
            if len(idx) < 2:
                continue
            idx.sort(key=lambda i: -table.cells[i][j].mean)  # stable: first row wins a tie
            best = table.cells[idx[0]][j]
            worse = True
            for i in idx[1:]:
                cell = table.cells[i][j]
                cell.versus_best = _diff(table, best, cell)
                cell.tie = not cell.versus_best.a_better
                worse = worse and not cell.tie
            best.versus_best = _diff(table, best, table.cells[idx[1]][j])  # over the next
            best.best, best.tie = worse, not worse


def mark_versus(table: Any, reference: str) -> None:
    """``Cell.versus`` = cell minus the reference row's cell of the same block and column."""
    found = False
    for start, stop in table.blocks():
        ref = reference_row(table, reference, start, stop)
        if ref is None:
            continue
        found = True
        table.reference_rows.add(ref)
        for i in range(start, stop):
            for j in range(len(table.columns)):
                cell, base = table.cells[i][j], table.cells[ref][j]
                if i != ref and cell.samples and base.samples:
                    cell.versus = _diff(table, cell, base)
    if not found:
        labels = sorted({r.method_label for r in table.rows if not r.candidate})
        raise ValueError(f"no row '{reference}' to compare with; rows: {', '.join(labels)}")


def reference_row(table: Any, name: str, start: int, stop: int) -> int | None:
    """The row of block [start, stop) that ``name`` means: the row labelled ``name``, else the
    method's plain row (no settings), else the method's only row; None if none. Two rows of one
    method, neither plain: ambiguous, an error naming their labels."""
    rows = [(i, table.rows[i]) for i in range(start, stop) if not table.rows[i].candidate]
    for i, row in rows:
        if row.method_label == name:
            return i
    of_method = [(i, row) for i, row in rows if row.method == name]
    plain = [i for i, row in of_method if not row.settings]
    if plain:
        return plain[0]
    if len(of_method) == 1:
        return of_method[0][0]
    if of_method:
        raise ValueError(f"'{name}' has {len(of_method)} rows here; name one by its label: "
                         + ", ".join(row.method_label for _, row in of_method))
    return None


def _diff(table: Any, a: Any, b: Any) -> Difference:
    return difference(a.samples, b.samples, level=table.level, interval=table.interval)


def versus_text(d: Difference | None, digits: int = DIGITS) -> str:
    """``+0.0120 [-0.0050, +0.0290]`` (paired), the same with ``W`` (Welch), or
    ``+0.0120 (n/i)`` where no interval could be given."""
    if d is None or d.mean is None:
        return "-"
    text = f"{d.mean:+.{digits}f}"
    if not d.has_interval:
        return text + " (n/i)"
    text += f" [{d.low:+.{digits}f}, {d.high:+.{digits}f}]"
    return text + (" W" if d.test == "Welch" else "")


def stats_notes(table: Any) -> list[str]:
    """The footnotes that explain the marks and the difference columns used."""
    notes = []
    percent = f"{table.level * 100:g} %"
    kind = "t" if table.interval == "t" else "bootstrap"
    compared = [c.versus_best for line in table.cells for c in line if c.versus_best is not None]
    if table.stats and compared:
        notes.append(f"bold: above every other cell of its column ({percent} {kind} interval of "
                     "the seed-paired difference above 0)")
        notes.append(f"{TIE_MARK} not significantly worse than its column's best (interval "
                     f"includes 0, or none: fewer than {MIN_PAIRS} seed pairs; unpaired: Welch)")
        if not any(d.has_interval for d in compared):
            notes.append(f"no interval in this table: too few seeds (run {MIN_PAIRS} or more "
                         "to tell methods apart)")
    if table.versus is not None:
        notes.append(f"\u0394 vs {table.versus}: this row minus it, mean of seed-paired "
                     f"differences [{percent} {kind} interval]; W unpaired (Welch); n/i no "
                     "interval")
    return notes


__all__ = ["TIE_MARK", "mark_plain", "mark_significance", "mark_versus", "reference_row",
           "stats_notes", "versus_text"]
