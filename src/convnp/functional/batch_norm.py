"""Batch normalisation, alone and followed by ReLU, as forward/backward pairs run a chunk of images at a time.

Per channel c, over its m = N*H*W values (the whole batch's, across shards):

    mean[c] = sum x[:, c] / m,    var[c] = sum (x[:, c] - mean[c])**2 / m     (biased)
    x_hat   = (x - mean) / sqrt(var + eps)
    out     = weight * x_hat + bias                  batch_norm_forward
    out     = max(weight * x_hat + bias, 0)          batch_norm_relu_forward

Inference uses the running statistics in place of the batch's. Batch norm
does a few flops per value it reads, so its cost is the memory it moves.
What keeps that small, without changing a value beyond rounding:

- Channels-last rows. Per-channel statistics are column statistics of the
  (N*H*W, C) matrix, a free view of the channels-last memory convolutions
  produce (``_channel_rows``).
- Chunks in cache. Every pass works on a few images at a time (``run_batched``
  with a chunk size): the forward pass reads x twice (the statistics; then
  normalise and write out), the backward pass reads x and dout twice and
  writes dx once, and every intermediate lives in a chunk-sized scratch
  buffer (``backend.scratch``).
- One read for the variance. While a chunk i is in cache it gives its count
  n_i, its sum, and the sums of the deviations about its own mean, S_i, and
  of their squares, M2_i. Once the batch's mean is known the chunks combine
  (Chan, Golub and LeVeque), with d_i = mean_i - mean:

      sum (x - mean)**2 = sum_i [M2_i + 2 * d_i * S_i + n_i * d_i**2]

  an identity for any mean_i; S_i is 0 but for the rounding of mean_i, and
  keeping it leaves that rounding no first-order effect. This is the
  two-pass value, with none of the cancellation of E[x**2] - mean**2.
- Wide rows. Broadcasting a (C,) vector over (R, C) rows makes NumPy run an
  inner loop of only C values (16 in a CIFAR ResNet's first stage), several
  times slower than one long loop. Each chunk is viewed as (R / k, k*C) rows
  and the per-channel vectors are tiled k times to match (``_ChannelRows``).
- Nothing full-size kept but what exists anyway. The cache holds x itself
  (the previous op's output; it must not change before the backward pass)
  and per-channel constants, not x_hat: the backward pass recomputes
  x - mean in cache. The ReLU runs in place on each chunk of out, and its
  backward pass masks dout with out > 0 in the pass that takes the batch
  norm's sums.

``reduce`` is for x being one shard of a larger batch (``convnp/nn/shards.py``):
it returns the sum of an array over all shards (and MPI ranks), so that the
statistics are the whole batch's. A pass makes the same exchanges in the same
order on every shard: in the forward pass with batch statistics, the count of
values per channel, the sums of x and the sums of (x - mean)**2 about the
batch's mean; in the backward pass, the sums of the gradient reaching the
batch norm and of that gradient times x_hat.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from convnp.backend import column_sum, images_per_chunk, map_batched, ordered_sum, run_batched, scratch, sum_batched
from convnp.checks import check_dout, check_eps, float_array

__all__ = ["batch_norm_forward", "batch_norm_backward", "batch_norm_relu_forward", "batch_norm_relu_backward"]

# A wide row holds at most this many values: long enough that NumPy's per-row overhead vanishes.
WIDE_ROW = 1024

Reduce = Callable[[np.ndarray], np.ndarray]


def batch_norm_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
    reduce: Reduce | None = None,
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
    the whole batch's. The backward pass then uses it too. The cache keeps x
    itself, which must not change before the backward pass.
    """
    return _forward(x, weight, bias, running_mean, running_var, training, momentum, eps, reduce, relu=False)


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
    return _backward(dout, cache, "batch_norm_backward")


def batch_norm_relu_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
    reduce: Reduce | None = None,
) -> tuple[np.ndarray, dict]:
    """Batch norm, then ReLU on its output, in one pass: out = max(batch_norm(x), 0).

    The arguments, the statistics, the running statistics' update and the
    exchanges across shards are those of ``batch_norm_forward``; each chunk
    of the normalised output is clipped at 0 in place while it is in cache,
    so the values are exactly ``relu_forward(batch_norm_forward(x, ...)[0])``.

    Shape:
        x: (N, C, ...); weight, bias, running_mean, running_var: (C,); out: same as x
    """
    return _forward(x, weight, bias, running_mean, running_var, training, momentum, eps, reduce, relu=True)


