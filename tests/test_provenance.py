"""Verified provenance: weights and data are checked before a worker trains; imported runs keep
their origin, are marked in tables, and never train on other weights or data.

Forged imports are written as a malicious or careless export would be: a JSON export edited by
hand (a pending run pointed at other weights behind the same identity, a done run with an
impossible or a suspiciously good accuracy).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from conftest import TINY, TINY_SET
from safetensors.torch import save_file
from typer.testing import CliRunner

import lionbench.train as train_mod
from lionbench.backbones import create_backbone
from lionbench.cli import app
from lionbench.errors import WeightsError
from lionbench.report import render_stored_table
from lionbench.runner import build_plan, run_plan
from lionbench.store import Store
from lionbench.store.exchange import ExchangeError, export_runs, import_runs

runner = CliRunner()
TINY_ITEMS = [f"{k}={v}" for k, v in TINY.items()]


def weights_file(path: Path, seed: int) -> Path:
    """A test_resnet checkpoint (no head) whose bytes depend on ``seed``."""
    torch.manual_seed(seed)
    state = timm.create_model("test_resnet", num_classes=0).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def plan(db: str, weights: Path | str = "none", seeds: str = "0", dataset: str = "digits"):
    return build_plan(None, "head-tuning", "test_resnet", dataset, seeds, TINY_ITEMS,
                      str(weights), db)


@pytest.fixture
def never_trains(monkeypatch):
    """Fail the test if training starts (the checks must refuse before it)."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train_mod, "train_run", refuse)


# --- weights ---------------------------------------------------------------------------------
def test_weights_changed_since_planning_are_refused_before_training(tmp_path, db_url,
                                                                    never_trains):
    good = weights_file(tmp_path / "w.safetensors", seed=0)
    p = plan(db_url, good)
    weights_file(good, seed=1)  # the same path now holds other bytes
    summary = run_plan(p)
    assert (summary.done, summary.failed) == (0, 1) and summary.exit_code == 1
    reason = p.store.fetch_runs("failed")[0]["failure_reason"]
    assert reason.startswith("WeightsError: weights '") and "refusing to train on other " \
        "weights" in reason and p.configs[0].weights_id in reason
    assert "\n" not in reason


def test_the_bytes_loaded_are_the_bytes_checked(tmp_path):
    good = weights_file(tmp_path / "w.safetensors", seed=0)
    from lionbench.backbones import resolve_weights_id

    expected = resolve_weights_id("test_resnet", str(good))
    model = create_backbone("test_resnet", 3, str(good), expected_id=expected)
    assert model is not None
    with pytest.raises(WeightsError, match="are sha256:.*not sha256:0000"):
        create_backbone("test_resnet", 3, str(good), expected_id="sha256:0000000000000000")
    with pytest.raises(WeightsError, match="are none here, not sha256"):  # random init
        create_backbone("test_resnet", 3, "none", expected_id=expected)


def test_cli_names_the_refusal_and_exits_1(tmp_path, db_url, monkeypatch):
    good = weights_file(tmp_path / "w.safetensors", seed=0)
    args = ["run", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits", "--weights",
            str(good), *TINY_SET, "--db", db_url, "--no-table"]
    real = train_mod.train_run

    def rewrite_then_train(config, *a, **kw):  # the file changes after the check, mid-run
        weights_file(good, seed=1)
        return real(config, *a, **kw)

    monkeypatch.setattr(train_mod, "train_run", rewrite_then_train)
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "refusing to train on other weights" in result.output  # train_run's own check
    assert "1 of 1 runs failed" in result.output


# --- imports: origin, marks, impossible metrics --------------------------------------------------
def fake_done(store: Store, accuracy: float) -> None:
    """Mark every pending run done with a made-up result (no training)."""
    while (row := store.claim_next("elsewhere:1")) is not None:
        store.mark_done(row["id"], {"test_top1": accuracy, "val_top1": accuracy,
                                    "params_trainable": 970, "params_total": 80_000,
                                    "best_epoch": 0}, {}, {"host": "elsewhere", "git_dirty": False})


