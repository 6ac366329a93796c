"""Moving runs between databases: export to CSV / JSON, import an export or another database.

Why: runs are gathered in several places (a cluster, a laptop, a colleague's GPU) and compared
in one. An export holds one record per run: every column of the ``runs`` table but the local
``id`` -- its config, status, metrics, and provenance (git commit and dirty flag, protocol
version, package versions, host, device, times). JSON keeps ``config``, ``extra`` and
``versions`` nested; CSV holds them as JSON strings (``config`` in its canonical form).

Import rules (``import_runs``):

- A run's identity is its ``run_hash``; a record whose hash is not the hash of its config, or
  whose method / backbone / dataset / seed disagree with its config, is rejected as corrupt.
- A run already present is skipped, and a done run is never overwritten. One exception, on
  purpose: an imported *done* record replaces a local *pending* or *failed* run of the same
  hash, since it is the result that local run would have produced (reported as
  ``replaced_unfinished``). A local running run is left alone.
- ``running`` records are not imported: they hold no result yet, and a run marked running here
  would look like a stale claim and be rerun; import again once it is done.
- All or nothing: every record is checked before the first write, and the writes happen in one
  transaction; any problem raises :class:`ExchangeError` and leaves the database unchanged.
- Metrics no run can produce (an accuracy outside [0, 1], top-5 below top-1, nested parameter
  counts out of order, a selected epoch the run never trained) are refused
  (``records.check_metrics``); metrics that are merely surprising cannot be told from true ones.

Provenance of an import (why: metrics cannot be re-derived, so where a result came from must
show): every record written gets an ``origin`` (JSON: the source, password hidden; the import
time; what a JSON export says of itself: when and on which host it was exported, by which
lionbench; the record's status then; the record's own earlier ``origin``, if it came by import
before) that nothing but this import sets, and ``imported_result`` true when its outcome (done
or failed) came with it. Tables mark those results ``‡``. A run trained here later (an imported
pending run, or one rerun with ``--force``) stores its own outcome and ``imported_result``
becomes false; ``origin`` stays as history. An imported pending run trains only if its weights
and data are the same here (lionbench.train.verify).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Boolean, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from lionbench import __version__
from lionbench.files import write_output

from .provenance import host_name
from .records import (
    COLUMNS,
    EXPORT_FORMAT,
    JSON_COLUMNS,
    ExchangeError,
    display_name,
    read_export,
    read_rows,
)
from .schema import SCHEMA_VERSION, runs
from .store import Store

FORMATS = ("csv", "json")
STATUS_RANK = {"done": 0, "failed": 1, "pending": 2, "running": 3}  # which duplicate wins


@dataclass
class ImportReport:
    """What an import did; ``records`` counts the source's records."""

    source: str
    records: int = 0
    added: int = 0
    skipped_present: int = 0
    replaced_unfinished: int = 0  # local pending/failed runs replaced by an imported done run
    skipped_running: int = 0
    duplicates: int = 0  # the same run_hash more than once in the source (one kept)

    def summary(self) -> str:
        parts = [f"{self.added} added"]
        if self.replaced_unfinished:
            parts.append(f"{self.replaced_unfinished} pending/failed run(s) replaced by done ones")
        parts.append(f"{self.skipped_present} already present (skipped)")
        if self.skipped_running:
            parts.append(f"{self.skipped_running} still running (skipped)")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate(s) in the source")
        return f"imported {self.records} record(s) from {self.source}: {', '.join(parts)}"


