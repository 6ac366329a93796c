"""Figures from stored runs: the paper's Figure 3 (sensitivity) and accuracy vs parameters.

Why it looks like this:

- Figures are built on a bare ``matplotlib.figure.Figure`` (Agg for PNG, matplotlib's PDF
  backend for PDF), never through pyplot, so plotting changes no global backend or state.
- A figure is only as good as the numbers behind it, and tests must check numbers, not pixels:
  every plotted series is returned (``PlotFiles.series``), set as the ``gid`` of its artist, and
  embedded in each file (a PNG text chunk, the PDF ``Subject``); ``read_series(path)`` gets them
  back from a saved file.
- Only done runs with a test top-1 count; ``clean_only`` drops runs from a dirty tree or another
  protocol version, as ``lionbench table --clean-only`` does. Error bars are the sample std over
  seeds (0 for a single seed).
- A series is one configuration per point, as a table cell is (``lionbench.report.cells``):
  runs of other method settings, training settings (an lr sweep), weights or pipelines are
  series of their own, labelled by what differs (``LION (lr=1e-2)``), so a sweep never leaks
  into another curve and no point averages two configurations.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from lionbench.config import PROTOCOL_VERSION
from lionbench.errors import LionbenchError
from lionbench.files import make_output_folder, write_atomically

from . import paper as ref
from .catalog import default_weights, method_defaults, non_default_settings
from .cells import describe_cell, label_cells
from .selected import SelectedCell, is_selected

FORMATS = ("png", "pdf")
SERIES_KEY = "lionbench:series"  # PNG text chunk; the PDF carries the same JSON as Subject
BACKBONE_LABELS = {"resnet50": "ResNet-50", "resnet101": "ResNet-101",
                   "vit_base_patch16_224": "ViT-B", "swin_base_patch4_window7_224": "Swin-B"}
SENSITIVITY = (("tau", "(a) \u03c4 (robust training threshold)"),
               ("deq_layers", "(b) number of DEQ layers"))
MARKERS = "osD^v<>ph*"


class PlotError(LionbenchError):
    """Nothing to plot, or an unsupported output format."""


@dataclass
class Series:
    """One plotted line or point set: what a reader of the figure sees, as numbers."""

    panel: str  # the axes it is drawn in (a sensitivity parameter, or a dataset)
    label: str  # its legend label
    x: list[float]
    y: list[float]  # mean test top-1 over seeds
    yerr: list[float]  # sample std over seeds; 0 where n == 1
    n: list[int]  # seeds per point

    @property
    def gid(self) -> str:
        return f"{self.panel}|{self.label}"


class PlotFiles(list):
    """The written paths (a ``list[Path]``), with the plotted ``series`` attached."""

    def __init__(self, paths: list[Path], series: list[Series]):
        super().__init__(paths)
        self.series = series


def plot_sensitivity(runs_df: pd.DataFrame, output: Path, formats: tuple[str, ...] = FORMATS,
                     *, method: str = "lion", clean_only: bool = False) -> PlotFiles:
    """Figure 3: top-1 against tau and against ``deq_layers``, one line per backbone/dataset.

    A run belongs to the tau panel when its other method settings are the defaults (so
    ``deq_layers`` is 1), and likewise for the layers panel; the default run is in both.
    """
    df = _with_method_config(_done(runs_df, clean_only))
    df = df[df["method"] == method]
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    all_series: list[Series] = []
    for ax, (param, title) in zip(axes, SENSITIVITY, strict=True):
        keep = df["_diff"].map(lambda d, p=param: set(d) <= {p}).astype(bool)
        sub = df[keep].assign(_x=[_param(mc, method, param) for mc in df.loc[keep, "_mc"]])
        sub = sub[sub["_x"].notna()]
        sub = sub.assign(_label=_cell_labels(sub, hidden=(param,)))
        groups = [(f"{BACKBONE_LABELS.get(b, b)} / {d}" + (f" ({lab})" if lab else ""), g)
                  for (b, d, lab), g in sub.groupby(["backbone", "dataset", "_label"],
                                                    sort=True)]
        for i, (label, g) in enumerate(groups):
            s = _series(param, label, g, "_x")
            all_series.append(s)
            ax.errorbar(s.x, s.y, yerr=s.yerr, marker=MARKERS[i % len(MARKERS)], capsize=3,
                        label=s.label, gid=s.gid)
        ax.set_title(title)
        ax.set_xlabel("\u03c4" if param == "tau" else "number of layers")
        ax.set_ylabel("test top-1")
        if param == "deq_layers":
            ax.set_xticks([1, 2, 3, 4])
        if groups:
            ax.legend(fontsize="small")
    if not all_series:
        raise PlotError(f"no done '{method}' runs with a test top-1 to plot; run "
                        "benchmarks/figure3.yaml first (lionbench run benchmarks/figure3.yaml)")
    fig.suptitle(f"Sensitivity of {ref.METHOD_LABELS.get(method, method)} (mean \u00b1 std over "
                 "seeds)")
    return PlotFiles(_save(fig, output, formats, all_series, "Figure 3: sensitivity"),
                     all_series)


def plot_tradeoff(runs_df: pd.DataFrame, output: Path, formats: tuple[str, ...] = FORMATS,
                  *, datasets: list[str] | None = None, variants: bool = False,
                  clean_only: bool = False,
                  selected: dict[tuple[str, str, str], SelectedCell] | None = None
                  ) -> PlotFiles:
    """Top-1 against trainable parameters (M, log scale): one panel per dataset, one series
    (a point with error bars) per backbone and method; colour = method, marker = backbone.

    ``variants=False`` keeps each method's default settings only (no sweep points); True plots
    every setting as its own series, labelled with what differs, e.g. ``LION (tau=0.2)``.
    ``selected`` (``lionbench.report.stored.load_selection``) keeps only the configurations
    ``lionbench tune`` chose, with their final seeds, as ``table --selected`` does.
    """
    df = _with_method_config(_done(runs_df, clean_only))
    if datasets:
        df = df[df["dataset"].isin(datasets)]
    if selected is not None:  # a tuned choice may set a method key (VPT's prompt length)
        keep = [is_selected(r, r.get("cell_hash") or "", selected)
                for r in df.to_dict("records")]
        df = df[pd.Series(keep, index=df.index, dtype=bool)]
    elif not variants:
        df = df[(df["_diff"].map(len) == 0).astype(bool)]
    df = df.assign(_x=pd.to_numeric(df.get("params_trainable"), errors="coerce") / 1e6)
    df = df[df["_x"].notna() & (df["_x"] > 0)]
    if df.empty:
        raise PlotError("no done runs with a test top-1 and a trainable-parameter count to plot"
                        + (f" for datasets {', '.join(datasets)}" if datasets else ""))
    df = df.assign(_variant=[f"{ref.METHOD_LABELS.get(m, m)} ({lab})" if lab else
                             ref.METHOD_LABELS.get(m, m)
                             for m, lab in zip(df["method"], _cell_labels(df), strict=True)])
    names = _ordered(list(df["dataset"]), ref.DATASET_ORDER)
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(4 * ncols, 3.4 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    methods = _ordered(list(df["_variant"]), tuple(ref.METHOD_LABELS.values()))
    backbones = list(dict.fromkeys(df["backbone"]))
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    markers = {b: MARKERS[i % len(MARKERS)] for i, b in enumerate(backbones)}
    all_series: list[Series] = []
    handles: dict[str, Any] = {}
    for ax, dataset in zip(axes, names, strict=False):
        sub = df[df["dataset"] == dataset]
        for backbone in backbones:
            for variant in methods:
                g = sub[(sub["backbone"] == backbone) & (sub["_variant"] == variant)]
                if g.empty:
                    continue
                s = _series(dataset, f"{BACKBONE_LABELS.get(backbone, backbone)} / {variant}",
                            g.assign(_x=g["_x"].max()), "_x")
                all_series.append(s)
                art = ax.errorbar(s.x, s.y, yerr=s.yerr, marker=markers[backbone],
                                  color=colors[variant], linestyle="none", capsize=3,
                                  label=s.label, gid=s.gid)
                handles.setdefault(s.label, art)
        ax.set_xscale("log")
        ax.set_title(dataset)
        ax.set_xlabel("trainable parameters (M, log)")
        ax.set_ylabel("test top-1")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    per_row = 4 if max(map(len, handles), default=0) <= 30 else 2  # long labels: fewer columns
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncols=min(per_row, len(handles)), fontsize="small")
    fig.suptitle("Accuracy vs trainable parameters (mean \u00b1 std over seeds)")
    return PlotFiles(_save(fig, output, formats, all_series, "Accuracy vs parameters"),
                     all_series)


def read_series(path: Path) -> list[Series]:
    """The series embedded in a PNG or PDF written by this module."""
    path = Path(path)
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as img:
            raw = img.text.get(SERIES_KEY)  # type: ignore[attr-defined]
    elif path.suffix == ".pdf":
        raw = _pdf_string(path.read_bytes(), b"/Subject (")
    else:
        raise PlotError(f"cannot read series from '{path}': only .png and .pdf")
    if raw is None:
        raise PlotError(f"'{path}' carries no lionbench series")
    return [Series(**d) for d in json.loads(raw)]


# --- helpers -------------------------------------------------------------------------------
def _done(runs: pd.DataFrame, clean_only: bool) -> pd.DataFrame:
    df = runs.copy()
    if "status" in df.columns:
        df = df[df["status"] == "done"]
    df = df.assign(_y=pd.to_numeric(df.get("test_top1"), errors="coerce"))
    df = df[df["_y"].notna()]
    if "weights" not in df.columns:
        df["weights"] = None
    if clean_only:
        dirty = df.get("git_dirty", pd.Series(False, index=df.index))
        dirty = dirty.astype(object).map(lambda v: bool(v) if pd.notna(v) else False)
        version = pd.to_numeric(df.get("protocol_version"), errors="coerce")
        df = df[~dirty & (version.isna() | (version == PROTOCOL_VERSION))]
    return df


def _with_method_config(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``_mc`` (the run's method settings) and ``_diff`` (those unlike the defaults)."""
    configs = df["config"] if "config" in df.columns else pd.Series([{}] * len(df), df.index)
    mcs = [(json.loads(c) if isinstance(c, str) else (c or {})).get("method_config") or {}
           for c in configs]
    diffs = [_diff(m, mc) for m, mc in zip(df["method"], mcs, strict=True)]
    return df.assign(_mc=mcs, _diff=diffs)


