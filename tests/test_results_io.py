"""Results I/O: export/import between databases, the figures' data, the paper's YAML matrices,
and the CLI commands (export, import, plot, table --clean-only) through Typer's CliRunner.

Runs are synthetic (inserted as pending, claimed, marked done with made-up metrics): nothing is
trained, so the whole file takes seconds.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lionbench.cli import app
from lionbench.config import RunConfig
from lionbench.matrix import Matrix, load_matrix_file
from lionbench.report.plots import plot_sensitivity, plot_tradeoff, read_series
from lionbench.runner import expand_matrix
from lionbench.store import Store
from lionbench.store.exchange import ExchangeError, export_runs, import_runs, read_rows

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PARAMS = {"head-tuning": 650, "fine-tuning": 700_000, "lion": 5_000}
runner = CliRunner()


def _matrix(methods: list[str], overrides: dict | None = None) -> Matrix:
    return Matrix(methods=methods, backbones=["test_resnet"], datasets=["digits"],
                  seeds=[0, 1], overrides={"epochs": 1, **(overrides or {})})


@pytest.fixture(scope="module")
def configs() -> list[RunConfig]:
    """head-tuning, fine-tuning and LION (default, tau 0.2 / 0.6, deq_layers 2), 2 seeds."""
    return expand_matrix([_matrix(["head-tuning", "fine-tuning", "lion"]),
                          _matrix(["lion"], {"lion.tau": 0.2}),
                          _matrix(["lion"], {"lion.tau": 0.6}),
                          _matrix(["lion"], {"lion.deq_layers": 2})])


def accuracy(c: RunConfig) -> float:
    """A made-up top-1 that depends on the settings, so every plotted point is predictable."""
    mc = c.method_config
    base = {"head-tuning": 0.70, "fine-tuning": 0.90, "lion": 0.80}[c.method]
    return round(base - abs(mc.get("tau", 0.4) - 0.4) / 10 + 0.01 * (mc.get("deq_layers", 1) - 1)
                 + 0.02 * c.seed, 6)


def fill(store: Store, configs: list[RunConfig], *, dirty: bool = False,
         offset: float = 0.0, status: str = "done") -> None:
    """Store ``configs`` as pending, then claim each and mark it done (or failed)."""
    store.add_pending(configs)
    by_hash = {c.run_hash: c for c in configs}
    provenance = {"host": "testhost", "device": "cpu", "git_commit": "abc123",
                  "git_dirty": dirty, "versions": json.dumps({"torch": "2.x"})}
    while (row := store.claim_next("test", list(by_hash))) is not None:
        c = by_hash[row["run_hash"]]
        if status == "failed":
            store.mark_failed(row["id"], "boom", provenance)
            continue
        p = PARAMS[c.method] * (c.method_config.get("deq_layers", 1))
        store.mark_done(row["id"], {"test_top1": accuracy(c) + offset, "test_top5": 1.0,
                                    "params_trainable": p, "params_total": 800_000},
                        {"note": "synthetic"}, provenance)


def db_at(tmp_path: Path, name: str) -> tuple[Store, str]:
    path = tmp_path / f"{name}.db"
    return Store(str(path)), str(path)


IMPORT_STAMPED = ("origin", "imported_result")  # set by the import itself, never copied


def decoded(store: Store, stamped: bool = False) -> list[dict]:
    """Rows with JSON columns decoded; without what an import stamps unless ``stamped``."""
    return [{k: (json.loads(v) if k in ("config", "extra", "versions", "runtime", "origin")
                 and v else v)
             for k, v in row.items() if stamped or k not in IMPORT_STAMPED}
            for row in read_rows(store)]


# --- export / import ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_import_round_trip(tmp_path: Path, configs: list[RunConfig], fmt: str) -> None:
    source, _ = db_at(tmp_path, "source")
    fill(source, configs[:6])
    fill(source, configs[6:8], status="failed")
    source.add_pending(configs[8:10])
    out = tmp_path / f"runs.{fmt}"
    assert export_runs(source, fmt, out) == 10
    target, _ = db_at(tmp_path, "target")
    report = import_runs(target, out)
    assert (report.records, report.added, report.skipped_present) == (10, 10, 0)
    assert decoded(target) == decoded(source)  # every column, provenance included
    for row in decoded(target, stamped=True):  # ... and where each run came from
        assert row["origin"]["source"] == str(out) and row["origin"]["status"] == row["status"]
        assert row["imported_result"] is (row["status"] != "pending")
        assert ("exported_by" in row["origin"]) is (fmt == "json")  # CSV has no header to say
    again = import_runs(target, out)
    assert (again.added, again.skipped_present, again.replaced_unfinished) == (0, 10, 0)
    if fmt == "json":
        doc = json.loads(out.read_text())
        assert doc["format"] == "lionbench-runs"
        assert isinstance(doc["runs"][0]["config"], dict)  # nested, not a string
        assert doc["runs"][0]["git_commit"] == "abc123"
    else:
        first = next(csv.DictReader(io.StringIO(out.read_text())))
        assert first["config"] == read_rows(source)[0]["config"]  # a JSON string, canonical
        assert first["git_dirty"] == "false" and first["host"] == "testhost"


def test_import_never_overwrites_done(tmp_path: Path, configs: list[RunConfig]) -> None:
    x, y, z, w, v, u = configs[:6]
    target, _ = db_at(tmp_path, "target")
    fill(target, [x])  # done here: must survive
    target.add_pending([y])  # pending here: replaced by the imported done run
    fill(target, [z], status="failed")  # failed here: replaced by the imported done run
    fill(target, [u], status="failed")  # failed here, pending in the source: left alone
    source, source_path = db_at(tmp_path, "source")
    fill(source, [x, y, z, w], offset=0.05)
    source.add_pending([u])
    source.add_pending([v])
    source.claim_next("elsewhere", [v.run_hash])  # running in the source: not imported
    report = import_runs(target, source_path)  # straight from the other database
    assert report.added == 1 and report.replaced_unfinished == 2
    assert report.skipped_present == 2 and report.skipped_running == 1
    rows = {r["run_hash"]: r for r in read_rows(target)}
    assert rows[x.run_hash]["test_top1"] == pytest.approx(accuracy(x))  # not x + 0.05
    assert rows[y.run_hash]["status"] == rows[z.run_hash]["status"] == "done"
    assert rows[z.run_hash]["test_top1"] == pytest.approx(accuracy(z) + 0.05)
    assert rows[u.run_hash]["status"] == "failed" and v.run_hash not in rows
    url_report = import_runs(target, f"sqlite:///{source_path}")  # a URL works the same
    assert url_report.added == 0 and url_report.skipped_running == 1


def test_import_reads_an_older_database_without_migrating_it(tmp_path: Path,
                                                              configs: list[RunConfig]) -> None:
    source, source_path = db_at(tmp_path, "old")
    fill(source, configs[:2])
    have = {r[1] for r in source.execute("PRAGMA table_info(runs)")}
    for column in ("requeue_reason", "requeued_at"):  # schema 2's columns: back to schema 1
        if column in have:
            source.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    source.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    source.engine.dispose()
    target, _ = db_at(tmp_path, "target")
    assert import_runs(target, source_path).added == 2
    assert decoded(target)[0]["versions"] == {"torch": "2.x"}
    with sqlite3.connect(source_path) as conn:  # the source was only read
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                            ).fetchone() == ("1",)


def _corrupt_hash(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["runs"][1]["config"]["seed"] = 7  # the hash no longer matches the config
    path.write_text(json.dumps(doc))


def _bad_seed_csv(path: Path) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = next(csv.reader([lines[2]]))
    cells[header.index("seed")] = "abc"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    path.write_text("\n".join([lines[0], lines[1], buf.getvalue().rstrip("\n"), *lines[3:]]))


@pytest.mark.parametrize("case", ["not-json", "bad-hash", "bad-seed", "no-columns", "unknown"])
def test_malformed_import_fails_cleanly(tmp_path: Path, configs: list[RunConfig],
                                        case: str) -> None:
    source, _ = db_at(tmp_path, "source")
    fill(source, configs[:3])
    fmt = "csv" if case in ("bad-seed", "no-columns") else "json"
    path = tmp_path / f"export.{fmt}"
    export_runs(source, fmt, path)
    if case == "not-json":
        path.write_text('{"format": "lionbench-runs", "runs": [')
    elif case == "bad-hash":
        _corrupt_hash(path)
    elif case == "bad-seed":
        _bad_seed_csv(path)
    elif case == "no-columns":
        path.write_text("method,backbone\nlion,test_resnet\n")
    else:
        path = tmp_path / "export.txt"
        path.write_text("hello")
    target, target_path = db_at(tmp_path, "target")
    fill(target, configs[3:4])
    before = read_rows(target)
    result = runner.invoke(app, ["import", str(path), "--db", target_path])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert read_rows(target) == before  # nothing changed, not even the good records
    with pytest.raises(ExchangeError):
        import_runs(target, path)


def test_cli_export(tmp_path: Path, configs: list[RunConfig]) -> None:
    store, path = db_at(tmp_path, "runs")
    fill(store, configs[:2])
    store.add_pending(configs[2:3])
    result = runner.invoke(app, ["export", "--format", "json", "--db", path, "--status", "done"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["runs"]) == 2 and {r["status"] for r in doc["runs"]} == {"done"}
    out = tmp_path / "all.csv"
    result = runner.invoke(app, ["export", "-f", "csv", "-o", str(out), "--db", path])
    assert result.exit_code == 0 and "exported 3 run(s)" in result.output
    assert len(out.read_text().splitlines()) == 4
    bad = runner.invoke(app, ["export", "--format", "xml", "--db", path])
    assert bad.exit_code == 1 and bad.output.startswith("error: invalid export format")


# --- plots -------------------------------------------------------------------------------------
def test_plot_sensitivity(tmp_path: Path, configs: list[RunConfig]) -> None:
    store, _ = db_at(tmp_path, "runs")
    fill(store, configs)
    paths = plot_sensitivity(store.list_runs(), tmp_path / "fig3")
    assert [p.name for p in paths] == ["fig3.png", "fig3.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    series = {s.panel: s for s in paths.series}
    tau, layers = series["tau"], series["deq_layers"]
    assert tau.label == layers.label == "test_resnet / digits"
    assert tau.x == [0.2, 0.4, 0.6] and layers.x == [1.0, 2.0]
    assert tau.y == pytest.approx([0.79, 0.81, 0.79])  # mean of seeds 0 and 1
    assert layers.y == pytest.approx([0.81, 0.82]) and layers.n == [2, 2]
    assert tau.yerr == pytest.approx([0.0141421] * 3, abs=1e-6)
    for path in paths:  # the files carry the same numbers
        assert read_series(path) == paths.series


def test_plot_tradeoff(tmp_path: Path, configs: list[RunConfig]) -> None:
    store, _ = db_at(tmp_path, "runs")
    fill(store, configs)
    paths = plot_tradeoff(store.list_runs(), tmp_path / "tradeoff.png", formats=("png",))
    assert [p.name for p in paths] == ["tradeoff.png"]
    got = {s.label: (s.x, s.y) for s in paths.series}
    assert set(got) == {"test_resnet / Head-tuning", "test_resnet / Fine-tuning",
                        "test_resnet / LION"}  # the sweep's runs are left out by default
    assert got["test_resnet / LION"][0] == pytest.approx([0.005])
    assert got["test_resnet / Fine-tuning"][1] == pytest.approx([0.91])
    assert read_series(paths[0]) == paths.series
    wide = plot_tradeoff(store.list_runs(), tmp_path / "all", formats=("png",), variants=True)
    labels = {s.label for s in wide.series}
    assert {"test_resnet / LION (tau=0.2)", "test_resnet / LION (deq_layers=2)"} <= labels


def test_cli_plot(tmp_path: Path, configs: list[RunConfig]) -> None:
    store, path = db_at(tmp_path, "runs")
    empty = runner.invoke(app, ["plot", "sensitivity", "--db", path, "-o", str(tmp_path / "x")])
    assert empty.exit_code == 1 and empty.output.startswith("error: no done 'lion' runs")
    fill(store, configs)
    prefix = tmp_path / "figs" / "figure3"
    result = runner.invoke(app, ["plot", "sensitivity", "--db", path, "-o", str(prefix)])
    assert result.exit_code == 0, result.output
    assert "(2 series)" in result.output
    for suffix in (".png", ".pdf"):  # both by default
        assert read_series(prefix.with_suffix(suffix))[0].x == [0.2, 0.4, 0.6]
    result = runner.invoke(app, ["plot", "tradeoff", "--db", path, "-o", str(prefix.parent / "t"),
                                 "--format", "png", "--datasets", "digits"])
    assert result.exit_code == 0, result.output
    assert len(read_series(prefix.parent / "t.png")) == 3
    assert not (prefix.parent / "t.pdf").exists()
    bad = runner.invoke(app, ["plot", "tradeoff", "--db", path, "--format", "gif"])
    assert bad.exit_code == 1 and "unsupported format gif" in bad.output


# --- tables: provenance flags through the CLI -------------------------------------------------
def test_cli_table_clean_only(tmp_path: Path, configs: list[RunConfig]) -> None:
    store, path = db_at(tmp_path, "runs")
    heads = [c for c in configs if c.method == "head-tuning"]  # seeds 0 and 1
    fill(store, heads[:1], dirty=True)
    fill(store, heads[1:])
    lions = [c for c in configs if c.method == "lion" and c.method_config["tau"] == 0.4
             and c.method_config["deq_layers"] == 1]
    fill(store, lions)
    store.execute(f"UPDATE runs SET protocol_version = 0 WHERE run_hash = '{lions[0].run_hash}'")

    def cells(*extra: str) -> dict[str, dict]:
        result = runner.invoke(app, ["table", "--db", path, "--format", "csv", *extra])
        assert result.exit_code == 0, result.output
        return {r["method"]: r for r in csv.DictReader(io.StringIO(result.stdout))}

    flagged = cells()
    assert flagged["head-tuning"]["flags"] == "dirty" and flagged["head-tuning"]["n"] == "2"
    assert flagged["lion"]["flags"] == "protocol"
    clean = cells("--clean-only")
    assert clean["head-tuning"]["flags"] == "" and clean["head-tuning"]["n"] == "1"
    assert clean["lion"]["n"] == "1"


# --- the paper's matrices ----------------------------------------------------------------------
@pytest.mark.parametrize("name,per_seed", [("table1", 98), ("table2", 98), ("table3", 128),
                                           ("table4", 24), ("figure3", 14)])
def test_paper_matrices(name: str, per_seed: int) -> None:
    runs = expand_matrix(load_matrix_file(BENCHMARKS / f"{name}.yaml"))
    seeds = Counter(c.seed for c in runs)
    assert set(seeds.values()) == {per_seed}
    assert {(c.train.lr, c.train.batch_size) for c in runs} == {(1e-5, 64)}
    if name == "table1":  # 7 methods x 2 backbones x 7 datasets
        seed0 = [c for c in runs if c.seed == 0]
        assert len({c.method for c in seed0}) == 7 and len({c.dataset for c in seed0}) == 7
        assert {c.backbone for c in seed0} == {"resnet50", "resnet101"}
    if name == "figure3":
        points = {(c.backbone, c.method_config["tau"], c.method_config["deq_layers"])
                  for c in runs}
        for bb in ("resnet50", "vit_base_patch16_224"):
            assert {(t, d) for b, t, d in points if b == bb} == {
                (0.2, 1), (0.4, 1), (0.6, 1), (0.8, 1), (0.4, 2), (0.4, 3), (0.4, 4)}


def test_table1_dry_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(BENCHMARKS / "table1.yaml"), "--dry-run",
                                 "--seeds", "0", "--db", str(tmp_path / "plan.db")])
    assert result.exit_code == 0, result.output
    assert "98 to run, 0 already stored" in result.output
