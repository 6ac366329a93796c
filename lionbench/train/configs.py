"""One run's configuration from names: method settings resolved, weights identified, transforms
recorded.

``create_run_config`` is the one place that turns (method, backbone, dataset, seed, weights,
overrides) into a :class:`~lionbench.config.RunConfig` checked against the registries: the
matrix expansion (lionbench.runner.plan) calls it per cell, pretraining calls it once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from torch import nn

from lionbench.backbones import (
    create_backbone,
    get_backbone_info,
    get_backbone_spec,
    resolve_weights_id,
)
from lionbench.config import RunConfig, TrainConfig, make_train_config, split_overrides
from lionbench.data import get_dataset
from lionbench.data.pipeline import Pipeline
from lionbench.errors import ConfigError
from lionbench.methods import MethodConfig, PetlModel, get_method


def create_run_config(method: str, backbone: str, dataset: str, seed: int = 0,
                      weights: str = "pretrained", overrides: dict[str, Any] | None = None
                      ) -> RunConfig:
    """The run's config; unknown names raise ``UnknownNameError``, bad values ``ConfigError``.

    Overrides are routed by :func:`lionbench.config.split_overrides` (training key, method key,
    or ``method.key``); a method that starts from random weights (retraining) ignores
    ``weights``.
    """
    spec = get_method(method)
    get_backbone_spec(backbone)
    data = get_dataset(dataset)
    train_values, method_values = split_overrides(overrides or {}, method,
                                                  spec.config_class.field_names())
    train = make_train_config(train_values)
    method_config = spec.make_config(method_values)
    check_method_fits(method, backbone, spec.model_class, method_config)
    weights = weights if spec.pretrained else "none"
    return RunConfig(
        method=method, backbone=backbone, dataset=dataset, seed=seed, weights=weights,
        weights_id=resolve_weights_id(backbone, weights),
        method_config=method_config.to_dict(), train=train,
        pipeline=resolve_pipeline(backbone, data.default_augment, train))


def resolve_pipeline(backbone: str, default_augment: str, train: TrainConfig) -> dict[str, Any]:
    """The run's transforms, from the backbone's pretrained config and the dataset's default."""
    info = get_backbone_info(backbone, train.image_size)
    augment = default_augment if train.augment == "auto" else train.augment
    return Pipeline(info.image_size, info.mean, info.std, augment).describe()


def check_method_fits(method: str, backbone: str, model_class: type[PetlModel],
                      config: MethodConfig) -> None:
    """The method's own ``check_backbone`` on a meta-device build of ``backbone``, so that a
    pairing it refuses (``vpt-shallow`` on a CNN) fails at planning with one line. Methods
    that accept every backbone cost nothing: no model is built for them."""
    if model_class.check_backbone.__func__ is PetlModel.check_backbone.__func__:
        return
    try:
        model_class.check_backbone(meta_backbone(backbone), config)
    except ConfigError as exc:
        raise ConfigError(f"method '{method}' on backbone '{backbone}': {exc}") from None


@lru_cache(maxsize=16)
def meta_backbone(name: str) -> nn.Module:
    """``name`` built on the meta device with random init: its structure, no memory."""
    with torch.device("meta"):
        return create_backbone(name, 10, weights="none")
