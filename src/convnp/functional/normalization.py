"""Normalisation ops: batch norm, group norm and layer norm.

All three standardise x over some set of axes and then apply a per-feature
affine map:

    x_hat = (x - mean) / sqrt(var + eps)        (var is the biased variance)
    out   = weight * x_hat + bias

They differ only in which axes the statistics are taken over:

    batch norm:  per channel, over the batch and every spatial position
    group norm:  per sample and group of C / G channels, over those channels and space
    layer norm:  per sample (or per slice of the leading axes), over the trailing axes

so their backward passes share one formula (``_standardize_backward``). A
constant slice has var = 0: eps keeps 1 / sqrt(var + eps) finite, x_hat = 0 and
nothing turns into NaN.

``weight`` and ``bias`` may be None (no affine map; their gradients are None).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from convnp.backend import column_sum, run_batched, sum_batched
from convnp.checks import check_dout, check_eps, float_array

__all__ = [
    "batch_norm_forward",
    "batch_norm_backward",
    "group_norm_forward",
    "group_norm_backward",
    "layer_norm_forward",
    "layer_norm_backward",
]


# ------------------------------------------------------------------ helpers
def _check_x(x: np.ndarray, owner: str) -> np.ndarray:
    x = float_array(x, owner)
    if x.ndim < 2:
        raise ValueError(f"{owner}: x must have shape (N, C, ...), got {x.shape}")
    return x


def _check_param(
    value: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype, name: str, owner: str
) -> np.ndarray | None:
    if value is None:
        return None
    value = np.asarray(value)
    if value.shape != shape:
        raise ValueError(f"{owner}: {name} must have shape {shape} for x, got {value.shape}")
    if value.dtype != dtype:
        # A float64 weight would silently promote a float32 output.
        raise TypeError(f"{owner}: {name} dtype {value.dtype} differs from x dtype {dtype}")
    return value


def _affine(x_hat: np.ndarray, weight, bias, param_shape: tuple[int, ...]) -> np.ndarray:
    """out = weight * x_hat + bias, with weight and bias reshaped to broadcast."""
    out = x_hat if weight is None else x_hat * weight.reshape(param_shape)
    return out if bias is None else out + bias.reshape(param_shape)


def _affine_backward(dout, x_hat, weight, has_bias, sum_axes, param_shape):
    """Gradients of out = weight * x_hat + bias: (dx_hat, dweight, dbias)."""
    dbias = dout.sum(axis=sum_axes) if has_bias else None
    if weight is None:
        return dout, None, dbias
    dweight = (dout * x_hat).sum(axis=sum_axes)
    dx_hat = dout * weight.reshape(param_shape)
    return dx_hat, dweight, dbias


def _standardize_backward(
    dx_hat: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, axes: int | tuple[int, ...]
) -> np.ndarray:
    """dx for x_hat = (x - mean) * inv_std, mean and biased var taken over ``axes``.

    With m values in each slice, d mean / dx = 1/m and d var / dx = 2 (x - mean) / m,
    so the three paths from x to x_hat (direct, through the mean, through the
    variance) sum to

        dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))

    where both means run over ``axes`` (the same slice the statistics used).
    """
    mean_dx_hat = dx_hat.mean(axis=axes, keepdims=True)
    mean_dx_hat_x_hat = (dx_hat * x_hat).mean(axis=axes, keepdims=True)
    return inv_std * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)


# --------------------------------------------------------------- batch norm
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
) -> tuple[np.ndarray, dict]:
    """Batch normalisation over the batch (and spatial) axes, per channel.

    Training (or when no running statistics are given): each channel c is
    standardised with the batch's own statistics over its m = N*H*W values,

        mean[c] = sum x[:, c] / m,   var[c] = sum (x[:, c] - mean[c])**2 / m  (biased)

    and, in training, the running statistics are updated in place as PyTorch does:

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    (the running variance tracks the unbiased estimate). Inference uses the
    running statistics in place of the batch's. Then

        out = weight * (x - mean) / sqrt(var + eps) + bias

    Shape:
        x: (N, C) or (N, C, H, W) (any (N, C, ...))
        weight, bias, running_mean, running_var: (C,)
        out: same as x

    Raises ``ValueError`` in training when a channel has a single value (no
    variance to estimate), as PyTorch does.

    ``reduce`` is for x being one shard of a larger batch (``convnp/nn/shards.py``):
    it returns the sum of an array over all shards, so that the statistics are
    the whole batch's. The backward pass then uses it too.
    """
    owner = "batch_norm_forward"
    x = _check_x(x, owner)
    channels = x.shape[1]
    weight = _check_param(weight, (channels,), x.dtype, "weight", owner)
    bias = _check_param(bias, (channels,), x.dtype, "bias", owner)
    eps = check_eps(eps, owner)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{owner}: give both running_mean and running_var, or neither")
    for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
        if stat is not None and (not isinstance(stat, np.ndarray) or stat.shape != (channels,)):
            raise ValueError(
                f"{owner}: {name} must be an ndarray of shape ({channels},) (it is updated "
                f"in place), got {getattr(stat, 'shape', type(stat).__name__)}"
            )
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{owner}: momentum must be in [0, 1], got {momentum!r}")

    # Per-channel statistics over every other axis are column statistics of the
    # channels-last (rows, C) matrix: a free view of channels-last memory (what
    # convnp's convolutions produce), where each pass runs over long rows.
    x_rows = _channel_rows(x)  # (N*H*W, C)
    use_batch_stats = training or running_mean is None
    rows = _BatchRows(x.shape, reduce if use_batch_stats else None)
    count = rows.count  # m = N * H * W values per channel (the whole batch's, across shards)
    if use_batch_stats:
        if training and count < 2:
            raise ValueError(
                f"{owner}: training needs more than one value per channel to estimate a "
                f"variance, got x of shape {x.shape}"
            )
        mean = rows.sum(lambda part: column_sum(x_rows[part])) / x.dtype.type(count)  # (C,)
    else:
        # The buffers may be kept in another precision; compute in x's dtype.
        mean = running_mean.astype(x.dtype, copy=False)
    x_hat = np.empty(x_rows.shape, dtype=x.dtype)

    def center(part: slice) -> np.ndarray:
        np.subtract(x_rows[part], mean, out=x_hat[part])  # x - mean
        return np.einsum("ij,ij->j", x_hat[part], x_hat[part])  # these rows' sum of (x - mean)**2

    squares = rows.sum(center)
    if use_batch_stats:
        var = squares / x.dtype.type(count)  # (C,), biased: the batch is normalised by its own spread
        if training and running_mean is not None:
            unbiased_var = var * (count / (count - 1))
            running_mean[...] = momentum * mean + (1 - momentum) * running_mean
            running_var[...] = momentum * unbiased_var + (1 - momentum) * running_var
    else:
        var = running_var.astype(x.dtype, copy=False)

    inv_std = (1 / np.sqrt(var + x.dtype.type(eps))).astype(x.dtype, copy=False)  # (C,)
    out = np.empty(x_rows.shape, dtype=x.dtype)

    def normalize(part: slice) -> None:
        x_hat[part] *= inv_std  # x_hat = (x - mean) / sqrt(var + eps)
        if weight is None:
            out[part] = x_hat[part]
        else:
            np.multiply(x_hat[part], weight, out=out[part])  # weight * x_hat
        if bias is not None:
            out[part] += bias  # + bias

    rows.run(normalize)
    cache = {
        "x_hat": x_hat,
        "inv_std": inv_std,
        "weight": weight,
        "has_bias": bias is not None,
        "batch_stats": use_batch_stats,
        "shape": x.shape,
        "count": count,
        "rows": rows,
    }
    return _from_channel_rows(out, x.shape), cache


class _BatchRows:
    """The rows of a channels-last (N*H*W, C) matrix, worked on a few samples at a time.

    ``run(fn)`` calls ``fn(rows)`` on row ranges covering the matrix, one slice
    of samples per core (``convnp.backend``); ``sum(fn)`` adds up what those
    calls return, in a fixed order, and then, for one shard of a larger batch,
    over the shards (``shard_sum``, which sums an array over every shard in
    shard order), so that a statistic is always the whole batch's.
    """

    def __init__(self, shape: tuple[int, ...], shard_sum: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.shard_sum = shard_sum
        self.samples = shape[0]
        self.rows_per_sample = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
        self.elements = int(np.prod(shape, dtype=np.int64))
        local_count = self.samples * self.rows_per_sample
        self.count = local_count if shard_sum is None else int(shard_sum(np.array(local_count, dtype=np.int64)))

    def _rows(self, first: int, last: int) -> slice:
        return slice(first * self.rows_per_sample, last * self.rows_per_sample)

    def run(self, fn: Callable[[slice], None]) -> None:
        run_batched(lambda first, last: fn(self._rows(first, last)), self.samples, self.elements)

    def local_sum(self, fn: Callable[[slice], np.ndarray]) -> np.ndarray:
        """The sum over this array's own rows (this shard's part of the batch)."""
        return sum_batched(lambda first, last: fn(self._rows(first, last)), self.samples, self.elements)

    def across_shards(self, local: np.ndarray) -> np.ndarray:
        return local if self.shard_sum is None else self.shard_sum(local)

    def sum(self, fn: Callable[[slice], np.ndarray]) -> np.ndarray:
        return self.across_shards(self.local_sum(fn))


def _channel_rows(x: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> (N * prod(...), C): channels last, one row per position."""
    if x.ndim == 2:
        return x
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _from_channel_rows(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of ``_channel_rows``: an (N, C, ...)-shaped view of the rows."""
    if len(shape) == 2:
        return rows
    return np.moveaxis(rows.reshape(shape[0], *shape[2:], shape[1]), -1, 1)


def batch_norm_backward(dout: np.ndarray, cache: dict) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of batch norm.

    dbias   = sum over (N, H, W) of dout
    dweight = sum over (N, H, W) of dout * x_hat
    dx_hat  = dout * weight
    with batch statistics (mean and var depend on x):
        dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))
    with running statistics (constants, so the op is affine in x):
        dx = dx_hat * inv_std = dout * weight / sqrt(running_var + eps)

    Shape:
        dout, dx: same as x; dweight, dbias: (C,)

    For one shard of a batch (``reduce`` given to the forward pass), dx uses
    the whole batch's sums, while dweight and dbias are this shard's parts of
    them: the sum over the shards is the batch's gradient, as for every other
    parameter of a sharded pass.
    """
    x_hat, inv_std, weight = cache["x_hat"], cache["inv_std"], cache["weight"]
    dout = check_dout(dout, cache["shape"], "batch_norm_backward")
    dout_rows = _channel_rows(dout)  # (N*H*W, C), a view when dout is channels-last
    count = cache["count"]
    rows = cache["rows"]
    local_sums = rows.local_sum(
        lambda part: np.stack([column_sum(dout_rows[part]), np.einsum("ij,ij->j", dout_rows[part], x_hat[part])])
    )
    sum_dout, sum_dout_x_hat = rows.across_shards(local_sums)  # (C,) each, over the whole batch
    scale = inv_std if weight is None else weight * inv_std
    dx = np.empty(dout_rows.shape, dtype=dout.dtype)
    mean_dout = sum_dout / dout.dtype.type(count)
    mean_dout_x_hat = sum_dout_x_hat / dout.dtype.type(count)

    def input_grad(part: slice) -> None:
        if cache["batch_stats"]:
            np.multiply(x_hat[part], mean_dout_x_hat, out=dx[part])
            np.subtract(dout_rows[part], dx[part], out=dx[part])
            dx[part] -= mean_dout
            dx[part] *= scale
        else:
            np.multiply(dout_rows[part], scale, out=dx[part])

    rows.run(input_grad)
    dbias, dweight = local_sums  # the sums over this shard's rows (the whole batch's without shards)
    return (
        _from_channel_rows(dx, cache["shape"]),
        None if weight is None else dweight,
        dbias if cache["has_bias"] else None,
    )


# --------------------------------------------------------------- group norm
def group_norm_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    num_groups: int,
    eps: float = 1e-5,
) -> tuple[np.ndarray, dict]:
    """Group normalisation: per sample, standardise each group of C / G channels.

    The C channels split into G consecutive groups; the statistics of sample n
    and group g run over its C/G channels and every spatial position:

        x_hat = (x - mean[n, g]) / sqrt(var[n, g] + eps)
        out[:, c] = weight[c] * x_hat[:, c] + bias[c]

    G = 1 is layer norm with a per-channel affine map; G = C is instance norm.
    The batch size does not enter: training and inference compute the same thing.

    Shape:
        x: (N, C, ...), C divisible by G
        weight, bias: (C,)
        out: same as x
    """
    owner = "group_norm_forward"
    x = _check_x(x, owner)
    batch, channels = x.shape[:2]
    if not isinstance(num_groups, (int, np.integer)) or isinstance(num_groups, bool):
        raise TypeError(f"{owner}: num_groups must be an int, got {num_groups!r}")
    if num_groups < 1 or channels % num_groups != 0:
        raise ValueError(
            f"{owner}: num_groups={num_groups} must be >= 1 and divide the {channels} channels "
            f"of x with shape {x.shape}"
        )
    weight = _check_param(weight, (channels,), x.dtype, "weight", owner)
    bias = _check_param(bias, (channels,), x.dtype, "bias", owner)
    eps = check_eps(eps, owner)

    x_groups = x.reshape(batch, num_groups, -1)  # (N, G, C/G * H * W)
    mean = x_groups.mean(axis=2, keepdims=True)  # (N, G, 1)
    var = x_groups.var(axis=2, keepdims=True)  # (N, G, 1), biased
    inv_std = 1 / np.sqrt(var + eps)  # (N, G, 1)
    x_hat = ((x_groups - mean) * inv_std).reshape(x.shape)  # back to (N, C, ...)
    param_shape = (1, channels) + (1,) * (x.ndim - 2)
    out = _affine(x_hat, weight, bias, param_shape)
    cache = {
        "x_hat": x_hat,
        "inv_std": inv_std,
        "weight": weight,
        "has_bias": bias is not None,
        "num_groups": num_groups,
    }
    return out, cache


