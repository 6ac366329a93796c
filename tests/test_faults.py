"""Every fault a user can make: one line on stderr, exit code 1, nothing written anywhere.

Each case runs the real entry point (``lionbench.cli.main``) in this process with its own
argv and asserts: exit code 1; exactly one line on stderr, starting with ``error:``, naming the
problem and what is valid (both given per case); no traceback; nothing on stdout; and every file
of the workspace byte for byte as before, none added (a database absent before stays absent,
its folder too). ``test_console_script_*`` runs a few through the installed ``lionbench`` script.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lionbench.cli import main
from lionbench.config import RunConfig
from lionbench.store import Store

SECRET = "hunter2"  # a password that must never be printed


def make_workspace(ws: Path) -> None:
    """A lionbench database with runs, and every kind of wrong file a user could point at."""
    ws.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{ws / 'good.db'}")
    configs = [RunConfig(method="head-tuning", backbone="test_resnet", dataset=d, seed=0)
               for d in ("digits", "folder:data/odd[/x] [bold]name")]
    store.add_pending(configs)
    for i in range(2):
        row = store.claim_next("w:1")
        store.mark_done(row["id"], {"test_top1": 0.5 + i / 10, "params_trainable": 970}, {},
                        {"host": "h", "device": "cpu"}, attempt=row["attempts"])
    store.close()
    (ws / "garbage.db").write_bytes(b"this is not a database\n" * 50)
    with sqlite3.connect(ws / "foreign.db") as conn:
        conn.execute("create table notes (id integer primary key, text text)")
        conn.execute("insert into notes (text) values ('mine')")
    conn.close()
    with sqlite3.connect(ws / "foreign-meta.db") as conn:  # a `meta` table of another program
        conn.execute("create table meta (name text, created text)")
    conn.close()
    (ws / "empty.db").write_bytes(b"")  # a valid, empty SQLite database
    (ws / "afile").write_text("a file, not a folder\n")
    yamls = {
        "set-list.yaml": "methods: [lion]\nbackbones: [test_resnet]\ndatasets: [digits]\n"
                         "set: [1, 2]\n",
        "runs-int.yaml": "methods: [lion]\nbackbones: [test_resnet]\ndatasets: [digits]\nruns: 7\n",
        "runs-ints.yaml": "methods: [lion]\nbackbones: [test_resnet]\ndatasets: [digits]\n"
                          "runs: [1, 2]\n",
        "methods-map.yaml": "methods: {lion: 1}\nbackbones: [test_resnet]\ndatasets: [digits]\n",
        "seeds-words.yaml": "methods: [lion]\nbackbones: [test_resnet]\ndatasets: [digits]\n"
                            "seeds: [a, b]\n",
        "weights-list.yaml": "methods: [lion]\nbackbones: [test_resnet]\ndatasets: [digits]\n"
                             "weights: [a.pt]\n",
        "toplevel-list.yaml": "- lion\n- head-tuning\n",
        "empty.yaml": "",
        "syntax.yaml": "methods: [lion\n  backbones: :\n",
        "set-nan.yaml": "methods: [lion]\nbackbones: [test_resnet]\ndatasets: [digits]\n"
                        "set: {lr: .nan}\n",
        "unknown-key.yaml": "methodz: [lion]\n",
        "set-map-nested.yaml": "methods: [lion]\nbackbones: [test_resnet]\ndatasets: [digits]\n"
                               "runs:\n  - {set: [3]}\n",
    }
    for name, text in yamls.items():
        (ws / name).write_text(text)
    (ws / "bad.json").write_text("{not json")
    (ws / "bad.csv").write_text("a,b\n1,2\n")
    (ws / "preset-bad.yaml").write_text("stepz: 3\n")


RUN = ["run", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits", "--db", "good.db"]
ABL = ["ablate", "-b", "test_resnet", "-d", "digits", "--db", "good.db"]
PG = "postgresql://user:" + SECRET + "@127.0.0.1:1/db"  # nothing listens on port 1
PG_QUERY = "postgresql://user@127.0.0.1:1/db?password=" + SECRET

# (id, argv, what the line must say: the problem, and what is valid or what to do)
CASES = [
    # --- run: names, --set values, seeds, executor flags -------------------------------------
    ("run-method", ["run", "-m", "lion2", "-b", "test_resnet", "-d", "digits"],
     ["unknown method 'lion2'", "Valid: "]),
    ("run-method-markup", ["run", "-m", "lion[/x]", "-b", "test_resnet", "-d", "digits"],
     ["unknown method 'lion[/x]'", "Valid: "]),
    ("run-backbone", ["run", "-m", "lion", "-b", "resnet5O", "-d", "digits"],
     ["unknown backbone 'resnet5O'", "Valid"]),
    ("run-dataset", ["run", "-m", "lion", "-b", "test_resnet", "-d", "digit"],
     ["unknown dataset 'digit'", "Did you mean 'digits'"]),
    ("run-threads", [*RUN, "--threads", "0"], ["invalid --threads 0", ">= 1"]),
    ("run-set-malformed", [*RUN, "--set", "lr"], ["malformed --set 'lr'", "key=value"]),
    ("run-set-unknown", [*RUN, "--set", "nosuch=1"], ["unknown setting 'nosuch'", "valid: "]),
    ("run-set-negative", [*RUN, "--set", "epochs=-1"], ["invalid epochs=-1", "an integer in [1, "]),
    ("run-set-zero-batch", [*RUN, "--set", "batch_size=0"], ["invalid batch_size=0",
                                                             "an integer in [1, "]),
    ("run-set-nan", [*RUN, "--set", "lr=nan"], ["--set lr=nan", "not a finite number"]),
    ("run-set-inf", [*RUN, "--set", "lr=inf"], ["--set lr=inf", "not a finite number"]),
    ("run-set-minus-inf", [*RUN, "--set", "lr=-inf"], ["lr=-inf", "give a finite value"]),
    ("run-set-yaml-nan", [*RUN, "--set", "weight_decay=.nan"], ["weight_decay=.nan",
                                                                "not a finite number"]),
    ("run-set-tau-nan", ["run", "-m", "lion", "-b", "test_resnet", "-d", "digits", "--set",
                         "tau=nan"], ["tau=nan", "not a finite number"]),
    ("run-set-choice", [*RUN, "--set", "augment=sideways"], ["invalid augment='sideways'",
                                                             "valid: "]),
    ("run-set-method-prefix", [*RUN, "--set", "lion.tau=0.2"], ["'lion' is not a method of "
                                                                "this matrix", "methods: "]),
    ("run-weights-missing", [*RUN, "--weights", "no-such.pt"], ["'no-such.pt' not found",
                                                                "--weights"]),
    ("run-weights-not-weights", [*RUN, "--weights", "bad.csv"], ["cannot read weights file",
                                                                 "give a .safetensors file"]),
    ("run-checkpoint-dir-file", [*RUN, "--checkpoint-dir", "afile/ck"],
     ["--checkpoint-dir 'afile/ck'", "give a folder path"]),
    ("run-seeds-words", [*RUN, "--seeds", "a,b"], ["invalid seeds", "expected integers"]),
    ("run-seeds-negative", [*RUN, "--seeds", "-1"], ["invalid seeds", "[0, 4294967295]"]),
    ("run-seeds-empty", [*RUN, "--seeds", ","], ["no seeds given", "expected integers"]),
    ("run-workers-zero", [*RUN, "--workers", "0"], ["invalid --workers 0", "must be >= 1"]),
    ("run-executor", [*RUN, "--executor", "mars"], ["unknown executor 'mars'", "Valid: "]),
    ("run-gpus", [*RUN, "--gpus", "a,b"], ["invalid --gpus 'a,b'", "expected GPU ids"]),
    ("run-time", [*RUN, "--executor", "slurm", "--time", "soon"], ["invalid --time 'soon'",
                                                                  "HH:MM:SS"]),
    ("run-max-attempts", [*RUN, "--max-attempts", "0"], ["invalid --max-attempts 0", ">= 1"]),
    ("run-slurm-flag", [*RUN, "--partition", "gpu"], ["--partition: Slurm options",
                                                      "add --executor slurm"]),
    ("run-usage-missing-value", [*RUN, "--seeds"], ["requires an argument", "--help"]),
    ("run-usage-bad-int", [*RUN, "--workers", "two"], ["Invalid value for '--workers'",
                                                       "valid integer", "lionbench run --help"]),
    ("run-usage-no-such-option", [*RUN, "--frobnicate"], ["No such option", "--help"]),
    # --- run: YAML matrices of the wrong shape ------------------------------------------------
    ("yaml-missing", ["run", "nowhere.yaml"], ["'nowhere.yaml' not found", "config file"]),
    ("yaml-set-list", ["run", "set-list.yaml"], ["'set' must be a mapping", "epochs: 5"]),
    ("yaml-runs-int", ["run", "runs-int.yaml"], ["'runs' must be a list", "mappings"]),
    ("yaml-runs-ints", ["run", "runs-ints.yaml"], ["each entry of 'runs' must be a mapping",
                                                   "keys among"]),
    ("yaml-block-set-list", ["run", "set-map-nested.yaml"], ["'set' must be a mapping",
                                                             "key: value"]),
    ("yaml-methods-map", ["run", "methods-map.yaml"], ["'methods' must be a list of names",
                                                       "comma-separated"]),
    ("yaml-seeds-words", ["run", "seeds-words.yaml"], ["invalid seeds", "expected integers"]),
    ("yaml-weights-list", ["run", "weights-list.yaml"], ["'weights' must be pretrained, none "
                                                         "or a file path", "not ['a.pt']"]),
    ("yaml-top-list", ["run", "toplevel-list.yaml"], ["must hold a mapping", "methods"]),
    ("yaml-empty", ["run", "empty.yaml"], ["must hold a mapping", "methods"]),
    ("yaml-syntax", ["run", "syntax.yaml"], ["is not valid YAML", "at line"]),
    ("yaml-nan", ["run", "set-nan.yaml"], ["lr=nan", "not a finite number"]),
    ("yaml-unknown-key", ["run", "unknown-key.yaml"], ["unknown keys methodz", "valid: "]),
    # --- run: databases it cannot use ---------------------------------------------------------
    ("run-db-garbage", [*RUN[:-1], "garbage.db"], ["file is not a database",
                                                   "give a lionbench database file"]),
    ("run-db-foreign", [*RUN[:-1], "foreign.db"], ["is not a lionbench database",
                                                   "give a lionbench database or a new path"]),
    ("run-db-foreign-meta", [*RUN[:-1], "foreign-meta.db"], ["is not a lionbench database",
                                                             "new path"]),
    ("run-db-parent-is-file", [*RUN[:-1], "afile/runs.db"], ["cannot create the folder",
                                                             "writable folder"]),
    ("run-db-url-missing-folder", [*RUN[:-1], "sqlite:///nodir/runs.db"],
     ["folder of database", "does not exist", "create it"]),
    ("run-db-is-folder", [*RUN[:-1], "data"], ["is a folder", "give a file path"]),
    ("run-db-bad-port", [*RUN[:-1], "postgresql://user:" + SECRET + "@localhost:notaport/db"],
     ["invalid database URL", "postgresql://user@host:5432/db"]),
    ("run-db-bad-scheme", [*RUN[:-1], "nosuch://x"], ["invalid database URL", "sqlite:///"]),
    ("run-db-refused", [*RUN[:-1], PG], ["cannot use database", "Connection refused",
                                         "check the URL"]),
    ("run-db-refused-query-password", [*RUN[:-1], PG_QUERY], ["password=***",
                                                              "check the URL"]),
    # --- ablate -------------------------------------------------------------------------------
    ("ablate-nothing", ABL, ["nothing to ablate", "--variant lion-p1|lion-p2|lion-r|all"]),
    ("ablate-variant", [*ABL, "--variant", "lion-x"], ["unknown variant 'lion-x'", "valid: "]),
    ("ablate-tau", [*ABL, "--tau", "low,high"], ["invalid --tau 'low,high'", "e.g. 0.2,0.4"]),
    ("ablate-set-nan", [*ABL, "--variant", "all", "--set", "tau=inf"], ["tau=inf",
                                                                        "finite"]),
    ("ablate-db-garbage", [*ABL[:-1], "garbage.db", "--variant", "all"],
     ["file is not a database", "give a lionbench database file"]),
    # --- table --------------------------------------------------------------------------------
    ("table-db-garbage", ["table", "--db", "garbage.db"], ["file is not a database",
                                                           "lionbench database file"]),
    ("table-db-foreign", ["table", "--db", "foreign.db"], ["not a lionbench database",
                                                           "new path"]),
    ("table-db-empty", ["table", "--db", "empty.db"], ["not a lionbench database",
                                                       "`lionbench run` creates one"]),
    ("table-db-absent", ["table", "--db", "absent/runs.db"], ["no database at",
                                                             "`lionbench run` creates one"]),
    ("table-db-default-absent", ["table"], ["no database at", "--db or $LIONBENCH_DB"]),
    ("table-format", ["table", "--db", "good.db", "--format", "html"],
     ["unknown table format 'html'", "valid: rich, markdown, latex, csv"]),
    ("table-preset", ["table", "--db", "good.db", "--preset", "table9"], ["table9", "table1"]),
    ("table-compare", ["table", "--db", "good.db", "--compare", "nature"], ["nature", "paper"]),
    ("table-out-parent-file", ["table", "--db", "good.db", "-o", "afile/t.md"],
     ["cannot write table 'afile/t.md'", "'afile' is a file", "writable folder"]),
    ("table-out-folder", ["table", "--db", "good.db", "-o", "data"], ["table 'data' is a folder",
                                                                     "give a file path"]),
    # --- status -------------------------------------------------------------------------------
    ("status-db-garbage", ["status", "--db", "garbage.db"], ["file is not a database",
                                                             "lionbench database file"]),
    ("status-db-foreign", ["status", "--db", "foreign.db"], ["not a lionbench database",
                                                             "other tables"]),
    ("status-db-absent", ["status", "--db", "absent/runs.db"], ["no database at",
                                                               "`lionbench run` creates one"]),
    ("status-db-password", ["status", "--db", PG], ["cannot use database",
                                                    "user:***@127.0.0.1:1"]),
    ("status-db-query-password", ["status", "--db", PG_QUERY], ["password=***",
                                                                "check the URL"]),
    ("status-db-bad-url", ["status", "--db", "nosuch://x"], ["invalid database URL",
                                                             "sqlite:///runs.db"]),
    # --- export, import -------------------------------------------------------------------------
    ("export-db-garbage", ["export", "--db", "garbage.db"], ["file is not a database",
                                                             "lionbench database file"]),
    ("export-db-absent", ["export", "--db", "absent.db"], ["no database at", "creates one"]),
    ("export-format", ["export", "--db", "good.db", "--format", "xml"],
     ["invalid export format 'xml'", "valid: csv, json"]),
    ("export-status", ["export", "--db", "good.db", "--status", "finished"],
     ["invalid status 'finished'", "valid: pending, running, done, failed"]),
    ("export-out-parent-file", ["export", "--db", "good.db", "-o", "afile/runs.csv"],
     ["cannot write export", "'afile' is a file"]),
    ("import-missing", ["import", "nowhere.csv", "--db", "good.db"],
     ["'nowhere.csv' not found", "give a .csv or .json export"]),
    ("import-bad-json", ["import", "bad.json", "--db", "new.db"], ["'bad.json' is not valid JSON",
                                                                   "line 1"]),
    ("import-bad-csv", ["import", "bad.csv", "--db", "new.db"], ["not a lionbench export",
                                                                 "columns missing"]),
    ("import-foreign-source", ["import", "foreign.db", "--db", "new.db"],
     ["not a lionbench database", "foreign.db"]),
    ("import-into-garbage", ["import", "good.db", "--db", "garbage.db"],
     ["file is not a database", "lionbench database file"]),
    ("import-into-foreign", ["import", "good.db", "--db", "foreign.db"],
     ["not a lionbench database", "other tables"]),
    # --- plot -----------------------------------------------------------------------------------
    ("plot-db-garbage", ["plot", "sensitivity", "--db", "garbage.db", "-o", "fig"],
     ["file is not a database", "lionbench database file"]),
    ("plot-db-absent", ["plot", "tradeoff", "--db", "absent.db", "-o", "fig"],
     ["no database at", "creates one"]),
    ("plot-out-parent-file", ["plot", "tradeoff", "--db", "good.db", "-o", "afile/fig"],
     ["cannot write plot", "'afile' is a file"]),
    ("plot-format", ["plot", "tradeoff", "--db", "good.db", "-o", "fig", "--format", "gif"],
     ["unsupported format gif", "valid: png, pdf"]),
    ("plot-nothing", ["plot", "sensitivity", "--db", "good.db", "-o", "fig"],
     ["no done 'lion' runs", "benchmarks/figure3.yaml"]),
    ("plot-usage", ["plot", "sideways"], ["No such command 'sideways'", "--help"]),
    # --- list, params, pretrain, datasets, bench ------------------------------------------------
    ("list-usage", ["list", "methodz"], ["No such command 'methodz'", "lionbench list --help"]),
    ("params-zero-classes", ["params", "-m", "lion", "-b", "test_resnet", "--num-classes", "0"],
     ["invalid --num-classes 0", "at least 1 class"]),
    ("params-negative-classes", ["params", "-m", "lion", "-b", "test_resnet", "--num-classes",
                                 "-3"], ["invalid --num-classes -3", "at least 1"]),
    ("params-method", ["params", "-m", "lora", "-b", "test_resnet"], ["unknown method 'lora'",
                                                                     "Valid: "]),
    ("params-format", ["params", "-m", "lion", "-b", "test_resnet", "-f", "xml"],
     ["unknown format 'xml'", "valid: rich, json, csv"]),
    ("params-set-nan", ["params", "-m", "lion", "-b", "test_resnet", "--set", "tau=nan"],
     ["tau=nan", "finite"]),
    ("pretrain-out-parent-file", ["pretrain", "-d", "digits", "-o", "afile/w.safetensors"],
     ["cannot write checkpoint 'afile/w.safetensors'", "'afile' is a file"]),
    ("pretrain-out-folder", ["pretrain", "-d", "digits", "-o", "data"],
     ["checkpoint 'data' is a folder", "give a file path"]),
    ("pretrain-set-nan", ["pretrain", "-d", "digits", "-o", "w.safetensors", "--set", "lr=nan"],
     ["lr=nan", "finite"]),
    ("datasets-prepare-unknown", ["datasets", "prepare", "imagenet22k"],
     ["unknown dataset 'imagenet22k'", "Valid: "]),
    ("datasets-prepare-manual", ["datasets", "prepare", "cars", "--data-root", "data"],
     ["'cars' cannot be downloaded automatically", "lay it out as"]),
    ("bench-zero-batch", ["bench", "-m", "head-tuning", "-b", "test_resnet", "--batch-size",
                          "0"], ["batch size=0", "must be >= 1"]),
    ("bench-threads", ["bench", "-m", "head-tuning", "-b", "test_resnet", "--threads", "-2"],
     ["invalid --threads -2", ">= 1"]),
    ("bench-method", ["bench", "-m", "lora", "-b", "test_resnet"], ["lora", "Valid: "]),
    ("bench-preset-missing", ["bench", "--preset", "nowhere.yaml"], ["preset 'nowhere.yaml' "
                                                                    "not found", "preset"]),
    ("bench-preset-folder", ["bench", "--preset", "data"], ["cannot read preset 'data'",
                                                           "give a YAML file"]),
    ("bench-preset-keys", ["bench", "--preset", "preset-bad.yaml"], ["unknown keys stepz",
                                                                    "valid: "]),
    ("bench-json-parent-file", ["bench", "-m", "head-tuning", "-b", "test_resnet", "--json",
                                "afile/b.json"], ["cannot write benchmark report",
                                                  "'afile' is a file"]),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a digest of its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("faults")
    make_workspace(ws)
    (ws / "data").mkdir()
    return ws


def test_there_are_at_least_sixty_cases_covering_every_command():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    commands = {argv[0] for _, argv, _ in CASES}
    assert commands >= {"run", "ablate", "table", "status", "export", "import", "plot", "list",
                        "params", "pretrain", "datasets", "bench"}


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fault_is_one_line_exit_1_and_nothing_written(workspace, monkeypatch, capsys, argv,
                                                      expected):
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("LIONBENCH_DB", raising=False)  # the default: results/lionbench.db
    before = snapshot(workspace)
    monkeypatch.setattr(sys, "argv", ["lionbench", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert "Traceback" not in out + err and SECRET not in out + err
    assert out == ""
    assert snapshot(workspace) == before  # no file changed, created (absent stays absent)


CONSOLE_CASES = [
    (["status", "--db", "garbage.db"], "file is not a database"),
    (["run", "-m", "lion", "-b", "test_resnet", "-d", "digits", "--set", "lr=nan", "--db",
      "good.db"], "not a finite number"),
    (["table", "--db", "absent/runs.db"], "no database at"),
    (["status", "--db", PG_QUERY], "password=***"),
    (["run", "set-list.yaml"], "'set' must be a mapping"),
]


def lionbench_script() -> list[str]:
    script = Path(sys.executable).parent / "lionbench"
    return [str(script)] if script.exists() else [sys.executable, "-c",
                                                  "from lionbench.cli import main; main()"]


@pytest.mark.parametrize(("argv", "expected"), CONSOLE_CASES, ids=[c[0][0] + "-" + str(i)
                                                                   for i, c in
                                                                   enumerate(CONSOLE_CASES)])
def test_console_script_faults_are_one_line(tmp_path, argv, expected):
    make_workspace(tmp_path)
    before = snapshot(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "LIONBENCH_DB"}
    proc = subprocess.run([*lionbench_script(), *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**env, "COLUMNS": "60"})
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "Traceback" not in proc.stderr and SECRET not in proc.stdout + proc.stderr
    assert snapshot(tmp_path) == before

