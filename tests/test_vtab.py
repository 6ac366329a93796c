"""VTAB-1k as researchers keep it: task folders with train800/val200/train800val200/test lists.

Every task here is generated in tmp_path in NOAH's layout (``images/<split>/<index>.jpg`` and
one ``<path> <label>`` line per image), a few 8x8 images per split: nothing is downloaded. The
protocol mapping is checked end to end: plain runs train on train800 and select on val200;
``train_on_val`` trains on train800val200 and keeps the last epoch; ``lionbench tune``'s final
runs on a VTAB task do so and ``table --selected`` shows them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_SET
from PIL import Image
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.config import run_config_from_dict
from lionbench.data import expand_suites, get_dataset
from lionbench.data.vtab import VTAB_NAMES, VTAB_TASKS
from lionbench.errors import DatasetError
from lionbench.runner.plan import create_matrices
from lionbench.store import Store
from lionbench.train.configs import create_run_config

runner = CliRunner()
SIZES = {"train800": 12, "val200": 6, "test": 6}


def vtab_task(home: Path, classes: int = 3, sizes: dict[str, int] | None = None) -> Path:
    """A VTAB-1k task folder as NOAH's get_vtab1k.py writes it (train800val200 = both)."""
    sizes = sizes or SIZES
    lines: dict[str, list[str]] = {}
    for split, n in sizes.items():
        lines[split] = []
        for i in range(n):
            rel = f"images/{split}/{i:06d}.jpg"
            (home / rel).parent.mkdir(parents=True, exist_ok=True)
            label = i % classes
            Image.new("RGB", (8, 8), (label * 80, i * 7 % 256, 60)).save(home / rel)
            lines[split].append(f"{rel} {label}")
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, rows in lines.items():
        (home / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return home


def as_dict(value: str | dict) -> dict:
    return value if isinstance(value, dict) else json.loads(value)


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_a_task_folder_reads_its_lists_with_val200_as_validation(tmp_path):
    home = vtab_task(tmp_path / "mytask")
    spec = get_dataset(f"vtab:{home}")
    assert spec.num_classes == 3 and spec.default_augment == "none"
    train, val = spec.load_train_val(None, seed=0, val_fraction=0.1)
    again, _ = spec.load_train_val(None, seed=7, val_fraction=0.5)
    assert len(train) == 12 and len(val) == 6 and train.paths == again.paths  # not the seed's
    assert all("/images/train800/" in p for p in train.paths)
    assert all("/images/val200/" in p for p in val.paths)
    assert len(spec.load(None, "test")) == 6
    both = spec.load_train_plus_val(None, 0, 0.1)
    assert sorted(both.paths) == sorted(train.paths + val.paths)
    assert spec.validation_source(0.1) == "the dataset's own val200.txt"
    assert spec.final_on_train_val


def test_known_tasks_keep_vtabs_class_count_by_folder_name(tmp_path):
    home = vtab_task(tmp_path / "dtd")  # only labels 0..2 among few images: still 47 classes
    assert get_dataset(f"vtab:{home}").num_classes == 47
    assert [c for _, _, _, c in VTAB_TASKS] == [100, 102, 47, 102, 37, 10, 397, 2, 10, 45, 5,
                                                 8, 6, 6, 4, 16, 16, 18, 9]


def test_registered_tasks_read_data_root_vtab_1k(tmp_path):
    spec = get_dataset("vtab-caltech101")
    assert spec.num_classes == 102 and not spec.is_present(tmp_path)
    with pytest.raises(DatasetError, match="vtab-1k/caltech101' not found.*get_vtab1k.py"):
        spec.load(tmp_path, "train")
    vtab_task(tmp_path / "vtab-1k" / "caltech101")
    assert spec.is_present(tmp_path)
    assert len(spec.load(tmp_path, "train")) == 12


def test_vtab_1k_on_the_datasets_axis_is_its_19_tasks_in_order():
    assert len(VTAB_NAMES) == 19 and VTAB_NAMES[0] == "vtab-cifar"
    assert expand_suites(["digits", "vtab-1k"]) == ["digits", *VTAB_NAMES]
    [matrix] = create_matrices(methods="head-tuning", backbones="test_vit", datasets="vtab-1k")
    assert matrix.datasets == list(VTAB_NAMES)


def test_bad_folders_are_one_line_naming_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="no VTAB-1k task folder"):
        get_dataset(f"vtab:{tmp_path / 'absent'}")
    home = vtab_task(tmp_path / "t")
    (home / "val200.txt").unlink()
    with pytest.raises(DatasetError, match="lacks val200.txt"):
        get_dataset(f"vtab:{home}")
    home = vtab_task(tmp_path / "u")
    (home / "train800.txt").write_text("images/train800/000000.jpg\n")
    with pytest.raises(DatasetError, match="line 1: expected '<image path> <label>'"):
        get_dataset(f"vtab:{home}").load(None, "train")
    home = vtab_task(tmp_path / "v")
    (home / "images" / "test" / "000001.jpg").unlink()
    with pytest.raises(DatasetError, match="1 image.*missing.*000001.jpg"):
        get_dataset(f"vtab:{home}").load(None, "test")


