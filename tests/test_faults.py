"""Every fault a user can make: one line on stderr, exit code 1, nothing written anywhere.

Each case runs the real entry point (``lionbench.cli.main``) in this process with its own
argv and asserts: exit code 1; exactly one line on stderr, starting with ``error:``, naming the
problem and what is valid (both given per case); no traceback; nothing on stdout; no password
and no raw control character printed; every file of the workspace byte for byte as before, none
added (a database absent before stays absent, its folder too); and an answer in under 2 s of
CPU time (what the wall clock shows on an idle machine; a loaded one stretches the wall time,
not the work).
``test_faults_are_refused_before_torch_loads`` runs every case of a command that trains in a
process where torch, torchvision and timm cannot be imported: the same answers, each in under
2 s, prove they come before torch (which takes seconds to import). ``test_console_script_*``
runs a few through the installed ``lionbench`` script.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lionbench.cli import main
from lionbench.config import RunConfig
from lionbench.store import Store
from lionbench.store.exchange import export_runs

SECRET = "hunter2"  # a password that must never be printed
LEAK = "ssLEAK9"  # the part of a password after an unencoded '@'
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}]\n" for i in range(8))  # 9**9 = 387 million leaves once expanded


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
    matrix = "methods: [head-tuning]\nbackbones: [test_resnet]\ndatasets: [digits]\n"
    more_yamls = {
        "bomb-notes.yaml": matrix + "notes:\n" + "".join(f"  {line}\n"
                                                         for line in BOMB.splitlines()),
        "bomb-set.yaml": BOMB + matrix + "set: {epochs: 1, note: *i}\n",
        "many-seeds.yaml": matrix + f"seeds: {list(range(2000))}\n",
        "tune-overlap.yaml": matrix + "seeds: [0, 1]\ntune_seeds: [1]\ngrid: {lr: [0.1, 0.01]}\n",
        "preset-alias.yaml": "steps: &s 3\nwarmup: *s\n",
        "huge.yaml": matrix + "notes: '" + "x" * (1 << 21) + "'\n",
    }
    for name, text in more_yamls.items():
        (ws / name).write_text(text)
    nodone = Store(f"sqlite:///{ws / 'nodone.db'}")  # one run, pending: nothing done
    nodone.add_pending([RunConfig(method="head-tuning", backbone="test_resnet", dataset="digits")])
    nodone.close()
    buf = io.StringIO()
    export_runs(Store(f"sqlite:///{ws / 'good.db'}", read_only=True), "json", buf)
    export = json.loads(buf.getvalue())
    for field, value in (("weights_id", "sha256:0000000000000000"), ("protocol_version", 1)):
        edited = json.loads(json.dumps(export))
        edited["runs"][0][field] = value  # the only edit: the config (and its hash) untouched
        (ws / f"edited-{field}.json").write_text(json.dumps(edited))
    for name, (major, minor) in (("full", (1, 7)), ("null", (1, 3))):  # devices of our own
        try:
            os.mknod(ws / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        except PermissionError:  # pragma: no cover - not root: the device cases skip
            pass


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
    ("run-threads", [*RUN, "--threads", "0"], ["invalid --threads 0", "in [1, 1024]"]),
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
    ("run-workers-zero", [*RUN, "--workers", "0"], ["invalid --workers 0", "in [1, 4096]"]),
    ("run-executor", [*RUN, "--executor", "mars"], ["unknown executor 'mars'", "Valid: "]),
    ("run-gpus", [*RUN, "--gpus", "a,b"], ["invalid --gpus 'a,b'", "expected GPU ids"]),
    ("run-time", [*RUN, "--executor", "slurm", "--time", "soon"], ["invalid --time 'soon'",
                                                                  "HH:MM:SS"]),
    ("run-max-attempts", [*RUN, "--max-attempts", "0"], ["invalid --max-attempts 0",
                                                          "in [1, 1000]"]),
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
     ["invalid --num-classes 0", "1 to 1,000,000 classes"]),
    ("params-negative-classes", ["params", "-m", "lion", "-b", "test_resnet", "--num-classes",
                                 "-3"], ["invalid --num-classes -3", "1 to 1,000,000"]),
    ("params-method", ["params", "-m", "dora", "-b", "test_resnet"], ["unknown method 'dora'",
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
                          "0"], ["invalid --batch-size 0", "an integer in [1, 65536]"]),
    ("bench-threads", ["bench", "-m", "head-tuning", "-b", "test_resnet", "--threads", "-2"],
     ["invalid --threads -2", "an integer in [1, 1024]"]),
    ("bench-method", ["bench", "-m", "dora", "-b", "test_resnet"], ["dora", "Valid: "]),
    ("bench-preset-missing", ["bench", "--preset", "nowhere.yaml"], ["preset 'nowhere.yaml' "
                                                                    "not found", "preset"]),
    ("bench-preset-folder", ["bench", "--preset", "data"], ["cannot read preset 'data'",
                                                           "give a YAML file"]),
    ("bench-preset-keys", ["bench", "--preset", "preset-bad.yaml"], ["unknown keys stepz",
                                                                    "valid: "]),
    ("bench-json-parent-file", ["bench", "-m", "head-tuning", "-b", "test_resnet", "--json",
                                "afile/b.json"], ["cannot write benchmark report",
                                                  "'afile' is a file"]),
    # --- outputs that are not regular files (a character device of the workspace's own) -------
    ("table-out-device-full", ["table", "--db", "good.db", "-o", "full", "--format", "markdown"],
     ["cannot write table 'full'", "No space left on device"]),
    ("export-out-device-full", ["export", "--db", "good.db", "-o", "full"],
     ["cannot write export 'full'", "No space left on device"]),
    ("run-db-device", [*RUN[:-1], "null"], ["database 'sqlite:///null' is not a regular file",
                                            "give a database file path"]),
    # --- work before an input is refused (this machine has no GPU: CUDA_VISIBLE_DEVICES="") --
    ("run-gpus-99", [*RUN, "--gpus", "99"], ["--gpus 99 asks for GPUs", "no CUDA GPU"]),
    ("run-device-cuda7", [*RUN, "--device", "cuda:7"], ["--device cuda:7 asks for a GPU",
                                                        "use --device cpu"]),
    ("run-device-malformed", [*RUN, "--device", "tpu"], ["invalid --device 'tpu'",
                                                         "valid: auto, cpu, cuda or cuda:N"]),
    ("run-device-cpu-index", [*RUN, "--device", "cpu:1"], ["invalid --device 'cpu:1'",
                                                           "cuda:N"]),
    ("run-checkpoint-dir-proc", [*RUN, "--checkpoint-dir", "/proc/nope"],
     ["--checkpoint-dir '/proc/nope'", "'/proc' is read-only", "writable folder"]),
    ("bench-json-proc", ["bench", "-m", "head-tuning", "-b", "test_resnet", "--json",
                         "/proc/nope/b.json"], ["cannot write benchmark report '/proc/nope/b.json'",
                                                "folder '/proc' is read-only"]),
    ("run-db-empty", [*RUN[:-2], "--db", ""], ["Invalid value for '--db'", "empty; give a "
                                               "database file path or URL"]),
    ("run-threads-huge", [*RUN, "--threads", "100000000"], ["invalid --threads 100000000",
                                                            "in [1, 1024]"]),
    ("run-workers-huge", [*RUN, "--workers", "100000"], ["invalid --workers 100000",
                                                         "in [1, 4096]"]),
    ("run-max-attempts-huge", [*RUN, "--max-attempts", "5000"], ["invalid --max-attempts 5000",
                                                                 "in [1, 1000]"]),
    ("run-mem-gb-zero", [*RUN, "--executor", "slurm", "--mem-gb", "0"], ["invalid --mem-gb 0",
                                                                         "(0, 1000000]"]),
    ("run-gpus-per-run-local", [*RUN, "--gpus-per-run", "1"], ["--gpus-per-run is for Ray and "
                                                               "Slurm", "--executor ray"]),
    ("params-classes-huge", ["params", "-m", "lion", "-b", "test_resnet", "--num-classes",
                             "100000000000"], ["invalid --num-classes 100000000000",
                                               "1 to 1,000,000"]),
    ("yaml-bomb-notes", ["run", "bomb-notes.yaml", "--dry-run"],
     ["config file 'bomb-notes.yaml'", "YAML aliases (*name) are not supported"]),
    ("yaml-bomb-set", ["run", "bomb-set.yaml"], ["config file 'bomb-set.yaml'",
                                                 "write the values out"]),
    ("set-alias", [*RUN, "--set", "epochs=[*a, *a]"], ["malformed --set 'epochs=[*a, *a]'",
                                                       "YAML aliases"]),
    ("grid-alias", ["tune", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits", "--db",
                    "good.db", "--grid", "lr=*a"], ["malformed --grid 'lr=*a'", "YAML aliases"]),
    ("bench-preset-alias", ["bench", "--preset", "preset-alias.yaml"],
     ["preset 'preset-alias.yaml'", "YAML aliases"]),
    ("yaml-huge", ["run", "huge.yaml"], ["config file 'huge.yaml' is 2,097,2",
                                         "at most 1,048,576"]),
    ("yaml-folder", ["run", "data"], ["config file 'data' is not a regular file",
                                      "give a YAML file"]),
    ("run-seeds-100000", [*RUN, "--seeds", ",".join(map(str, range(100_000)))],
     ["100,000 seeds given", "at most 1,000 per matrix"]),
    ("yaml-seeds-2000", ["run", "many-seeds.yaml"], ["2,000 seeds given", "at most 1,000"]),
    ("run-too-many-runs", ["run", "-m", "head-tuning,bias", "-b", "test_resnet,test_vit,"
                           "demo-resnet", "-d", "digits,cifar10", "--seeds",
                           ",".join(map(str, range(900)))],
     ["the matrix has 10,800 runs", "at most 10,000 per invocation"]),
    ("table-preset-no-done", ["table", "--db", "nodone.db", "--preset", "table9"],
     ["unknown preset 'table9'", "valid: table1, table2, table3, table4"]),
    ("tune-seeds-overlap", ["tune", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits",
                            "--db", "good.db", "--seeds", "0", "--tune-seeds", "0", "--grid",
                            "lr=1e-3,1e-2"], ["tuning seeds 0 overlap the final seeds 0",
                                              "disjoint"]),
    ("tune-seeds-overlap-yaml", ["tune", "tune-overlap.yaml", "--db", "good.db"],
     ["tuning seeds 1 overlap the final seeds 0,1", "--tune-seeds"]),
    ("import-weights-id-edited", ["import", "edited-weights_id.json", "--db", "new.db"],
     ["field 'weights_id'", "disagrees with its config"]),
    ("import-protocol-edited", ["import", "edited-protocol_version.json", "--db", "new.db"],
     ["field 'protocol_version' (1)", "disagrees with its config"]),
    # --- what is printed: control characters inert, URLs masked by parsing -------------------
    ("run-method-newline", ["run", "-m", "lion\nerror: forged", "-b", "test_resnet", "-d",
                            "digits"], ["unknown method 'lion\\nerror: forged'", "Valid: "]),
    ("run-method-clear-screen", ["run", "-m", "\x1b[2Jlion", "-b", "test_resnet"],
     ["unknown method '\\x1b[2Jlion'", "Valid: "]),
    ("run-dataset-title", [*RUN[:5], "-d", "\x1b]0;pwned\x07", "--db", "good.db"],
     ["unknown dataset '\\x1b]0;pwned\\x07'", "Valid: "]),
    ("run-set-bidi", [*RUN, "--set", "no\u202esuch=1"], ["unknown setting 'no\\u202esuch'",
                                                         "valid: "]),
    ("usage-option-escape", [*RUN, "--\x1b[31mred"], ["No such option", "\\x1b[31mred"]),
    ("status-db-at-in-password", ["status", "--db", "postgresql://u:pa@" + LEAK +
                                  "@127.0.0.1:1/x"], ["u:***@127.0.0.1:1/x", "check the URL"]),
    ("status-db-mysql", ["status", "--db", "mysql://u@127.0.0.1:1/x"],
     ["needs the driver 'MySQLdb'", "pip install mysqlclient"]),
    ("tune-grid-unknown", ["tune", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits",
                           "--db", "good.db", "--grid", "lrr=1,2"],
     ["unknown setting 'lrr' in --grid", "valid: "]),
    ("run-weights-dev-zero", [*RUN, "--weights", "/dev/zero"], ["weights '/dev/zero' is not a "
                                                                "regular file", "--weights takes"]),
    ("run-weights-folder", [*RUN, "--weights", "data"], ["weights 'data' is a folder",
                                                         "--weights takes"]),
    # --- one vocabulary: every setting refused the same way ---------------------------------
    ("set-bottleneck-float", ["run", "-m", "adapter", "-b", "test_resnet", "-d", "digits",
                              "--set", "bottleneck=8.0"],
     ["invalid bottleneck=8.0", "must be an integer in [1, 4096]"]),
    ("set-unfreeze-float", [*RUN, "--set", "unfreeze_blocks=1.5"],
     ["invalid unfreeze_blocks=1.5", "must be an integer in [0, 64]"]),
    ("set-deq-layers-float", ["run", "-m", "lion", "-b", "test_resnet", "-d", "digits",
                              "--set", "deq_layers=2.0"], ["invalid deq_layers=2.0",
                                                          "an integer in [1, 4]"]),
    ("set-deep-int", ["run", "-m", "vpt", "-b", "test_vit", "-d", "digits", "--set", "deep=1"],
     ["invalid deep=1", "true or false"]),
    ("set-p2-width-word", ["run", "-m", "lion", "-b", "test_resnet", "-d", "digits", "--set",
                           "p2_width=wide"], ["invalid p2_width='wide'", "or 'auto'"]),
    ("set-tau-rule", ["run", "-m", "lion", "-b", "test_resnet", "-d", "digits", "--set",
                      "tau=1.5"], ["invalid tau=1.5", "(with tau_mode='quantile')"]),
    ("set-lr-huge", [*RUN, "--set", "lr=1e30"], ["invalid lr=1e+30", "a number in (0, 100]"]),
    ("set-epochs-float", [*RUN, "--set", "epochs=1e9"], ["invalid epochs=1000000000.0",
                                                         "an integer in [1, 100000]"]),
    ("params-set-float", ["params", "-m", "adapter", "-b", "test_resnet", "--set",
                          "bottleneck=8.0"], ["invalid bottleneck=8.0", "an integer"]),
    ("tune-grid-bad-value", ["tune", "-m", "vpt", "-b", "test_vit", "-d", "digits", "--db",
                             "good.db", "--grid", "deep=1,0"], ["invalid deep=1",
                                                                "true or false"]),
    ("tune-grid-negative-lr", ["tune", "-m", "head-tuning", "-b", "test_resnet", "-d",
                               "digits", "--db", "good.db", "--grid", "lr=-1,1"],
     ["invalid lr=-1.0", "(0, 100]"]),
    ("list-methods-unknown", ["list", "methods", "dora", "--settings"],
     ["unknown method 'dora'", "Valid: "]),
    # --- option groups shared by run, tune and ablate -------------------------------------
    ("ablate-executor", [*ABL, "--variant", "all", "--executor", "mars"],
     ["unknown executor 'mars'", "Valid: "]),
    ("ablate-threads", [*ABL, "--variant", "all", "--threads", "0"], ["invalid --threads 0",
                                                                      "in [1, 1024]"]),
    ("ablate-gpus", [*ABL, "--variant", "all", "--gpus", "3"], ["--gpus 3 asks for GPUs",
                                                                "no CUDA GPU"]),
    ("tune-slurm-flag", ["tune", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits",
                         "--db", "good.db", "--grid", "lr=0.1,0.01", "--partition", "gpu"],
     ["--partition: Slurm options", "add --executor slurm"]),
    ("tune-gpus", ["tune", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits", "--db",
                   "good.db", "--grid", "lr=0.1,0.01", "--gpus", "0"], ["--gpus 0 asks for GPUs",
                                                                        "no CUDA GPU"]),
    ("tune-db-garbage", ["tune", "-m", "head-tuning", "-b", "test_resnet", "-d", "digits",
                         "--db", "garbage.db", "--grid", "lr=0.1,0.01"],
     ["file is not a database", "lionbench database file"]),
    # --- pretrain, bench, params: their inputs too ------------------------------------------
    ("pretrain-device", ["pretrain", "-d", "digits", "-o", "w.safetensors", "--device",
                         "cuda:3"], ["--device cuda:3 asks for a GPU", "no CUDA GPU"]),
    ("pretrain-backbone", ["pretrain", "-b", "resnet5O", "-d", "digits", "-o", "w.safetensors"],
     ["unknown backbone 'resnet5O'", "Did you mean 'resnet50'"]),
    ("pretrain-dataset", ["pretrain", "-d", "digit", "-o", "w.safetensors"],
     ["unknown dataset 'digit'", "Did you mean 'digits'"]),
    ("pretrain-seed", ["pretrain", "-d", "digits", "-o", "w.safetensors", "--seed", "-1"],
     ["invalid seeds -1", "[0, 4294967295]"]),
    ("bench-device", ["bench", "-m", "head-tuning", "-b", "test_resnet", "--device", "cuda:9"],
     ["--device cuda:9 asks for a GPU", "no CUDA GPU"]),
    ("bench-backbone", ["bench", "-m", "head-tuning", "-b", "resnet5O"],
     ["unknown backbone 'resnet5O'", "Valid"]),
    ("bench-set-unknown", ["bench", "-m", "head-tuning", "-b", "test_resnet", "--set",
                           "nosuch=1"], ["unknown setting 'nosuch' in --set", "valid: "]),
    ("bench-image-size-huge", ["bench", "-m", "head-tuning", "-b", "test_resnet",
                               "--image-size", "100000"], ["invalid --image-size 100000",
                                                           "an integer in [8, 8192]"]),
    ("params-backbone", ["params", "-m", "lion", "-b", "resnet5O"], ["unknown backbone "
                                                                     "'resnet5O'", "Valid"]),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a digest of its bytes; a device or FIFO by its
    kind and numbers (read, /dev/full-like nodes never end)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISDIR(mode):
            out[rel] = "dir"
        else:
            out[rel] = f"{stat.S_IFMT(mode)}:{path.lstat().st_rdev}"
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("faults")
    make_workspace(ws)
    (ws / "data").mkdir()
    return ws


TORCH_FREE_COMMANDS = {"run", "tune", "ablate", "params", "pretrain", "bench", "list",
                       "datasets"}  # commands that train or build models: checked before torch
# whether a dataset that cannot be downloaded is already laid out under --data-root is asked of
# the dataset's own code (lionbench.data, which imports torch): the one case answered after
NEEDS_TORCH = {"datasets-prepare-manual"}


def test_there_are_at_least_150_cases_covering_every_command():
    assert len(CASES) >= 150 and len({c[0] for c in CASES}) == len(CASES)
    commands = {argv[0] for _, argv, _ in CASES}
    assert commands >= {"run", "tune", "ablate", "table", "status", "export", "import", "plot",
                        "list", "params", "pretrain", "datasets", "bench"}


def fault_env(monkeypatch) -> None:
    """No GPU (whatever the machine has), the default database, the hub offline."""
    monkeypatch.delenv("LIONBENCH_DB", raising=False)  # the default: results/lionbench.db
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def check_line(out: str, err: str, expected: list[str]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert "Traceback" not in out + err and SECRET not in out + err and LEAK not in out + err
    assert not any(c in out + err for c in "\x1b\x07\u202e"), repr(err)  # inert text only
    assert out == ""


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fault_is_one_line_exit_1_and_nothing_written(workspace, monkeypatch, capsys, argv,
                                                      expected):
    if any(a in ("full", "null") for a in argv) and not (workspace / "full").exists():
        pytest.skip("no permission to make a device node here")  # pragma: no cover
    monkeypatch.chdir(workspace)
    fault_env(monkeypatch)
    before = snapshot(workspace)
    monkeypatch.setattr(sys, "argv", ["lionbench", *argv])
    start = time.process_time()
    with pytest.raises(SystemExit) as exit_info:
        main()
    seconds = time.process_time() - start
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1, (out, err)
    check_line(out, err, expected)
    assert snapshot(workspace) == before  # no file changed, created (absent stays absent)
    assert seconds < 2.0, f"answered in {seconds:.2f} s of CPU time"


TORCH_BLOCKED = """
import json, sys, time
for name in ("torch", "torchvision", "timm"):
    sys.modules[name] = None  # importing them now raises ImportError