# --- export ----------------------------------------------------------------------------------
def export_runs(store: Store, fmt: str, output: Path | TextIO | None = None,
                status: str | None = None) -> int:
    """Write the store's runs (or those of one ``status``) to ``output`` (a path, a text
    stream, or stdout when None) as ``csv`` or ``json``; return how many were written."""
    if fmt not in FORMATS:
        raise ExchangeError(f"invalid export format '{fmt}'; valid: {', '.join(FORMATS)}")
    rows = read_rows(store, status)
    buf = io.StringIO()
    if fmt == "json":
        records = [{k: (json.loads(v) if k in JSON_COLUMNS and isinstance(v, str) else v)
                    for k, v in row.items()} for row in rows]
        json.dump({"format": EXPORT_FORMAT, "schema_version": SCHEMA_VERSION,
                   "lionbench": __version__, "exported_at": _now(), "host": host_name(),
                   "runs": records}, buf, indent=1)
        buf.write("\n")
    else:
        writer = csv.writer(buf, lineterminator="\n")  # None is written as an empty field
        writer.writerow(COLUMNS)
        flags = [i for i, name in enumerate(COLUMNS) if isinstance(runs.c[name].type, Boolean)]
        for row in rows:
            values = [row[name] for name in COLUMNS]
            for i in flags:  # true/false, as the import reads them
                values[i] = "" if values[i] is None else ("true" if values[i] else "false")
            writer.writerow(values)
    if output is None:
        sys.stdout.write(buf.getvalue())
    elif isinstance(output, Path | str):
        write_output(output, buf.getvalue(), "export")
    else:
        output.write(buf.getvalue())
    return len(rows)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- import ----------------------------------------------------------------------------------
def import_runs(store: Store, source: str | Path) -> ImportReport:
    """Merge runs from an export (.csv / .json) or another database (SQLite file or URL)."""
    records, about = read_export(source)  # all checked before the first write
    return merge_records(store, records, display_name(source), about)


def import_into(db: str | None, source: str | Path) -> ImportReport:
    """:func:`import_runs` into the database ``db`` (a URL or path), opened only once every
    record of ``source`` has passed its checks: a bad source creates no database."""
    records, about = read_export(source)
    return merge_records(Store(db), records, display_name(source), about)


def merge_records(store: Store, records: list[dict[str, Any]], name: str,
                  about: dict[str, Any] | None = None) -> ImportReport:
    """Write checked records in one transaction (the rules in the module docstring), each
    stamped with its origin (``about``: what the export says of itself, e.g. its host)."""
    report = ImportReport(name, records=len(records))
    imported_at = _now()
    for rec in records:
        stamp_origin(rec, name, imported_at, about or {})
    chosen: dict[str, dict[str, Any]] = {}
    for rec in records:
        old = chosen.get(rec["run_hash"])
        if old is not None:
            report.duplicates += 1
            if STATUS_RANK[rec["status"]] >= STATUS_RANK[old["status"]]:
                continue
        chosen[rec["run_hash"]] = rec
    try:
        with store.engine.begin() as conn:
            hashes, local = list(chosen), {}
            for start in range(0, len(hashes), 500):
                rows = conn.execute(select(runs.c.run_hash, runs.c.status)
                                    .where(runs.c.run_hash.in_(hashes[start:start + 500])))
                local.update({h: s for h, s in rows})
            for h, rec in chosen.items():
                if rec["status"] == "running":
                    report.skipped_running += 1
                elif h not in local:
                    conn.execute(insert(runs).values(**rec))
                    report.added += 1
                elif rec["status"] == "done" and local[h] in ("pending", "failed"):
                    res = conn.execute(update(runs).where(
                        runs.c.run_hash == h, runs.c.status.in_(("pending", "failed")))
                        .values(**rec))
                    if res.rowcount:
                        report.replaced_unfinished += 1
                    else:
                        report.skipped_present += 1
                else:
                    report.skipped_present += 1
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ExchangeError(f"import from {name} failed, nothing changed: {reason}") from None
    return report


def stamp_origin(rec: dict[str, Any], source: str, imported_at: str, about: dict[str, Any]
                 ) -> None:
    """Set ``origin`` and ``imported_result`` of a record about to be written by an import; a
    record's own ``origin`` (it came by import before) is kept inside, as ``earlier``."""
    origin: dict[str, Any] = {"source": source, "imported_at": imported_at,
                              "status": rec["status"]}
    origin.update({("exported_by" if k == "host" else k): v for k, v in about.items()})
    if rec.get("origin"):
        origin["earlier"] = json.loads(rec["origin"])
    rec["origin"] = json.dumps(origin, sort_keys=True)
    rec["imported_result"] = rec["status"] in ("done", "failed")


__all__ = ["ExchangeError", "ImportReport", "export_runs", "import_into", "import_runs",
           "merge_records", "read_rows", "stamp_origin"]
