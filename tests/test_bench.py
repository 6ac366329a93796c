"""``lionbench bench`` and the speed-ups it measures: the quick preset end to end, DEQ memory
against iterations, and head-tuning on cached features (same numbers, never with augmentation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lionbench.methods import create_model
from typer.testing import CliRunner

from lionbench.backbones import create_backbone
from lionbench.cli import app
from lionbench.errors import ConfigError, LionbenchError
from lionbench.matrix import Matrix
from lionbench.perf.bench import FLOOR, REFERENCE, parse_entries
from lionbench.perf.checks import deq_memory_check
from lionbench.perf.preset import load_preset
from lionbench.perf.report import BenchReport
from lionbench.runner import expand_matrix
from lionbench.train import feature_cache, train_run

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "benchmarks" / "perf" / "quick.yaml"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and a busy shared core cannot stall every op."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_quick_preset_through_the_cli(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--preset", str(QUICK), "--no-checks",
                                      "--steps", "2", "--warmup", "0", "--json", str(out),
                                      "--markdown", str(tmp_path / "bench.md")])
    assert result.exit_code == 0, result.output
    assert "Training-step cost: test_resnet" in result.output
    report = BenchReport.from_dict(json.loads(out.read_text()))
    labels = [r.label for r in report.rows]
    assert labels == [FLOOR, "head-tuning", "fine-tuning", "lion-prompted", "lion"]
    assert report.settings["steps"] == 2 and report.machine["cpu"]
    for row in report.rows:
        assert row.backbone == "test_resnet" and row.image_size == 32 and row.batch_size == 8
        assert len(row.step_seconds_all) == 2 and row.step_seconds > 0
        assert row.images_per_second == pytest.approx(8 / row.step_seconds)
        assert row.persistent_mb > 0 and row.saved_mb >= 0
        assert row.peak_mb is None or row.peak_mb >= row.persistent_mb
    assert report.row(FLOOR).ratio_to_floor == 1.0
    assert report.row(REFERENCE).ratio_to_fine_tuning == 1.0
    assert report.row(FLOOR).params_trainable == 0
    for label in ("lion-prompted", "lion"):
        solver = report.row(label).solver
        assert solver["p1_fwd_iterations_mean"] >= 1 and solver["p2_bwd_iterations_mean"] >= 1
    assert report.row("lion-prompted").overrides == {"p2_input": "prompted"}
    assert "| x floor |" in (tmp_path / "bench.md").read_text()


def test_entries_variants_and_errors():
    entries = parse_entries(["lion:p2_input=prompted:tau=0.2",
                             {"method": "lion", "label": "raw", "set": {"p2_input": "raw"}}])
    assert entries[0].overrides == {"p2_input": "prompted", "tau": 0.2}
    assert [e.label for e in entries][1:] == ["raw", REFERENCE]  # fine-tuning added
    assert {e.method for e in parse_entries("all")} >= {"head-tuning", "fine-tuning", "lion"}
    with pytest.raises(ConfigError, match="distinct labels"):
        parse_entries(["lion", "lion"])
    with pytest.raises(LionbenchError, match="method"):
        parse_entries(["no-such-method"])
    options = load_preset(QUICK)
    assert options.deq_memory and options.feature_cache and options.image_size == 32
    for name in ("cpu-resnet50.yaml", "gpu.yaml"):
        preset = load_preset(QUICK.parent / name)
        assert preset.image_size == 224 and parse_entries(preset.methods)


def test_deq_memory_does_not_grow_with_iterations():
    check = deq_memory_check(16, 2, [3, 15], torch.device("cpu"))
    first, last = check["rows"]
    assert (first["fwd_iterations_mean"], last["fwd_iterations_mean"]) == (3, 15)  # forced
    assert (first["bwd_iterations_mean"], last["bwd_iterations_mean"]) == (3, 15)
    assert last["saved_mb"] == first["saved_mb"] > 0
    if check["peak_ratio_last_to_first"] is not None:
        assert check["peak_ratio_last_to_first"] <= 1.05


def _config(augment: str = "none", method: str = "head-tuning", epochs: int = 2,
            **method_values):
    overrides = {"epochs": epochs, "image_size": 16, "max_train_samples": 300, "lr": 0.02,
                 "augment": augment, **method_values}
    (config,) = expand_matrix([Matrix(methods=[method], backbones=["demo-resnet"],
                                      datasets=["digits"], overrides=overrides)])
    return config


@pytest.fixture
def counted_extraction(monkeypatch):
    """Count the images whose features the cache computes; start from an empty cache."""
    feature_cache.clear_memory_cache()
    counted = {"images": 0}
    original = feature_cache.extract_features

    def counting(model, images, *args, **kwargs):
        counted["images"] += len(images)
        return original(model, images, *args, **kwargs)

    monkeypatch.setattr(feature_cache, "extract_features", counting)
    yield counted
    feature_cache.clear_memory_cache()


def test_cached_features_give_the_same_result_for_the_same_seed(monkeypatch,
                                                                 counted_extraction):
    config = _config()
    monkeypatch.setenv(feature_cache.ENV, "off")
    plain = train_run(config, keep_model=True)
    assert counted_extraction["images"] == 0
    monkeypatch.setenv(feature_cache.ENV, "memory")
    cold = train_run(config, keep_model=True)
    extracted = counted_extraction["images"]
    assert extracted > 300  # train, validation and test images, once each
    warm = train_run(config, keep_model=True)
    assert counted_extraction["images"] == extracted  # nothing recomputed
    for cached in (cold, warm):
        assert cached.test_top1 == plain.test_top1 and cached.val_top1 == plain.val_top1
        assert cached.extra["history"] == plain.extra["history"]
        torch.testing.assert_close(cached.model.head().weight, plain.model.head().weight,
                                   rtol=0, atol=1e-6)
    assert plain.test_top1 > 0.2  # a real probe (bundled CIFAR-10 weights), not chance


def test_cache_is_not_used_with_augmentation_or_trainable_blocks(monkeypatch,
                                                                 counted_extraction):
    monkeypatch.setenv(feature_cache.ENV, "memory")
    decisions = []
    original = feature_cache.cached_run

    def spy(*args, **kwargs):
        decisions.append(original(*args, **kwargs))
        return decisions[-1]

    monkeypatch.setattr("lionbench.train.loop.cached_run", spy)
    for config in (_config(augment="crop", epochs=1), _config(unfreeze_blocks=1, epochs=1)):
        train_run(config)
    assert decisions == [None, None] and counted_extraction["images"] == 0

    config = _config()
    model = create_model("head-tuning", create_backbone("test_resnet", 10, "none"))
    assert feature_cache.cache_applies(config, model)
    monkeypatch.setenv(feature_cache.ENV, "off")
    assert not feature_cache.cache_applies(config, model)
