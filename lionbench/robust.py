"""Robust training (paper Sec. 3.3, eqs. 7-11): crucial elements learn, the rest shrink to zero.

At every step each element of a ranked tensor gets the criticality ``c = |dL/dtheta * theta|``
(eq. 7). Crucial elements (eq. 8) take the wrapped optimizer's usual step (eq. 10, Adam in the
paper); non-crucial ones (eq. 9) take ``theta <- theta - lr * sign(theta)`` (eq. 11) instead, an
L1-style shrink that ignores the loss.

Which elements are non-crucial (``tau_mode`` x ``tau_scope``):

- ``tau_scope="tensor"`` (the default): ``tau`` is the share of *each tensor's* elements with the
  smallest criticality. This is the rule of the paper's source for it, its reference [43] (Xia et
  al., "Robust early-learning", ICLR 2021), which ranks criticality within each layer. Ranking
  within a tensor makes the share the same for every part of the model, whatever the scale of
  its gradients: a pooled ranking let the tensors with the smallest ``|g theta|`` (LION's P2 and
  MLP on ResNet-50: 44-60 % and 36-51 % of their elements marked at tau 0.4, against 4-9 % of the
  head's) absorb most of the shrink.
- ``tau_scope="pooled"``: the share is taken over all ranked elements together (lionbench's
  first rule, kept to reproduce runs made with it).
- ``tau_mode="absolute"``: eqs. 8-9 as written, ``c < tau`` element by element (the scope does
  not matter). The paper's tau values (0.2-0.8, default 0.4) then mark *every* element
  non-crucial: ``|g theta|`` of a mean loss is orders of magnitude below 0.2 (largest about 1e-3
  on ResNet-50 and 4e-2 on ViT-B at initialisation), so nothing would minimise the loss. The
  paper's sweep ("too large tau could filter the essential parameters") fits a share.

Which tensors are ranked is the caller's choice (``exclude``): LION ranks its two prompt layers
and leaves the head and the blend logits to the normal step (methods/lion.py, ``robust_scope``).

Optimizer state: the wrapped optimizer steps *every* element with its true gradient, and the
non-crucial elements are then overwritten with ``old - lr * sign(old)``. Adam's moments therefore
keep tracking the gradient of non-crucial elements (they are neither frozen nor reset), so an
element that becomes crucial again resumes with up-to-date moments; the shrink itself never
enters the moments. Weight decay or momentum of the inner step are discarded for those elements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer

from lionbench.errors import ConfigError

TAU_MODES = ("quantile", "absolute")
TAU_SCOPES = ("tensor", "pooled")


def check_tau(tau: float, tau_mode: str, tau_scope: str = "tensor") -> None:
    """The one check of ``tau`` (LION's config and :class:`RobustOptimizer` both call it): a
    fraction in [0, 1) with ``tau_mode="quantile"``, a threshold >= 0 with ``"absolute"``."""
    if tau_mode not in TAU_MODES:
        raise ConfigError(f"invalid tau_mode={tau_mode!r}; valid: {', '.join(TAU_MODES)}")
    if tau_scope not in TAU_SCOPES:
        raise ConfigError(f"invalid tau_scope={tau_scope!r}; valid: {', '.join(TAU_SCOPES)}")
    is_number = isinstance(tau, int | float) and not isinstance(tau, bool)
    if tau_mode == "quantile" and not (is_number and 0 <= tau < 1):
        raise ConfigError(f"invalid tau={tau!r}; with tau_mode='quantile' must lie in [0, 1)")
    if tau_mode == "absolute" and not (is_number and tau >= 0):
        raise ConfigError(f"invalid tau={tau!r}; with tau_mode='absolute' must be >= 0")


def smallest_share(values: torch.Tensor, share: float) -> torch.Tensor:
    """Boolean mask (shape of ``values``) of the ``int(share * numel)`` smallest entries."""
    flat = values.reshape(-1)
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    k = int(share * flat.numel())
    if k:
        mask[torch.topk(flat.float(), k, largest=False, sorted=False).indices] = True
    return mask.view_as(values)


class RobustOptimizer(Optimizer):
    """Wrap any torch optimizer with the crucial / non-crucial update rule (eqs. 7-11).

    ``param_groups`` and ``state`` are the wrapped optimizer's own objects, so learning-rate
    schedulers, ``zero_grad``, ``state_dict`` and ``load_state_dict`` behave as on the inner
    optimizer. ``exclude``: parameters always updated normally (default: none). ``components``:
    names for groups of parameters, for :meth:`noncrucial_fractions` (e.g. ``{"p1": [...]}``).
    ``last_noncrucial_fraction``: the share of ranked elements shrunk at the last step.
    """

    def __init__(self, optimizer: Optimizer, tau: float = 0.4, tau_mode: str = "quantile",
                 exclude: Iterable[torch.Tensor] = (), tau_scope: str = "tensor",
                 components: Mapping[str, Iterable[torch.Tensor]] | None = None):
        check_tau(tau, tau_mode, tau_scope)
        self.optimizer = optimizer
        self.tau, self.tau_mode, self.tau_scope = float(tau), tau_mode, tau_scope
        self._exclude = {id(p) for p in exclude}
        self._component = {id(p): name for name, params in (components or {}).items()
                           for p in params}
        self._last: list[tuple[str, torch.Tensor, int]] = []
        self.reset_statistics()
        self._initialized = False
        # Sets up the hooks torch expects of an Optimizer (schedulers check isinstance) ...
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self._initialized = True
        self._bind()  # ... then shares the inner optimizer's groups and state.

    def _bind(self) -> None:
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not self._initialized:  # called by Optimizer.__init__ on the inner groups
            return super().add_param_group(param_group)
        self.optimizer.add_param_group(param_group)
        self._bind()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)
        self._bind()  # the inner optimizer replaces its state object

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def noncrucial_masks(self) -> list[tuple[torch.Tensor, dict[str, Any], torch.Tensor]]:
        """(param, its group, boolean mask of non-crucial elements) for each ranked param."""
        entries = [(p, g) for g in self.param_groups for p in g["params"]
                   if p.grad is not None and id(p) not in self._exclude]
        if not entries:
            return []
        crit = [(p.grad.detach() * p.detach()).abs() for p, _ in entries]  # eq. 7
        if self.tau_mode == "absolute":
            masks = [c < self.tau for c in crit]  # eq. 9 as written
        elif self.tau_scope == "tensor":
            masks = [smallest_share(c, self.tau) for c in crit]  # [43]: within each layer
        else:
            pooled = smallest_share(torch.cat([c.reshape(-1).float() for c in crit]), self.tau)
            masks = [m.view_as(c) for m, c in
                     zip(pooled.split([c.numel() for c in crit]), crit, strict=True)]
        return [(p, g, m) for (p, g), m in zip(entries, masks, strict=True)]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        masked = self.noncrucial_masks()
        old = [p[m].clone() for p, _, m in masked]
        self.optimizer.step()  # eq. 10 for all; the non-crucial ones are overwritten below
        for (p, g, m), o in zip(masked, old, strict=True):
            p[m] = o - g["lr"] * torch.sign(o)  # eq. 11, sign(0) = 0
        # counted as tensors: no device synchronisation per step
        self._last = [(self._component.get(id(p), "other"), m.sum(), m.numel())
                      for p, _, m in masked]
        for name, marked, total in self._last:
            sums = self._sums.setdefault(name, [0, 0])
            sums[0], sums[1] = sums[0] + marked, sums[1] + total
        return loss

    @property
    def last_noncrucial_fraction(self) -> float:
        """The share of ranked elements that took eq. 11's step at the last step."""
        total = sum(n for _, _, n in self._last)
        return float(sum(int(m) for _, m, _ in self._last)) / total if total else 0.0

    def reset_statistics(self) -> None:
        """Forget the per-component counts behind :meth:`noncrucial_fractions`."""
        self._sums: dict[str, list[Any]] = {}

    def noncrucial_fractions(self) -> dict[str, float]:
        """Per component, the share of its ranked elements shrunk, over all steps since
        :meth:`reset_statistics` (``"other"``: ranked parameters of no named component)."""
        return {name: float(marked) / total for name, (marked, total) in self._sums.items()
                if total}

    def __repr__(self) -> str:
        return (f"RobustOptimizer(tau={self.tau}, tau_mode={self.tau_mode!r}, "
                f"tau_scope={self.tau_scope!r}, {self.optimizer!r})")
