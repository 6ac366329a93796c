"""Writing the files a user asked for (tables, plots, exports, checkpoints, benchmark reports).

Why one helper: an output path that cannot be written (a read-only folder, a parent that is a
file, a folder given as a file, a folder where nothing can be made such as ``/proc``) must fail
*before* the long work that produces the output (a pretraining run, a benchmark), as one
:class:`~lionbench.errors.OutputError` line; and the write itself must not clobber what it does
not own. Two cases:

- a **regular file or a missing path**: written whole or not at all. The data goes to a
  temporary file beside the target, created exclusively under an unpredictable name
  (``tempfile.mkstemp``: no other user of a shared folder can guess it or plant a link there),
  and is then renamed over the target, keeping a replaced file's permissions;
- **anything else** (a character device such as ``/dev/null`` or ``/dev/full``, a FIFO, a
  socket, a symlink such as ``/dev/stdout``): written in place, through the path, never
  renamed over (run as root, a rename would replace ``/dev/full`` itself by a regular file),
  and nothing is ever created beside it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from lionbench.errors import OutputError


def writes_in_place(path: str | Path) -> bool:
    """Whether ``path`` exists and is not a regular file (a device, FIFO, socket or symlink):
    such a target is written through, never replaced, and gets no file beside it."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False  # missing (or a parent is a file: check_writable says so)
    except OSError:
        return True  # cannot tell: never rename over it
    return not stat.S_ISREG(mode)


def check_writable(path: str | Path, what: str = "output") -> Path:
    """``path`` as a Path, after checking that it can be written (its missing folders can be
    made); an OutputError naming the path and the problem otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{what} '{path}' is a folder; give a file path (e.g. {path}/out)")
    if writes_in_place(path):
        if not os.access(path, os.W_OK):
            raise OutputError(f"cannot write {what} '{path}': not writable; give another path")
        return path
    ancestor = nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {what} '{path}': '{ancestor}' is a file, not a folder; "
                          "give a path in a writable folder")
    if not os.access(ancestor, os.W_OK | os.X_OK) or not _can_create_in(ancestor):
        raise OutputError(f"cannot write {what} '{path}': folder '{ancestor}' is read-only; "
                          "give a path in a writable folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write {what} '{path}': the file is read-only; give another "
                          "path or make it writable")
    return path


def check_folder_writable(folder: str | Path, what: str = "output folder") -> Path:
    """``folder`` as a Path, after checking that it is (or can be made) a writable folder."""
    folder = Path(folder).expanduser()
    ancestor = nearest_existing(folder)
    if not ancestor.is_dir():
        raise OutputError(f"{what} '{folder}': '{ancestor}' is a file, not a folder; give a "
                          "folder path")
    if not os.access(ancestor, os.W_OK | os.X_OK) or not _can_create_in(ancestor):
        raise OutputError(f"{what} '{folder}': '{ancestor}' is read-only; give a writable "
                          "folder")
    return folder


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made in ``folder``, tried: ``os.access`` answers yes to root
    everywhere, also where nothing can be created (``/proc``, a read-only mount)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".lionbench-probe.")
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (what decides whether it can be made)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _new_file_mode(replaced: Path) -> int:
    """The permissions of the file being replaced, else those a new file gets (umask)."""
    try:
        return stat.S_IMODE(os.stat(replaced).st_mode)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (created exclusively, unpredictable name) to write;
    renamed over ``path`` when the block ends without error, removed otherwise. The folder is
    made if missing (again, should another process remove it meanwhile: an emptied checkpoint
    folder is removed at the end of a matrix)."""
    for attempt in range(5):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            break
        except FileNotFoundError:
            if attempt == 4:
                raise
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def open_output(path: Path) -> Iterator[IO[bytes]]:
    """A binary file to write ``path`` with: in place for a device, FIFO or symlink; else a
    temporary file, flushed to disk and renamed over ``path`` at the end."""
    if writes_in_place(path):
        with open(path, "wb") as fh:
            yield fh
        return
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_atomically(path: Path, write: Callable[[Path], object], what: str = "output") -> Path:
    """``write(target)``: into a temporary file renamed to ``path`` (whole or absent, never
    half-written), or straight into ``path`` when it is a device, FIFO or symlink; an
    OutputError naming ``path`` on failure."""
    try:
        if writes_in_place(path):
            write(path)
        else:
            with atomic_path(path) as tmp:
                write(tmp)
    except OSError as exc:
        raise OutputError(f"cannot write {what} '{path}': {exc.strerror or exc}; give a path "
                          "in a writable folder") from None
    return path


def write_output(path: str | Path, data: str | bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` (see :func:`write_atomically`); OutputError on failure."""
    path = check_writable(path, what)
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    return write_atomically(path, lambda target: target.write_bytes(raw), what)


def make_output_folder(path: str | Path, what: str = "output") -> Path:
    """Make the folder of ``path`` (an output written by a library, e.g. matplotlib)."""
    path = check_writable(path, what)
    if writes_in_place(path):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {what} '{path}': {exc.strerror or exc}; give a path "
                          "in a writable folder") from None
    return path