def batch_norm_relu_backward(dout: np.ndarray, cache: dict) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of out = max(batch_norm(x), 0): ``batch_norm_backward`` of dout * (out > 0).

    ReLU's gradient is dout where its input is positive, and its input is
    positive exactly where out is, so the mask is out > 0 (0 at the kink, as
    PyTorch does). The masked gradient is formed chunk by chunk in the pass that
    takes batch norm's sums.

    Shape:
        dout, dx: same as x; dweight, dbias: (C,)
    """
    return _backward(dout, cache, "batch_norm_relu_backward")


# ------------------------------------------------------------------ the passes
def _forward(x, weight, bias, running_mean, running_var, training, momentum, eps, reduce, relu: bool):
    owner = "batch_norm_relu_forward" if relu else "batch_norm_forward"
    x = _check_x(x, owner)
    channels = x.shape[1]
    weight = _check_param(weight, channels, x.dtype, "weight", owner)
    bias = _check_param(bias, channels, x.dtype, "bias", owner)
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

    dtype = x.dtype
    x_rows = _channel_rows(x)  # (N*H*W, C)
    use_batch_stats = training or running_mean is None
    rows = _ChannelRows(x.shape, dtype, reduce if use_batch_stats else None)
    count = rows.count  # m = N * H * W values per channel (the whole batch's, across shards)
    if use_batch_stats:
        if training and count < 2:
            raise ValueError(
                f"{owner}: training needs more than one value per channel to estimate a "
                f"variance, got x of shape {x.shape}"
            )
        mean, var = _batch_statistics(x_rows, rows)  # (C,) each; var biased
        if training and running_mean is not None:
            unbiased_var = var * (count / (count - 1))
            running_mean[...] = momentum * mean + (1 - momentum) * running_mean
            running_var[...] = momentum * unbiased_var + (1 - momentum) * running_var
    else:
        # The buffers may be kept in another precision; compute in x's dtype.
        mean = running_mean.astype(dtype, copy=False)
        var = running_var.astype(dtype, copy=False)

    inv_std = (1 / np.sqrt(var + dtype.type(eps))).astype(dtype, copy=False)  # (C,)
    scale = inv_std if weight is None else inv_std * weight  # (C,): out = (x - mean) * scale + bias
    mean_wide, scale_wide = rows.tiled(mean), rows.tiled(scale)  # (k*C,)
    bias_wide = None if bias is None else rows.tiled(bias)
    out = np.empty(x_rows.shape, dtype=dtype)
    zero = dtype.type(0)

    def normalize(part: slice) -> None:
        out_wide = rows.wide(out[part])  # (R/k, k*C)
        np.subtract(rows.wide(x_rows[part]), mean_wide, out=out_wide)  # x - mean
        out_wide *= scale_wide  # weight * x_hat
        if bias_wide is not None:
            out_wide += bias_wide  # + bias
        if relu:
            np.maximum(out_wide, zero, out=out_wide)  # in place, while the chunk is in cache

    rows.run(normalize)
    cache = {
        "x_rows": x_rows,
        "mean": mean,
        "inv_std": inv_std,
        "scale": scale,
        "weight": weight,
        "has_bias": bias is not None,
        "batch_stats": use_batch_stats,
        "shape": x.shape,
        "count": count,
        "rows": rows,
        "out_rows": out if relu else None,  # the ReLU's mask is out > 0
    }
    return _from_channel_rows(out, x.shape), cache


def _batch_statistics(x_rows: np.ndarray, rows: _ChannelRows) -> tuple[np.ndarray, np.ndarray]:
    """The batch's per-channel mean and biased variance, reading x once (see the module text).

    Shape: x_rows (N*H*W, C) -> mean (C,), var (C,)
    """
    dtype = x_rows.dtype

    def chunk_moments(part: slice) -> tuple[np.floating, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x_chunk = x_rows[part]  # (R, C)
        size = dtype.type(x_chunk.shape[0])
        chunk_sum = column_sum(x_chunk)  # (C,)
        chunk_mean = chunk_sum / size
        centered = rows.wide(scratch("batch_norm.centered", x_chunk.shape, dtype))  # (R/k, k*C)
        np.subtract(rows.wide(x_chunk), rows.tiled(chunk_mean), out=centered)
        deviations = rows.folded(column_sum(centered))  # S_i: (C,)
        squares = rows.folded(np.einsum("ij,ij->j", centered, centered))  # M2_i: (C,)
        return size, chunk_sum, chunk_mean, deviations, squares

    chunks = rows.map(chunk_moments)
    nothing = np.zeros(rows.channels, dtype=dtype)  # a rank whose piece of the batch is empty
    local_sum = ordered_sum([chunk[1] for chunk in chunks]) if chunks else nothing
    mean = rows.across_shards(local_sum) / dtype.type(rows.count)
    # sum (x - mean)**2 over this shard's rows: M2_i + d_i * (2 S_i + n_i d_i) per chunk, in chunk order
    local_squares = []
    for size, _, chunk_mean, deviations, squares in chunks:
        offset = chunk_mean - mean  # d_i
        local_squares.append(squares + offset * (2 * deviations + size * offset))
    squares = rows.across_shards(ordered_sum(local_squares) if chunks else nothing)
    return mean, squares / dtype.type(rows.count)


def _backward(dout: np.ndarray, cache: dict, owner: str):
    dout = check_dout(dout, cache["shape"], owner)
    rows: _ChannelRows = cache["rows"]
    x_rows, out_rows = cache["x_rows"], cache["out_rows"]
    inv_std, scale, count = cache["inv_std"], cache["scale"], cache["count"]
    dout_rows = _channel_rows(dout)  # (N*H*W, C), a view when dout is channels-last
    dx = np.empty(dout_rows.shape, dtype=dout.dtype)
    mean_wide, scale_wide = rows.tiled(cache["mean"]), rows.tiled(scale)

    def grad_reaching_batch_norm(part: slice) -> np.ndarray:
        """dout on these rows; behind a ReLU, dout * (out > 0), written into dx (which the next pass overwrites)."""
        if out_rows is None:
            return dout_rows[part]
        positive = np.greater(out_rows[part], 0, out=scratch("batch_norm.mask", out_rows[part].shape, np.bool_))
        return np.multiply(dout_rows[part], positive, out=dx[part])

    def centered(part: slice) -> np.ndarray:
        """x - mean on these rows, as wide rows of a scratch buffer."""
        x_chunk = x_rows[part]
        wide = rows.wide(scratch("batch_norm.centered", x_chunk.shape, x_chunk.dtype))
        return np.subtract(rows.wide(x_chunk), mean_wide, out=wide)

    def sums(part: slice, grad: np.ndarray) -> np.ndarray:
        """These rows' sums of grad and of grad * (x - mean), stacked: (2, C)."""
        return np.stack([column_sum(grad), rows.folded(np.einsum("ij,ij->j", rows.wide(grad), centered(part)))])

    if cache["batch_stats"]:
        local_sums = rows.sum(lambda part: sums(part, grad_reaching_batch_norm(part)))
        total_grad, total_grad_centered = rows.across_shards(local_sums)  # (C,) each, over the whole batch
        mean_grad = total_grad / dout.dtype.type(count)
        mean_grad_x_hat = total_grad_centered * inv_std / dout.dtype.type(count)
        # dx = scale * (grad - mean(grad) - x_hat * mean(grad * x_hat)), with x_hat = (x - mean) * inv_std
        slope_wide, shift_wide = rows.tiled(inv_std * mean_grad_x_hat), rows.tiled(mean_grad)

        def input_grad(part: slice) -> None:
            grad = rows.wide(dout_rows[part] if out_rows is None else dx[part])
            dx_wide = rows.wide(dx[part])
            subtracted = centered(part)
            subtracted *= slope_wide  # x_hat * mean(grad * x_hat)
            subtracted += shift_wide  # + mean(grad)
            np.subtract(grad, subtracted, out=dx_wide)
            dx_wide *= scale_wide

        rows.run(input_grad)
    else:
        # Running statistics are constants: dx = grad * scale, in the pass that takes the sums.
        def sums_and_input_grad(part: slice) -> np.ndarray:
            grad = grad_reaching_batch_norm(part)
            part_sums = sums(part, grad)
            np.multiply(rows.wide(grad), scale_wide, out=rows.wide(dx[part]))
            return part_sums

        local_sums = rows.sum(sums_and_input_grad)
    # This shard's sums (the whole batch's without shards): sum grad and sum grad * x_hat.
    dbias, dweight = local_sums[0], local_sums[1] * inv_std
    return (
        _from_channel_rows(dx, cache["shape"]),
        None if cache["weight"] is None else dweight,
        dbias if cache["has_bias"] else None,
    )