def test_train_on_val_is_in_the_identity_only_when_set():
    plain = create_run_config("head-tuning", "test_resnet", "digits", weights="none")
    assert "train_on_val" not in plain.to_dict()["train"]  # stored runs keep their identity
    final = create_run_config("head-tuning", "test_resnet", "digits", weights="none",
                              overrides={"train_on_val": True})
    assert final.to_dict()["train"]["train_on_val"] is True
    assert final.cell_hash != plain.cell_hash
    for config in (plain, final):  # a stored config rebuilds to the same identity
        assert run_config_from_dict(config.to_dict()).run_hash == config.run_hash


@pytest.mark.parametrize("final", [False, True])
def test_a_run_selects_on_val200_or_trains_on_both_and_keeps_the_last_epoch(tmp_path, final):
    home = vtab_task(tmp_path / "task")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    extra = ["--set", "train_on_val=true"] if final else []
    result = invoke("run", "-m", "head-tuning", "-b", "test_resnet", "-d", f"vtab:{home}",
                    "--weights", "none", *TINY_SET, "--set", "epochs=2", *extra, "--db", db)
    assert result.exit_code == 0, result.output
    [run] = Store(db).list_runs().to_dict("records")
    info = as_dict(run["extra"])
    if final:
        assert info["validation"].startswith("none: train_on_val")
        assert run["val_top1"] is None or run["val_top1"] != run["val_top1"]
        assert run["best_epoch"] == 1  # the last of 2
        assert "no validation: last epoch" in result.output
    else:
        assert info["validation"] == "the dataset's own val200.txt: 6 images"
        assert 0 <= run["val_top1"] <= 1


def test_tune_selects_on_val200_and_retrains_the_winner_on_train800val200(tmp_path):
    home = vtab_task(tmp_path / "task")
    db = f"sqlite:///{tmp_path / 't.db'}"
    result = invoke("tune", "-m", "head-tuning", "-b", "test_resnet", "-d", f"vtab:{home}",
                    "--weights", "none", *TINY_SET, "--set", "epochs=2",
                    "--grid", "lr=1e-3,1e-2", "--seeds", "0", "--db", db)
    assert result.exit_code == 0, result.output
    runs = Store(db).list_runs().to_dict("records")
    configs = {r["run_hash"]: as_dict(r["config"]) for r in runs}
    finals = [r for r in runs if configs[r["run_hash"]]["train"].get("train_on_val")]
    candidates = [r for r in runs if r not in finals]
    assert len(candidates) == 2 and len(finals) == 1 and finals[0]["seed"] == 0
    assert all(r["val_top1"] is not None for r in candidates)
    [choice] = Store(db).selected_cells().values()
    assert choice["cell_hash"] == finals[0]["cell_hash"] and choice["seeds"] == (0,)
    table = invoke("table", "--selected", "--db", db, "--format", "csv")
    assert table.exit_code == 0, table.output
    assert f"vtab:{home}" in table.output