def _diff(method: str, mc: dict[str, Any]) -> dict[str, Any]:
    return non_default_settings(method, dict(sorted(mc.items())))


def _param(mc: dict[str, Any], method: str, name: str) -> float | None:
    value = mc.get(name, (method_defaults(method) or {}).get(name))
    return float(value) if isinstance(value, int | float) else None


def _cell_labels(df: pd.DataFrame, hidden: tuple[str, ...] = ()) -> list[str]:
    """Each run's label suffix, by the tables' rules (``lionbench.report.cells``)."""
    infos = []
    for r in df.to_dict("records"):
        w = r.get("weights")
        w = (default_weights(r["method"]) if w is None or w == "" or
             (isinstance(w, float) and math.isnan(w)) else
             "pretrained" if w in ("pretrained", "timm") else str(w))
        config = r.get("config")
        infos.append(describe_cell({
            "method": r["method"], "backbone": r["backbone"], "dataset": r["dataset"],
            "weights": w, "weights_id": r.get("weights_id"),
            "cell_hash": r.get("cell_hash") if isinstance(r.get("cell_hash"), str) else None,
            "config": json.loads(config) if isinstance(config, str) else config}))
    labels = label_cells(infos, hidden=hidden)
    return [labels.suffix(info.key) for info in infos]