# ------------------------------------------------------------------ helpers
class _ChannelRows:
    """The (N*H*W, C) channels-last rows of a batch, worked on in chunks of whole images.

    ``run(fn)``, ``sum(fn)`` and ``map(fn)`` call ``fn(rows)`` on row ranges
    covering the matrix: cache-sized chunks, one slice of chunks per core
    (``convnp.backend``). ``across_shards`` adds an array over the shards of a
    larger batch (``shard_sum``, in shard order) and leaves it alone otherwise,
    so that a statistic is always the whole batch's.

    ``wide`` views a chunk's (R, C) rows as (R / k, k*C), ``tiled`` repeats a
    (C,) vector k times to broadcast over them and ``folded`` adds a (k*C,)
    column sum of wide rows back to (C,). k divides the rows of one image, so
    any chunk of whole images can be viewed so.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, shard_sum: Reduce | None = None) -> None:
        self.shard_sum = shard_sum
        self.dtype = np.dtype(dtype)
        self.samples, self.channels = shape[0], shape[1]
        self.rows_per_sample = math.prod(shape[2:])  # 1 for (N, C)
        self.elements = math.prod(shape)
        # A chunk works on its part of two full-size arrays and a scratch buffer.
        self.chunk = images_per_chunk(3 * self.rows_per_sample * self.channels, dtype)
        self.repeats = _wide_repeats(self.rows_per_sample, self.channels)
        local_count = self.samples * self.rows_per_sample
        self.count = local_count if shard_sum is None else int(shard_sum(np.array(local_count, dtype=np.int64)))

    def _rows(self, first: int, last: int) -> slice:
        return slice(first * self.rows_per_sample, last * self.rows_per_sample)

    def run(self, fn: Callable[[slice], None]) -> None:
        run_batched(lambda first, last: fn(self._rows(first, last)), self.samples, self.elements, self.chunk)

    def sum(self, fn: Callable[[slice], np.ndarray]) -> np.ndarray:
        """The sum of the (2, C) arrays ``fn`` returns over this array's own rows (this shard's part)."""
        if self.samples == 0:  # a rank whose piece of the batch is empty still makes the exchanges
            return np.zeros((2, self.channels), dtype=self.dtype)
        return sum_batched(lambda first, last: fn(self._rows(first, last)), self.samples, self.elements, self.chunk)

    def map(self, fn: Callable[[slice], object]) -> list:
        """What ``fn`` returns for each chunk of this array's rows, in row order."""
        return map_batched(lambda first, last: fn(self._rows(first, last)), self.samples, self.elements, self.chunk)

    def across_shards(self, local: np.ndarray) -> np.ndarray:
        return local if self.shard_sum is None else self.shard_sum(local)

    def wide(self, rows: np.ndarray) -> np.ndarray:
        """(R, C) -> (R / k, k*C): a view of contiguous rows (a copy of others, for reading)."""
        return rows.reshape(-1, self.repeats * self.channels)

    def tiled(self, vector: np.ndarray) -> np.ndarray:
        """(C,) -> (k*C,): the vector once per channel group of a wide row."""
        return np.tile(vector, self.repeats)

    def folded(self, wide_sum: np.ndarray) -> np.ndarray:
        """(k*C,) -> (C,): the k partial sums of each channel added."""
        return wide_sum.reshape(self.repeats, self.channels).sum(axis=0)


