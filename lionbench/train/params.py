"""Trainable-parameter counts per method and backbone, without weights or training.

Behind ``lionbench params``: papers compare PETL methods by their trainable parameters, often
mixing counts with and without the classifier, so every record carries both (and the head alone).
Each backbone is built once with random init (``weights="none"``: no download) and each method
wraps its own deep copy, so one method's changes (hooks, frozen flags) never leak into another's
count and the backbone is not rebuilt per method.

Counts depend on shapes only, so models are built on PyTorch's ``meta`` device (no memory, no
initialisation: ViT-B in under a second instead of several on a 2-core CPU). A method whose
construction needs real values (an init that calls ``.item()``) falls back to a CPU build; both
give the same numbers.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lionbench.backbones import create_backbone
from lionbench.config import check_overrides, split_overrides
from lionbench.methods import PetlModel, count_parameters, create_model, get_method


def count_method_parameters(methods: list[str], backbones: list[str], num_classes: int,
                            overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One record per (backbone, method): trainable parameters with and without the head.

    ``overrides`` are ``--set`` values: ``key`` applies to every method that has the setting,
    ``method.key`` to that method only; a key no listed method knows is a ConfigError (training
    keys are accepted and ignored: they change no count). Records come backbone-major, in the
    order given, with keys ``method, backbone, num_classes, trainable, trainable_without_head,
    head, total, by_component, config``.
    """
    overrides = dict(overrides or {})
    specs = {name: get_method(name) for name in methods}  # unknown names fail before building
    check_overrides(overrides, {n: s.config_class.field_names() for n, s in specs.items()})
    configs = {}
    for name, spec in specs.items():
        _, values = split_overrides(overrides, name, spec.config_class.field_names())
        configs[name] = values
        spec.make_config(values)  # invalid values fail before building
    records: list[dict[str, Any]] = []
    for backbone_name in backbones:
        with torch.device("meta"):
            meta = create_backbone(backbone_name, num_classes, weights="none")
        cpu: nn.Module | None = None
        for name in methods:
            model: PetlModel | None = None
            try:
                with torch.device("meta"):
                    model = create_model(name, copy.deepcopy(meta), configs[name])
            except (RuntimeError, NotImplementedError):  # needs real values: build on CPU
                if cpu is None:
                    cpu = create_backbone(backbone_name, num_classes, weights="none")
                model = create_model(name, copy.deepcopy(cpu), configs[name])
            counts = count_parameters(model)
            records.append({
                "method": name,
                "backbone": backbone_name,
                "num_classes": num_classes,
                "trainable": counts.trainable,
                "trainable_without_head": counts.trainable_without_head,
                "head": counts.by_component.get("head", 0),
                "total": counts.total,
                "by_component": dict(counts.by_component),
                "config": model.config.to_dict(),
            })
            del model
    return records
