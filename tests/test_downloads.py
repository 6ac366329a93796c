"""Dataset downloads: a checksum before anything is unpacked, and no path outside the target.

Every archive here is built by the test and fetched over ``file://``: no network.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from lionbench.data import catalog
from lionbench.data.download import Archive, fetch, safe_extract
from lionbench.errors import DatasetError


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, hard: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    tar.addfile(info)


def make_tar(path: Path, build) -> Path:  # noqa: ANN001
    with tarfile.open(path, "w") as tar:
        build(tar)
    return path


def archive_of(path: Path) -> Archive:
    data = path.read_bytes()
    return Archive(path.name, (path.resolve().as_uri(),), hashlib.sha256(data).hexdigest(),
                   len(data))


def test_a_good_archive_is_fetched_checked_and_unpacked(tmp_path):
    src = make_tar(tmp_path / "good.tar", lambda t: (add_file(t, "Images/a/1.jpg", b"jpeg"),
                                                    add_link(t, "Images/b", "a")))
    target = tmp_path / "out"
    path = fetch(archive_of(src), target)
    assert path == target / "good.tar" and path.read_bytes() == src.read_bytes()
    safe_extract(path, target)
    assert (target / "Images/a/1.jpg").read_bytes() == b"jpeg"
    assert (target / "Images/b").is_symlink()  # a link inside the target is fine
    assert fetch(archive_of(src), target) == path  # present and right: not fetched again


def test_a_wrong_checksum_deletes_the_download_and_unpacks_nothing(tmp_path):
    src = make_tar(tmp_path / "data.tar", lambda t: add_file(t, "x.txt", b"x"))
    wrong = Archive("data.tar", (src.resolve().as_uri(),), "0" * 64)
    target = tmp_path / "out"
    with pytest.raises(DatasetError, match="does not match its published checksum"):
        fetch(wrong, target)
    assert list(target.iterdir()) == []  # neither the archive nor a .part file is left
    with pytest.raises(DatasetError, match="checksum"):  # right digest, wrong size
        fetch(Archive("data.tar", (src.resolve().as_uri(),), archive_of(src).sha256, 1), target)
    assert list(target.iterdir()) == []


def test_unreachable_sources_are_tried_in_order_then_named(tmp_path):
    src = make_tar(tmp_path / "data.tar", lambda t: add_file(t, "x.txt", b"x"))
    good = archive_of(src)
    missing = (tmp_path / "nowhere.tar").resolve().as_uri()
    fallback = Archive(good.name, (missing, *good.urls), good.sha256, good.size)
    assert fetch(fallback, tmp_path / "out").read_bytes() == src.read_bytes()
    with pytest.raises(DatasetError, match="could not download 'data.tar'.*nowhere.tar"):
        fetch(Archive("data.tar", (missing,), good.sha256), tmp_path / "out2")


@pytest.mark.parametrize(("name", "build", "why"), [
    ("dotdot", lambda t: (add_file(t, "ok.txt", b"ok"), add_file(t, "../escape.txt", b"x")),
     "'../escape.txt' points outside"),
    ("nested-dotdot", lambda t: add_file(t, "Images/../../escape.txt", b"x"), "outside"),
    ("absolute", lambda t: add_file(t, "/tmp/lionbench-absolute-escape.txt", b"x"), "outside"),
    ("symlink-out", lambda t: (add_link(t, "Images/link", "../../.."),
                               add_file(t, "Images/link/escape.txt", b"x")),
     "link 'Images/link' -> '../../..' points outside"),
    ("symlink-absolute", lambda t: add_link(t, "etc", "/etc"), "link 'etc' -> '/etc'"),
    ("hardlink-out", lambda t: add_link(t, "passwd", "../outside.txt", hard=True),
     "points outside"),
    ("device", lambda t: t.addfile(_device()), "device or special file"),
])
def test_archives_reaching_outside_the_target_are_refused_whole(tmp_path, name, build, why):
    (tmp_path / "outside.txt").write_text("keep me")
    src = make_tar(tmp_path / f"{name}.tar", build)
    target = tmp_path / "deep" / "target"
    files = lambda: sorted(p for p in tmp_path.rglob("*") if not p.is_dir())  # noqa: E731
    before = files()
    with pytest.raises(DatasetError, match=why):
        safe_extract(src, target)
    assert files() == before  # nothing written, inside the target or out of it
    assert (tmp_path / "outside.txt").read_text() == "keep me"
    assert not Path("/tmp/lionbench-absolute-escape.txt").exists()


def _device() -> tarfile.TarInfo:
    info = tarfile.TarInfo("dev/null-ish")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    return info


def dogs_archives(tmp_path: Path) -> tuple[Archive, Archive]:
    """Tiny stand-ins for Stanford Dogs' images.tar and lists.tar, laid out like the real ones."""
    tmp_path.mkdir(exist_ok=True)

    def images(t: tarfile.TarFile) -> None:
        for breed in ("n02085620-Chihuahua", "n02085782-Japanese_spaniel"):
            add_file(t, f"Images/{breed}/{breed[:9]}_1.jpg", b"not decoded by this test")

    def lists(t: tarfile.TarFile) -> None:
        for split in ("train", "test"):
            buf = io.BytesIO()
            files = np.array([["n02085620-Chihuahua/n02085620_1.jpg"],
                              ["n02085782-Japanese_spaniel/n02085782_1.jpg"]], dtype=object)
            savemat(buf, {"file_list": files, "labels": np.array([[1], [2]])})
            add_file(t, f"{split}_list.mat", buf.getvalue())

    return (archive_of(make_tar(tmp_path / "images.tar", images)),
            archive_of(make_tar(tmp_path / "lists.tar", lists)))


def test_prepare_dogs_fetches_checks_and_unpacks_into_its_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "DOGS_ARCHIVES", dogs_archives(tmp_path / "src"))
    home = catalog.prepare_dataset("dogs", tmp_path / "data")
    assert home == tmp_path / "data" / "stanford_dogs"
    assert (home / "Images" / "n02085620-Chihuahua").is_dir()
    assert (home / "train_list.mat").is_file() and (home / "test_list.mat").is_file()


def test_prepare_dogs_refuses_a_tampered_archive(tmp_path, monkeypatch):
    images, lists = dogs_archives(tmp_path / "src")
    tampered = Archive(images.name, images.urls, hashlib.sha256(b"the original").hexdigest(),
                       images.size)
    monkeypatch.setattr(catalog, "DOGS_ARCHIVES", (tampered, lists))
    with pytest.raises(DatasetError, match="does not match its published checksum"):
        catalog.prepare_dataset("dogs", tmp_path / "data")
    assert not (tmp_path / "data" / "stanford_dogs" / "Images").exists()


def test_the_real_dogs_sources_prefer_https_and_carry_checksums():
    for archive in catalog.DOGS_ARCHIVES:
        assert archive.urls[0].startswith("https://")
        assert len(archive.sha256) == 64 and archive.size
