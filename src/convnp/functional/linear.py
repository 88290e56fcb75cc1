"""The fully connected (affine) op: ``out = x @ weight.T + bias``.

The weight follows PyTorch's layout ``(out_features, in_features)`` so a
state_dict moves between the two libraries without transposes.
"""

from __future__ import annotations

import numpy as np

from convnp.backend import column_sum, run_batched, sum_batched
from convnp.checks import float_array

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
    x, weight = float_array(x, "linear_forward"), np.asarray(weight)
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
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear_forward: bias must have shape ({weight.shape[0]},), got {bias.shape}")
        if bias.dtype != x.dtype:
            raise TypeError(f"linear_forward: bias dtype {bias.dtype} differs from x dtype {x.dtype}")
    out = np.empty((x.shape[0], weight.shape[0]), dtype=x.dtype)

    def forward_chunk(first: int, last: int) -> None:
        np.dot(
            x[first:last], weight.T, out=out[first:last]
        )  # (n, IN) @ (IN, OUT) -> (n, OUT); np.dot: backend/threads.py
        if bias is not None:
            out[first:last] += bias  # (OUT,) broadcasts over the batch

    run_batched(forward_chunk, x.shape[0], x.size)
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
    dx = np.empty(x.shape, dtype=dout.dtype)

    def backward_chunk(first: int, last: int) -> np.ndarray:
        np.dot(dout[first:last], weight, out=dx[first:last])  # (n, OUT) @ (OUT, IN) -> (n, IN)
        return np.dot(dout[first:last].T, x[first:last])  # (OUT, n) @ (n, IN) -> these samples' share of dweight

    dweight = sum_batched(backward_chunk, x.shape[0], x.size)  # (OUT, IN), summed in a fixed order
    dbias = column_sum(dout) if has_bias else None  # (OUT,)
    return dx, dweight, dbias
