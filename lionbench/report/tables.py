"""Comparison tables of stored runs, laid out like the LION paper's Tables 1-4.

Why: the point of the benchmark is to put our numbers where the paper's are. ``build_table``
turns runs (a DataFrame or dicts, one per run) into a ``ComparisonTable``: rows grouped by
backbone then method, one column per dataset, cells holding mean ± std over seeds with the
number of seeds, the best cell of each column marked within each backbone block (the paper
bolds per block), and a final Params (M) column holding the MAXIMUM trainable parameter count
(incl. head) over the row's runs, since the paper's Params is "the maximum number of parameters
that can be trained".

Honesty rules: a cell is one configuration (the runs' identity without the seed; see
``lionbench.report.cells``): runs of other settings, weights or pipelines get rows of their own,
labelled by what differs (``lion (lr=1e-2)``, ``head-tuning (weights=none)``); settings every
run of a column shares go into a footnote. Only ``status == "done"`` runs count; runs from a
dirty git tree (``*``) or an older protocol version (``†``) are flagged in their cell and
explained in a footnote, or left out with ``clean_only=True``; results imported from another
database (``‡``) are flagged, since their metrics cannot be re-derived here
(``mark_imported=False`` drops the mark); runs stored with solver warnings (``§``: equilibrium
solves that did not converge, ``lionbench.store.health``) are flagged likewise; when cells hold
different numbers of seeds, every cell shows its ``(n=k)`` and those with fewer seeds than the
table's most are marked (``¶``). ``selected`` keeps, per (backbone, method, dataset), only the
configuration ``lionbench tune`` chose on validation, one row per method, the chosen values in
a footnote.

``compare="paper"`` writes the paper's value and our difference beside each of our cells:
``0.8512 (paper 0.8628, -0.0116)`` (difference = ours - paper; ``- (paper 0.8628)`` where we
have no run yet). Rendering lives in ``lionbench.report.render``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lionbench.config import PROTOCOL_VERSION
from lionbench.store.health import has_warnings

from . import paper as ref
from .catalog import default_weights
from .cells import describe_cell, label_cells, shared_note, sort_key
from .marks import TIE_MARK, mark_plain, mark_significance, mark_versus, stats_notes
from .selected import NOISE_MARK, SelectedCell, is_selected, noise_notes, selection_notes
from .stats import INTERVALS, LEVEL, Difference, Sample, pair_key

__all__ = ["Cell", "Column", "ComparisonTable", "Row", "SelectedCell", "build_table",
           "cell_text", "format_number", "PRESETS"]

PRESETS = ref.PRESETS
# * dirty git tree, † an old protocol version, ‡ a result imported from elsewhere,
# § unconverged equilibrium solves, ¶ fewer seeds than the table's best-covered cell,
# ° (--selected) a choice whose validation margin is inside the noise
FLAG_SYMBOLS = {"dirty": "*", "protocol": "\u2020", "imported": "\u2021", "solver": "\u00a7",
                "seeds": "\u00b6", "noise": NOISE_MARK}
PRETRAINED_ALIASES = {"pretrained", "timm"}
TUNING_RUNS = "tuning runs (validation candidates at the tuning seeds)"
DIGITS, PARAM_DIGITS = 4, 3


@dataclass(frozen=True)
class Column:
    dataset: str
    label: str
    group: str | None = None  # upper header of a two-level header


@dataclass(frozen=True)
class Row:
    backbone: str
    method: str
    weights: str  # normalised: "pretrained", "none" or a path
    backbone_label: str
    method_label: str  # the method and, in parentheses, what sets this row's runs apart
    settings: str = ""  # that suffix: "weights=none, lr=1e-2, tau=0.2" ("" for the plain row)
    candidate: bool = False  # runs `lionbench tune` made to choose (tuning seeds): no result


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None  # sample std (ddof=1), only when n > 1
    n: int = 0
    flags: tuple[str, ...] = ()  # subset of FLAG_SYMBOLS' keys
    best: bool = False  # bold: the column's best (significantly, unless stats are off)
    paper: float | None = None  # with compare="paper"
    samples: tuple[Sample, ...] = ()  # (pair key, value) per run: what differences pair
    tie: bool = False  # not significantly worse than its column's best (the tie mark)
    versus_best: Difference | None = None  # the best minus this cell (the best: minus the next)
    versus: Difference | None = None  # this cell minus the reference row's (table --vs)

    @property
    def delta(self) -> float | None:
        """Ours minus the paper's, where both exist."""
        if self.mean is None or self.paper is None:
            return None
        return self.mean - self.paper


