"""Adam and AdamW, as ``torch.optim.Adam`` and ``torch.optim.AdamW``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from convnp.optim.optimizer import Optimizer, _buffer, _check_nonnegative
from convnp.parameter import Parameter

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (Kingma & Ba), with optional L2 weight decay and AMSGrad, as ``torch.optim.Adam``.

    For each parameter p with gradient g, at its t-th update (t counts from 1)::

        g = g + weight_decay * p                      if weight_decay != 0
        m = beta1 * m + (1 - beta1) * g               (m, v start at 0)
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                         if amsgrad (use v_max below)
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps
        p = p - (lr / (1 - beta1**t)) * m / denom

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment averages, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator (after the bias correction, as PyTorch does).
    weight_decay : float, default 0
        L2 penalty added to the gradient (coupled; see ``AdamW`` for decoupled).
    amsgrad : bool, default False
        Divide by the running maximum of v instead of v.
    """

    hyperparameter_names = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    state_array_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError) as error:
            raise ValueError(f"{type(self).__name__}: betas must be a pair (beta1, beta2), got {betas!r}") from error
        self.betas = (float(beta1), float(beta2))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.amsgrad = bool(amsgrad)
        self._validate()

    def _validate(self) -> None:
        owner = type(self).__name__
        for position, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{owner}: invalid beta{position + 1} {beta!r} (must be in [0, 1))")
        _check_nonnegative(owner, "eps", self.eps)
        _check_nonnegative(owner, "weight_decay", self.weight_decay)

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        lr, (beta1, beta2), weight_decay = self.lr, self.betas, self.weight_decay
        step = state["step"] = state.get("step", 0) + 1
        if weight_decay != 0.0:
            if self.decoupled_weight_decay:
                # AdamW: shrink the weights directly; the decay never enters m or v.
                param *= 1.0 - lr * weight_decay
            else:
                grad = grad + weight_decay * param
        exp_avg = _buffer(state, "exp_avg", param)
        exp_avg_sq = _buffer(state, "exp_avg_sq", param)
        # m = beta1*m + (1-beta1)*g, written as PyTorch's lerp m + (1-beta1)*(g-m)
        # so that the rounding matches too.
        exp_avg += (1.0 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * grad * grad
        if self.amsgrad:
            second_moment = _buffer(state, "max_exp_avg_sq", param)
            np.maximum(second_moment, exp_avg_sq, out=second_moment)
        else:
            second_moment = exp_avg_sq
        bias_correction1 = 1.0 - beta1**step
        bias_correction2 = 1.0 - beta2**step
        step_size = lr / bias_correction1
        denom = np.sqrt(second_moment) / math.sqrt(bias_correction2)
        denom += self.eps
        param -= step_size * (exp_avg / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    Identical to ``Adam`` except that the decay shrinks the weights before the
    Adam step instead of entering the gradient::

        p = p * (1 - lr * weight_decay)
        (then the Adam update of p with the raw gradient g)

    Parameters are those of ``Adam``; ``weight_decay`` defaults to 1e-2.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
