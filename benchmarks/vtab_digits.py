"""Write scikit-learn's digits as a VTAB-1k task folder (NOAH's layout), for an offline demo.

    python benchmarks/vtab_digits.py [data/vtab-1k/digits]

Real images in the layout VTAB-1k's task folders have on disk (``images/<split>/<index>.png``
and ``train800.txt``, ``val200.txt``, ``train800val200.txt``, ``test.txt``, one line
``<path> <label>`` per image): 800 training and 200 validation images drawn (seed 0) from the
1,437 images of lionbench's ``digits`` train split, the 360 images of its test split as
``test``. Then ``--datasets vtab:data/vtab-1k/digits`` runs the VTAB protocol offline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lionbench.data import get_dataset


def build(target: Path) -> dict[str, int]:
    spec = get_dataset("digits")
    train, test = spec.load(None, "train"), spec.load(None, "test")
    order = np.random.default_rng(0).permutation(len(train))
    splits = {"train800": (train, order[:800]), "val200": (train, order[800:1000]),
              "test": (test, np.arange(len(test)))}
    lines: dict[str, list[str]] = {}
    for split, (data, idx) in splits.items():
        lines[split] = []
        for i, k in enumerate(idx):
            rel = f"images/{split}/{i:06d}.png"
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.images[int(k), 0].numpy()).convert("RGB").save(target / rel)
            lines[split].append(f"{rel} {int(data.labels[int(k)])}")
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, rows in lines.items():
        (target / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return {split: len(rows) for split, rows in lines.items()}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "data/vtab-1k/digits")
    print(f"wrote {out}: {build(out)}")
