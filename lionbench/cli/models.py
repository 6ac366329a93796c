"""Commands about models: ``list methods|backbones|datasets``, ``params`` and ``pretrain``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from lionbench.config import parse_set_options
from lionbench.errors import ConfigError, UnknownNameError
from lionbench.executors.progress import epoch_line
from lionbench.matrix import split_names
from lionbench.report.cells import format_value
from lionbench.text import printable

from .options import DataRootOption, DeviceOption, console, handle_errors, new_typer, say

list_app = new_typer(help="List registered methods, backbones or datasets.",
                       no_args_is_help=True)


@handle_errors
def params(
    methods: str = typer.Option(..., "--methods", "-m", help="Comma-separated methods."),
    backbones: str = typer.Option(..., "--backbones", "-b", help="Comma-separated."),
    num_classes: int = typer.Option(10, "--num-classes", help="Size of the new head."),
    set_: list[str] | None = typer.Option(None, "--set", help="Method key=value override."),
    fmt: str = typer.Option("rich", "--format", "-f", help="rich | json | csv."),
) -> None:
    """Count trainable parameters per method and backbone (built without weights or training)."""
    from lionbench.catalog import check_backbone, method_entry

    from .inputs import check_num_classes, check_settings_of

    if fmt not in ("rich", "json", "csv"):
        raise ConfigError(f"unknown format '{fmt}'; valid: rich, json, csv")
    check_num_classes(num_classes)
    method_names, backbone_names = split_names(methods), split_names(backbones)
    for name in method_names:
        method_entry(name)
    for name in backbone_names:
        check_backbone(name)
    overrides = parse_set_options(set_)
    check_settings_of(method_names, overrides)  # before torch loads
    from lionbench.train.params import count_method_parameters

    records = count_method_parameters(method_names, backbone_names, num_classes, overrides)
    print_params(records, fmt)


def print_params(records: list[dict[str, Any]], fmt: str) -> None:
    """Parameter counts as a rich table, JSON (one object per record) or CSV."""
    if fmt == "json":
        console.print_json(json.dumps(records, default=str))
        return
    if fmt == "csv":
        buf = io.StringIO()
        keys = ["backbone", "method", "num_classes", "trainable", "trainable_without_head",
                "head", "total"]
        writer = csv.DictWriter(buf, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
        console.print(buf.getvalue(), end="", markup=False, highlight=False)
        return
    t = Table("backbone", "method", "trainable", "without head", "head", "total",
              "by component")
    for r in records:
        parts = ", ".join(f"{k} {v:,}" for k, v in r["by_component"].items())
        t.add_row(r["backbone"], r["method"], f"{r['trainable']:,}",
                  f"{r['trainable_without_head']:,}", f"{r['head']:,}", f"{r['total']:,}", parts)
    console.print(t)


@handle_errors
def pretrain(
    backbone: str = typer.Option("test_resnet", "--backbone", "-b", help="timm name."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Source dataset, e.g. "
                                "folder:data/cifar10-jpeg."),
    output: Path = typer.Option(..., "--output", "-o", help="Checkpoint (.safetensors)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Training key=value."),
    seed: int = typer.Option(0, "--seed", help="Seed of the run."),
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Pretrain a backbone from scratch on a source dataset and save its weights."""
    from lionbench.catalog import check_backbone, check_dataset
    from lionbench.executors.gpus import check_device
    from lionbench.files import check_writable, writes_in_place
    from lionbench.matrix import parse_seeds

    from .inputs import check_settings_of

    check_backbone(backbone)
    check_dataset(dataset)
    parse_seeds(seed)
    check_device(device)
    overrides = parse_set_options(set_)
    check_settings_of(["fine-tuning"], overrides)
    check_writable(output, "checkpoint")
    if not writes_in_place(output):
        check_writable(output.with_suffix(".json"), "checkpoint record")
    from lionbench.train.pretrain import pretrain_backbone  # torch: inputs checked by now

    with console.status("pretraining ...") as st:
        def progress(_phase: str, done: int, total: int, info: dict | None = None) -> None:
            if console.is_terminal:
                st.update(f"pretraining: epoch {done}/{total}")
            else:  # a log file: one flushed line per epoch
                console.print(epoch_line(info or {"done": done, "total": total}),
                              highlight=False)
                console.file.flush()

        result = pretrain_backbone(backbone, dataset, output, train=overrides, seed=seed,
                                   data_root=data_root, device=device, progress=progress)
    say(f"saved {printable(result.output)} ({result.size_bytes / 1e6:.2f} MB): source test "
        f"top-1 {result.test_top1:.4f} (val {result.val_top1:.4f}, epoch {result.best_epoch}), "
        f"{result.seconds:.0f} s")


