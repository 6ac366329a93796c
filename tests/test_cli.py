"""The CLI end to end through Typer's CliRunner: a tiny matrix, skip/resume, failures, errors."""

from __future__ import annotations

import pytest
from conftest import TINY, TINY_SET
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.config import PROTOCOL_VERSION
from lionbench.store import Store

runner = CliRunner()
BASE = ["run", "-m", "head-tuning,fine-tuning", "-b", "test_resnet", "-d", "digits",
        "--weights", "none", *TINY_SET]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_version_and_help_on_every_command():
    assert invoke("--version").output.startswith("lionbench ")
    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    for name in commands:
        result = invoke(name, "--help")
        assert result.exit_code == 0, (name, result.output)
        assert "Usage" in result.output
    for group in app.registered_groups:
        for sub in group.typer_instance.registered_commands:
            assert invoke(group.name, sub.name, "--help").exit_code == 0


def test_list_commands():
    assert "head-tuning" in invoke("list", "methods").output
    assert "demo-resnet" in invoke("list", "backbones").output
    assert "digits" in invoke("list", "datasets").output


def test_matrix_end_to_end_then_skip_and_table(db_url):
    first = invoke(*BASE, "--db", db_url)
    assert first.exit_code == 0, first.output
    df = Store(db_url).list_runs()
    assert sorted(df.method) == ["fine-tuning", "head-tuning"]
    assert set(df.status) == {"done"}
    row = df[df.method == "head-tuning"].iloc[0]
    assert row.params_trainable == 970 and row.params_trainable_no_head == 0  # 96*10 + 10
    assert 0 <= row.test_top1 <= 1 and row.test_top5 >= row.test_top1
    assert row.git_commit is None or len(row.git_commit) == 40
    assert "torch" in row.versions and row.device.startswith("cpu")
    import torch  # the settings that decide exact CPU numbers are stored with the run

    assert row.runtime["torch_threads"] == torch.get_num_threads() == 1  # tests/conftest.py
    assert row.runtime["deterministic_algorithms"] is False and row.runtime["cpu_capability"]
    assert row.data_id.startswith("data:")  # the digits' digest, recorded at planning
    assert row.config["train"]["epochs"] == 1 and row.config["protocol_version"] == PROTOCOL_VERSION

    plan = invoke(*BASE, "--db", db_url, "--dry-run")
    assert "0 to run, 2 already stored" in plan.output
    assert "validation of digits: a seeded, stratified 0.1 hold-out of the train split" \
        in plan.output  # where model selection reads from, said before anything runs
    second = invoke(*BASE, "--db", db_url, "--no-table")
    assert second.exit_code == 0
    assert len(Store(db_url).list_runs()) == 2  # nothing ran twice

    table = invoke("table", "--db", db_url, "--format", "markdown")
    assert "head-tuning (weights=none)" in table.output and "| test_resnet" in table.output


def test_force_reruns_and_seeds_add_runs(db_url):
    assert invoke(*BASE, "--db", db_url).exit_code == 0
    plan = invoke(*BASE, "--db", db_url, "--seeds", "0,1", "--dry-run")
    assert "2 to run, 2 already stored" in plan.output
    forced = invoke(*BASE, "--db", db_url, "--force", "--dry-run")
    assert "2 to run, 0 already stored" in forced.output


def test_interrupted_matrix_resumes(db_url, monkeypatch):
    import lionbench.train as runner_mod  # the inline executor looks train_run up per run

    calls = {"n": 0}
    real = runner_mod.train_run

    def interrupt_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_mod, "train_run", interrupt_second)
    result = invoke(*BASE, "--db", db_url)
    assert result.exit_code != 0
    assert Store(db_url).count_by_status()["done"] == 1
    assert Store(db_url).count_by_status()["pending"] == 1  # back to pending, not lost
    monkeypatch.setattr(runner_mod, "train_run", real)
    resumed = invoke(*BASE, "--db", db_url, "--no-table")
    assert resumed.exit_code == 0
    assert Store(db_url).count_by_status()["done"] == 2


