"""Stochastic gradient descent, as ``torch.optim.SGD``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from convnp.optim.optimizer import Optimizer, _buffer, _check_nonnegative
from convnp.parameter import Parameter

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    For each parameter p with gradient g (as ``torch.optim.SGD``)::

        g = g + weight_decay * p                      if weight_decay != 0
        if momentum != 0:
            buf = g                                   on the first step
            buf = momentum * buf + (1 - dampening) * g   afterwards
            g = g + momentum * buf                    if nesterov
            g = buf                                   otherwise
        p = p - lr * g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, default 0.01
    momentum : float, default 0
    dampening : float, default 0
        Scales the new gradient's share of the momentum buffer (not on the first step).
    nesterov : bool, default False
        Needs ``momentum > 0`` and ``dampening == 0``.
    weight_decay : float, default 0
        L2 penalty added to the gradient.
    """

    hyperparameter_names = ("lr", "momentum", "dampening", "nesterov", "weight_decay")
    state_array_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self._validate()

    def _validate(self) -> None:
        _check_nonnegative("SGD", "momentum", self.momentum)
        _check_nonnegative("SGD", "weight_decay", self.weight_decay)
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError(
                "SGD: nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={self.momentum}, dampening={self.dampening}"
            )

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        lr, momentum = self.lr, self.momentum
        if self.weight_decay != 0.0:
            grad = grad + self.weight_decay * param  # new array: never change p.grad
        if momentum != 0.0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                # PyTorch starts the buffer at the first gradient, not at zero
                # (and without dampening), so step 1 is a plain SGD step.
                buffer = state["momentum_buffer"] = grad.copy()
            else:
                buffer = _buffer(state, "momentum_buffer", param)
                buffer *= momentum
                buffer += (1.0 - self.dampening) * grad
            grad = grad + momentum * buffer if self.nesterov else buffer
        param -= lr * grad
