"""How far LION's whole-model gradient is from the exact one, per solver tolerance, and the cost.

Why: the implicit backward solves ``u = J^T u + g`` to a relative tolerance (``backward_tol``)
and the forward solve to ``tol``; both leave the gradient inexact, and so does float32. This
script measures the relative error of every component's gradient (P1, P2, MLP, blend logits,
head) against the exact one (float64, both tolerances 1e-12, 300 iterations) and the solver
iterations each setting costs, on real images, at initialisation and after 30 training steps (on
other images);
in float64 (the solver's error alone) and in float32 (what training sees); and, as the scale
that matters to training, how far the exact gradient of a second batch of 32 images is from the
first one's (minibatch sampling noise). Prompt modules are in
eval mode while gradients are compared, so every call sees the same normalised weights (no
power-iteration step between calls).

    python benchmarks/studies/lion_backward_tol.py \
        --weights weights/mobilenetv2_100.imagenet.safetensors \
        --images data/cifar10-jpeg/train > results/lion-backward-tol.md

Backbone mobilenetv2_100 (ImageNet weights when given, else random) at 64 px, 32 CIFAR-10
training JPEGs, LION's defaults otherwise (p2_input=raw).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lionbench.methods import create_model
from PIL import Image

from lionbench.backbones import create_backbone

SETTINGS = [(1e-3, 1e-3), (1e-3, 1e-4), (1e-3, 1e-6), (1e-4, 1e-4), (1e-4, 1e-6), (1e-5, 1e-8)]
EXACT = {"tol": 1e-12, "backward_tol": 1e-12, "max_iter": 300, "backward_max_iter": 300}


def load_images(folder: Path, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    xs, ys = [], []
    for i in range(n):
        cls = classes[i % len(classes)]
        path = sorted(cls.iterdir())[i // len(classes)]
        img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
        xs.append(torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
                  .view(size, size, 3).float())
        ys.append(i % len(classes))
    x = torch.stack(xs).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (x - mean) / std, torch.tensor(ys)


def gradients(model, x, y, **solver) -> tuple[dict[str, torch.Tensor], dict[str, float], float]:
    for block in (model.p1, model.p2):
        block.solver = block.solver.__class__(**{**vars(block.solver), **solver})
        block.tracker.reset()
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    F.cross_entropy(model(x), y).backward()
    seconds = time.perf_counter() - start
    grads = {name: torch.cat([p.grad.reshape(-1) for p in ps]).double()
             for name, ps in model.parameter_groups().items()}
    return grads, model.extra_metrics(), seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="none")
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--train-steps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x96, y96 = load_images(args.images, 96, 64)  # measured on, noise, trained on
    x, y, x_other, y_other = x96[:32], y96[:32], x96[32:64], y96[32:64]
    x_train, y_train = x96[64:], y96[64:]
    backbone = create_backbone("mobilenetv2_100", 10, args.weights, 64)
    model = create_model("lion", backbone)
    print("| state | dtype | tol | backward_tol | worst component (rel. error) | p1 / p2 / mlp / "
          "blend / head rel. error | it fwd p1/p2 | it bwd p1/p2 | s fwd+bwd |")
    print("|---|---|---|---|---|---|---|---|---|")
    for state in ("init", f"after {args.train_steps} steps"):
        if state != "init":
            model.train()
            opt = model.create_optimizer(1e-3)
            for _ in range(args.train_steps):
                opt.zero_grad()
                F.cross_entropy(model(x_train), y_train).backward()
                opt.step()
        model.eval()  # no power-iteration step: every call sees the same normalised weights
        exact_model = copy.deepcopy(model).double()
        exact, _, _ = gradients(exact_model, x.double(), y, **EXACT)
        other, _, _ = gradients(exact_model, x_other.double(), y_other, **EXACT)
        noise = {k: float((other[k] - exact[k]).norm() / exact[k].norm()) for k in exact}
        print(f"| {state} | (another batch of 32, exact) | - | - | sampling noise | "
              + " / ".join(f"{noise[k]:.1e}" for k in ("p1", "p2", "mlp", "coefficients",
                                                         "head")) + " | - | - | - |", flush=True)
        for (tol, btol), dtype in [(s, d) for d in ("float64", "float32") for s in SETTINGS]:
            net = exact_model if dtype == "float64" else model
            xd = x.double() if dtype == "float64" else x
            grads, m, sec = gradients(net, xd, y, tol=tol, backward_tol=btol)
            errs = {k: float((grads[k] - exact[k]).norm() / exact[k].norm()) for k in exact}
            worst = max(errs, key=errs.get)
            print(f"| {state} | {dtype} | {tol:g} | {btol:g} | {worst} {errs[worst]:.2e} | "
                  + " / ".join(f"{errs[k]:.1e}" for k in ("p1", "p2", "mlp", "coefficients",
                                                          "head"))
                  + f" | {m['p1_fwd_iterations_mean']:.1f} / {m['p2_fwd_iterations_mean']:.1f}"
                  f" | {m['p1_bwd_iterations_mean']:.1f} / {m['p2_bwd_iterations_mean']:.1f}"
                  f" | {sec:.2f} |", flush=True)


if __name__ == "__main__":
    main()
