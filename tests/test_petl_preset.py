"""The petl-vit preset: VTAB-1k's 19 tasks in three groups, group means, published numbers.

The published numbers (results/petl_vit_published.csv, transcribed from V-PETL Bench's README)
are checked against the table's own means (a transcription error moves the mean); the group
means are checked on synthetic runs, including the empty mean where a task has no run.
"""

from __future__ import annotations

import csv
import filecmp
import math
from pathlib import Path

import pytest

from lionbench.report import build_table, render_table
from lionbench.report import paper as ref
from lionbench.report.tables import MEAN_PREFIX

ROOT = Path(__file__).resolve().parent.parent
VIT = "vit_base_patch16_224.orig_in21k"


def published() -> list[dict]:
    with (ROOT / "results" / ref.PUBLISHED_FILENAME).open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_published_transcription_agrees_with_its_own_means_and_names_its_source():
    rows = published()
    assert filecmp.cmp(ROOT / "results" / ref.PUBLISHED_FILENAME,
                       ROOT / "lionbench" / "assets" / ref.PUBLISHED_FILENAME, shallow=False)
    methods = {r["method_id"] for r in rows}
    assert methods == {"fine-tuning", "head-tuning", "vpt-shallow", "vpt", "bias", "lora",
                       "adaptformer", "ssf"}  # adapter left out: another placement
    tasks = [c.dataset for c in ref.PRESETS["petl-vit"].columns]
    for method in methods:
        top1 = {r["our_dataset"]: float(r["value"]) for r in rows
                if r["method_id"] == method and r["metric"] == "top1"}
        assert list(top1) == tasks and all(0 <= v <= 1 for v in top1.values())
        [mean] = [float(r["value"]) for r in rows
                  if r["method_id"] == method and r["metric"] == "mean_top1"]
        assert math.fsum(top1.values()) / 19 == pytest.approx(mean, abs=6e-5), method
    assert {(r["source"], r["file"]) for r in rows} == {
        ("synbol/Parameter-Efficient-Transfer-Learning-Benchmark", "README.md")}


def test_the_empty_layout_shows_groups_means_and_the_published_numbers():
    table = build_table([], preset="petl-vit", compare="paper")
    labels = [c.label for c in table.columns]
    assert labels[:3] == ["CIFAR-100", "Caltech101", "DTD"] and len(labels) == 19 + 4
    assert [c.group for c in table.columns[19:]] == ["Natural", "Specialized", "Structured",
                                                     "All"]
    assert [c.group for c in table.columns[:19]].count("Natural") == 7
    rows = {r.method: i for i, r in enumerate(table.rows)}
    assert list(rows) == list(ref.PRESETS["petl-vit"].methods)
    lora = table.cells[rows["lora"]]
    assert lora[0].paper == pytest.approx(0.671) and lora[0].mean is None
    assert lora[-1].paper == pytest.approx(0.7225, abs=6e-5)  # the published mean of 19
    natural = [ref.paper_value(VIT, "lora", c.dataset) for c in table.columns[:7]]
    assert lora[19].paper == pytest.approx(sum(natural) / 7)
    assert all(c.paper is None for c in table.cells[rows["adapter"]])
    assert all(c.paper is None for c in table.cells[rows["lion"]])
    assert table.paper_params_m[rows["lora"]] == pytest.approx(0.29)
    assert [r.method_label for r in table.rows][rows["vpt"]] == "VPT-Deep"
    text = render_table(table, "markdown")
    assert "Structured" in text and "Mean (19)" in text and "V-PETL Bench" in text


def test_group_means_need_every_task_of_the_group():
    columns = ref.PRESETS["petl-vit"].columns
    runs = [dict(method="ssf", backbone=VIT, dataset=c.dataset, seed=0, status="done",
                 test_top1=0.5 + 0.01 * j, params_trainable=205_824 + 7_690,
                 params_trainable_no_head=205_824, run_hash=f"r{j}")
            for j, c in enumerate(columns) if c.dataset != "vtab-dmlab"]
    table = build_table(runs, preset="petl-vit")
    line = table.cells[[r.method for r in table.rows].index("ssf")]
    means = {c.dataset: cell.mean for c, cell in zip(table.columns, line, strict=True)}
    assert means[f"{MEAN_PREFIX}Natural"] == pytest.approx(0.5 + 0.01 * 3)  # tasks 0..6
    assert means[f"{MEAN_PREFIX}Specialized"] == pytest.approx(0.5 + 0.01 * 8.5)  # 7..10
    assert means[f"{MEAN_PREFIX}Structured"] is None  # DMLab has no run
    assert means[f"{MEAN_PREFIX}all"] is None
    row = [r.method for r in table.rows].index("ssf")
    assert table.params_m[row] == pytest.approx(0.205824)  # without the head, as published
