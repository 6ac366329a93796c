"""Downloading and unpacking dataset archives safely.

Why not a plain ``urlretrieve`` + ``extractall``: a dataset archive is data from the network
unpacked onto the user's disk. Three rules, each checked by tests with a local fake archive:

1. **https where the source has it**; a source that may only answer over http is listed after
   its https address. Rule 2 makes the transport's integrity irrelevant either way.
2. **A checksum before unpacking**: the archive's SHA-256 (and size) must equal the published
   value; a mismatch deletes the download and unpacks nothing.
3. **No path outside the target**: every member is checked before the first is written:
   absolute names, ``..`` components, links pointing outside the target, devices and other
   special files refuse the whole archive; extraction then also uses Python's ``data`` filter
   where it exists (3.12, and backported to 3.8.17+/3.11.4+).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lionbench.errors import DatasetError

CHUNK = 1 << 20
TIMEOUT_S = 60


@dataclass(frozen=True)
class Archive:
    """One file to fetch: where (in order of preference), its name, SHA-256 and size."""

    name: str
    urls: tuple[str, ...]
    sha256: str
    size: int | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(archive: Archive, folder: Path) -> Path:
    """``folder/archive.name``, downloaded (or already there) and checked against its SHA-256.

    Each URL is tried in turn; the file is written as ``.part`` and renamed only once its
    checksum is right, so a broken or tampered download never looks complete.
    """
    target = folder / archive.name
    if target.is_file() and sha256_of(target) == archive.sha256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    errors = []
    for url in archive.urls:
        try:
            digest, size = _download(url, part)
        except OSError as exc:  # unreachable, refused, HTTP error (URLError is an OSError)
            errors.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            part.unlink(missing_ok=True)
            continue
        if digest != archive.sha256 or (archive.size is not None and size != archive.size):
            part.unlink(missing_ok=True)
            raise DatasetError(f"'{archive.name}' from {url} does not match its published "
                               f"checksum (sha256 {digest[:16]}..., {size:,} bytes; expected "
                               f"{archive.sha256[:16]}...); deleted it, nothing was unpacked")
        os.replace(part, target)
        return target
    raise DatasetError(f"could not download '{archive.name}': {'; '.join(errors)}")


def _download(url: str, path: Path) -> tuple[str, int]:
    """Stream ``url`` into ``path``; its SHA-256 and size."""
    digest, size = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(path, "wb") as out:
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


def unsafe_members(tar: tarfile.TarFile, target: Path) -> list[str]:
    """Why each member that could write outside ``target`` (or is not a plain file, folder or
    link inside it) is refused; empty when the archive is safe."""
    root = target.resolve()
    problems = []
    for member in tar.getmembers():
        name = member.name
        pure = PurePosixPath(name)
        dest = (root / name).resolve()
        if pure.is_absolute() or ".." in pure.parts or not _inside(dest, root):
            problems.append(f"'{name}' points outside the target")
        elif member.issym() or member.islnk():
            base = dest.parent if member.issym() else root
            link = PurePosixPath(member.linkname)
            if link.is_absolute() or not _inside((base / member.linkname).resolve(), root):
                problems.append(f"link '{name}' -> '{member.linkname}' points outside the target")
        elif not (member.isfile() or member.isdir()):
            problems.append(f"'{name}' is a device or special file")
    return problems


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def safe_extract(archive: Path, target: Path) -> None:
    """Unpack the tar ``archive`` into ``target``; refuse it whole (nothing written) if any
    member could land outside ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            problems = unsafe_members(tar, target)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise DatasetError(f"refused to unpack '{archive.name}': {problems[0]}{more}; "
                                   "nothing was extracted")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(target, filter="data")
            else:  # pragma: no cover - Pythons without the backport: checked above
                tar.extractall(target)
    except (tarfile.TarError, OSError) as exc:
        raise DatasetError(f"cannot unpack '{archive}' ({type(exc).__name__}: {exc})") from None


def fetch_and_extract(archives: Sequence[Archive], target: Path) -> None:
    """Fetch and verify every archive into ``target``, then unpack each there."""
    paths = [fetch(a, target) for a in archives]
    for path in paths:
        safe_extract(path, target)


__all__ = ["Archive", "fetch", "fetch_and_extract", "safe_extract", "sha256_of",
           "unsafe_members"]