@functools.lru_cache(maxsize=256)
def _wide_repeats(rows_per_sample: int, channels: int) -> int:
    """The largest k dividing an image's rows with k * channels <= WIDE_ROW (at least 1)."""
    most = max(1, min(rows_per_sample, WIDE_ROW // channels))
    return max(k for k in range(1, most + 1) if rows_per_sample % k == 0)


def _check_x(x: np.ndarray, owner: str) -> np.ndarray:
    x = float_array(x, owner)
    if x.ndim < 2:
        raise ValueError(f"{owner}: x must have shape (N, C, ...), got {x.shape}")
    return x


def _check_param(value: np.ndarray | None, channels: int, dtype: np.dtype, name: str, owner: str):
    if value is None:
        return None
    value = np.asarray(value)
    if value.shape != (channels,):
        raise ValueError(f"{owner}: {name} must have shape {(channels,)} for x, got {value.shape}")
    if value.dtype != dtype:
        # A float64 weight would silently promote a float32 output.
        raise TypeError(f"{owner}: {name} dtype {value.dtype} differs from x dtype {dtype}")
    return value


def _channel_rows(x: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> (N * prod(...), C): channels last, one row per position (a view of channels-last memory)."""
    if x.ndim == 2:
        return x
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _from_channel_rows(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of ``_channel_rows``: an (N, C, ...)-shaped view of the rows."""
    if len(shape) == 2:
        return rows
    return np.moveaxis(rows.reshape(shape[0], *shape[2:], shape[1]), -1, 1)