@dataclass
class ComparisonTable:
    """Everything a renderer needs; cells[i][j] belongs to rows[i] and columns[j]."""

    rows: list[Row]
    columns: list[Column]
    cells: list[list[Cell]]
    params_m: list[float | None]
    paper_params_m: list[float | None]
    show_params: bool = True
    params_label: str = "Params (M)"
    metric: str = "test_top1"
    title: str = ""
    preset: str | None = None
    compare: str | None = None
    current_protocol: int | None = None
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> number of runs
    notes: list[str] = field(default_factory=list)  # shared settings, validation choices
    max_seeds: int = 1  # the most seeds of any cell; cells show n when it is above 1
    stats: bool = True  # best and ties by seed-paired intervals (False: the highest mean bold)
    interval: str = "t"  # "t" | "bootstrap" (paired intervals; lionbench.report.stats)
    level: float = LEVEL
    versus: str | None = None  # table --vs: the reference row's label or method
    reference_rows: set[int] = field(default_factory=set)  # its row in each block (--vs)

    def blocks(self) -> list[tuple[int, int]]:
        """(start, stop) row ranges of consecutive rows sharing a backbone."""
        out: list[tuple[int, int]] = []
        for i, row in enumerate(self.rows):
            if out and self.rows[out[-1][0]].backbone == row.backbone:
                out[-1] = (out[-1][0], i + 1)
            else:
                out.append((i, i + 1))
        return out

    def footnotes(self) -> list[str]:
        """One line per flag present, and one explaining the paper comparison."""
        used = {f for line in self.cells for c in line for f in c.flags}
        notes = []
        if "dirty" in used:
            notes.append(f"{FLAG_SYMBOLS['dirty']} includes runs from a dirty git tree "
                         "(uncommitted changes)")
        if "protocol" in used:
            notes.append(f"{FLAG_SYMBOLS['protocol']} includes runs from another protocol "
                         f"version than the current one ({self.current_protocol})")
        if "imported" in used:
            notes.append(f"{FLAG_SYMBOLS['imported']} includes results imported from elsewhere, "
                         "not produced by this database's workers (origin: lionbench export)")
        if "solver" in used:
            notes.append(f"{FLAG_SYMBOLS['solver']} includes runs whose equilibrium solves did "
                         "not converge (more than 1 % of them; `lionbench status` lists them)")
        if "seeds" in used:
            most = max((c.n for row, line in zip(self.rows, self.cells, strict=True)
                        if not row.candidate for c in line), default=0)
            notes.append(f"{FLAG_SYMBOLS['seeds']} fewer seeds than the table's most ({most})")
        notes += stats_notes(self)
        notes += self.notes
        if self.compare == "paper":
            notes.append("(paper P, D): the paper's value P and ours minus the paper's, D")
        return notes


