"""report: comparison tables, their renderers, plots, and the paper's own numbers.

Owns the paper-layout tables (tables.py), which runs make one cell and how rows are labelled
(cells.py), the validation-selected configurations of ``table --selected`` (selected.py),
seed-paired differences and their intervals (stats.py), best and tie marks (marks.py),
``compare A B`` (compare.py), ranks over datasets with Friedman, Wilcoxon-Holm and Nemenyi
(ranks.py, rank_report.py) and their diagram (cdplot.py), which runs are tuning candidates and
how noisy a tuned choice is (tuning.py),
rich/markdown/LaTeX/CSV rendering (render.py), figures (plots.py), the paper's published
results and table layouts (paper.py), the method catalog read as plain data (catalog.py) and
tables of a store's runs (stored.py). May import
``lionbench.store`` and the core modules; never torch, the methods or training, so that
``lionbench table`` answers in well under a second.
"""

from .render import FORMATS, render_table
from .stored import load_done_runs, render_stored_table
from .tables import PRESETS, ComparisonTable, build_table

__all__ = ["FORMATS", "PRESETS", "ComparisonTable", "build_table", "load_done_runs",
           "render_stored_table", "render_table"]