def group_norm_backward(dout: np.ndarray, cache: dict) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of group norm.

    dbias   = sum over (N, H, W) of dout
    dweight = sum over (N, H, W) of dout * x_hat
    dx      = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)),
              dx_hat = dout * weight, means over each (sample, group) slice

    Shape:
        dout, dx: same as x; dweight, dbias: (C,)
    """
    x_hat = cache["x_hat"]
    dout = check_dout(dout, x_hat.shape, "group_norm_backward")
    batch, channels = x_hat.shape[:2]
    sum_axes = (0, *range(2, x_hat.ndim))
    param_shape = (1, channels) + (1,) * (x_hat.ndim - 2)
    dx_hat, dweight, dbias = _affine_backward(dout, x_hat, cache["weight"], cache["has_bias"], sum_axes, param_shape)
    group_shape = (batch, cache["num_groups"], -1)  # (N, G, C/G * H * W)
    dx = _standardize_backward(dx_hat.reshape(group_shape), x_hat.reshape(group_shape), cache["inv_std"], axes=2)
    return dx.reshape(x_hat.shape), dweight, dbias


# --------------------------------------------------------------- layer norm
def layer_norm_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float = 1e-5, begin_axis: int = 1
) -> tuple[np.ndarray, dict]:
    """Layer normalisation: standardise x over its axes ``begin_axis..``, one slice per index of the axes before.

    With D = prod(x.shape[begin_axis:]) values in each slice s (by default a sample):

        x_hat[s] = (x[s] - mean[s]) / sqrt(var[s] + eps)
        out[s]   = weight * x_hat[s] + bias        (elementwise, weight shaped like a slice)

    This is ``torch.nn.functional.layer_norm(x, x.shape[begin_axis:], ...)``
    (PyTorch's ``normalized_shape``) and ONNX's ``LayerNormalization(axis=begin_axis)``;
    ``begin_axis`` may be negative (counted from the end) or 0 (one slice: all of x).

    Shape:
        x: (N, ...)
        weight, bias: x.shape[begin_axis:]
        out: same as x
    """
    owner = "layer_norm_forward"
    x = _check_x(x, owner)
    if isinstance(begin_axis, bool) or not isinstance(begin_axis, (int, np.integer)):
        raise TypeError(f"{owner}: begin_axis must be an int, got {begin_axis!r}")
    if not -x.ndim <= begin_axis < x.ndim:
        raise ValueError(f"{owner}: begin_axis {begin_axis} is out of range for x of shape {x.shape}")
    begin_axis = int(begin_axis) % x.ndim
    slice_shape = x.shape[begin_axis:]
    weight = _check_param(weight, slice_shape, x.dtype, "weight", owner)
    bias = _check_param(bias, slice_shape, x.dtype, "bias", owner)
    eps = check_eps(eps, owner)

    x_rows = x.reshape(int(np.prod(x.shape[:begin_axis], dtype=np.int64)), -1)  # (slices, D)
    mean = x_rows.mean(axis=1, keepdims=True)  # (slices, 1)
    var = x_rows.var(axis=1, keepdims=True)  # (slices, 1), biased
    inv_std = 1 / np.sqrt(var + eps)  # (slices, 1)
    x_hat = ((x_rows - mean) * inv_std).reshape(x.shape)  # back to x's shape
    out = _affine(x_hat, weight, bias, (1,) * begin_axis + slice_shape)
    cache = {
        "x_hat": x_hat,
        "inv_std": inv_std,
        "weight": weight,
        "has_bias": bias is not None,
        "begin_axis": begin_axis,
    }
    return out, cache


def layer_norm_backward(dout: np.ndarray, cache: dict) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of layer norm.

    dbias   = sum over the axes before begin_axis of dout
    dweight = sum over the axes before begin_axis of dout * x_hat
    dx      = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)),
              dx_hat = dout * weight, means over each slice's D values

    Shape:
        dout, dx: same as x; dweight, dbias: x.shape[begin_axis:]
    """
    x_hat, begin_axis = cache["x_hat"], cache["begin_axis"]
    dout = check_dout(dout, x_hat.shape, "layer_norm_backward")
    dx_hat, dweight, dbias = _affine_backward(
        dout,
        x_hat,
        cache["weight"],
        cache["has_bias"],
        tuple(range(begin_axis)),
        (1,) * begin_axis + x_hat.shape[begin_axis:],
    )
    rows = (cache["inv_std"].shape[0], -1)  # (slices, D)
    dx = _standardize_backward(dx_hat.reshape(rows), x_hat.reshape(rows), cache["inv_std"], axes=1)
    return dx.reshape(x_hat.shape), dweight, dbias
