"""The fully connected (affine) op: ``out = x @ weight.T + bias``.

The weight follows PyTorch's layout ``(out_features, in_features)`` so a
state_dict moves between the two libraries without transposes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["linear_forward", "linear_backward"]


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> tuple[np.ndarray, tuple]:
    """Affine map of a batch of feature vectors.

    out[n, o] = sum_i x[n, i] * weight[o, i] + bias[o]

    Shape:
        x: (N, IN)
        weight: (OUT, IN)
        bias: (OUT,) or None
        out: (N, OUT)

    Raises ``ValueError`` when the shapes do not fit together and ``TypeError``
    when ``x``, ``weight`` and ``bias`` are not of one floating-point dtype
    (mixing float32 with float64 would silently promote the result).
    """
    x, weight = np.asarray(x), np.asarray(weight)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"linear_forward: x must be a floating-point array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(
            f"linear_forward: x must have shape (N, in_features), got {x.shape} (flatten per-sample arrays first)"
        )
    if weight.ndim != 2 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"linear_forward: weight must have shape (out_features, {x.shape[1]}) "
            f"to match x of shape {x.shape}, got {weight.shape}"
        )
    if weight.dtype != x.dtype:
        raise TypeError(f"linear_forward: weight dtype {weight.dtype} differs from x dtype {x.dtype}")
    out = x @ weight.T  # (N, IN) @ (IN, OUT) -> (N, OUT)
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear_forward: bias must have shape ({weight.shape[0]},), got {bias.shape}")
        if bias.dtype != x.dtype:
            raise TypeError(f"linear_forward: bias dtype {bias.dtype} differs from x dtype {x.dtype}")
        out += bias  # (OUT,) broadcasts over the batch
    cache = (x, weight, bias is not None)
    return out, cache


def linear_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of the affine map.

    dx      = dout @ weight            (each input feeds every output through weight[o, i])
    dweight = dout.T @ x               (summed over the batch)
    dbias   = sum_n dout[n, :]         (None when the forward pass had no bias)

    Shape:
        dout: (N, OUT)
        dx: (N, IN), dweight: (OUT, IN), dbias: (OUT,) or None
    """
    x, weight, has_bias = cache
    dout = np.asarray(dout)
    if dout.shape != (x.shape[0], weight.shape[0]):
        raise ValueError(
            f"linear_backward: dout must have the forward output's shape "
            f"{(x.shape[0], weight.shape[0])}, got {dout.shape}"
        )
    dx = dout @ weight  # (N, OUT) @ (OUT, IN) -> (N, IN)
    dweight = dout.T @ x  # (OUT, N) @ (N, IN) -> (OUT, IN)
    dbias = dout.sum(axis=0) if has_bias else None  # (OUT,)
    return dx, dweight, dbias
