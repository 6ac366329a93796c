"""How fast `lionbench table`, `status` and `export` answer on a database of 10,000 runs.

    python benchmarks/perf/cli_speed.py [--runs 10000] [--repeat 5] [--db PATH]

Fills a SQLite file with synthetic done runs (4 backbones x 10 methods x 25 datasets x 10 seeds,
real RunConfigs and metrics, no training; 1 LION run in 20 stored with a solver warning), then
times each command as a user runs it: a fresh
`lionbench` process, wall clock from start to exit, the median of --repeat runs. Prints a
Markdown table (results/perf/cli-speed.md holds the last one).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from lionbench.config import RunConfig, TrainConfig
from lionbench.store import Store
from lionbench.store.provenance import cpu_model

METHODS = ["retraining", "head-tuning", "fine-tuning", "adapter", "bias", "vpt", "lion",
           "lion-p1", "lion-p2", "lion-r"]
BACKBONES = ["resnet50", "resnet101", "vit_base_patch16_224", "swin_base_patch4_window7_224"]


def fill(db: Path, runs: int) -> None:
    db.unlink(missing_ok=True)
    store = Store(str(db))
    datasets = [f"folder:data/set{i:02d}" for i in range(25)]
    rng = random.Random(0)
    configs = []
    for backbone, method, dataset, seed in itertools.product(BACKBONES, METHODS, datasets,
                                                             range(10)):
        configs.append(RunConfig(method=method, backbone=backbone, dataset=dataset, seed=seed,
                                 weights="pretrained", weights_id=f"timm:{backbone}",
                                 method_config={}, train=TrainConfig(epochs=20),
                                 pipeline={"image_size": 224}))
    configs = configs[:runs]
    store.add_pending(configs)
    provenance = {"host": "bench", "device": "cpu", "git_commit": "0" * 40, "git_dirty": False,
                  "versions": "{}"}
    while (row := store.claim_next("bench")) is not None:
        metrics = {"test_top1": rng.random(), "val_top1": rng.random(), "best_epoch": 3,
                   "params_trainable": 97_000, "params_trainable_no_head": 77_000,
                   "params_total": 23_000_000, "train_seconds": 100.0}
        extra = {"history": [{"epoch": 0, "val_top1": 0.5}]}
        if row["method"].startswith("lion"):  # solver statistics; 1 run in 20 unconverged
            extra.update(p1_fwd_samples=1000.0, p1_fwd_not_converged=float(
                rng.random() < 0.05) * 100.0)
        store.mark_done(row["id"], metrics, extra, provenance, attempt=row["attempts"])


def timed(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", type=Path,
                        default=Path(tempfile.gettempdir()) / "lionbench-speed.db")
    args = parser.parse_args()
    fill(args.db, args.runs)
    exe = shutil.which("lionbench") or "lionbench"
    rows = [("lionbench --version", [exe, "--version"])]
    for name, extra in (("table", []), ("table --format csv", ["--format", "csv"]),
                        ("status", []), ("export --format csv", ["--format", "csv"])):
        rows.append((f"lionbench {name}", [exe, name.split()[0], "--db", str(args.db), *extra]))
    load = os.getloadavg()[0]
    print(f"{args.runs:,} done runs; median of {args.repeat} fresh processes; "
          f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {load:.2f} at start\n")
    print(f"`lionbench` is `{exe}`\n")
    print("| command | seconds |\n| --- | ---: |")
    for label, cmd in rows:
        print(f"| `{label}` | {timed(cmd, args.repeat):.2f} |")


if __name__ == "__main__":
    main()
