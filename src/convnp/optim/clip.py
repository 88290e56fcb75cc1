"""Gradient clipping by the global norm, as ``torch.nn.utils.clip_grad_norm_``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from convnp.parameter import Parameter

__all__ = ["clip_grad_norm"]


def clip_grad_norm(
    params: Iterable[Parameter] | Parameter,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Rescale the gradients so that their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the norm is taken over all gradients
    together, as if concatenated into one vector::

        total_norm = (sum over params of sum(|g| ** norm_type)) ** (1 / norm_type)
        total_norm = max over params of max(|g|)      if norm_type is inf
        g = g * (max_norm / (total_norm + 1e-6))      if that factor is < 1

    Parameters whose ``grad`` is None are ignored. Gradients are replaced by
    rescaled copies of the same dtype (never changed in place, in case the
    array is shared). The norm is accumulated in float64.

    Returns
    -------
    float
        The total norm before clipping.
    """
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not max_norm >= 0.0:
        raise ValueError(f"clip_grad_norm: max_norm must be >= 0, got {max_norm}")
    if not norm_type > 0.0:
        raise ValueError(f"clip_grad_norm: norm_type must be > 0 or inf, got {norm_type}")
    if isinstance(params, Parameter):
        params = [params]
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return 0.0
    if math.isinf(norm_type):
        total_norm = max(float(np.max(np.abs(p.grad), initial=0.0)) for p in with_grad)
    else:
        # Per-tensor norms, then the norm of those: equal to the norm of the
        # concatenation, without building it.
        norms = [np.linalg.norm(np.asarray(p.grad, dtype=np.float64).ravel(), ord=norm_type) for p in with_grad]
        total_norm = float(np.linalg.norm(np.asarray(norms), ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total_norm):
        raise ValueError(f"clip_grad_norm: the total gradient norm is {total_norm}")
    clip_coef = max_norm / (total_norm + 1e-6)
    if clip_coef < 1.0:
        for param in with_grad:
            param.grad = param.grad * clip_coef  # Python float keeps the grad's dtype
    return total_norm