def format_number(x: float | None, digits: int = DIGITS, signed: bool = False) -> str:
    """The paper's style: a fraction with 4 decimals (Params: 3); '-' for no value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def cell_text(cell: Cell, digits: int = DIGITS, show_n: bool = False) -> tuple[str, str]:
    """(our part, comparison part): "0.8628 ± 0.0031 (n=3)*", " (paper 0.8700, -0.0072)".

    ``show_n`` adds the number of seeds (tables whose cells have more than one). Renderers
    embolden the first part only and escape both.
    """
    ours = format_number(cell.mean, digits)
    if cell.std is not None and cell.n > 1:
        ours += f" \u00b1 {format_number(cell.std, digits)}"
    if show_n and cell.n:
        ours += f" (n={cell.n})"
    ours += "".join(FLAG_SYMBOLS[f] for f in cell.flags)
    if cell.tie:
        ours += TIE_MARK
    extra = ""
    if cell.paper is not None:
        extra = f" (paper {format_number(cell.paper, digits)}"
        if cell.delta is not None:
            extra += f", {format_number(cell.delta, digits, signed=True)}"
        extra += ")"
    return ours, extra


def _records(runs: Any) -> tuple[list[dict[str, Any]], set[str] | None]:
    """Runs as plain dicts (missing values None) and the column names where known.

    A DataFrame is converted through its own methods, so this module never imports pandas:
    ``lionbench table`` on 10,000 runs answers in under a second, and pandas alone takes a
    quarter of that to import on a 2-core machine (results/perf/cli-speed.md).
    """
    if hasattr(runs, "to_dict") and hasattr(runs, "columns"):  # a pandas DataFrame
        frame = runs.astype(object).where(runs.notna(), None)
        return frame.to_dict("records"), set(runs.columns)
    return [dict(r) for r in runs], None


def _number(value: Any) -> float | None:
    """A finite float, or None (missing, NaN, not a number)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _normalise(records: list[dict[str, Any]], metric: str, current_protocol: int,
               mark_imported: bool = True) -> list[dict[str, Any]]:
    """Each run with what the table needs: ``_value``, ``_dirty``, ``_protocol``,
    ``_imported``, ``_solver``, ``_params``, ``weights`` normalised ("pretrained", "none" or a
    path) and ``_cell`` (its configuration, described once per cell: the runs of a stored cell
    share one config dict)."""
    cells: dict[tuple[Any, ...], Any] = {}
    out = []
    for r in records:
        method, config, weights = r["method"], r.get("config"), r.get("weights")
        weights = (default_weights(method) if weights is None or weights == "" else
                   "pretrained" if str(weights) in PRETRAINED_ALIASES else str(weights))
        run = {**r, "status": r.get("status") or "done", "weights": weights,
               "_value": _number(r.get(metric)),
               "_dirty": bool(r.get("git_dirty") or False),
               "_params": _number(r.get("params_trainable"))}
        version = _number(r.get("protocol_version"))
        run["_protocol"] = version is not None and version != current_protocol
        run["_imported"] = mark_imported and bool(r.get("imported_result") or False)
        run["_solver"] = has_warnings(r.get("warnings"))
        run["_candidate"] = bool(r.get("tuning_candidate") or False)
        key = (r.get("cell_hash"), id(config), r["backbone"], method, weights, r["dataset"])
        if key not in cells:
            cells[key] = describe_cell(run)
        run["_cell"] = cells[key]
        out.append(run)
    return out


def _order(values: list[str], first: tuple[str, ...]) -> list[str]:
    """Known names in the paper's order, then the others alphabetically."""
    known = [v for v in first if v in values]
    return known + sorted(v for v in set(values) if v not in first)


