"""Robust training (paper Sec. 3.3, eqs. 7-11): crucial elements learn, the rest shrink to zero.

At every step each trainable element gets the criticality ``c = |dL/dtheta * theta|`` (eq. 7).
Crucial elements (eq. 8) take the wrapped optimizer's usual step (eq. 10, Adam in the paper);
non-crucial ones (eq. 9) take ``theta <- theta - lr * sign(theta)`` (eq. 11) instead, an L1-style
shrink that ignores the loss.

Why ``tau`` is a fraction by default (``tau_mode="quantile"``): the paper sweeps
``tau in {0.2, 0.4, 0.6, 0.8}`` and defaults to 0.4. Read literally as a threshold on ``c``
(``tau_mode="absolute"``, eqs. 8-9 as written) these values mark *every* element non-crucial:
the gradient of a mean loss with respect to one weight times that weight is orders of magnitude
below 0.2, so nothing would ever minimise the loss and all prompts would decay to zero. An
absolute threshold would also depend on the loss scale, batch size and parameter count. The
sweep's behaviour ("too large tau could filter the essential parameters") fits a fraction, so
``quantile`` treats the ``tau`` fraction of elements with the smallest criticality, pooled over
all parameter groups at each step, as non-crucial. ``absolute`` is kept for the literal reading.

Optimizer state: the wrapped optimizer steps *every* element with its true gradient, and the
non-crucial elements are then overwritten with ``old - lr * sign(old)``. Adam's moments therefore
keep tracking the gradient of non-crucial elements (they are neither frozen nor reset), so an
element that becomes crucial again resumes with up-to-date moments; the shrink itself never
enters the moments. Weight decay or momentum of the inner step are discarded for those elements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from lionbench.errors import ConfigError

TAU_MODES = ("quantile", "absolute")


def check_tau(tau: float, tau_mode: str) -> None:
    """The one check of ``tau`` (LION's config and :class:`RobustOptimizer` both call it): a
    fraction in [0, 1) with ``tau_mode="quantile"``, a threshold >= 0 with ``"absolute"``."""
    if tau_mode not in TAU_MODES:
        raise ConfigError(f"invalid tau_mode={tau_mode!r}; valid: {', '.join(TAU_MODES)}")
    is_number = isinstance(tau, int | float) and not isinstance(tau, bool)
    if tau_mode == "quantile" and not (is_number and 0 <= tau < 1):
        raise ConfigError(f"invalid tau={tau!r}; with tau_mode='quantile' must lie in [0, 1)")
    if tau_mode == "absolute" and not (is_number and tau >= 0):
        raise ConfigError(f"invalid tau={tau!r}; with tau_mode='absolute' must be >= 0")


class RobustOptimizer(Optimizer):
    """Wrap any torch optimizer with the crucial / non-crucial update rule (eqs. 7-11).

    ``param_groups`` and ``state`` are the wrapped optimizer's own objects, so learning-rate
    schedulers, ``zero_grad``, ``state_dict`` and ``load_state_dict`` behave as on the inner
    optimizer. ``exclude``: parameters always updated normally (default: none).
    ``last_noncrucial_fraction``: the fraction of stepped elements shrunk at the last step.
    """

    def __init__(self, optimizer: Optimizer, tau: float = 0.4, tau_mode: str = "quantile",
                 exclude: Iterable[torch.Tensor] = ()):
        check_tau(tau, tau_mode)
        self.optimizer = optimizer
        self.tau, self.tau_mode = float(tau), tau_mode
        self._exclude = {id(p) for p in exclude}
        self.last_noncrucial_fraction = 0.0
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
        """(param, its group, boolean mask of non-crucial elements) for each stepped param."""
        entries = [(p, g) for g in self.param_groups for p in g["params"]
                   if p.grad is not None and id(p) not in self._exclude]
        if not entries:
            return []
        crit = [(p.grad.detach() * p.detach()).abs() for p, _ in entries]  # eq. 7
        if self.tau_mode == "absolute":
            masks = [c < self.tau for c in crit]  # eq. 9
        else:
            flat = torch.cat([c.reshape(-1).float() for c in crit])
            k = int(self.tau * flat.numel())
            pooled = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
            if k:
                pooled[torch.topk(flat, k, largest=False, sorted=False).indices] = True
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
        total = sum(m.numel() for _, _, m in masked)
        noncrucial = sum(int(m.sum()) for _, _, m in masked)
        self.last_noncrucial_fraction = noncrucial / total if total else 0.0
        return loss

    def __repr__(self) -> str:
        return f"RobustOptimizer(tau={self.tau}, tau_mode={self.tau_mode!r}, {self.optimizer!r})"
