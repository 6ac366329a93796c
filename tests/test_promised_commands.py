"""The three commands lionbench was specified by, exactly as users type them (``--db`` added,
``--dry-run`` where a real run is too heavy for CI):

    lionbench run --methods lion,vpt --backbones resnet50
    lionbench ablate --variant lion-r
    lionbench table --format latex
"""

from __future__ import annotations

import pytest
from conftest import TINY_SET
from typer.testing import CliRunner

import lionbench.backbones as backbones
from lionbench.cli import app
from lionbench.runner.plan import DEFAULT_AXES
from lionbench.store import Store

runner = CliRunner()
RUN = ["run", "--methods", "lion,vpt", "--backbones", "resnet50"]
ABLATE = ["ablate", "--variant", "lion-r"]
TABLE = ["table", "--format", "latex"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def offline(monkeypatch):
    """No hub and an empty weights cache, whatever machine the suite runs on."""
    monkeypatch.setattr(backbones, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(backbones, "_in_local_cache", lambda name: False)


def stored(db_url: str) -> list[tuple]:
    return [tuple(r) for r in Store(db_url).execute(
        "select method, backbone, dataset, seed, status from runs order by id")]


def test_run_plans_lion_and_vpt_on_resnet50_over_the_default_datasets(db_url, offline):
    result = invoke(*RUN, "--db", db_url, "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "datasets: digits (default; pass --datasets to choose)" in out
    assert "seeds: 0 (default; pass --seeds to choose)" in out
    assert "methods:" not in out and "backbones:" not in out  # given, so no default printed
    assert "2 to run, 0 already stored" in out
    rows = [line.split("│") for line in out.splitlines() if line.startswith("│")]
    assert [(r[2].strip(), r[4].strip()) for r in rows] == [("lion", "digits"), ("vpt", "digits")]
    assert "--weights FILE" in result.stderr  # the dry run warns what a real run would hit
    assert stored(db_url) == []


def test_run_offline_fails_fast_before_anything_is_stored_or_trained(db_url, offline,
                                                                      monkeypatch):
    import lionbench.train as train

    def never(*args, **kwargs):
        raise AssertionError("trained although the weights cannot be had")

    monkeypatch.setattr(train, "train_run", never)
    result = invoke(*RUN, "--db", db_url)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot fetch pretrained weights for 'resnet50'" in lines[0]
    assert "--weights FILE" in lines[0] and "Traceback" not in result.output
    assert stored(db_url) == []


def test_run_with_a_weights_file_trains_offline(db_url, offline, tmp_path):
    """The same command given --weights FILE trains on the file, offline (tiny settings)."""
    import timm
    from safetensors.torch import save_file

    path = tmp_path / "resnet50.safetensors"
    state = timm.create_model("resnet50", pretrained=False, num_classes=0).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    result = invoke(*RUN, "--db", db_url, "--weights", str(path), "--no-table", *TINY_SET,
                    "--set", "max_train_samples=32")
    assert result.exit_code == 0, result.output
    assert stored(db_url) == [("lion", "resnet50", "digits", 0, "done"),
                              ("vpt", "resnet50", "digits", 0, "done")]


def test_ablate_runs_lion_and_lion_r_over_the_default_backbones_and_datasets(db_url):
    result = invoke(*ABLATE, "--db", db_url, "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for axis in ("backbones", "datasets", "seeds"):
        default = ",".join(map(str, DEFAULT_AXES[axis]))
        assert f"{axis}: {default} (default; pass --{axis} to choose)" in out
    assert "2 to run" in out
    lines = [line for line in out.splitlines() if line.startswith("│")]
    assert [line.split("│")[2].strip() for line in lines] == ["lion", "lion-r"]


def test_ablate_for_real_renders_table_4_order(db_url):
    """LION-R before LION, as in Table 4 (tiny settings: the real default run is in README)."""
    result = invoke(*ABLATE, "--db", db_url, *TINY_SET)
    assert result.exit_code == 0, result.output
    assert [r[0] for r in stored(db_url)] == ["lion", "lion-r"]
    assert all(r[1:] == ("demo-resnet", "digits", 0, "done") for r in stored(db_url))
    table = result.stdout[result.stdout.index("Method"):]
    assert table.index("lion-r") < table.index("lion ")


def test_table_on_an_empty_database_says_so_and_prints_nothing(db_url):
    Store(db_url)  # a lionbench database without runs (`table` never creates one)
    result = invoke(*TABLE, "--db", db_url)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.strip() == (f"no done runs in {db_url}; run `lionbench run` first "
                                     "(--allow-empty renders the empty layout)")
    empty = invoke(*TABLE, "--db", db_url, "--allow-empty")
    assert empty.exit_code == 0 and r"\begin{tabular}" in empty.stdout


def test_table_latex_renders_the_done_runs(db_url):
    assert invoke("run", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits", "--weights",
                  "none", "--no-table", "--db", db_url, *TINY_SET).exit_code == 0
    result = invoke(*TABLE, "--db", db_url)
    assert result.exit_code == 0 and result.stderr == ""
    assert r"\toprule" in result.stdout and "head-tuning" in result.stdout
