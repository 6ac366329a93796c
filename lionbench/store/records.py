"""Reading and checking the records of an import: from an export file or another database.

Why a module of its own: an import must reject a malformed source *before* writing anything,
with one clear line naming the record and the field; all of that checking lives here, and
``lionbench.store.exchange`` only merges records that passed. A record comes out with the ``runs``
table's column types (JSON columns as text, ``config`` in canonical form) and is checked to be
self-consistent: its ``run_hash`` must be the hash of its config.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Float, Integer, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from lionbench.config import canonical_json, cell_hash_of, run_hash_of
from lionbench.errors import LionbenchError

from .engine import create_db_engine, hide_password, resolve_url
from .health import warnings_json
from .schema import JSON_COLUMNS, SCHEMA_VERSION, STATUSES, meta_table, runs
from .store import Store

EXPORT_FORMAT = "lionbench-runs"
COLUMNS = [c.name for c in runs.c if c.name != "id"]
REQUIRED = ("run_hash", "method", "backbone", "weights", "weights_id", "dataset", "seed",
            "config", "protocol_version", "status", "created_at")
SQLITE_MAGIC = b"SQLite format 3\x00"


class ExchangeError(LionbenchError):
    """An export that cannot be written, or an import source that is missing or malformed."""


def read_rows(store: Store, status: str | None = None) -> list[dict[str, Any]]:
    """The runs as stored (JSON columns as text), in insertion order, without ``id``."""
    if status is not None and status not in STATUSES:
        raise ExchangeError(f"invalid status '{status}'; valid: {', '.join(STATUSES)}")
    return store.fetch_runs(status, COLUMNS)


def read_records(source: str | Path) -> list[dict[str, Any]]:
    """Every record of ``source``, checked and typed; raises ExchangeError on the first bad one."""
    return read_export(source)[0]


def read_export(source: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(records, what the source says of itself): a JSON export's ``exported_at``, its
    exporting ``host`` and ``lionbench`` version where present (CSV and databases say none)."""
    name = display_name(source)
    raw, about = _read_source(source)
    return [coerce_record(rec, f"{name}: record {i}") for i, rec in enumerate(raw, start=1)], \
        about


def display_name(source: str | Path) -> str:
    """``source`` for messages: a database URL with its password hidden."""
    text = str(source)
    return hide_password(text) if "://" in text else text


def _read_source(source: str | Path) -> tuple[list[Any], dict[str, Any]]:
    """Raw records from a file or database, and what a JSON export says of itself; format
    from the suffix or the SQLite header."""
    text = str(source)
    if "://" in text:
        return _read_database(text), {}
    path = Path(source).expanduser()
    if not path.is_file():
        raise ExchangeError(f"import source '{path}' not found; give a .csv or .json export, "
                            "an SQLite database, or a database URL")
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
        if head == SQLITE_MAGIC:
            return _read_database(str(path)), {}
        if path.suffix.lower() == ".json":
            return _read_json(path.read_text(encoding="utf-8-sig"), path)
        if path.suffix.lower() == ".csv":
            return _read_csv(path.read_text(encoding="utf-8-sig"), path), {}
    except UnicodeDecodeError:
        raise ExchangeError(f"'{path}' is not a UTF-8 text export") from None
    except OSError as exc:
        raise ExchangeError(f"cannot read '{path}': {exc.strerror or exc}") from None
    raise ExchangeError(f"cannot tell the format of '{path}'; expected a .csv or .json export "
                        "or an SQLite database")


