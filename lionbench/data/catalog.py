"""What ``lionbench datasets`` shows and what ``lionbench datasets prepare NAME`` does.

The listing answers, per dataset: how many classes, how large each split is, where lionbench
looks under --data-root, whether it is there, and how to get it (source and expected layout).
Preparing downloads only where the source allows it (torchvision's downloaders, the Stanford
Dogs archives); ImageNet, Clothing1M, Stanford Cars and the Kaggle flowers need a person.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lionbench.errors import DatasetError

from . import get_dataset, list_datasets
from .derive import base_name
from .download import Archive, fetch_and_extract
from .suite import HOMES
from .vtab import VTAB_HOMES
from .vtab import layout as vtab_layout

# The derived sets of the paper's Table 3, listed after the registered ones.
PAPER_DERIVED = ["cifar10-lt-ir100", "cifar10-lt-ir50", "cifar100-lt-ir100", "cifar100-lt-ir50",
                 "pets-8shot", "food101-8shot", "cars-8shot", "flowers102-8shot"]
BUILTIN_HOMES = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
DOGS_URL = "vision.stanford.edu/aditya86/ImageNetDogs/"
# SHA-256 and sizes as published in tensorflow/datasets (url_checksums/stanford_dogs.txt);
# https first, http only as a fallback: the checksum is verified before anything is unpacked
DOGS_ARCHIVES = (
    Archive("images.tar", (f"https://{DOGS_URL}images.tar", f"http://{DOGS_URL}images.tar"),
            "a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58", 793_579_520),
    Archive("lists.tar", (f"https://{DOGS_URL}lists.tar", f"http://{DOGS_URL}lists.tar"),
            "34b47cacd9a98b5d150e084f24d29391c084c55272295ec65c85651bc35f4d6c", 481_280),
)


def describe_datasets(root: Path | None = None) -> list[dict[str, Any]]:
    """One row per dataset (registered ones, then the paper's derived sets, then folder:PATH).

    Keys: name, group, description, classes, splits (dict of known sizes; a missing key means
    unknown), where (the folder looked in), present (bool; None for folder:PATH), downloadable,
    source, layout.
    """
    rows = [_row(name, root) for name in list_datasets() + PAPER_DERIVED]
    rows.append({"name": "vtab:PATH", "group": "user", "classes": None,
                 "splits": {"train": 800, "val": 200},
                 "description": "one VTAB-1k task folder (VPT/NOAH layout); vtab-1k: all 19",
                 "where": "PATH", "present": None, "downloadable": False,
                 "source": get_dataset("vtab-cifar").source, "layout": vtab_layout("PATH")})
    rows.append({"name": "folder:PATH", "group": "user", "classes": None, "splits": {},
                 "description": "your own tree; any suffix below applies (-lt-irR, -Kshot)",
                 "where": "PATH", "present": None, "downloadable": False,
                 "source": "your own images",
                 "layout": "PATH/train/<class>/<image> and PATH/test/<class>/<image> "
                           "(optional val/ or validation/: model selection reads it)"})
    return rows


def _row(name: str, root: Path | None) -> dict[str, Any]:
    spec = get_dataset(name)
    return {"name": name, "group": spec.group, "description": spec.description,
            "classes": spec.num_classes, "splits": dict(spec.splits), "where": where(name, root),
            "present": spec.is_present(root), "downloadable": base_name(name) in DOWNLOADERS,
            "source": spec.source, "layout": spec.layout}


def where(name: str, root: Path | None) -> str:
    """Where ``name`` is read from: the folder found, else the first place looked."""
    spec, base = get_dataset(name), base_name(name)
    if spec.locate is None:
        return "(bundled)"
    found = spec.locate(root)
    if found is not None:
        return str(found)
    if base.startswith("folder:"):
        return base[len("folder:"):]
    homes = HOMES.get(base) or VTAB_HOMES.get(base) or (
        (BUILTIN_HOMES[base],) if base in BUILTIN_HOMES else ())
    return " or ".join(str(Path(root or "data") / h) for h in homes) or spec.layout


def prepare_dataset(name: str, root: Path | None = None) -> Path | None:
    """Download ``name`` (the base of a derived name) under ``root`` where its source allows.

    Returns the dataset's folder (None for bundled sets). Already present: nothing is fetched.
    A source without a download, or a failed download (offline), is a DatasetError naming
    --data-root, the source and the expected layout.
    """
    base = base_name(name)
    spec = get_dataset(base)
    root = Path(root or "data")
    if spec.locate is None:
        return None
    found = spec.locate(root)
    if found is not None:
        return found
    if base not in DOWNLOADERS:
        raise DatasetError(f"'{base}' cannot be downloaded automatically; get it from "
                           f"{spec.source} and lay it out as {spec.layout} under --data-root "
                           f"{root}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        DOWNLOADERS[base](root)
    except DatasetError:  # a checksum or an archive refused: already one clear line
        raise
    except Exception as exc:
        raise DatasetError(f"could not download '{base}' into '{root}' ({type(exc).__name__}: "
                           f"{exc}); offline, get it from {spec.source} and lay it out as "
                           f"{spec.layout} under --data-root {root}") from None
    found = spec.locate(root)
    if found is None:
        raise DatasetError(f"downloaded '{base}' but its layout is incomplete under '{root}'; "
                           f"expected layout: {spec.layout}")
    return found


def _torchvision(cls_name: str, **kwargs: Any) -> Callable[[Path], None]:
    def download(root: Path) -> None:
        import torchvision.datasets as tvd

        getattr(tvd, cls_name)(str(root), download=True, **kwargs)
    return download


def _dogs(root: Path) -> None:
    fetch_and_extract(DOGS_ARCHIVES, root / "stanford_dogs")


DOWNLOADERS: dict[str, Callable[[Path], None]] = {
    "cifar10": _torchvision("CIFAR10"), "cifar100": _torchvision("CIFAR100"),
    "flowers102": _torchvision("Flowers102"), "pets": _torchvision("OxfordIIITPet"),
    "food101": _torchvision("Food101"), "dogs": _dogs,
}
