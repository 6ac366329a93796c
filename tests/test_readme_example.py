"""The README's "Using LION in your own code" example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs():
    text = README.read_text()
    section = text[text.index("## Using LION in your own code"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    model = namespace["model"]
    assert namespace["loss"].requires_grad
    assert not any(p.requires_grad for p in model.backbone.parameters()
                   if all(p is not q for q in model.head().parameters()))
    metrics = model.extra_metrics()
    assert metrics["p1_fwd_iterations_mean"] >= 1 and "robust_noncrucial_fraction" not in metrics