def corrupt_folder(root):
    """A folder dataset whose images cannot be decoded (two per class: validation is not empty)."""
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                (root / split / cls / f"x{i}.jpg").write_bytes(b"not a jpeg")
    return root


def test_failed_run_is_stored_and_matrix_goes_on_then_exit_1(db_url, tmp_path):
    bad = corrupt_folder(tmp_path / "bad")
    args = ("run", "-m", "head-tuning", "-b", "test_resnet", "-d", f"digits,folder:{bad}",
            "--weights", "none", *TINY_SET, "--db", db_url)
    result = invoke(*args)
    assert result.exit_code == 1, result.output  # a failed run: the invocation did not complete
    assert "1 of 2 runs failed; see lionbench status" in result.output
    df = Store(db_url).list_runs()
    statuses = dict(zip(df.dataset, df.status, strict=True))
    assert statuses == {"digits": "done", f"folder:{bad}": "failed"}  # the matrix went on
    reason = df[df.status == "failed"].failure_reason.iloc[0]
    assert "cannot read image" in reason and "bad/train/a/x" in reason
    status = invoke("status", "--db", db_url)
    assert "failed" in status.output and "cannot read image" in status.output
    again = invoke(*args, "--no-table")  # nothing left to run, but a run of it is failed
    assert again.exit_code == 1
    assert "1 of 2 runs failed (1 stored as failed earlier; --retry-failed reruns it)" \
        in again.output
    retry = invoke("run", "-m", "head-tuning", "-b", "test_resnet", "-d", f"folder:{bad}",
                   "--weights", "none", *TINY_SET, "--db", db_url, "--retry-failed", "--dry-run")
    assert "1 to run" in retry.output
    done_only = invoke("run", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits",
                       "--weights", "none", *TINY_SET, "--db", db_url, "--no-table")
    assert done_only.exit_code == 0, done_only.output  # all skipped, all done: 0


def test_run_left_pending_is_not_done_exit_1(db_url):
    """A run another live driver holds is neither done nor failed here: exit 1, named."""
    from lionbench.runner import build_plan

    plan = build_plan(None, "head-tuning", "test_resnet", "digits", "0,1",
                      [f"{k}={v}" for k, v in TINY.items()], "none", db_url)
    plan.store.add_pending(plan.configs)
    held = plan.store.claim_next("otherhost:1", [plan.hashes[1]])  # beating, on another host
    assert held is not None
    result = invoke(*BASE[:2], "head-tuning", *BASE[3:], "--seeds", "0,1", "--db", db_url,
                    "--no-table")
    assert result.exit_code == 1, result.output
    assert "1 of 2 runs not finished (pending, or running in another process)" in result.output
    assert Store(db_url).count_by_status() == {"pending": 0, "running": 1, "done": 1,
                                               "failed": 0}


def test_nan_loss_is_stored_as_failed(db_url, tmp_path):
    import timm
    import torch

    # weights that load (right keys and shapes) but hold NaN: the loss is NaN at the first step
    # (an absurd lr no longer can be set: lr must lie in (0, 100])
    nan = tmp_path / "nan.pt"
    state = timm.create_model("test_resnet", num_classes=3).state_dict()
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                for k, v in state.items()}, nan)
    result = invoke("run", "-m", "fine-tuning", "-b", "test_resnet", "-d", "digits",
                    "--weights", str(nan), *TINY_SET, "--db", db_url)
    df = Store(db_url).list_runs()
    assert df.status[0] == "failed" and result.exit_code == 1, result.output
    assert "loss is nan" in df.failure_reason[0]


def test_weights_file_used_and_mismatch_named(db_url, tmp_path):
    import timm
    import torch

    good = tmp_path / "good.pt"
    torch.save(timm.create_model("test_resnet", num_classes=3).state_dict(), good)
    ok = invoke("run", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits",
                "--weights", str(good), *TINY_SET, "--db", db_url)
    assert ok.exit_code == 0, ok.output
    assert Store(db_url).list_runs().weights_id[0].startswith("sha256:")
    wrong = tmp_path / "vit.pt"
    torch.save(timm.create_model("test_vit", num_classes=0).state_dict(), wrong)
    bad = invoke("run", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits",
                 "--weights", str(wrong), "--db", db_url)
    assert bad.exit_code == 1 and "missing: bn1.bias" in bad.output


