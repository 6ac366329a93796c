"""Mutation run for LION: does a plausibly wrong equation make at least one test fail?

Each mutant is a one-line text patch of the source (a dropped coefficient, swapped terms, a
removed check). For each, the script copies ``lionbench/``, ``methods/``, ``tests/`` and
``pyproject.toml`` to a fresh temporary directory, applies the patch there (the exact old text
must occur once, or the script stops), runs the relevant test files with this interpreter
against the copy (``PYTHONPATH`` puts the copy first; the script checks that the copy is what
gets imported), and records which tests failed. The unmutated copy must pass first.

    python benchmarks/mutation/lion_mutants.py | tee results/mutation-lion.txt

Exit status 1 if any mutant survives (no test failed) or the unmutated copy fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LION_TESTS = ("tests/test_lion.py", "tests/test_lion_equilibrium.py", "tests/test_robust.py",
              "tests/test_deq.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...] = LION_TESTS


MUTANTS = [
    # the list
    Mutant("no-lipschitz-bound", "weights of P1/P2 no longer divided by their operator norm",
           "methods/lion_layers.py", "return self.layer.weight / norm, self.layer.bias",
           "return self.layer.weight, self.layer.bias"),
    Mutant("eq1-drop-a1", "eq. 1 as x~ = x + b1 P1(x)", "methods/lion.py",
           "x_t = a1 * x + b1 * self.p1(x)", "x_t = x + b1 * self.p1(x)"),
    Mutant("eq2-drop-a2", "eq. 2 as z~ = F(x~) + b2 MLP(P2(z))", "methods/lion.py",
           "z_t = a2 * feats + b2 *", "z_t = feats + b2 *"),
    Mutant("p2-input-x0.9", "P2's input scaled by 0.9", "methods/lion.py",
           "self.p2(self.proj(z))", "self.p2(0.9 * self.proj(z))"),
    Mutant("swap-a-b", "eq. 3's a and b swapped", "methods/lion.py",
           "a, b = torch.softmax(logits, dim=0)", "b, a = torch.softmax(logits, dim=0)"),
    Mutant("one-step-backward", "the one-step (Jacobian-free) gradient in place of eq. 6",
           "lionbench/deq.py", 'if config.backward == "one_step":',
           'if config.backward in ("one_step", "implicit"):'),
    Mutant("criticality-abs-g", "criticality |g| instead of |g * theta| (eq. 7)",
           "lionbench/robust.py", "crit = [(p.grad.detach() * p.detach()).abs() for p, _ in",
           "crit = [p.grad.detach().abs() for p, _ in"),
    Mutant("ranking-pooled", "tau's share ranked over all tensors pooled, not per tensor",
           "lionbench/robust.py", 'elif self.tau_scope == "tensor":', "elif False:"),
    # more of the same kind
    Mutant("robust-on-head", "robust training ranks the head and blend logits too",
           "methods/lion.py", 'ranked = (PROMPT_COMPONENTS if self.config.robust_scope == '
           '"prompts"', 'ranked = (tuple(groups) if self.config.robust_scope == "prompts"'),
    Mutant("shrink-away-from-zero", "eq. 11 with the sign flipped", "lionbench/robust.py",
           'p[m] = o - g["lr"] * torch.sign(o)', 'p[m] = o + g["lr"] * torch.sign(o)'),
    Mutant("no-contraction-factor", "unit(z) = u + tanh(g(z)), the factor dropped",
           "methods/lion_layers.py", "z = u + c * torch.tanh(g(z))",
           "z = u + torch.tanh(g(z))"),
    Mutant("conv-norm-of-matrix", "conv normalised by its weight matrix's norm, not the "
           "operator's", "methods/lion_layers.py",
           "return conv_operator_norm(layer.weight)",
           "return torch.linalg.matrix_norm(layer.weight.flatten(1), ord=2)"),
    Mutant("no-paper-budget", "p2_width=auto ignores the paper's budgets", "methods/lion.py",
           'budget = PAPER_BUDGETS.get(str(cfg.get("architecture", "")))', "budget = None"),
    Mutant("health-threshold-50%", "unconverged solves flagged only above 50 %",
           "lionbench/store/health.py", "if share > MAX_UNCONVERGED_SHARE:",
           "if share > 0.5:", ("tests/test_solver_health.py",)),
]


def make_copy(where: Path) -> Path:
    src = where / "src"
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("lionbench", "methods", "tests"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
    (src / "lionbench" / "methods").symlink_to(src / "methods")  # installed as lionbench.methods
    return src


def apply(src: Path, mutant: Mutant) -> None:
    path = src / mutant.path
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(f"mutant {mutant.name}: {mutant.old!r} occurs {text.count(mutant.old)}"
                         f" times in {mutant.path}; update the mutant")
    path.write_text(text.replace(mutant.old, mutant.new))


def environment(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}


def check_imports_from(src: Path) -> None:
    code = ("import lionbench, lionbench.methods.lion, lionbench.robust; "
            "print(lionbench.__file__); print(lionbench.methods.lion.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=src, env=environment(src),
                         capture_output=True, text=True, check=True).stdout.split()
    if not all(Path(p).resolve().is_relative_to(src.resolve()) for p in out):
        raise SystemExit(f"the copy is not what gets imported: {out}")


def run_tests(src: Path, tests: tuple[str, ...]) -> tuple[int, list[str], float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider",
                           *tests], cwd=src, env=environment(src), capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M)
    errors = re.findall(r"^ERROR (\S+)", proc.stdout, re.M)
    return proc.returncode, failed + errors, time.perf_counter() - start


def main() -> int:
    print(f"python {sys.version.split()[0]}, {len(MUTANTS)} mutants, source {ROOT.name}")
    with tempfile.TemporaryDirectory(prefix="lion-mutants-") as tmp:
        src = make_copy(Path(tmp) / "base")
        check_imports_from(src)
        code, failed, seconds = run_tests(src, tuple(sorted({t for m in MUTANTS
                                                             for t in m.tests})))
        print(f"unmutated copy: {'all tests pass' if code == 0 else 'FAILS'} ({seconds:.0f} s)")
        if code != 0:
            print("\n".join(failed))
            return 1
        survivors = 0
        print(f"\n{'mutant':24} {'killed':7} {'tests failed':>12}  first failing tests")
        for i, mutant in enumerate(MUTANTS):
            src = make_copy(Path(tmp) / f"m{i}")
            apply(src, mutant)
            code, failed, seconds = run_tests(src, mutant.tests)
            killed = bool(failed) and code != 0
            survivors += not killed
            shown = ", ".join(f.split("::", 1)[-1] for f in failed[:3])
            more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
            print(f"{mutant.name:24} {'yes' if killed else 'NO':7} {len(failed):>12}  "
                  f"{shown}{more}", flush=True)
            print(f"{'':24} {mutant.path}: {mutant.what} ({seconds:.0f} s)", flush=True)
            shutil.rmtree(src.parent)
    print(f"\n{len(MUTANTS) - survivors} of {len(MUTANTS)} mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