def build_table(runs: Any, *, preset: str | None = None, metric: str = "test_top1",
                clean_only: bool = False, current_protocol: int | None = None,
                compare: str | None = None, method_order: tuple[str, ...] | None = None,
                mark_imported: bool = True,
                selected: dict[tuple[str, str, str], SelectedCell] | None = None,
                stats: bool = True, interval: str = "t", level: float = LEVEL,
                versus: str | None = None, all_seeds: bool = False) -> ComparisonTable:
    """Aggregate runs (a DataFrame or an iterable of dicts, one per run) into a paper-style
    comparison table.

    ``preset`` ("table1".."table4") uses the paper's exact rows, columns and labels (rows or
    cells without runs show "-"; runs outside the layout are left out and counted in
    ``excluded``); without it, backbones come in order of first appearance, methods and
    datasets in the paper's order, then the others alphabetically, labelled by our ids.
    ``method_order`` overrides the paper's method order (``ablate`` uses Table 4's).
    ``current_protocol`` defaults to ``lionbench.config.PROTOCOL_VERSION``; runs without a
    protocol version (e.g. the paper's pseudo-runs) are never flagged for it.
    ``mark_imported=False`` drops the ``‡`` of results that came by import (their metrics
    cannot be re-derived here; marking them is the default).
    ``selected`` ((backbone, method, dataset) -> the tuned choice) keeps only the chosen
    configuration's final seeds: one row per method and backbone.

    Runs marked ``tuning_candidate`` (made by ``lionbench tune`` to choose, at its tuning seeds;
    ``lionbench.report.tuning``) are left out and counted in a footnote; ``all_seeds`` shows them
    in rows of their own labelled ``candidate``, never averaged with the final seeds and never
    marked best or tied.

    ``stats`` (default) marks each column's best within its backbone block by seed-paired
    intervals (``lionbench.report.marks``): bold only where significantly better than every
    other cell, the tie mark on every cell not significantly worse; ``stats=False`` bolds the
    highest mean. ``interval`` ("t" or "bootstrap") and ``level`` set the intervals; ``versus``
    (a row label or method) adds each cell's difference to that row of its block.
    """
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval '{interval}'; choose from {', '.join(INTERVALS)}")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}'; choose from {', '.join(PRESETS)}")
    if compare not in (None, "paper"):
        raise ValueError(f"compare must be None or 'paper', not {compare!r}")
    if compare and metric != "test_top1":
        raise ValueError("the paper reports top-1 only: compare='paper' needs metric='test_top1'")
    records, names = _records(runs)
    if (metric not in names) if names is not None else (records and metric not in records[0]):
        raise ValueError(f"runs have no column '{metric}'")
    if current_protocol is None:
        current_protocol = PROTOCOL_VERSION
    runs_ = _normalise(records, metric, current_protocol, mark_imported)
    excluded: dict[str, int] = {}

    def drop(outside: Callable[[dict[str, Any]], bool], reason: str) -> None:
        nonlocal runs_
        kept = [r for r in runs_ if not outside(r)]
        if len(kept) < len(runs_):
            excluded[reason] = excluded.get(reason, 0) + len(runs_) - len(kept)
        runs_ = kept

    drop(lambda r: r["status"] != "done", "not done")
    drop(lambda r: r["_value"] is None, f"no {metric}")
    if clean_only:
        drop(lambda r: r["_dirty"] or r["_protocol"], "dirty tree or old protocol")
    if selected is not None:
        drop(lambda r: not is_selected(r, r["_cell"].key, selected), "not the "
             "validation-selected configuration's final seeds")
        for r in runs_:
            margin = selected[(r["backbone"], r["method"], r["dataset"])].margin
            r["_noise"] = margin is not None and margin.inside
    elif not all_seeds:
        drop(lambda r: r["_candidate"], TUNING_RUNS)

    if preset is not None and PRESETS[preset].params_without_head:  # as the source counts
        for r in runs_:
            r["_params"] = _number(r.get("params_trainable_no_head"))
    if preset is not None:
        p = PRESETS[preset]
        bb_labels = dict(p.backbones)
        columns = [Column(c.dataset, c.label, c.group) for c in p.columns]
        datasets = {c.dataset for c in columns}
        drop(lambda r: not (r["backbone"] in bb_labels and r["method"] in p.methods
                            and r["dataset"] in datasets), "outside the preset")
        if selected is None:  # a tuned choice may set a method key (VPT's prompt length)
            drop(lambda r: bool(r["_cell"].method_diff), "non-default method settings (sweeps)")
        backbones, methods = list(bb_labels), list(p.methods)
        title, show_params, params_label = p.title, p.params, "Params"
    else:
        bb_labels = {}
        backbones = list(dict.fromkeys(r["backbone"] for r in runs_))
        methods = _order([r["method"] for r in runs_], method_order or ref.METHOD_ORDER)
        columns = [Column(d, d) for d in _order([r["dataset"] for r in runs_],
                                                ref.DATASET_ORDER)]
        title = f"{metric}: mean \u00b1 std over seeds" + (
            " (configurations chosen on validation)" if selected is not None else "")
        show_params, params_label = True, "Params (M)"

    chosen = tuple(sorted({k for c in (selected or {}).values() for k in c.values}))
    labels = label_cells((r["_cell"] for r in runs_), hidden=chosen)
    suffixes = {key: labels.suffix(key) for key in labels.parts}
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    variants_of: dict[tuple[str, str], dict[str, Any]] = {}  # (bb, m) -> {suffix: sort key}
    for r in runs_:
        key = r["_cell"].key
        suffix = suffixes[key]
        if r["_candidate"]:  # tuning runs: a row of their own, after the method's results
            suffix = f"candidate, {suffix}" if suffix else "candidate"
        group = (r["backbone"], r["method"], suffix, r["dataset"])
        if group not in groups:
            groups[group] = []
            variants_of.setdefault(group[:2], {}).setdefault(
                group[2], (r["_candidate"], sort_key(labels.parts[key])))
        groups[group].append(r)

    rows: list[Row] = []
    for bb in backbones:
        for m in methods:
            found = variants_of.get((bb, m), {})
            if preset is None and not found:
                continue
            variants = sorted(found, key=lambda v: found[v])
            if preset is not None and "" not in found:
                variants = ["", *variants]
            label = ({**ref.METHOD_LABELS, **dict(PRESETS[preset].labels)}.get(m, m)
                     if preset else m)
            for suffix in variants:
                weights = next((r["weights"] for (b, mm, v, _), g in groups.items()
                                if (b, mm, v) == (bb, m, suffix) for r in g), default_weights(m))
                rows.append(Row(bb, m, weights, bb_labels.get(bb, bb),
                                f"{label} ({suffix})" if suffix else label, suffix,
                                bool(found.get(suffix, (False,))[0])))

    cells, params_m, paper_params = [], [], []
    for row in rows:
        line, pmax = [], None
        usual = row.weights == default_weights(row.method) and not row.settings
        for col in columns:
            group = groups.get((row.backbone, row.method, row.settings, col.dataset))
            cell = _cell(group) if group else Cell()
            params = [r["_params"] for r in group or () if r["_params"] is not None]
            if params:
                pmax = max(pmax or 0.0, max(params) / 1e6)
            if compare and usual:
                cell.paper = ref.paper_value(row.backbone, row.method, col.dataset)
            line.append(cell)
        cells.append(line)
        params_m.append(pmax)
        paper_params.append(ref.paper_params_m(row.backbone, row.method)
                            if compare and usual else None)

    if preset is not None and PRESETS[preset].group_means:
        columns = add_group_means(columns, cells, compare is not None)
    notes = [n for n in [shared_note(labels.shared, [c.dataset for c in columns])] if n]
    if compare and preset is not None and PRESETS[preset].compare_note:
        notes.append(PRESETS[preset].compare_note)
    if selected is not None:
        named = [(r.backbone, r.method, r.method_label, bb_labels.get(r.backbone, r.backbone))
                 for r in rows]
        notes += selection_notes(selected, named, [(c.dataset, c.label) for c in columns])
        notes += noise_notes(selected, named, [(c.dataset, c.label) for c in columns])
    if excluded.get(TUNING_RUNS):
        notes.append(f"{excluded[TUNING_RUNS]} tuning run(s) of `lionbench tune` not shown "
                     "(validation candidates at the tuning seeds; --all-seeds shows them in "
                     "rows of their own)")
    table = ComparisonTable(rows, columns, cells, params_m, paper_params, show_params,
                            params_label, metric, title, preset, compare, current_protocol,
                            excluded, notes, stats=stats, interval=interval, level=level,
                            versus=versus)
    _mark_seeds(table)
    if stats:
        mark_significance(table)
    else:
        mark_plain(table)
    if versus is not None:
        mark_versus(table, versus)
    return table


