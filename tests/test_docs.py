"""The manual stays true: the generated command reference is current, every link resolves, the
examples that can run here run as written, and the pages speak to a reader who has only the
repository (no development-machine paths, no issue numbers, no version history)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.cli.reference import main as reference_main
from lionbench.cli.reference import render_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def test_the_command_reference_is_current():
    """Fails after any CLI change until `python -m lionbench.cli.reference` rewrites the page."""
    committed = (DOCS / "reference.md").read_text(encoding="utf-8")
    assert committed == render_reference(), (
        "docs/reference.md is stale; regenerate it: python -m lionbench.cli.reference")


def test_the_reference_covers_every_command_and_option():
    text = render_reference()
    for name in ("run", "ablate", "tune", "table", "status", "export", "import", "params",
                 "pretrain", "bench", "plot sensitivity", "plot tradeoff", "list methods",
                 "datasets prepare"):
        assert f"\n## lionbench {name}\n" in text
        assert f"$ lionbench {name} --help\nUsage: lionbench {name} " in text
    run_section = text.split("## lionbench run\n")[1].split("\n## ")[0]
    for flag in ("--methods", "--dry-run", "--retry-failed", "--gpus", "--threads", "--db"):
        assert flag in run_section


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = render_reference()
    monkeypatch.setenv("COLUMNS", "250")
    assert render_reference() == narrow


def test_the_check_mode_says_stale_and_exits_1(tmp_path, capsys):
    page = tmp_path / "reference.md"
    page.write_text(render_reference().replace("--dry-run", "--dry-rnu"), encoding="utf-8")
    assert reference_main([str(page), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert reference_main([str(page)]) == 0 and reference_main([str(page), "--check"]) == 0


def github_anchor(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    for match in re.finditer(r"^#{1,6} (.+)$", text, re.M):
        anchor = github_anchor(match.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        out.add(anchor if count == 0 else f"{anchor}-{count}")
    return out


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name}: link to missing {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), \
                f"{page.name}: no heading for #{anchor} in {linked.name}"


def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail into docs/"
    for page in PAGES:  # every page is reachable from the README or the index
        if page.name != "index.md":
            assert f"docs/{page.name}" in README.read_text() or \
                f"({page.name}" in (DOCS / "index.md").read_text()


FORBIDDEN = {
    r"\.\./shared": "a path beside the development checkout",
    r"(?<![\w.])/(work|tmp|root)/": "a path of the development machine",
    r"\bissues? #?\d+": "an issue number",
    r"\bLION v\d\b|\bfirst LION\b|\bearlier version\b": "version history",
}


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_pages_speak_to_a_reader_with_only_the_repository(page):
    text = page.read_text(encoding="utf-8")
    for pattern, what in FORBIDDEN.items():
        match = re.search(pattern, text, re.I)
        assert match is None, f"{page.name}: {what}: {match.group(0)!r}"


def code_after(page: Path, heading: str, language: str = "python") -> str:
    text = page.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_the_python_api_example_runs_as_written():
    code = code_after(DOCS / "python-api.md", "## Using LION in your own code")
    namespace: dict = {}
    exec(compile(code, "docs/python-api.md", "exec"), namespace)  # noqa: S102
    model = namespace["model"]
    assert namespace["loss"].requires_grad
    assert not any(p.requires_grad for p in model.backbone.parameters()
                   if all(p is not q for q in model.head().parameters()))
    metrics = model.extra_metrics()
    assert metrics["p1_fwd_iterations_mean"] >= 1 and "robust_noncrucial_fraction" not in metrics


def test_the_dry_run_example_shows_the_current_identities(tmp_path):
    """A run's identity changes with the protocol version and the method's settings; the
    documented plan must show the hashes today's code gives for the same command."""
    text = (DOCS / "commands.md").read_text(encoding="utf-8")
    block = text[text.index("<!-- dry-run example"):]
    block = block[:block.index("\n```\n", block.index("```text") + 8)]
    command = re.search(r"\$ lionbench (run .*--dry-run)\n", block).group(1).split()
    documented = re.findall(r"│ ([0-9a-f]{16}) │", block)
    result = CliRunner().invoke(app, [*command, "--db", f"sqlite:///{tmp_path / 'x.db'}"],
                                env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert re.findall(r"│ ([0-9a-f]{16}) │", result.stdout) == documented, (
        "the --dry-run example in docs/commands.md is stale; rerun it and paste its output")
