"""Tests of the dataset suite, the long-tail and K-shot derivations, the catalog and the pipeline.

Every dataset is a tiny tree of 8x8 images in its official layout, written to tmp_path: nothing
is downloaded and nothing outside the temporary directory is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from lionbench.data import get_dataset
from lionbench.data.catalog import DOWNLOADERS, describe_datasets, prepare_dataset
from lionbench.data.derive import longtail_counts, longtail_indices
from lionbench.data.pipeline import StreamedImages, decode_images, iterate_batches
from lionbench.data.suite import imagenet100_classes
from lionbench.errors import DatasetError

FLOWERS5 = ["daisy", "dandelion", "rose", "sunflower", "tulip"]


def image(path: Path, value: int = 0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value % 256, 40, 90)).save(path)
    return str(path)


def folder_tree(root: Path, classes: int = 3, train: int = 10, test: int = 2) -> Path:
    for c in range(classes):
        for i in range(train):
            image(root / "train" / f"c{c}" / f"{i}.png", c * 50 + i)
        for i in range(test):
            image(root / "test" / f"c{c}" / f"{i}.png", c * 50 + i)
    return root


def cell(items: list) -> np.ndarray:
    return np.array(items, dtype=object).reshape(-1, 1)


def paths_of(*sets) -> list[set[str]]:
    return [set(s.paths) for s in sets]


# --- each loader reads its documented layout -------------------------------------------------

def test_imagenet100_reads_the_shipped_classes_from_an_imagenet_tree(tmp_path):
    wnids = imagenet100_classes()
    assert len(wnids) == len(set(wnids)) == 100
    for split in ("train", "val"):
        for w in wnids + ["n99999999"]:  # a class outside the 100 is ignored
            image(tmp_path / "imagenet" / split / w / f"{w}_0.JPEG")
    spec = get_dataset("imagenet100")
    train, test = spec.load(tmp_path, "train"), spec.load(tmp_path, "test")
    assert len(train) == len(test) == 100 and train.classes == sorted(wnids)
    assert all("/val/" in p for p in test.paths)
    (tmp_path / "imagenet" / "val" / wnids[0] / f"{wnids[0]}_0.JPEG").unlink()
    (tmp_path / "imagenet" / "val" / wnids[0]).rmdir()
    with pytest.raises(DatasetError, match=f"lacks 1 of the 100.*{wnids[0]}.*expected layout"):
        spec.load(tmp_path, "test")


def test_flowers102_reads_setid_and_imagelabels(tmp_path):
    home = tmp_path / "flowers-102"
    for i in range(1, 7):
        image(home / "jpg" / f"image_{i:05d}.jpg", i)
    savemat(home / "imagelabels.mat", {"labels": np.array([[1, 2, 102, 1, 2, 102]])})
    savemat(home / "setid.mat", {"trnid": np.array([[1, 2]]), "valid": np.array([[3, 4]]),
                                 "tstid": np.array([[5, 6]])})
    spec = get_dataset("flowers102")
    sets = {s: spec.load(tmp_path, s) for s in ("train", "val", "test")}
    assert sets["train"].labels.tolist() == [0, 1] and sets["val"].labels.tolist() == [101, 0]
    assert len(sets["test"].classes) == 102 and sets["test"].paths[0].endswith("image_00005.jpg")
    train, val = spec.load_train_val(tmp_path, seed=0, val_fraction=0.1)
    assert paths_of(val) == paths_of(sets["val"])  # its own val split, not a hold-out


@pytest.mark.parametrize("folder", ["flowers5", "flowers"])
def test_flowers5_splits_a_class_folder_tree_80_20_fixed(tmp_path, folder):
    for c, name in enumerate(FLOWERS5):
        for i in range(5):
            image(tmp_path / folder / name / f"{i}.jpg", c * 10 + i)
    spec = get_dataset("flowers5")
    train, test = spec.load(tmp_path, "train"), spec.load(tmp_path, "test")
    assert train.classes == FLOWERS5 and len(train) == 20 and len(test) == 5
    assert not set(train.paths) & set(test.paths)
    assert spec.load(tmp_path, "test").paths == test.paths  # fixed, whatever the run


def test_dogs_reads_the_official_lists(tmp_path):
    home = tmp_path / "stanford_dogs"
    breeds = [f"n02{i:06d}-breed{i}" for i in range(120)]
    for b in breeds:
        (home / "Images" / b).mkdir(parents=True)
    files = [f"{breeds[0]}/a.jpg", f"{breeds[119]}/b.jpg", f"{breeds[5]}/c.jpg"]
    for f in files:
        image(home / "Images" / f)
    savemat(home / "train_list.mat", {"file_list": cell(files[:2]), "labels": cell([1, 120])})
    savemat(home / "test_list.mat", {"file_list": cell(files[2:]), "labels": cell([6])})
    spec = get_dataset("dogs")
    train, test = spec.load(tmp_path, "train"), spec.load(tmp_path, "test")
    assert train.labels.tolist() == [0, 119] and test.labels.tolist() == [5]
    assert train.classes == breeds and test.paths[0].endswith("c.jpg")


def test_cars_reads_the_devkit_layout(tmp_path):
    home = tmp_path / "stanford_cars"
    annos = np.dtype([("bbox_x1", "O"), ("class", "O"), ("fname", "O")])
    train = np.array([(0, 1, "00001.jpg"), (0, 196, "00002.jpg")], dtype=annos)
    test = np.array([(0, 3, "00001.jpg")], dtype=annos)
    (home / "devkit").mkdir(parents=True)
    savemat(home / "devkit" / "cars_meta.mat",
            {"class_names": np.array([f"Car {i}" for i in range(196)], dtype=object)})
    savemat(home / "devkit" / "cars_train_annos.mat", {"annotations": train})
    savemat(home / "cars_test_annos_withlabels.mat", {"annotations": test})
    for f in ("00001.jpg", "00002.jpg"):
        image(home / "cars_train" / f)
    image(home / "cars_test" / "00001.jpg")
    spec = get_dataset("cars")
    assert spec.load(tmp_path, "train").labels.tolist() == [0, 195]
    loaded = spec.load(tmp_path, "test")
    assert loaded.labels.tolist() == [2] and loaded.classes[2] == "Car 2"
    assert "local only" in spec.description and "no working download" in spec.source


def test_clothing1m_reads_its_annotation_lists(tmp_path):
    home = tmp_path / "clothing1m"
    keys = {s: [f"images/{s[0]}/{i:02d}/{s}{i}.jpg" for i in range(3)]
            for s in ("noisy", "cleantr", "val", "test")}
    for k in sum(keys.values(), []):
        image(home / k)
    (home / "category_names_eng.txt").write_text("\n".join(f"cat{i}" for i in range(14)))
    (home / "noisy_label_kv.txt").write_text("".join(f"{k} 13\n" for k in keys["noisy"]))
    clean = keys["cleantr"] + keys["val"] + keys["test"]
    (home / "clean_label_kv.txt").write_text("".join(f"{k} {i}\n" for i, k in enumerate(clean)))
    for name, ks in (("noisy_train", "noisy"), ("clean_train", "cleantr"), ("clean_val", "val"),
                     ("clean_test", "test")):
        (home / f"{name}_key_list.txt").write_text("\n".join(keys[ks]))
    noisy, clean_spec = get_dataset("clothing1m"), get_dataset("clothing1m-clean")
    assert noisy.load(tmp_path, "train").labels.tolist() == [13, 13, 13]
    assert clean_spec.load(tmp_path, "train").labels.tolist() == [0, 1, 2]
    assert noisy.load(tmp_path, "val").labels.tolist() == [3, 4, 5]
    test = noisy.load(tmp_path, "test")
    assert test.labels.tolist() == [6, 7, 8] and test.classes[0] == "cat0"
    train, val = noisy.load_train_val(tmp_path, 0, 0.1)
    assert len(train) == 3 and len(val) == 3  # its clean val split


def test_pets_reads_trainval_and_test(tmp_path):
    home = tmp_path / "oxford-iiit-pet"
    rows = {"trainval": [], "test": []}
    for c in range(37):
        breed = f"Breed_{c}" if c < 12 else f"breed_name_{c}"
        for split, i in (("trainval", 1), ("trainval", 2), ("test", 3)):
            image(home / "images" / f"{breed}_{i}.jpg")
            rows[split].append(f"{breed}_{i} {c + 1} 1 1")
    (home / "annotations").mkdir()
    for split, lines in rows.items():
        (home / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    spec = get_dataset("pets")
    train, test = spec.load(tmp_path, "train"), spec.load(tmp_path, "test")
    assert len(train) == 74 and len(test) == 37 and train.classes == test.classes
    assert train.classes[20] == "Breed Name 20"


def test_food101_reads_its_meta_json(tmp_path):
    home = tmp_path / "food-101"
    classes = sorted(f"dish_{i:03d}" for i in range(101))
    meta = {"train": {c: [f"{c}/1", f"{c}/2"] for c in classes},
            "test": {c: [f"{c}/3"] for c in classes}}
    for split in meta:
        for rels in meta[split].values():
            for rel in rels:
                image(home / "images" / f"{rel}.jpg")
    (home / "meta").mkdir()
    for split, lists in meta.items():
        (home / "meta" / f"{split}.json").write_text(json.dumps(lists))
    spec = get_dataset("food101")
    train, test = spec.load(tmp_path, "train"), spec.load(tmp_path, "test")
    assert len(train) == 202 and len(test) == 101 and train.classes == classes
    assert train.labels[-1] == 100 and train.paths[-1].endswith("dish_100/2.jpg")


def test_digits_and_folder(tmp_path):
    assert len(get_dataset("digits").load(None, "train")) == 1437
    spec = get_dataset(f"folder:{folder_tree(tmp_path / 'my-data')}")
    assert spec.num_classes == 3 and len(spec.load(None, "test")) == 6


# --- long tail -------------------------------------------------------------------------------

@pytest.mark.parametrize("classes,per_class,ratio,size", [
    (10, 5000, 100, 12406), (10, 5000, 50, 13996), (100, 500, 100, 10847), (100, 500, 50, 12608)])
def test_longtail_train_sizes_are_the_known_ones(classes, per_class, ratio, size):
    labels = torch.arange(classes).repeat_interleave(per_class)
    kept = longtail_indices(labels, classes, ratio)
    assert len(kept) == size == sum(longtail_counts(per_class, classes, ratio))
    counts = torch.bincount(labels[kept], minlength=classes)
    assert counts[0] == per_class and counts[-1] == per_class // ratio
    assert torch.equal(kept, longtail_indices(labels, classes, ratio))  # fixed, no seed


def test_longtail_of_a_folder_with_dashes_keeps_test_balanced(tmp_path):
    root = folder_tree(tmp_path / "cifar-jpeg-like", classes=3, train=10)
    base, spec = get_dataset(f"folder:{root}"), get_dataset(f"folder:{root}-lt-ir10")
    assert spec.name.endswith("-lt-ir10") and spec.num_classes == 3
    train = spec.load(None, "train")
    assert torch.bincount(train.labels).tolist() == [10, 3, 1]
    assert spec.load(None, "test").paths == base.load(None, "test").paths
    assert spec.load(None, "train").paths == train.paths  # the same subset every time
    fit, val = spec.load_train_val(None, seed=3, val_fraction=0.3)
    assert not set(fit.paths) & set(val.paths) and set(fit.paths) | set(val.paths) == set(
        train.paths)


def test_a_folder_named_like_a_suffix_is_taken_literally(tmp_path):
    root = folder_tree(tmp_path / "pets-8shot", classes=2, train=3)
    spec = get_dataset(f"folder:{root}")
    assert spec.train_val is None and len(spec.load(None, "train")) == 6
    chained = get_dataset(f"folder:{tmp_path / 'pets-8shot'}-lt-ir2-2shot")
    assert chained.train_val is not None


# --- K-shot ----------------------------------------------------------------------------------

def test_kshot_picks_k_per_class_by_seed_and_validates_on_the_rest(tmp_path):
    root = folder_tree(tmp_path / "tree", classes=3, train=10)
    spec = get_dataset(f"folder:{root}-4shot")
    train, val = spec.load_train_val(None, seed=0, val_fraction=0.1)
    test = spec.load(None, "test")
    assert torch.bincount(train.labels).tolist() == [4, 4, 4]
    assert torch.bincount(val.labels).tolist() == [4, 4, 4]
    tr, va, te = paths_of(train, val, test)
    assert not (tr & va or tr & te or va & te)
    assert va <= set(get_dataset(f"folder:{root}").load(None, "train").paths)  # never test
    again, _ = spec.load_train_val(None, seed=0, val_fraction=0.1)
    other, _ = spec.load_train_val(None, seed=1, val_fraction=0.1)
    assert again.paths == train.paths and other.paths != train.paths
    with pytest.raises(DatasetError, match="fewer than K=11"):
        get_dataset(f"folder:{root}-11shot").load_train_val(None, 0, 0.1)


def test_default_holdout_never_overlaps(tmp_path):
    spec = get_dataset(f"folder:{folder_tree(tmp_path / 'tree')}")
    train, val = spec.load_train_val(None, seed=0, val_fraction=0.2)
    tr, va, te = paths_of(train, val, spec.load(None, "test"))
    assert len(va) == 6 and not (tr & va or tr & te or va & te)


# --- errors ----------------------------------------------------------------------------------

def test_missing_root_names_where_and_the_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"not found.*oxford-iiit-pet.*expected layout"):
        get_dataset("pets").load(tmp_path, "train")
    with pytest.raises(DatasetError, match=r"no folder .*nowhere.*expected layout"):
        get_dataset(f"folder:{tmp_path / 'nowhere'}")


def test_wrong_layout_and_class_count_are_clear(tmp_path):
    home = tmp_path / "food-101"
    (home / "images").mkdir(parents=True)
    (home / "meta").mkdir()
    (home / "meta" / "train.json").write_text(json.dumps({"a": ["a/1"]}))
    (home / "meta" / "test.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"missing, e.g. '.*a/1.jpg'.*expected layout"):
        get_dataset("food101").load(tmp_path, "train")
    image(home / "images" / "a" / "1.jpg")
    with pytest.raises(DatasetError, match=r"1 classes in its train split, expected 101"):
        get_dataset("food101").load(tmp_path, "train")
    pets = tmp_path / "oxford-iiit-pet"
    (pets / "images").mkdir(parents=True)
    (pets / "annotations").mkdir()
    for split in ("trainval", "test"):
        (pets / "annotations" / f"{split}.txt").write_text("Abyssinian_1\n")  # no label
    with pytest.raises(DatasetError, match=r"malformed metadata.*expected layout: .*trainval"):
        get_dataset("pets").load(tmp_path, "train")


def test_unreadable_image_names_its_path(tmp_path):
    root = folder_tree(tmp_path / "tree", classes=2, train=3)
    bad = root / "train" / "c1" / "bad.png"
    bad.write_bytes(b"not an image")
    data = get_dataset(f"folder:{root}").load(None, "train")
    for workers in (0, 1):
        with pytest.raises(DatasetError, match=f"cannot read image '{bad}'"):
            decode_images(data, 8, workers=workers)


def test_a_corrupt_image_fails_only_its_run_with_the_reason(tmp_path):
    from lionbench.config import RunConfig, TrainConfig
    from lionbench.executors.execute import failure_reason
    from lionbench.train import train_run

    good = folder_tree(tmp_path / "good", classes=2, train=4)
    bad = folder_tree(tmp_path / "bad", classes=2, train=4)
    (bad / "train" / "c0" / "0.png").write_bytes(b"\x89PNG broken")
    pipeline = {"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "train_augment": "none"}

    def config(root: Path) -> RunConfig:
        return RunConfig(method="head-tuning", backbone="test_resnet", dataset=f"folder:{root}",
                         weights="none", weights_id="none", pipeline=pipeline,
                         train=TrainConfig(epochs=1, batch_size=4, val_fraction=0.25))

    with pytest.raises(DatasetError) as failed:
        train_run(config(bad), device=torch.device("cpu"))
    assert f"cannot read image '{bad / 'train' / 'c0' / '0.png'}'" in failure_reason(failed.value)
    assert 0 <= train_run(config(good), device=torch.device("cpu")).test_top1 <= 1


# --- pipeline --------------------------------------------------------------------------------

def test_large_sets_stream_the_same_images(tmp_path, monkeypatch):
    data = get_dataset(f"folder:{folder_tree(tmp_path / 'tree')}").load(None, "train")
    cached = decode_images(data, 8)
    assert cached.dtype == torch.uint8 and cached.shape == (30, 3, 8, 8)
    monkeypatch.setenv("LIONBENCH_CACHE_GB", "0")
    streamed = decode_images(data, 8)
    assert isinstance(streamed, StreamedImages)
    gen = torch.Generator().manual_seed(0)
    for xb, yb in iterate_batches(streamed, data.labels, 7, shuffle=True, gen=gen):
        idx = [data.labels.tolist().index(y) for y in yb.tolist()]  # labels line up
        assert xb.shape[1:] == (3, 8, 8) and len(idx) == len(yb)
    order = torch.tensor([5, 0, 29])
    assert torch.equal(streamed[order], cached[order])
    monkeypatch.delenv("LIONBENCH_CACHE_GB")
    subset = data.subset(order)  # a hold-out or K-shot subset reuses the decoded images
    assert torch.equal(decode_images(subset, 8), cached[order])


# --- catalog ---------------------------------------------------------------------------------

def test_describe_lists_everything_with_presence(tmp_path):
    folder_tree(tmp_path / "flowers5", classes=5, train=1, test=1)
    rows = {r["name"]: r for r in describe_datasets(tmp_path)}
    expected = {"digits", "cifar10", "cifar100", "imagenet100", "flowers102", "flowers5", "dogs",
                "cars", "clothing1m", "pets", "food101", "cifar10-lt-ir100", "cifar10-lt-ir50",
                "cifar100-lt-ir100", "cifar100-lt-ir50", "pets-8shot", "folder:PATH"}
    assert expected <= set(rows)
    assert rows["flowers5"]["present"] and rows["digits"]["present"]
    assert not rows["pets"]["present"] and not rows["pets-8shot"]["present"]
    assert rows["cifar10-lt-ir100"]["splits"]["train"] == 12406
    assert rows["pets"]["where"] == str(tmp_path / "oxford-iiit-pet")
    assert all(r["layout"] and r["source"] for r in rows.values())


def test_prepare_refuses_or_explains(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"cannot be downloaded.*stanford_cars.*--data-root"):
        prepare_dataset("cars-8shot", tmp_path)

    def offline(root: Path) -> None:
        raise OSError("network unreachable")

    monkeypatch.setitem(DOWNLOADERS, "pets", offline)
    with pytest.raises(DatasetError, match=r"network unreachable.*oxford-iiit-pet.*--data-root"):
        prepare_dataset("pets", tmp_path)
    folder_tree(tmp_path / "flowers5", classes=5, train=1, test=1)
    assert prepare_dataset("flowers5", tmp_path) == tmp_path / "flowers5"
    assert prepare_dataset("digits", tmp_path) is None


# --- selection guards: what model selection reads is checked before anything trains ----------

@pytest.mark.parametrize("name", ["val", "validation"])
def test_folder_reads_val_or_validation_and_says_which(tmp_path, name):
    root = folder_tree(tmp_path / "tree", classes=2, train=5)
    for c in range(2):
        for i in range(3):
            image(root / name / f"c{c}" / f"v{i}.png", 200 + i)
    spec = get_dataset(f"folder:{root}")
    train, val = spec.load_train_val(None, seed=0, val_fraction=0.2)
    assert len(train) == 10 and len(val) == 6  # all of train trains; val is the folder
    assert all(f"/{name}/" in p for p in val.paths)
    assert f"{name}/" in spec.description and f"{name}/" in spec.validation_source(0.2)
    lt = get_dataset(f"folder:{root}-lt-ir2")  # derived sets keep the folder's own split
    assert lt.load_train_val(None, 0, 0.2)[1].paths == val.paths


def test_folder_without_a_validation_folder_holds_out_and_says_so(tmp_path):
    spec = get_dataset(f"folder:{folder_tree(tmp_path / 'tree')}")
    assert "hold-out" in spec.description and "hold-out" in spec.validation_source(0.1)
    (tmp_path / "tree" / "val").mkdir()
    (tmp_path / "tree" / "validation").mkdir()
    with pytest.raises(DatasetError, match="both val/ and validation/"):
        get_dataset(f"folder:{tmp_path / 'tree'}")


def test_dot_folders_and_dot_files_are_ignored(tmp_path):
    root = folder_tree(tmp_path / "tree", classes=2, train=3)
    for split in ("train", "test"):
        image(root / split / ".ipynb_checkpoints" / "x.png")  # a notebook's checkpoint folder
        image(root / split / "c0" / "._0.png")  # macOS AppleDouble file with an image suffix
    spec = get_dataset(f"folder:{root}")
    assert spec.num_classes == 2
    train = spec.load(None, "train")
    assert train.classes == ["c0", "c1"] and len(train) == 6
    assert not any("/." in p for p in train.paths)


def test_empty_class_folder_is_one_line_naming_it(tmp_path):
    root = folder_tree(tmp_path / "tree", classes=2, train=3)
    (root / "train" / "empty").mkdir()
    (root / "test" / "empty").mkdir()
    with pytest.raises(DatasetError, match=f"class folder '{root / 'train' / 'empty'}' holds no "
                                           "images"):
        get_dataset(f"folder:{root}")  # at planning, before anything runs
    image(root / "train" / "empty" / "0.png")  # train fixed, test still empty
    with pytest.raises(DatasetError, match=f"'{root / 'test' / 'empty'}' holds no images"):
        get_dataset(f"folder:{root}").load(None, "test")


def test_fewer_than_two_classes_is_one_line_naming_the_folder(tmp_path):
    root = folder_tree(tmp_path / "tree", classes=1, train=3)
    with pytest.raises(DatasetError, match=f"'{root / 'train'}' holds one class folder \\(c0\\)"):
        get_dataset(f"folder:{root}")


def test_empty_validation_is_an_error_before_training(tmp_path, monkeypatch):
    """One image per class leaves the hold-out empty: refused before any model is built."""
    from lionbench.train import loop
    from lionbench.train.configs import create_run_config

    root = folder_tree(tmp_path / "tree", classes=2, train=1)
    config = create_run_config("head-tuning", "test_resnet", f"folder:{root}", weights="none",
                               overrides={"epochs": 1, "image_size": 16})

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(loop, "create_backbone", no_model)
    with pytest.raises(DatasetError, match=r"validation set \(a seeded, stratified 0.1 hold-out "
                                           r"of the train split\) is empty"):
        loop.train_run(config)
    kshot = create_run_config("head-tuning", "test_resnet", f"folder:{root}-1shot",
                              weights="none", overrides={"epochs": 1, "image_size": 16})
    with pytest.raises(DatasetError, match="validation set .* is empty"):
        loop.train_run(kshot)  # K-shot with exactly K images per class: nothing to validate on
