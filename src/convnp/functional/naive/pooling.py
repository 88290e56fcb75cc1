"""Max, average, global-average and adaptive average pooling, loop by loop (notation: ``convnp.functional.naive``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.functional.geometry import (
    IntPair,
    Padding,
    adaptive_output_hw,
    pad_spatial,
    pair,
    pool_geometry,
    pool_window_pads,
)

__all__ = [
    "NaivePoolCache",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
]


@dataclass
class NaivePoolCache:
    """Everything a pooling backward pass needs."""

    x_shape: tuple[int, int, int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # (top, bottom, left, right) of x_padded (grown in ceil mode)
    out_hw: tuple[int, int]
    dtype: np.dtype
    dilation: tuple[int, int] = (1, 1)
    # Average pooling only: (H_out, W_out), how many positions each window's average divides by.
    counts: np.ndarray | None = None
    # Max pooling only: (N, C, H_out, W_out, 2), the (row, col) in x_padded of
    # the input each window chose as its maximum.
    argmax: np.ndarray | None = None


def _pool_geometry(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None,
    padding: Padding,
    op: str,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
):
    """Kernel, stride (default: the kernel), dilation, padding, the padding of x_padded and the output size.

    x_padded has the padding, plus, in ceil mode, the rows and columns that the
    last windows reach past it (``pool_geometry``, ``pool_window_pads``).
    """
    kernel = pair(kernel_size, "kernel_size", op)
    stride_hw = kernel if stride is None else pair(stride, "stride", op)
    dilation_hw = pair(dilation, "dilation", op)
    pads, out_hw = pool_geometry(x.shape[2:], kernel, stride_hw, padding, op, x.shape, dilation_hw, bool(ceil_mode))
    window_pads = pool_window_pads(x.shape[2:], kernel, stride_hw, dilation_hw, pads, out_hw)
    return kernel, stride_hw, dilation_hw, pads, window_pads, out_hw


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, NaivePoolCache]:
    """Maximum of every window, remembering where it was.

    Formula (x_padded is padded with -inf, so padding is never the maximum):

        out[n, c, i, j] = max over p < KH, q < KW of x_padded[n, c, i*SH + p*DH, j*SW + q*DW]

    Tie rule: the window is scanned in row-major order (p, then q) and a value
    replaces the current best only when it is strictly greater, so the first
    maximum wins. The backward pass sends the gradient to that one input only.
    A NaN replaces whatever is the best so far (PyTorch's CPU rule), so a NaN in
    a window propagates and, with several, the gradient goes to the last one.

    Shape:
        x:   (N, C, H, W)
        out: (N, C, H_out, W_out), H_out = floor((H + PT + PB - DH*(KH-1) - 1) / SH) + 1
             (rounded up in ceil mode, unless the last window would start in the bottom padding)
    """
    kernel, (stride_h, stride_w), (dilation_h, dilation_w), _, pads, (out_h, out_w) = _pool_geometry(
        x, kernel_size, stride, padding, "naive max_pool2d", dilation, ceil_mode
    )
    kernel_h, kernel_w = kernel
    batch, channels = x.shape[:2]
    x_padded = pad_spatial(x, pads, value=-np.inf)

    out = np.zeros((batch, channels, out_h, out_w), dtype=x.dtype)
    argmax = np.zeros((batch, channels, out_h, out_w, 2), dtype=np.int64)
    for n in range(batch):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    best_value = None
                    best_row, best_col = -1, -1
                    for p in range(kernel_h):
                        for q in range(kernel_w):
                            row = i * stride_h + p * dilation_h
                            col = j * stride_w + q * dilation_w
                            value = x_padded[n, c, row, col]
                            if best_value is None or _beats(value, best_value):
                                best_value = value
                                best_row, best_col = row, col
                    out[n, c, i, j] = best_value
                    argmax[n, c, i, j] = (best_row, best_col)

    cache = NaivePoolCache(
        x.shape, kernel, (stride_h, stride_w), pads, (out_h, out_w), x.dtype, (dilation_h, dilation_w), argmax=argmax
    )
    return out, cache


def _beats(value: np.floating, best: np.floating) -> bool:
    """Whether ``value`` replaces ``best`` as a window's maximum: strictly greater, or
    any NaN (PyTorch's CPU kernel tests ``value > best || isnan(value)``)."""
    return bool(value > best or np.isnan(value))


def max_pool2d_backward(dout: np.ndarray, cache: NaivePoolCache) -> np.ndarray:
    """Route each window's gradient to the one input it chose as its maximum.

    Formula:

        dx_padded[n, c, row, col] += dout[n, c, i, j]
            for the (row, col) = argmax of window (i, j)

    Each window gives its whole gradient exactly once. Overlapping windows
    (stride < kernel) may choose the same input, which then collects the sum.

    Shape:
        dout: (N, C, H_out, W_out)
        dx:   (N, C, H, W)
    """
    _check_pool_dout(dout, cache, "naive max_pool2d_backward")
    dx_padded = _zeros_padded(cache)
    batch, channels, out_h, out_w = dout.shape
    for n in range(batch):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    row, col = cache.argmax[n, c, i, j]
                    dx_padded[n, c, row, col] += dout[n, c, i, j]
    return _crop(dx_padded, cache)


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> tuple[np.ndarray, NaivePoolCache]:
    """Mean of every window.

    Formula (x_padded is padded with zeros):

        out[n, c, i, j] = (1 / count[i, j]) * sum over p < KH, q < KW of
            x_padded[n, c, i*SH + p, j*SW + q]

    count[i, j] is the number of the window's positions that lie inside the
    padded input (PyTorch's default, ``count_include_pad=True``: KH*KW except
    for a ceil-mode window that reaches past the padding), or inside the input
    itself (``count_include_pad=False``).

    Shape:
        x:   (N, C, H, W)
        out: (N, C, H_out, W_out), H_out = floor((H + PT + PB - KH) / SH) + 1 (rounded up in ceil mode)
    """
    kernel, (stride_h, stride_w), _, given_pads, pads, (out_h, out_w) = _pool_geometry(
        x, kernel_size, stride, padding, "naive avg_pool2d", 1, ceil_mode
    )
    kernel_h, kernel_w = kernel
    batch, channels, height, width = x.shape
    top, bottom, left, right = given_pads
    x_padded = pad_spatial(x, pads)

    # Where a window position lies, in x_padded's rows: [top, top + H) is the input,
    # [0, top + H + bottom) the input and its padding.
    counts = np.zeros((out_h, out_w), dtype=np.int64)
    first_row, last_row = (0, top + height + bottom) if count_include_pad else (top, top + height)
    first_col, last_col = (0, left + width + right) if count_include_pad else (left, left + width)
    for i in range(out_h):
        for j in range(out_w):
            for p in range(kernel_h):
                for q in range(kernel_w):
                    row, col = i * stride_h + p, j * stride_w + q
                    if first_row <= row < last_row and first_col <= col < last_col:
                        counts[i, j] += 1

    out = np.zeros((batch, channels, out_h, out_w), dtype=x.dtype)
    for n in range(batch):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    total = x.dtype.type(0)
                    for p in range(kernel_h):
                        for q in range(kernel_w):
                            total += x_padded[n, c, i * stride_h + p, j * stride_w + q]
                    out[n, c, i, j] = total / int(counts[i, j])

    cache = NaivePoolCache(x.shape, kernel, (stride_h, stride_w), pads, (out_h, out_w), x.dtype, counts=counts)
    return out, cache


def avg_pool2d_backward(dout: np.ndarray, cache: NaivePoolCache) -> np.ndarray:
    """Every position of a window receives an equal share of that window's gradient.

    Formula:

        dx_padded[n, c, i*SH + p, j*SW + q] += dout[n, c, i, j] / count[i, j]
            for every p < KH, q < KW

    The shares that land on padding are dropped when dx is cropped.

    Shape:
        dout: (N, C, H_out, W_out)
        dx:   (N, C, H, W)
    """
    _check_pool_dout(dout, cache, "naive avg_pool2d_backward")
    kernel_h, kernel_w = cache.kernel_size
    stride_h, stride_w = cache.stride
    dx_padded = _zeros_padded(cache)
    batch, channels, out_h, out_w = dout.shape
    for n in range(batch):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    share = dout[n, c, i, j] / int(cache.counts[i, j])
                    for p in range(kernel_h):
                        for q in range(kernel_w):
                            dx_padded[n, c, i * stride_h + p, j * stride_w + q] += share
    return _crop(dx_padded, cache)


def global_avg_pool2d_forward(x: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Mean over all spatial positions of each channel.

    Formula:

        out[n, c] = (1 / (H*W)) * sum over h < H, w < W of x[n, c, h, w]

    Shape:
        x:   (N, C, H, W)
        out: (N, C)
    """
    batch, channels, height, width = x.shape
    out = np.zeros((batch, channels), dtype=x.dtype)
    for n in range(batch):
        for c in range(channels):
            total = x.dtype.type(0)
            for h in range(height):
                for w in range(width):
                    total += x[n, c, h, w]
            out[n, c] = total / (height * width)
    return out, x.shape


def global_avg_pool2d_backward(dout: np.ndarray, cache: tuple[int, int, int, int]) -> np.ndarray:
    """Spread each channel's gradient evenly over its H*W positions.

    Formula:

        dx[n, c, h, w] = dout[n, c] / (H*W)

    Shape:
        dout: (N, C)
        dx:   (N, C, H, W)
    """
    batch, channels, height, width = cache
    if dout.shape != (batch, channels):
        raise ValueError(
            f"naive global_avg_pool2d_backward: expected dout of shape {(batch, channels)}, got {dout.shape}"
        )
    dx = np.zeros(cache, dtype=dout.dtype)
    for n in range(batch):
        for c in range(channels):
            for h in range(height):
                for w in range(width):
                    dx[n, c, h, w] = dout[n, c] / (height * width)
    return dx


def _check_pool_dout(dout: np.ndarray, cache: NaivePoolCache, op: str) -> None:
    expected = (*cache.x_shape[:2], *cache.out_hw)
    if dout.shape != expected:
        raise ValueError(f"{op}: expected dout of shape {expected}, got {dout.shape}")


def _zeros_padded(cache: NaivePoolCache) -> np.ndarray:
    """A zero gradient shaped like the padded input."""
    batch, channels, height, width = cache.x_shape
    top, bottom, left, right = cache.pads
    return np.zeros((batch, channels, height + top + bottom, width + left + right), cache.dtype)


def _crop(dx_padded: np.ndarray, cache: NaivePoolCache) -> np.ndarray:
    """Drop the gradient that landed on padding: (N, C, Hp, Wp) -> (N, C, H, W)."""
    _, _, height, width = cache.x_shape
    top, _, left, _ = cache.pads
    return dx_padded[:, :, top : top + height, left : left + width].copy()


def _adaptive_bin(i: int, size: int, out_size: int) -> range:
    """The input positions of bin i: floor(i*size / out_size) ... ceil((i + 1)*size / out_size) - 1."""
    return range((i * size) // out_size, -(-((i + 1) * size) // out_size))


def adaptive_avg_pool2d_forward(x: np.ndarray, output_size) -> tuple[np.ndarray, tuple]:
    """Mean of every adaptive bin.

    Formula:

        out[n, c, i, j] = (1 / (|rows(i)| * |cols(j)|)) * sum over h in rows(i), w in cols(j) of x[n, c, h, w]

    with rows(i) = ``_adaptive_bin(i, H, H_out)``, cols(j) likewise.

    Shape: x (N, C, H, W) -> out (N, C, H_out, W_out). Returns ``(out, (x.shape, (H_out, W_out)))``.
    """
    batch, channels, height, width = x.shape
    out_h, out_w = adaptive_output_hw(output_size, (height, width), "naive adaptive_avg_pool2d")
    out = np.zeros((batch, channels, out_h, out_w), dtype=x.dtype)
    for n in range(batch):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    rows, cols = _adaptive_bin(i, height, out_h), _adaptive_bin(j, width, out_w)
                    total = x.dtype.type(0)
                    for h in rows:
                        for w in cols:
                            total += x[n, c, h, w]
                    out[n, c, i, j] = total / (len(rows) * len(cols))
    return out, (x.shape, (out_h, out_w))


def adaptive_avg_pool2d_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Every input of a bin receives an equal share of that bin's gradient.

    Formula:

        dx[n, c, h, w] += dout[n, c, i, j] / (|rows(i)| * |cols(j)|)   for every h in rows(i), w in cols(j)

    Shape: dout (N, C, H_out, W_out) -> dx (N, C, H, W)
    """
    x_shape, (out_h, out_w) = cache
    batch, channels, height, width = x_shape
    if dout.shape != (batch, channels, out_h, out_w):
        raise ValueError(f"naive adaptive_avg_pool2d_backward: dout shape {dout.shape} does not fit the forward output")
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for n in range(batch):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    rows, cols = _adaptive_bin(i, height, out_h), _adaptive_bin(j, width, out_w)
                    share = dout[n, c, i, j] / (len(rows) * len(cols))
                    for h in rows:
                        for w in cols:
                            dx[n, c, h, w] += share
    return dx
