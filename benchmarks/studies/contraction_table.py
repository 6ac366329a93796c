"""The contraction study's table: per contraction bound, solver iterations and accuracy of the
CPU-study runs, the step cost against the floor, and how far P1's fixed point is from one
explicit step on real images.

    lionbench run benchmarks/contraction-study.yaml --db results/cpu-study.db
    lionbench run benchmarks/cpu-study.yaml --db results/cpu-study.db
    lionbench bench --preset benchmarks/perf/cpu-contraction.yaml \\
        --json results/perf/cpu-contraction.json --markdown results/perf/cpu-contraction.md
    python benchmarks/studies/contraction_table.py --db results/cpu-study.db \\
        --bench results/perf/cpu-contraction.json --images data/cifar10-jpeg/test \\
        --weights weights/mobilenetv2_100.imagenet.safetensors

Accuracy: mean over the stored seeds of LION runs (default settings but the bound). The choice
of a default reads validation top-1 (the test split chooses nothing); test top-1 is shown for
information. "beyond one step": ||z* - f(x)|| / ||f(x) - x|| of P1 on 32 CIFAR-10 test images at
64 px (ImageNet normalisation), at initialisation, mean over 3 initialisations: how much of the
equilibrium a single explicit residual step would miss.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from lionbench.methods import create_model

from lionbench.backbones import create_backbone
from lionbench.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from lion_backward_tol import load_images  # noqa: E402

KEYS = ("p1_fwd_iterations_mean", "p1_bwd_iterations_mean", "p2_fwd_iterations_mean",
        "p2_bwd_iterations_mean")


def beyond_one_step(contraction: float, images: Path, weights: str) -> float:
    x, _ = load_images(images, 32, 64)
    ratios = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = create_model("lion", create_backbone("mobilenetv2_100", 10, weights, 64),
                             {"contraction": contraction})
        with torch.no_grad():
            z_star, one = model.p1(x), model.p1.map(x)(x)
        ratios.append(float(((z_star - one).flatten(1).norm(dim=1)
                             / (one - x).flatten(1).norm(dim=1)).mean()))
    return statistics.mean(ratios)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--bench", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--weights", default="none")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = [r for r in Store(args.db).fetch_runs("done") if r["method"] == "lion"]
    by_c: dict[float, list[dict]] = {}
    for r in runs:
        mc = json.loads(r["config"])["method_config"]
        if all(mc[k] == v for k, v in (("p2_input", "raw"), ("robust", True))):
            r["extra"] = json.loads(r["extra"] or "{}")
            by_c.setdefault(float(mc["contraction"]), []).append(r)
    bench = json.loads(args.bench.read_text())
    floor = {(row["overrides"].get("contraction"), row["overrides"].get("p2_input", "raw")):
             row["ratio_to_floor"] for row in bench["rows"] if row["method"] == "lion"}
    solver = {row["overrides"].get("contraction"): row["solver"] for row in bench["rows"]
              if row["overrides"].get("p2_input") == "prompted"}
    print("| contraction | seeds | val top-1 | test top-1 | P1 it. fwd / bwd | P2 it. fwd / bwd "
          "| beyond one step | x floor, prompted (raw) | bench P1 it. fwd / bwd |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in sorted(by_c):
        rs = by_c[c]
        mean = {k: statistics.mean(r["extra"].get(k, float("nan")) for r in rs) for k in KEYS}
        val = statistics.mean(r["val_top1"] for r in rs)
        test = statistics.mean(r["test_top1"] for r in rs)
        raw = floor.get((c, "raw"))
        cost = f"{floor.get((c, 'prompted'), float('nan')):.2f}" + (
            f" ({raw:.2f})" if raw is not None else "")
        s = solver.get(c, {})
        print(f"| {c:g} | {len(rs)} | {val:.4f} | {test:.4f} | "
              f"{mean['p1_fwd_iterations_mean']:.1f} / {mean['p1_bwd_iterations_mean']:.1f} | "
              f"{mean['p2_fwd_iterations_mean']:.1f} / {mean['p2_bwd_iterations_mean']:.1f} | "
              f"{beyond_one_step(c, args.images, args.weights):.3f} | {cost} | "
              f"{s.get('p1_fwd_iterations_mean', float('nan')):.1f} / "
              f"{s.get('p1_bwd_iterations_mean', float('nan')):.1f} |", flush=True)


if __name__ == "__main__":
    main()