def test_imported_results_keep_their_origin_and_are_marked(tmp_path, db_url):
    source = Store(str(tmp_path / "source.db"))
    source.add_pending(plan(db_url).configs)
    fake_done(source, 0.999)  # possible in principle, but not re-derivable: marked
    export = tmp_path / "runs.json"
    export_runs(source, "json", export)
    target = Store(str(tmp_path / "target.db"))
    import_runs(target, export)
    row = target.fetch_runs("done")[0]
    origin = json.loads(row["origin"])
    assert origin["source"] == str(export) and origin["status"] == "done"
    assert origin["exported_by"] and origin["exported_at"] and origin["imported_at"]
    assert row["imported_result"] is True
    for fmt in ("markdown", "latex", "csv", "rich"):
        text = str(render_stored_table(target, fmt=fmt)) if fmt != "rich" else \
            runner.invoke(app, ["table", "--db", str(tmp_path / "target.db")]).output
        assert ("\u2021" in text) or ("\\ddag" in text) or ("imported" in text), fmt
    md = render_stored_table(target, fmt="markdown")
    assert "0.9990\u2021" in md and "results imported from elsewhere" in md
    plain = runner.invoke(app, ["table", "--db", str(tmp_path / "target.db"), "--format",
                                "markdown", "--no-mark-imported"]).output
    assert "0.9990" in plain and "\u2021" not in plain
    local = render_stored_table(source, fmt="markdown")  # made there: no mark at the source
    assert "0.9990" in local and "\u2021" not in local
    again = tmp_path / "again.json"  # exported from the target, imported into a third database
    export_runs(target, "json", again)
    third = Store(str(tmp_path / "third.db"))
    import_runs(third, again)
    chain = json.loads(third.fetch_runs("done")[0]["origin"])
    assert chain["source"] == str(again) and chain["earlier"]["source"] == str(export)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("test_top1", 1.7, "test_top1=1.7 is not an accuracy in \\[0, 1\\]"),
    ("test_top1", -0.1, "is not an accuracy"),
    ("test_top5", 0.5, "test_top5=0.5 is below test_top1"),
    ("params_trainable", 10**9, "params_trainable > params_total"),
    ("best_epoch", 7, "best_epoch=7 is not an epoch of a 1-epoch run"),
    ("test_top1", None, "a done run without test_top1"),
])
def test_impossible_metrics_are_refused_and_nothing_changes(tmp_path, db_url, field, value,
                                                            message):
    source = Store(str(tmp_path / "source.db"))
    source.add_pending(plan(db_url).configs)
    fake_done(source, 0.9)
    export = tmp_path / "runs.json"
    export_runs(source, "json", export)
    doc = json.loads(export.read_text())
    doc["runs"][0]["test_top5"] = 0.95
    doc["runs"][0][field] = value
    export.write_text(json.dumps(doc))
    target = Store(str(tmp_path / "target.db"))
    with pytest.raises(ExchangeError, match=message):
        import_runs(target, export)
    assert target.count_by_status()["done"] == 0


# --- imported pending runs: never trained on other weights or data ----------------------------
def forged_pending_export(tmp_path: Path, db_url: str, good: Path, evil: Path,
                          data_id: str | None = "keep") -> Path:
    """A pending run planned on ``good``, its path edited to ``evil`` (same identity)."""
    source = Store(str(tmp_path / "source.db"))
    p = plan(db_url, good)
    source.add_pending(p.configs, data_ids={"digits": "data:0000000000000000"}
                       if data_id == "wrong" else None)
    export = tmp_path / "pending.json"
    export_runs(source, "json", export)
    doc = json.loads(export.read_text())
    rec = doc["runs"][0]
    rec["weights"] = rec["config"]["weights"] = str(evil)  # outside the hash: accepted as such
    if data_id == "keep":
        from lionbench.data import get_dataset
        from lionbench.data.digest import dataset_digest

        rec["data_id"] = dataset_digest(get_dataset("digits"), None)
    export.write_text(json.dumps(doc))
    return export