def _read_database(url: str) -> list[Any]:
    """Rows of another lionbench database, read only: an older schema is read as it is (its
    missing columns come out empty), never migrated, so importing leaves the source alone."""
    safe = hide_password(url)
    engine = create_db_engine(resolve_url(url), read_only=True)  # StoreError: bad URL, no file
    try:
        with engine.connect() as conn:
            if not all(engine.dialect.has_table(conn, t) for t in ("meta", "runs")):
                raise ExchangeError(f"'{safe}' is not a lionbench database")
            version = conn.execute(select(meta_table.c.value).where(
                meta_table.c.key == "schema_version")).scalar()
            if int(version or 0) > SCHEMA_VERSION:
                raise ExchangeError(f"'{safe}' has schema {version}, newer than this lionbench "
                                    f"({SCHEMA_VERSION}); upgrade lionbench")
            have = {c["name"] for c in inspect(conn).get_columns("runs")}
            query = select(*[runs.c[n] for n in COLUMNS if n in have]).order_by(runs.c.id)
            return [dict(r) for r in conn.execute(query).mappings()]
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ExchangeError(f"cannot read database '{safe}': {reason}") from None
    finally:
        engine.dispose()


def _read_json(text: str, path: Path) -> tuple[list[Any], dict[str, Any]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExchangeError(f"'{path}' is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(doc, dict):
        if doc.get("format") not in (None, EXPORT_FORMAT) or not isinstance(doc.get("runs"), list):
            raise ExchangeError(f"'{path}' is not a lionbench export: expected an object with "
                                f"format '{EXPORT_FORMAT}' and a list 'runs'")
        if int(doc.get("schema_version") or 0) > SCHEMA_VERSION:
            raise ExchangeError(f"'{path}' comes from a newer lionbench (schema "
                                f"{doc['schema_version']} > {SCHEMA_VERSION}); upgrade lionbench")
        about = {k: str(doc[k]) for k in ("exported_at", "host", "lionbench") if doc.get(k)}
        doc = doc["runs"]
    else:
        about = {}
    if not isinstance(doc, list):
        raise ExchangeError(f"'{path}' is not a lionbench export: expected a list of runs")
    return doc, about


def _read_csv(text: str, path: Path) -> list[Any]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            raise ExchangeError(f"'{path}' is empty; expected a header row")
        missing = [c for c in REQUIRED if c not in reader.fieldnames]
        if missing:
            raise ExchangeError(f"'{path}' is not a lionbench export: columns missing: "
                                f"{', '.join(missing)}")
        rows = list(reader)
    except csv.Error as exc:
        raise ExchangeError(f"'{path}' is not valid CSV: {exc}") from None
    for i, row in enumerate(rows, start=1):
        if None in row or None in row.values():
            raise ExchangeError(f"'{path}': record {i} (line {i + 1}) has the wrong number "
                                "of fields")
    return rows


def coerce_record(rec: Any, where: str) -> dict[str, Any]:
    """One record, checked and converted to the column types; raises ExchangeError."""
    if not isinstance(rec, dict):
        raise ExchangeError(f"{where}: expected an object of column values")
    unknown = sorted(set(rec) - set(COLUMNS) - {"id"})
    if unknown:
        raise ExchangeError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    out: dict[str, Any] = {}
    for name in COLUMNS:
        col, value = runs.c[name], rec.get(name)
        if isinstance(value, str) and value == "" and name != "tags":
            value = None
        try:
            out[name] = None if value is None else _convert(name, col.type, value)
        except (TypeError, ValueError):
            raise ExchangeError(f"{where}: field '{name}' has an invalid value "
                                f"{str(value)[:60]!r}") from None
    missing = [name for name in REQUIRED if out[name] is None]
    if missing:
        raise ExchangeError(f"{where}: required field(s) missing: {', '.join(missing)}")
    out["tags"] = out["tags"] or ""
    out["attempts"] = out["attempts"] or 0
    out["interrupts"] = out["interrupts"] or 0  # exports before schema 5 have none
    if out["status"] not in STATUSES:
        raise ExchangeError(f"{where}: invalid status '{out['status']}'; valid: "
                            f"{', '.join(STATUSES)}")
    config = json.loads(out["config"])
    if not isinstance(config, dict):
        raise ExchangeError(f"{where}: field 'config' must be an object")
    if run_hash_of(config) != out["run_hash"]:
        raise ExchangeError(f"{where}: run_hash {out['run_hash']} is not the hash of its config "
                            "(corrupt or edited record)")
    # the weights_id and protocol columns are read by tables (an edit there alone would change
    # a result's label or flag): they must agree with the config, whose hash is checked above
    for key in ("method", "backbone", "dataset", "seed", "weights_id", "protocol_version"):
        if (key in config or key in ("method", "backbone", "dataset", "seed")) \
                and config.get(key) != out[key]:
            raise ExchangeError(f"{where}: field '{key}' ({out[key]!r}) disagrees with its "
                                f"config ({config.get(key)!r})")
    check_metrics(out, config, where)
    out["config"] = canonical_json(config)
    out["cell_hash"] = cell_hash_of(config)  # derived, never taken from the record
    if out["warnings"] is None and out["status"] == "done":  # an export from before schema 6
        out["warnings"] = warnings_json(json.loads(out["extra"]) if out["extra"] else {})
    return out


ACCURACIES = ("test_top1", "test_top5", "val_top1")
COUNTS = ("params_trainable_no_head", "params_trainable", "params_total")  # nested: <= next


def check_metrics(rec: dict[str, Any], config: dict[str, Any], where: str) -> None:
    """Refuse metrics no run can produce: they are not re-derived on import, so a record that
    cannot be true is rejected rather than tabled (possible-but-imported ones are marked ‡).

    Accuracies are fractions in [0, 1], top-5 is at least top-1, a done run has a test top-1,
    parameter counts are >= 0 and nested (without head <= trainable <= total), and the selected
    epoch is one the run trained. Runs that are not done are not checked: tables never read
    their metrics (a run rerun with ``--force`` that then failed keeps its earlier ones).
    """
    if rec["status"] != "done":
        return
    if rec.get("test_top1") is None:
        raise ExchangeError(f"{where}: a done run without test_top1")
    for name in ACCURACIES:
        value = rec.get(name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ExchangeError(f"{where}: {name}={value!r} is not an accuracy in [0, 1]")
    if rec.get("test_top5") is not None and rec["test_top5"] < rec["test_top1"]:
        raise ExchangeError(f"{where}: test_top5={rec['test_top5']!r} is below test_top1="
                            f"{rec['test_top1']!r}")
    counts = [rec.get(n) for n in COUNTS]
    if any(c is not None and c < 0 for c in counts):
        raise ExchangeError(f"{where}: a negative parameter count")
    no_head, trainable, total = counts
    for small, large, what in ((no_head, trainable, "params_trainable_no_head > params_trainable"),
                               (trainable, total, "params_trainable > params_total")):
        if small is not None and large is not None and small > large:
            raise ExchangeError(f"{where}: {what}")
    epochs = (config.get("train") or {}).get("epochs")
    best = rec.get("best_epoch")
    if best is not None and (best < 0 or (isinstance(epochs, int) and best >= epochs)):
        raise ExchangeError(f"{where}: best_epoch={best} is not an epoch of a {epochs}-epoch run")


def _convert(name: str, kind: Any, value: Any) -> Any:
    if name in JSON_COLUMNS:
        parsed = json.loads(value) if isinstance(value, str) else value
        if not isinstance(parsed, dict):
            raise ValueError(name)
        return json.dumps(parsed, sort_keys=True)
    if isinstance(kind, Boolean):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0"):
            raise ValueError(value)
        return text in ("true", "1")
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(kind, Integer):
        number = float(value) if isinstance(value, str) and "." in value else value
        if isinstance(number, float) and not number.is_integer():
            raise ValueError(value)
        return int(number)
    if isinstance(kind, Float):
        number = float(value)
        return number if math.isfinite(number) else None
    if not isinstance(value, str):
        raise TypeError(value)
    return value


__all__ = ["COLUMNS", "EXPORT_FORMAT", "ExchangeError", "JSON_COLUMNS", "check_metrics",
           "coerce_record", "display_name", "read_export", "read_records", "read_rows"]