# --- list --------------------------------------------------------------------------------------
@list_app.command("methods")
@handle_errors
def list_methods_cmd(
    names: list[str] | None = typer.Argument(None, help="Methods to show (default: all)."),
    settings: bool = typer.Option(False, "--settings", "-s", help="Each setting with its "
                                  "default, what is valid and what it does (the keys of --set)."),
) -> None:
    """Registered methods; with --settings, every setting of each (and the training ones)."""
    from lionbench.report.catalog import load_method_catalog  # the registry as data: no torch

    catalog = load_method_catalog()
    chosen = sorted(catalog, key=lambda n: catalog[n].get("order", 0)) if not names \
        else split_names(names)
    for name in chosen:
        if name not in catalog:
            raise UnknownNameError("method", name, catalog)
    if not settings:
        t = Table("method", "paper name", "init", "source", "description")
        for name in chosen:
            entry = catalog[name]
            t.add_row(name, entry["paper_name"], "pretrained" if entry["pretrained"] else "random",
                      entry.get("source") or "-", entry.get("description", ""))
        console.print(t)
        return
    if not names:
        from lionbench.config import TrainConfig
        from lionbench.settings import schema_of

        print_settings("training (every method; --set KEY=VALUE or METHOD.KEY=VALUE)",
                       schema_of(TrainConfig))
    for name in chosen:
        entry = catalog[name]
        print_settings(f"{name} ({entry['paper_name']}): --set KEY=VALUE or {name}.KEY=VALUE",
                       entry["schema"])


def print_settings(title: str, schema: dict[str, Any]) -> None:
    """One table: each setting, its default, what is valid, its help; then the rules."""
    from lionbench.settings import Setting

    t = Table("setting", "default", "valid", "help", title=title, title_justify="left")
    if not schema["settings"]:
        t.add_row("(none)", "", "", "this method has no settings of its own")
    for entry in schema["settings"]:
        spec = Setting.from_dict(entry)
        t.add_row(entry["name"], format_value(entry.get("default")), spec.describe(), spec.help)
    console.print(t)
    for rule in schema.get("rules", []):
        for name, changes in rule["changes"].items():
            base = next(e for e in schema["settings"] if e["name"] == name)
            narrowed = Setting.from_dict({**base, **changes})
            console.print(f"  with {rule['field']}={format_value(rule['value'])}: {name} must be "
                          f"{narrowed.describe()}", highlight=False)


@list_app.command("backbones")
@handle_errors
def list_backbones_cmd() -> None:
    """Built-in backbones (any other timm model name works too)."""
    from lionbench.catalog import backbone_catalog  # the registry as data: no torch

    catalog = backbone_catalog()
    t = Table("backbone", "timm model", "input", "description",
              caption=f"Any timm.list_models() name is accepted as well "
                      f"({len(catalog['timm_models']):,} in timm {catalog['timm']}).")
    for spec in catalog["builtin"]:
        t.add_row(spec["name"], spec["timm_name"], str(spec["image_size"]), spec["description"])
    console.print(t)


@list_app.command("datasets")
@handle_errors
def list_datasets_cmd() -> None:
    """Registered datasets (see `lionbench datasets` for where they are)."""
    from lionbench.catalog import dataset_catalog  # the registry as data: no torch

    t = Table("dataset", "classes", "description", caption="Also: folder:PATH (train/ and "
              "test/ class folders), NAME-lt-irR (long-tailed), NAME-Kshot (few-shot).")
    for spec in dataset_catalog()["datasets"]:
        t.add_row(spec["name"], str(spec["classes"]), spec["description"])
    console.print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(list_app, name="list")
    app.command()(params)
    app.command()(pretrain)