MEAN_PREFIX = "mean:"  # the dataset id of a group-mean column: mean:Natural, mean:all


def add_group_means(columns: list[Column], cells: list[list[Cell]], compare: bool
                    ) -> list[Column]:
    """Append, per column group and then over all columns, the mean of each row's cells (and
    of the published values): empty unless every cell it averages has a value. Each row's
    cells list grows in place; the new column list is returned."""
    groups = list(dict.fromkeys(c.group for c in columns if c.group))
    spans = [(g, [j for j, c in enumerate(columns) if c.group == g]) for g in groups]
    spans.append(("all", list(range(len(columns)))))
    for line in cells:
        for _, idx in spans:
            ours = [line[j].mean for j in idx]
            paper = [line[j].paper for j in idx]
            mean = None if any(v is None for v in ours) else math.fsum(ours) / len(ours)
            ref_mean = (None if not compare or any(v is None for v in paper)
                        else math.fsum(paper) / len(paper))
            line.append(Cell(mean=mean, n=min(line[j].n for j in idx), paper=ref_mean))
    return columns + [Column(f"{MEAN_PREFIX}{g}", "Mean" if g != "all" else
                             f"Mean ({len(columns)})", g if g != "all" else "All")
                      for g, _ in spans]


def _cell(group: list[dict[str, Any]]) -> Cell:
    """Mean and sample std (ddof=1, from n=2 on) of a group's values, and its flags."""
    values = [r["_value"] for r in group]
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    flags = tuple(f for f in FLAG_SYMBOLS if any(r.get(f"_{f}") for r in group))
    return Cell(mean=mean, std=std, n=n, flags=flags,
                samples=tuple((pair_key(r), r["_value"]) for r in group))


def _mark_seeds(table: ComparisonTable) -> None:
    """Where cells hold different numbers of seeds, flag the ones with fewer than the most
    (rows of tuning candidates neither count nor are flagged: they hold the tuning seeds)."""
    results = [line for row, line in zip(table.rows, table.cells, strict=True)
               if not row.candidate]
    table.max_seeds = max((c.n for line in table.cells for c in line), default=0) or 1
    most = max((c.n for line in results for c in line), default=0) or 1
    for line in results:
        for c in line:
            if 0 < c.n < most:
                c.flags = (*c.flags, "seeds")