import lionbench.cli
from lionbench.cli import main
cases, results = json.load(sys.stdin), {}
for case_id, argv in cases:
    sys.argv = ["lionbench", *argv]
    start, cpu = time.perf_counter(), time.process_time()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:
        code = f"{type(exc).__name__}: {exc}"
    results[case_id] = {"code": code, "seconds": time.process_time() - cpu,
                        "wall": time.perf_counter() - start}
print(json.dumps(results))
"""


def test_faults_are_refused_before_torch_loads(workspace):
    """Every case of a command that trains, in a process that cannot import torch, torchvision
    or timm: the same one-line refusal, each in under 2 s (torch takes seconds to import)."""
    cases = [(c[0], c[1]) for c in CASES if c[1][0] in TORCH_FREE_COMMANDS
             and c[0] not in NEEDS_TORCH
             and not (set(c[1]) & {"full", "null"} and not (workspace / "full").exists())]
    assert len(cases) >= 100
    before = snapshot(workspace)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("LIONBENCH_DB", None)
    proc = subprocess.run([sys.executable, "-c", TORCH_BLOCKED], cwd=workspace, env=env,
                          input=json.dumps(cases), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    wrong = {k: v for k, v in results.items() if v["code"] != 1}
    assert not wrong, wrong  # an ImportError of torch would show here, not exit 1
    slow = {k: round(v["seconds"], 2) for k, v in results.items() if v["seconds"] >= 2.0}
    assert not slow, slow
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == len(cases) and all(line.startswith("error: ") for line in lines)
    assert snapshot(workspace) == before


def test_plot_files_are_named_as_the_plots_name_them():
    from lionbench.cli.results import PLOT_FORMATS, plot_file
    from lionbench.report.plots import FORMATS, plot_path

    assert PLOT_FORMATS == FORMATS
    for output in ("fig", "out/fig.png", "fig.pdf", "a.b", "dir.png/fig"):
        for fmt in FORMATS:
            assert plot_file(Path(output), fmt) == plot_path(Path(output), fmt)


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
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run([*lionbench_script(), *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**env, "COLUMNS": "60"})
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "Traceback" not in proc.stderr and SECRET not in proc.stdout + proc.stderr
    assert snapshot(tmp_path) == before