def test_imported_pending_run_on_other_weights_is_refused_by_the_worker(tmp_path, db_url,
                                                                        never_trains):
    from lionbench.executors.execute import compute, config_of, expectations

    good = weights_file(tmp_path / "good.safetensors", seed=0)
    evil = weights_file(tmp_path / "evil.safetensors", seed=1)
    export = forged_pending_export(tmp_path, db_url, good, evil)
    target = Store(str(tmp_path / "target.db"))
    assert import_runs(target, export).added == 1
    row = target.fetch_runs("pending")[0]
    assert row["weights"] == str(evil) and row["imported_result"] is False
    outcome = compute(config_of(row), expect=expectations(row))  # what any worker runs
    assert outcome["status"] == "failed"
    assert "refusing to train on other weights" in outcome["reason"]


def test_imported_pending_run_trains_on_this_machines_file_of_that_digest(tmp_path, db_url):
    good = weights_file(tmp_path / "good.safetensors", seed=0)
    evil = weights_file(tmp_path / "evil.safetensors", seed=1)
    target_db = f"sqlite:///{tmp_path / 'target.db'}"
    import_runs(Store(target_db), forged_pending_export(tmp_path, db_url, good, evil))
    local = plan(target_db, good)  # the user's own matrix: same identity, this machine's path
    assert local.statuses[local.hashes[0]] == "pending"
    summary = run_plan(local)
    assert summary.exit_code == 0
    row = local.store.fetch_runs("done")[0]
    assert row["weights"] == str(good) and json.loads(row["config"])["weights"] == str(good)
    assert row["imported_result"] is False  # trained here
    assert json.loads(row["origin"])["status"] == "pending"  # the history stays


@pytest.mark.parametrize("data_id", [None, "wrong"])
def test_imported_pending_run_without_or_with_other_data_digest_is_refused(tmp_path, db_url,
                                                                          data_id, monkeypatch):
    good = weights_file(tmp_path / "good.safetensors", seed=0)
    target_db = f"sqlite:///{tmp_path / 'target.db'}"
    import_runs(Store(target_db), forged_pending_export(tmp_path, db_url, good, good, data_id))
    local = plan(target_db, good)
    real = train_mod.train_run
    monkeypatch.setattr(train_mod, "train_run", lambda *a, **k: pytest.fail("trained"))
    summary = run_plan(local)
    assert summary.failed == 1
    reason = local.store.fetch_runs("failed")[0]["failure_reason"]
    expected = "records no data digest" if data_id is None else \
        "not data:0000000000000000 as when the run was planned (imported from"
    assert expected in reason and "--force" in reason
    monkeypatch.setattr(train_mod, "train_run", real)
    forced = run_plan(plan(target_db, good), force=True)  # the user: train it on this data
    assert forced.exit_code == 0
    row = local.store.fetch_runs("done")[0]
    assert row["data_id"].startswith("data:") and row["data_id"] != "data:0000000000000000"


def test_local_runs_record_and_then_check_their_data_digest(tmp_path, db_url):
    root = tmp_path / "tree"
    for split in ("train", "test"):
        for c in ("a", "b"):
            for i in range(3):
                path = root / split / c / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                from PIL import Image

                Image.new("RGB", (8, 8), (i * 40, 80 if c == "a" else 160, 9)).save(path)
    p = plan(db_url, dataset=f"folder:{root}")
    p.store.add_pending(p.configs, data_ids={f"folder:{root}": None})  # data absent at planning
    assert p.store.fetch_runs("pending")[0]["data_id"] is None
    assert run_plan(p).exit_code == 0
    recorded = p.store.fetch_runs("done")[0]["data_id"]  # recorded by the worker
    assert recorded.startswith("data:")
    second = plan(db_url, dataset=f"folder:{root}", seeds="1")
    run_plan(second, data_root=None)
    assert second.store.fetch_runs("done")[1]["data_id"] == recorded  # same data, same digest
    third = plan(db_url, dataset=f"folder:{root}", seeds="2")
    third.store.add_pending(third.configs, data_ids={f"folder:{root}": recorded})
    (root / "train" / "a" / "3.png").write_bytes((root / "train" / "a" / "0.png").read_bytes())
    summary = run_plan(third)  # an image added after planning: other data
    assert summary.failed == 1
    assert "refusing to train on other data" in third.store.fetch_runs("failed")[0][
        "failure_reason"]