def _series(panel: str, label: str, g: pd.DataFrame, xcol: str) -> Series:
    agg = g.groupby(xcol)["_y"].agg(["mean", "std", "count"]).sort_index()
    return Series(panel, label, [float(x) for x in agg.index], [float(v) for v in agg["mean"]],
                  [0.0 if pd.isna(v) else float(v) for v in agg["std"]],
                  [int(v) for v in agg["count"]])


def _ordered(values: list[str], first: tuple[str, ...]) -> list[str]:
    known = [v for v in first if v in values]
    return known + sorted(set(values) - set(known))


def _save(fig: Figure, output: Path, formats: tuple[str, ...], series: list[Series],
          title: str, payload: str | None = None, key: str = SERIES_KEY) -> list[Path]:
    """Write ``output.<fmt>`` per format (a trailing .png/.pdf on ``output`` is dropped), with
    ``payload`` (default: the series as JSON) in the PNG chunk ``key`` and the PDF Subject."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise PlotError(f"unsupported format {', '.join(bad) or '(none)'}; valid: "
                        f"{', '.join(FORMATS)}")
    targets = [make_output_folder(plot_path(output, fmt), "plot")
               for fmt in dict.fromkeys(formats)]
    if payload is None:
        payload = json.dumps([asdict(s) for s in series])
    for path in targets:
        fmt = path.suffix.lstrip(".")
        meta = ({key: payload, "Title": title} if fmt == "png"
                else {"Subject": payload, "Title": title, "Creator": "lionbench"})
        write_atomically(path, lambda tmp, fmt=fmt, meta=meta: fig.savefig(
            tmp, format=fmt, metadata=meta, dpi=150), "plot")
    return targets


def plot_path(output: Path, fmt: str) -> Path:
    """The file ``output`` names for ``fmt``: ``output.<fmt>`` (a trailing .png/.pdf dropped)."""
    output = Path(output)
    if output.suffix.lstrip(".") in FORMATS:
        output = output.with_suffix("")
    return output.parent / f"{output.name}.{fmt}"


def _pdf_string(data: bytes, marker: bytes) -> str | None:
    """The literal string after ``marker`` in a PDF, its backslash escapes undone."""
    start = data.find(marker)
    if start < 0:
        return None
    out, i, depth = bytearray(), start + len(marker), 1
    while i < len(data):
        ch = data[i]
        if ch == 0x5C:  # backslash: take the next byte as is
            out.append(data[i + 1])
            i += 2
            continue
        depth += {0x28: 1, 0x29: -1}.get(ch, 0)
        if depth == 0:
            break
        out.append(ch)
        i += 1
    return out.decode("latin-1")


__all__ = ["PlotError", "PlotFiles", "Series", "plot_sensitivity", "plot_tradeoff",
           "read_series"]
