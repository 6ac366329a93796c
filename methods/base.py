"""The method interface: what every PETL method in ``lionbench.methods`` provides.

A method is one module in ``methods/`` holding three things (compare PEFT's config + model +
register, and timm's one file per family):

1. a **config dataclass** subclassing :class:`MethodConfig`; its fields are the method's
   hyperparameters, settable from the CLI with ``--set key=value`` (or ``--set method.key=value``).
   Declare every field with :func:`lionbench.settings.setting` (its kind, range or choices, and a
   line of help: ``bottleneck: int = setting(8, low=1, high=4096, help="...")``); a bound that
   depends on another setting is a rule (``rules = (when(...),)``). The base class checks them on
   construction, ``lionbench list methods --settings`` prints them, and the CLI checks ``--set``
   values against them before torch loads (after ``python -m lionbench.methods`` rewrites the
   catalog). ``validate()`` remains for checks the vocabulary cannot express: raise
   :class:`lionbench.errors.ConfigError` naming the field and the valid values;
2. a **model class** subclassing :class:`PetlModel`, built as ``Model(backbone, config)`` where
   ``backbone`` is a timm model whose classifier is already reset to the target's class count.
   The model wraps the backbone through timm's public interface (``forward_features``,
   ``forward_head``, ``get_classifier``, its blocks) and *never copies it*: it freezes parameters,
   inserts small modules, or wraps the input/output. It must set ``config_class`` and provide
   ``forward(x) -> logits``; it may override the hooks below;
3. one ``register_method(...)`` call at the bottom of the module (see ``methods/__init__.py``).

Hooks a model may override (defaults here):

- ``parameter_groups()``: trainable parameters by component, always with a ``"head"`` key; used for
  ``lionbench params`` and the parameter counts stored with every run;
- ``create_optimizer(lr, weight_decay)``: the optimizer the training loop steps (Adam by default,
  the paper's choice; LION wraps it with the robust-training rule);
- ``check_backbone(backbone, config)``: refuse, before anything runs, a backbone the method
  cannot adapt (VPT refuses its shallow variant on CNNs, where it would duplicate ``vpt``);
- ``frozen_backbone``: when True, ``train()`` keeps the backbone in eval mode so BatchNorm
  statistics and dropout of the frozen network never change;
- ``extra_metrics()`` / ``reset_metrics()``: method-specific statistics stored with the run
  (LION's solver iterations and residuals).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from lionbench.settings import Rule, check_settings


@dataclass
class MethodConfig:
    """Base of every method's hyperparameters: subclasses declare their fields with
    :func:`lionbench.settings.setting` (and ``rules``), and may extend ``validate``."""

    rules: ClassVar[tuple[Rule, ...]] = ()  # bounds that depend on another setting

    def __post_init__(self) -> None:
        check_settings(self)  # kinds, ranges, choices; tau=1 is stored as tau=1.0 (one identity)
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on an invalid value the settings vocabulary cannot express;
        called on construction, after every field passed its own check."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


def freeze(module: nn.Module) -> None:
    """Turn off gradients for every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(False)


def unfreeze(params: Iterable[nn.Parameter]) -> None:
    """Turn gradients on for ``params`` (parameters that stay registered where they are)."""
    for p in params:
        p.requires_grad_(True)


class PetlModel(nn.Module):
    """A timm backbone adapted by one PETL method. Read the module docstring first."""

    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    frozen_backbone: ClassVar[bool] = True

    def __init__(self, backbone: nn.Module, config: MethodConfig):
        super().__init__()
        self.backbone = backbone
        self.config = config

    # --- timm's public interface, in one place -------------------------------------------
    def head(self) -> nn.Module:
        """The classifier (timm's ``get_classifier()``), already sized for the target classes."""
        return self.backbone.get_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logit features ``F(x)`` of shape (batch, num_features)."""
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Apply the classifier to pooled features."""
        return self.head()(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def train_only_head(self, *also: Iterable[nn.Parameter]) -> None:
        """Freeze the backbone, then let the classifier and ``also`` train: how every method
        that trains a few parameters besides the new head starts."""
        freeze(self.backbone)
        unfreeze(self.head().parameters())
        for params in also:
            unfreeze(params)

    # --- hooks ----------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by component. Default: the head, and everything else trainable."""
        head_ids = {id(p) for p in self.head().parameters()}
        head = [p for p in self.head().parameters() if p.requires_grad]
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = {"head": head}
        if rest:
            groups["backbone"] = rest
        return groups

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for group in self.parameter_groups().values() for p in group]

    def create_optimizer(self, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """Adam over the trainable parameters (the paper's optimizer, Sec. 4.3)."""
        return torch.optim.Adam(self.trainable_parameters(), lr=lr, weight_decay=weight_decay)

    def train(self, mode: bool = True) -> PetlModel:
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()
        return self

    @classmethod
    def check_backbone(cls, backbone: nn.Module, config: MethodConfig) -> None:
        """Raise ConfigError when this method with ``config`` cannot run on ``backbone``, or would
        only build the same model as another registered method (a duplicate row, duplicate
        compute). Called at planning on a ``meta``-device build (no memory, no weights) and
        again when the model is built. Default: every backbone fits."""

    def extra_metrics(self) -> dict[str, float]:
        """Method-specific statistics accumulated since ``reset_metrics``."""
        return {}

    def reset_metrics(self) -> None:
        """Forget the statistics behind ``extra_metrics``."""


@dataclass(frozen=True)
class ParameterCount:
    """Trainable parameters with and without the head, and the model's total."""

    trainable: int
    trainable_without_head: int
    total: int
    by_component: dict[str, int]


def count_parameters(model: PetlModel) -> ParameterCount:
    """Count parameters once, by component (each parameter counted once)."""
    seen: set[int] = set()
    by_component: dict[str, int] = {}
    for name, params in model.parameter_groups().items():
        n = 0
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        by_component[name] = n
    trainable = sum(by_component.values())
    total = sum(p.numel() for p in model.parameters())
    return ParameterCount(trainable, trainable - by_component.get("head", 0), total, by_component)
