"""Batch norm channel by channel, the textbook way: no chunks, no wide rows, no one-pass variance.

The test oracle of ``convnp.functional.batch_norm``. Each channel's m values
(over the batch and every position) are taken as one flat vector and the
formulas are written as they read:

    mean = sum(v) / m,   var = sum((v - mean)**2) / m,   x_hat = (v - mean) / sqrt(var + eps)
    out  = weight * x_hat + bias
    dx   = weight / sqrt(var + eps) * (dout - mean(dout) - x_hat * mean(dout * x_hat))

``reduce`` (the sum of an array over the shards of a larger batch) is called
in the same order as the fast op calls it: counts, sums, squared deviations in
the forward pass; the stacked sums of dout and dout * x_hat in the backward
pass, so the two can run side by side in shards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["NaiveBatchNormCache", "batch_norm_forward", "batch_norm_backward"]


@dataclass
class NaiveBatchNormCache:
    """Everything ``batch_norm_backward`` needs."""

    x_hat: np.ndarray  # (C, m): each channel's values, standardised
    inv_std: np.ndarray  # (C,)
    weight: np.ndarray | None
    has_bias: bool
    batch_stats: bool
    count: int  # m over the whole batch (all shards)
    shape: tuple[int, ...]
    reduce: Callable[[np.ndarray], np.ndarray] | None


def _channel_values(x: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> (C, m): channel c's values as row c."""
    return np.stack([x[:, c].ravel() for c in range(x.shape[1])])


def _from_channel_values(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=values.dtype)
    for c in range(shape[1]):
        out[:, c] = values[c].reshape(shape[:1] + shape[2:])
    return out


def batch_norm_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, NaiveBatchNormCache]:
    """Batch norm, channel by channel (the formulas of ``convnp.functional.batch_norm_forward``).

    Shape:
        x: (N, C, ...); weight, bias, running_mean, running_var: (C,); out: same as x
    """
    total = (lambda array: array) if reduce is None else reduce
    values = _channel_values(x)  # (C, m)
    channels = x.shape[1]
    use_batch_stats = training or running_mean is None
    count = values.shape[1]
    mean, var = np.empty(channels, x.dtype), np.empty(channels, x.dtype)
    if use_batch_stats:
        count = int(total(np.array(count, dtype=np.int64)))
        for c in range(channels):
            mean[c] = values[c].sum()
        mean = total(mean) / x.dtype.type(count)
        for c in range(channels):
            var[c] = ((values[c] - mean[c]) ** 2).sum()
        var = total(var) / x.dtype.type(count)
        if training and running_mean is not None:
            running_mean[...] = momentum * mean + (1 - momentum) * running_mean
            running_var[...] = momentum * var * (count / (count - 1)) + (1 - momentum) * running_var
    else:
        mean[...], var[...] = running_mean, running_var
    inv_std = 1 / np.sqrt(var + x.dtype.type(eps))
    x_hat = np.empty_like(values)
    out = np.empty_like(values)
    for c in range(channels):
        x_hat[c] = (values[c] - mean[c]) * inv_std[c]
        out[c] = x_hat[c] if weight is None else weight[c] * x_hat[c]
        if bias is not None:
            out[c] += bias[c]
    cache = NaiveBatchNormCache(x_hat, inv_std, weight, bias is not None, use_batch_stats, count, x.shape, reduce)
    return _from_channel_values(out, x.shape), cache


def batch_norm_backward(
    dout: np.ndarray, cache: NaiveBatchNormCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """dx, dweight and dbias of batch norm, channel by channel; dweight and dbias are this shard's parts.

    Shape:
        dout, dx: same as x; dweight, dbias: (C,)
    """
    grads = _channel_values(dout)  # (C, m)
    x_hat, channels = cache.x_hat, len(cache.inv_std)
    sums = np.empty((2, channels), dtype=grads.dtype)
    for c in range(channels):
        sums[0, c] = grads[c].sum()  # dbias
        sums[1, c] = (grads[c] * x_hat[c]).sum()  # dweight
    totals = sums if cache.reduce is None or not cache.batch_stats else cache.reduce(sums)
    dx = np.empty_like(grads)
    for c in range(channels):
        scale = cache.inv_std[c] if cache.weight is None else cache.weight[c] * cache.inv_std[c]
        if cache.batch_stats:
            mean_grad, mean_grad_x_hat = totals[0, c] / cache.count, totals[1, c] / cache.count
            dx[c] = scale * (grads[c] - mean_grad - x_hat[c] * mean_grad_x_hat)
        else:
            dx[c] = scale * grads[c]
    return (
        _from_channel_values(dx, cache.shape),
        None if cache.weight is None else sums[1],
        sums[0] if cache.has_bias else None,
    )
