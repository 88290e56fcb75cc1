"""Max, average and global-average pooling over the last two axes.

Max pooling:
    out[n, c, i, j] = max over p < KH, q < KW of x_padded[n, c, i*SH + p*DH, j*SW + q*DW]
    (padding is -inf, so it is never the maximum)
    dx[n, c, h, w] = sum over the windows (i, j) whose chosen maximum is (h, w) of dout[n, c, i, j]

Where several entries of a window tie for the maximum, the whole gradient goes
to the first of them in row-major order (PyTorch's rule); the gradient is never
split or duplicated. Overlapping windows (stride < kernel) can choose the same
input, so the backward pass accumulates.

Average pooling:
    out[n, c, i, j] = (1 / count[i, j]) * sum over p, q of x_padded[n, c, i*SH + p, j*SW + q]
    dx = col2im of dout / count spread over every window position
count[i, j] is KH*KW (zero padding counts in the average, PyTorch's default)
except where ``window_counts`` in geometry.py says otherwise: with
``count_include_pad=False`` only the window's positions inside the input count,
and a ceil-mode window's part past the padding never counts.

Global average pooling:
    out[n, c] = mean over h, w of x[n, c, h, w];  dx[n, c, h, w] = dout[n, c] / (H*W)

``ceil_mode=True`` rounds the output size up instead of down (PyTorch's rule,
``pooled_output_size`` in geometry.py): the last window may then reach past
the input and its padding; those positions read as padding.

Shape:
    x: (N, C, H, W)
    out: (N, C, H_out, W_out), H_out = floor((H + PT + PB - DH*(KH-1) - 1) / SH) + 1
         (ceil in ceil mode); (N, C) for global pooling
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.backend import run_batched, scratch
from convnp.functional.geometry import (
    IntPair,
    Padding,
    pad_channels_last,
    pair,
    pool_geometry,
    pool_window_pads,
    window_counts,
)

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
    "PoolCache",
]


@dataclass
class PoolCache:
    """What a pooling backward pass needs."""

    x_shape: tuple[int, int, int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    # (top, bottom, left, right) of the padded input the windows read: the padding, grown
    # at the bottom and right in ceil mode until every window fits (``pool_window_pads``).
    pads: tuple[int, int, int, int]
    out_hw: tuple[int, int]
    dtype: np.dtype
    dilation: tuple[int, int] = (1, 1)
    # Average pooling: (H_out, W_out, 1), each window's count, where not every count is KH*KW.
    divisor: np.ndarray | None = None
    argmax: np.ndarray | None = None  # (N, H_out, W_out, C): flat offset p*KW + q of each window's max
    # The 2x2 / stride 2 fast path keeps two masks instead of argmax:
    right_wins: np.ndarray | None = None  # (N, 2*H_out, W_out, C): the right column beat the left
    bottom_wins: np.ndarray | None = None  # (N, H_out, W_out, C): the bottom row's max beat the top's


def _pool_geometry(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None,
    padding: Padding,
    op: str,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
):
    """Check x; return the kernel, stride, dilation, padding, padding grown for ceil mode, and output size."""
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"{op}: expected x of shape (N, C, H, W), got {np.shape(x)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{op}: expected a floating-point x, got dtype {x.dtype}")
    kernel = pair(kernel_size, "kernel_size", op)
    stride = kernel if stride is None else pair(stride, "stride", op)
    dilation = pair(dilation, "dilation", op)
    pads, out_hw = pool_geometry(x.shape[2:], kernel, stride, padding, op, x.shape, dilation, bool(ceil_mode))
    window_pads = pool_window_pads(x.shape[2:], kernel, stride, dilation, pads, out_hw)
    return kernel, stride, dilation, pads, window_pads, out_hw


def _window_offsets(x: np.ndarray, cache: PoolCache, pad_value: float):
    """Yield ``(k, values)`` for every kernel offset k = p*KW + q, in row-major order.

    ``values[n, i, j, c] = x_padded[n, i*SH + p*DH, j*SW + q*DW, c]``: the entry
    at offset (p, q) of every window, as a strided view of the channels-last
    input (no copy). Looping over the KH*KW offsets instead of gathering whole
    windows keeps every pass a simple elementwise op over an output-sized array.

    Shape: x (N, C, H, W) -> values (N, H_out, W_out, C)
    """
    x_padded = pad_channels_last(x.transpose(0, 2, 3, 1), cache.pads, pad_value)  # (N, Hp, Wp, C)
    for k, (rows, columns) in enumerate(_offset_slices(cache)):
        yield k, x_padded[:, rows, columns, :]


def _offset_slices(cache: PoolCache):
    """Yield, for each kernel offset (p, q) in row-major order, the padded rows and columns it reads."""
    (kh, kw), (sh, sw), (dh, dw), (h_out, w_out) = cache.kernel_size, cache.stride, cache.dilation, cache.out_hw
    for p in range(kh):
        for q in range(kw):
            yield slice(p * dh, p * dh + sh * (h_out - 1) + 1, sh), slice(q * dw, q * dw + sw * (w_out - 1) + 1, sw)


def _scatter_windows(window_grads, cache: PoolCache) -> np.ndarray:
    """Add per-window-offset gradients back onto the (padded) input, then crop.

    ``window_grads(k)`` returns the (N, H_out, W_out, C) gradient that flows
    to kernel offset k = p*KW + q of every window. One strided slice-add per
    offset; overlapping windows accumulate. Returns the NCHW-shaped view of a
    channels-last array.
    """
    n, channels, height, width = cache.x_shape
    top, bottom, left, right = cache.pads
    dx_padded = np.zeros((n, height + top + bottom, width + left + right, channels), dtype=cache.dtype)
    for k, (rows, columns) in enumerate(_offset_slices(cache)):
        dx_padded[:, rows, columns, :] += window_grads(k)
    return dx_padded[:, top : top + height, left : left + width, :].transpose(0, 3, 1, 2)


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, PoolCache]:
    """Maximum of every window; ``stride`` defaults to ``kernel_size``.

    ``dilation`` spaces the window's entries DH rows and DW columns apart;
    ``ceil_mode`` rounds the output size up (see the module text).
    Returns ``(out, cache)``; out is (N, C, H_out, W_out), stored channels-last.
    """
    kernel, stride, dilation, _, window_pads, out_hw = _pool_geometry(
        x, kernel_size, stride, padding, "max_pool2d", dilation, ceil_mode
    )
    cache = PoolCache(x.shape, kernel, stride, window_pads, out_hw, x.dtype, dilation)
    if _is_halving(cache):
        out = _max_pool_halving(x, cache)
        if out is not None:
            return out.transpose(0, 3, 1, 2), cache
    offsets = _window_offsets(x, cache, -np.inf)
    _, first = next(offsets)
    out = first.copy()  # (N, Ho, Wo, C): the running maximum
    argmax = np.zeros(out.shape, dtype=np.int8 if kernel[0] * kernel[1] < 128 else np.int32)
    for k, values in offsets:
        # Strictly greater: on a tie the earlier offset keeps the gradient (PyTorch's rule).
        better = values > out
        np.copyto(out, values, where=better)
        np.copyto(argmax, k, where=better)
    if np.isnan(out).any():
        # PyTorch lets a NaN win over any number (and a later NaN over an earlier one).
        for k, values in _window_offsets(x, cache, -np.inf):
            nan = np.isnan(values)
            np.copyto(out, values, where=nan)
            np.copyto(argmax, k, where=nan)
    cache.argmax = argmax
    return out.transpose(0, 3, 1, 2), cache


def max_pool2d_backward(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """Route each window's gradient to the input its maximum came from.

    Shape: dout (N, C, H_out, W_out) -> dx (N, C, H, W).
    """
    _check_dout(dout, cache, "max_pool2d_backward")
    dout_nhwc = dout.transpose(0, 2, 3, 1)
    if cache.argmax is None:
        return _max_unpool_halving(dout_nhwc, cache).transpose(0, 3, 1, 2)
    return _scatter_windows(lambda k: dout_nhwc * (cache.argmax == k), cache)


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> tuple[np.ndarray, PoolCache]:
    """Mean of every window; zero padding counts in it unless ``count_include_pad=False``.

    ``ceil_mode`` rounds the output size up (see the module text).
    Returns ``(out, cache)``; out is (N, C, H_out, W_out), stored channels-last.
    """
    kernel, stride, dilation, pads, window_pads, out_hw = _pool_geometry(
        x, kernel_size, stride, padding, "avg_pool2d", 1, ceil_mode
    )
    cache = PoolCache(x.shape, kernel, stride, window_pads, out_hw, x.dtype, dilation)
    if window_pads != pads or (not count_include_pad and any(pads)):
        cache.divisor = _window_divisor(x, kernel, stride, pads, out_hw, bool(count_include_pad))
    offsets = _window_offsets(x, cache, 0.0)
    _, first = next(offsets)
    out = first.copy()  # (N, Ho, Wo, C): the running window sum
    for _, values in offsets:
        out += values
    if cache.divisor is None:
        out *= x.dtype.type(1.0 / (kernel[0] * kernel[1]))
    else:
        out /= cache.divisor
    return out.transpose(0, 3, 1, 2), cache


def _window_divisor(x: np.ndarray, kernel, stride, pads, out_hw, count_include_pad: bool) -> np.ndarray:
    """Each window's count (``window_counts`` along rows times along columns). Shape: (H_out, W_out, 1)."""
    height, width = x.shape[2:]
    rows = window_counts(height, kernel[0], stride[0], pads[0], pads[1], out_hw[0], count_include_pad)
    columns = window_counts(width, kernel[1], stride[1], pads[2], pads[3], out_hw[1], count_include_pad)
    return np.multiply.outer(rows, columns).astype(x.dtype)[:, :, None]


