"""The critical-difference diagram (Demšar 2006, Fig. 1): methods on an axis of mean ranks,
those whose ranks differ by less than the Nemenyi critical difference joined by a bar.

Drawn as the other figures are (``lionbench.report.plots``: a bare matplotlib Figure, PNG and
PDF). What a reader sees is embedded in each file as numbers and read back by
:func:`read_cd`: every method's rank *as drawn* (the x of its marker), each bar's members and
ends, the length of the CD bar; tests compare those with the statistics, not pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .plots import FORMATS, PlotError, PlotFiles, _pdf_string, _save
from .ranks import Ranking

CD_KEY = "lionbench:cd"  # the PNG text chunk; the PDF's Subject holds the same JSON


def plot_cd(ranking: Ranking, output: Path, formats: tuple[str, ...] = FORMATS,
            title: str | None = None) -> PlotFiles:
    """Draw ``ranking`` (``lionbench.report.rank_report.ranking_of``) to ``output.<fmt>``."""
    if ranking.cd is None or len(ranking.methods) < 2:
        raise PlotError("a critical-difference diagram needs 2 or more methods over 2 or more "
                        f"complete blocks (here: {len(ranking.methods)} method(s), "
                        f"{len(ranking.blocks)} block(s))")
    k = len(ranking.methods)
    order, cliques = ranking.order, ranking.cliques()
    half = (k + 1) // 2
    rows = max(half, k - half)
    bars = [-0.3 - 0.15 * n for n in range(len(cliques))]  # Nemenyi groups under the axis
    top = min(bars, default=-0.3) - 0.45  # the first label line, below the bars
    fig = Figure(figsize=(7, 1.7 + 0.3 * rows + 0.12 * len(cliques)), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0.5, k + 0.5)  # rank 1 on the left
    ax.set_ylim(top - 0.5 * rows, 2.2)
    ax.axis("off")
    ax.plot([1, k], [0, 0], color="black", lw=1)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, 0.15], color="black", lw=1)
        ax.text(r, 0.3, str(r), ha="center", va="bottom", fontsize=9)
    cd = ranking.cd
    ax.plot([1, 1 + cd], [1.4, 1.4], color="black", lw=1.5, gid="cd")
    ax.text(1 + cd / 2, 1.55, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for pos, i in enumerate(order):  # best half labelled on the left, the rest on the right
        x = ranking.mean_ranks[i]
        left = pos < half
        y = top - 0.5 * (pos if left else k - 1 - pos)
        end = 0.5 if left else k + 0.5
        ax.plot([x, x, end], [0, y, y], color="black", lw=0.8)
        ax.plot([x], [0], marker="o", color="black", ms=4, gid=f"rank|{ranking.methods[i]}")
        ax.text(end + (-0.05 if left else 0.05), y, f"{ranking.methods[i]} ({x:.2f})",
                ha="right" if left else "left", va="center", fontsize=9)
    for y, group in zip(bars, cliques, strict=True):
        xs = [ranking.mean_ranks[ranking.methods.index(m)] for m in group]
        ax.plot([min(xs) - 0.03, max(xs) + 0.03], [y, y], color="black", lw=3,
                gid="clique|" + json.dumps(group))
    fig.suptitle(title or f"Mean ranks over {len(ranking.blocks)} block(s), Nemenyi CD at "
                 f"alpha {ranking.alpha:g}", fontsize=10)
    drawn = drawn_data(fig)
    drawn.update(blocks=ranking.blocks, alpha=ranking.alpha, friedman_p=ranking.friedman_p)
    paths = _save(fig, output, formats, [], "Critical-difference diagram",
                  payload=json.dumps(drawn), key=CD_KEY)
    files = PlotFiles(paths, [])
    files.cd = drawn  # type: ignore[attr-defined]
    return files


def drawn_data(fig: Figure) -> dict[str, Any]:
    """What the figure shows, read from its artists: method -> x of its marker, the CD bar's
    length, each clique bar's members and x extent."""
    ranks, cliques, cd = {}, [], None
    for line in fig.axes[0].get_lines():
        gid, xs = line.get_gid() or "", [float(x) for x in line.get_xdata()]
        if gid.startswith("rank|"):
            ranks[gid[5:]] = xs[0]
        elif gid.startswith("clique|"):
            cliques.append({"methods": json.loads(gid[7:]), "from": min(xs), "to": max(xs)})
        elif gid == "cd":
            cd = max(xs) - min(xs)
    return {"mean_ranks": ranks, "critical_difference": cd, "cliques": cliques}


def read_cd(path: Path) -> dict[str, Any]:
    """The data embedded in a PNG or PDF written by :func:`plot_cd`."""
    path = Path(path)
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as img:
            raw = img.text.get(CD_KEY)  # type: ignore[attr-defined]
    elif path.suffix == ".pdf":
        raw = _pdf_string(path.read_bytes(), b"/Subject (")
    else:
        raise PlotError(f"cannot read a diagram from '{path}': only .png and .pdf")
    if raw is None:
        raise PlotError(f"'{path}' carries no critical-difference data")
    return json.loads(raw)


__all__ = ["CD_KEY", "drawn_data", "plot_cd", "read_cd"]
