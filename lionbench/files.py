"""Writing the files a user asked for (tables, plots, exports, checkpoints, benchmark reports).

Why one helper: an output path that cannot be written (a read-only folder, a parent that is a
file, a folder given as a file) must fail *before* the long work that produces the output (a
pretraining run, a benchmark), as one :class:`~lionbench.errors.OutputError` line; and the write
itself must be all or nothing (a temporary file renamed over the target), so a full disk or a
kill never leaves half a table behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lionbench.errors import OutputError


def check_writable(path: str | Path, what: str = "output") -> Path:
    """``path`` as a Path, after checking that a file can be written there (its missing
    folders can be made); an OutputError naming the path and the problem otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{what} '{path}' is a folder; give a file path (e.g. {path}/out)")
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {what} '{path}': '{ancestor}' is a file, not a folder; "
                          "give a path in a writable folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {what} '{path}': folder '{ancestor}' is read-only; "
                          "give a path in a writable folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write {what} '{path}': the file is read-only; give another "
                          "path or make it writable")
    return path


def check_folder_writable(folder: str | Path, what: str = "output folder") -> Path:
    """``folder`` as a Path, after checking that it is (or can be made) a writable folder."""
    folder = Path(folder).expanduser()
    ancestor = _nearest_existing(folder)
    if not ancestor.is_dir():
        raise OutputError(f"{what} '{folder}': '{ancestor}' is a file, not a folder; give a "
                          "folder path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{what} '{folder}': '{ancestor}' is read-only; give a writable "
                          "folder")
    return folder


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (what decides whether it can be made)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_atomically(path: Path, write: Callable[[Path], object], what: str = "output") -> Path:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it to ``path``: the
    file is whole or absent, never half-written; OutputError naming ``path`` on failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {what} '{path}': {exc.strerror or exc}; give a path "
                          "in a writable folder") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_output(path: str | Path, data: str | bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` atomically (folders made as needed); OutputError on failure."""
    path = check_writable(path, what)
    if isinstance(data, bytes):
        return write_atomically(path, lambda tmp: tmp.write_bytes(data), what)
    return write_atomically(path, lambda tmp: tmp.write_text(data, encoding="utf-8"), what)


def make_output_folder(path: str | Path, what: str = "output") -> Path:
    """Make the folder of ``path`` (an output written by a library, e.g. matplotlib)."""
    path = check_writable(path, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {what} '{path}': {exc.strerror or exc}; give a path "
                          "in a writable folder") from None
    return path
