"""RMSprop, as ``torch.optim.RMSprop``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from convnp.optim.optimizer import Optimizer, _buffer, _check_nonnegative
from convnp.parameter import Parameter

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop (Hinton) with optional momentum and centering, as ``torch.optim.RMSprop``.

    For each parameter p with gradient g::

        g = g + weight_decay * p                      if weight_decay != 0
        v = alpha * v + (1 - alpha) * g * g           (v, g_avg, buf start at 0)
        if centered:
            g_avg = alpha * g_avg + (1 - alpha) * g
            denom = sqrt(v - g_avg * g_avg) + eps
        else:
            denom = sqrt(v) + eps
        if momentum > 0:
            buf = momentum * buf + g / denom
            p = p - lr * buf
        else:
            p = p - lr * g / denom

    There is no bias correction: v starts at 0, so early steps are large
    (PyTorch's behaviour, kept on purpose).

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, default 1e-2
    alpha : float, default 0.99
        Decay rate of the squared-gradient average.
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
        Normalise by an estimate of the gradient's variance instead of its
        second moment.
    """

    hyperparameter_names = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")
    state_array_names = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.momentum = float(momentum)
        self.centered = bool(centered)
        self._validate()

    def _validate(self) -> None:
        _check_nonnegative("RMSprop", "alpha", self.alpha)
        _check_nonnegative("RMSprop", "eps", self.eps)
        _check_nonnegative("RMSprop", "weight_decay", self.weight_decay)
        _check_nonnegative("RMSprop", "momentum", self.momentum)

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        alpha = self.alpha
        state["step"] = state.get("step", 0) + 1
        if self.weight_decay != 0.0:
            grad = grad + self.weight_decay * param
        square_avg = _buffer(state, "square_avg", param)
        square_avg *= alpha
        square_avg += (1.0 - alpha) * grad * grad
        if self.centered:
            grad_avg = _buffer(state, "grad_avg", param)
            grad_avg += (1.0 - alpha) * (grad - grad_avg)  # PyTorch's lerp form
            # v >= g_avg**2 in exact arithmetic; the clamp only turns a rounding
            # -0.0...1 (where sqrt would give NaN) into 0.
            denom = np.sqrt(np.maximum(square_avg - grad_avg * grad_avg, 0.0))
        else:
            denom = np.sqrt(square_avg)
        denom += self.eps
        if self.momentum > 0.0:
            buffer = _buffer(state, "momentum_buffer", param)
            buffer *= self.momentum
            buffer += grad / denom
            param -= self.lr * buffer
        else:
            param -= self.lr * (grad / denom)