BAD_INPUTS = [
    (["-m", "lion2"], "unknown method 'lion2'. Did you mean 'lion'"),
    (["-m", "head-tunin"], "Did you mean 'head-tuning'"),
    (["-b", "resnet5O"], "unknown backbone 'resnet5O'"),
    (["-d", "digit"], "unknown dataset 'digit'. Did you mean 'digits'"),
    (["--set", "lr"], "malformed --set 'lr'"),
    (["--set", "nosuch=1"], "unknown setting 'nosuch'"),
    (["--set", "epochs=-1"], "invalid epochs=-1"),
    (["--set", "augment=sideways"], "invalid augment='sideways'"),
    (["--weights", "/no/such/file.pt"], "weights file '/no/such/file.pt' not found"),
    (["--seeds", "a,b"], "invalid seeds"),
]


@pytest.mark.parametrize(("change", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_1_and_changes_nothing(db_url, change, message):
    assert invoke(*BASE, "--db", db_url, "--no-table").exit_code == 0
    before = Store(db_url).list_runs()[["run_hash", "status", "test_top1"]]
    args = {"-m": "head-tuning", "-b": "test_resnet", "-d": "digits"}
    flags = list(change)
    for key, value in args.items():
        if key not in flags:
            flags += [key, value]
    result = invoke("run", *flags, "--db", db_url)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in result.output
    after = Store(db_url).list_runs()[["run_hash", "status", "test_top1"]]
    assert before.equals(after)


def test_unreadable_config_and_bad_yaml(tmp_path, db_url):
    missing = invoke("run", str(tmp_path / "none.yaml"), "--db", db_url)
    assert missing.exit_code == 1 and "not found" in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [a\n  b: :")
    result = invoke("run", str(bad), "--db", db_url)
    assert result.exit_code == 1 and "not valid YAML" in result.output
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("methodz: [lion]\n")
    result = invoke("run", str(wrong), "--db", db_url)
    assert result.exit_code == 1 and "unknown keys methodz" in result.output


def test_unreachable_database_is_one_line(tmp_path):
    result = invoke(*BASE, "--db", "sqlite:////no/such/dir/x.db")
    assert result.exit_code == 1 and result.output.startswith("error: the folder of database")
    assert len(result.output.splitlines()) == 1
    result = invoke("status", "--db", "nosuch://x")
    assert result.exit_code == 1 and "invalid database URL" in result.output


def test_yaml_matrix_with_blocks(tmp_path, db_url):
    f = tmp_path / "m.yaml"
    f.write_text("name: demo\nmethods: [head-tuning]\nbackbones: [test_resnet]\n"
                 "datasets: [digits]\nweights: none\n"
                 "set: {epochs: 1, image_size: 16, max_train_samples: 200}\n"
                 "runs:\n  - {}\n  - {seeds: [1], set: {lr: 0.01}}\n")
    result = invoke("run", str(f), "--db", db_url, "--dry-run")
    assert result.exit_code == 0 and "2 to run" in result.output


def test_threads_option_pins_and_records_torch_threads(db_url):
    """CPU numbers depend on torch's thread count: --threads pins it, the run stores it."""
    import torch

    try:
        result = invoke("run", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits",
                        "--weights", "none", *TINY_SET, "--threads", "2", "--db", db_url,
                        "--no-table")
        assert result.exit_code == 0, result.output
        row = Store(db_url).list_runs().iloc[0]
        assert row.runtime["torch_threads"] == 2 and row.device.endswith("x2 threads")
    finally:
        torch.set_num_threads(1)  # tests/conftest.py's setting for the rest of the suite
    bad = invoke("run", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits", "--threads",
                 "0", "--db", db_url)
    assert bad.exit_code == 1 and "invalid --threads 0" in bad.output