def avg_pool2d_backward(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """Every input in a window receives dout / count from that window.

    Shape: dout (N, C, H_out, W_out) -> dx (N, C, H, W).
    """
    _check_dout(dout, cache, "avg_pool2d_backward")
    kh, kw = cache.kernel_size
    if _is_halving(cache):
        return _avg_unpool_halving(dout.transpose(0, 2, 3, 1), cache).transpose(0, 3, 1, 2)
    if cache.divisor is None:
        dout_share = dout.transpose(0, 2, 3, 1) / dout.dtype.type(kh * kw)
    else:
        dout_share = dout.transpose(0, 2, 3, 1) / cache.divisor
    return _scatter_windows(lambda k: dout_share, cache)


def global_avg_pool2d_forward(x: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Mean over the spatial axes. Shape: x (N, C, H, W) -> out (N, C)."""
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"global_avg_pool2d: expected x of shape (N, C, H, W), got {np.shape(x)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"global_avg_pool2d: expected a floating-point x, got dtype {x.dtype}")
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool2d_backward(dout: np.ndarray, cache: tuple[int, int, int, int]) -> np.ndarray:
    """Spread dout evenly over the spatial axes. Shape: dout (N, C) -> dx (N, C, H, W)."""
    n, channels, height, width = cache
    if dout.shape != (n, channels):
        raise ValueError(f"global_avg_pool2d_backward: expected dout of shape {(n, channels)}, got {dout.shape}")
    dx = np.empty(cache, dtype=dout.dtype)
    dx[...] = (dout / dout.dtype.type(height * width))[:, :, None, None]
    return dx


def _check_dout(dout: np.ndarray, cache: PoolCache, op: str) -> None:
    expected = (*cache.x_shape[:2], *cache.out_hw)
    if dout.shape != expected:
        raise ValueError(f"{op}: expected dout of shape {expected}, got {dout.shape}")


# ----------------------------------------------------------------------------------------------
# Speed only: 2x2 / stride 2 pooling without padding (the pool of almost every CNN) as pairwise
# maxima and broadcast products over long memory runs, instead of a gather of windows. Values and
# gradients are those of the general path above; a NaN falls back to it.
# ----------------------------------------------------------------------------------------------
def _is_halving(cache: PoolCache) -> bool:
    """2x2 windows, stride 2, no padding or dilation: the pool in almost every CNN, with a faster path."""
    return (
        cache.kernel_size == (2, 2)
        and cache.stride == (2, 2)
        and cache.pads == (0, 0, 0, 0)
        and cache.dilation == (1, 1)
    )


def _max_pool_halving(x: np.ndarray, cache: PoolCache) -> np.ndarray | None:
    """2x2 / stride 2 max pooling as two pairwise maxima: columns, then rows.

    Comparing the left and right column of every window first, then the top
    and bottom row of those maxima, picks the first maximum in row-major order
    on ties (a tie between rows goes to the top row, whose winner already came
    first in its row). Each step reads memory in long runs, with no window
    gather. Returns None when the output holds a NaN: the general path then
    applies PyTorch's NaN rule.

    Shape: x (N, C, H, W) -> (N, H_out, W_out, C)
    """
    n, channels = cache.x_shape[:2]
    h_out, w_out = cache.out_hw
    x_nhwc = x.transpose(0, 2, 3, 1)
    out = np.empty((n, h_out, w_out, channels), dtype=x.dtype)
    right_wins = np.empty((n, 2 * h_out, w_out, channels), dtype=bool)
    bottom_wins = np.empty(out.shape, dtype=bool)

    def pool(first: int, last: int) -> None:
        halving_pool_chunk(x_nhwc[first:last], out[first:last], right_wins[first:last], bottom_wins[first:last])

    run_batched(pool, n, x_nhwc.size)
    if np.isnan(out).any():
        return None
    cache.right_wins, cache.bottom_wins = right_wins, bottom_wins
    return out


def halving_pool_chunk(x_nhwc: np.ndarray, out: np.ndarray, right_wins: np.ndarray, bottom_wins: np.ndarray) -> None:
    """2x2 / stride 2 max pooling of a few channels-last images, into ``out`` and the two masks.

    Shape: x_nhwc (n, H, W, C) (an odd last row or column is dropped) -> out (n, H_out, W_out, C);
    right_wins (n, 2*H_out, W_out, C), bottom_wins (n, H_out, W_out, C).
    """
    count, h_out, w_out, channels = out.shape
    column_pairs = x_nhwc[:, : 2 * h_out, : 2 * w_out, :].reshape(count, 2 * h_out, w_out, 2, channels)  # a view
    left, right = column_pairs[:, :, :, 0, :], column_pairs[:, :, :, 1, :]
    column_max = scratch("pool column max", (count, 2 * h_out, w_out, channels), out.dtype)
    np.maximum(left, right, out=column_max)  # (n, 2Ho, Wo, C)
    np.greater(right, left, out=right_wins)
    row_pairs = column_max.reshape(count, h_out, 2, w_out, channels)
    top, bottom = row_pairs[:, :, 0], row_pairs[:, :, 1]
    np.maximum(top, bottom, out=out)  # (n, Ho, Wo, C)
    np.greater(bottom, top, out=bottom_wins)


def _max_unpool_halving(dout_nhwc: np.ndarray, cache: PoolCache) -> np.ndarray:
    """The backward pass of ``_max_pool_halving``: route each gradient down the two choices.

    Shape: dout (N, H_out, W_out, C) -> dx (N, H, W, C).
    """
    n, channels, height, width = cache.x_shape
    dx = np.empty((n, height, width, channels), dtype=dout_nhwc.dtype)

    def unpool(first: int, last: int) -> None:
        halving_unpool_chunk(
            dout_nhwc[first:last], cache.right_wins[first:last], cache.bottom_wins[first:last], dx[first:last]
        )

    run_batched(unpool, n, dx.size)
    return dx


def halving_unpool_chunk(
    dout_nhwc: np.ndarray, right_wins: np.ndarray, bottom_wins: np.ndarray, dx: np.ndarray
) -> None:
    """The backward pass of ``halving_pool_chunk`` for a few images, written into ``dx``.

    Multiplying by a boolean mask (rather than ``np.where``) keeps each step a
    single fast pass. Shape: dout (n, H_out, W_out, C) -> dx (n, H, W, C).
    """
    count, h_out, w_out, channels = dout_nhwc.shape
    height, width = dx.shape[1:3]
    drows = scratch("unpool rows", (count, h_out, 2, w_out, channels), dout_nhwc.dtype)
    np.multiply(dout_nhwc, ~bottom_wins, out=drows[:, :, 0])
    np.multiply(dout_nhwc, bottom_wins, out=drows[:, :, 1])
    drows = drows.reshape(count, 2 * h_out, w_out, channels)
    if height != 2 * h_out or width != 2 * w_out:
        dx.fill(0)  # odd edges get no gradient
    dcolumns = dx[:, : 2 * h_out, : 2 * w_out, :].reshape(count, 2 * h_out, w_out, 2, channels)
    np.multiply(drows, ~right_wins, out=dcolumns[:, :, :, 0, :])
    np.multiply(drows, right_wins, out=dcolumns[:, :, :, 1, :])


def halving_avg_pool_chunk(x_nhwc: np.ndarray, out: np.ndarray) -> None:
    """2x2 / stride 2 average pooling of a few channels-last images, into ``out``.

    Each window summed in ``avg_pool2d_forward``'s order, ((top-left + top-right) +
    bottom-left) + bottom-right, then times 1/4, so the values are that op's bit for bit.

    Shape: x_nhwc (n, H, W, C) (an odd last row or column is dropped) -> out (n, H_out, W_out, C)
    """
    count, h_out, w_out, channels = out.shape
    windows = x_nhwc[:, : 2 * h_out, : 2 * w_out].reshape(count, h_out, 2, w_out, 2, channels)  # a view
    np.add(windows[:, :, 0, :, 0], windows[:, :, 0, :, 1], out=out)
    out += windows[:, :, 1, :, 0]
    out += windows[:, :, 1, :, 1]
    out *= out.dtype.type(0.25)


def halving_avg_unpool_chunk(dout_nhwc: np.ndarray, dx: np.ndarray) -> None:
    """The backward pass of ``halving_avg_pool_chunk``, written into ``dx``, as one broadcast product.

    The windows tile the input, so every input (but an odd last row or
    column, which no window covers and which gets 0) receives exactly one
    window's dout / 4. Shape: dout (n, H_out, W_out, C) -> dx (n, H, W, C).
    """
    count, h_out, w_out, channels = dout_nhwc.shape
    height, width = dx.shape[1:3]
    if height != 2 * h_out or width != 2 * w_out:
        dx.fill(0)  # odd edges get no gradient
    windows = dx[:, : 2 * h_out, : 2 * w_out, :].reshape(count, h_out, 2, w_out, 2, channels)  # a view
    np.multiply(dout_nhwc[:, :, None, :, None, :], dout_nhwc.dtype.type(0.25), out=windows)


def _avg_unpool_halving(dout_nhwc: np.ndarray, cache: PoolCache) -> np.ndarray:
    """The 2x2 / stride 2 average-pool backward (``halving_avg_unpool_chunk``) over the whole batch.

    Shape: dout (N, H_out, W_out, C) -> dx (N, H, W, C).
    """
    n, channels, height, width = cache.x_shape
    dx = np.empty((n, height, width, channels), dtype=dout_nhwc.dtype)
    halving_avg_unpool_chunk(dout_nhwc, dx)
    return dx
