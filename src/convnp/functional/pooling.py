"""Max, average and global-average pooling over the last two axes.

Max pooling:
    out[n, c, i, j] = max over p < KH, q < KW of x_padded[n, c, i*SH + p, j*SW + q]
    (padding is -inf, so it is never the maximum)
    dx[n, c, h, w] = sum over the windows (i, j) whose chosen maximum is (h, w) of dout[n, c, i, j]

Where several entries of a window tie for the maximum, the whole gradient goes
to the first of them in row-major order (PyTorch's rule); the gradient is never
split or duplicated. Overlapping windows (stride < kernel) can choose the same
input, so the backward pass accumulates.

Average pooling (zero padding counts in the average, PyTorch's default):
    out[n, c, i, j] = (1 / (KH*KW)) * sum over p, q of x_padded[n, c, i*SH + p, j*SW + q]
    dx = col2im of dout / (KH*KW) spread over every window position

Global average pooling:
    out[n, c] = mean over h, w of x[n, c, h, w];  dx[n, c, h, w] = dout[n, c] / (H*W)

Shape:
    x: (N, C, H, W)
    out: (N, C, H_out, W_out), H_out = floor((H + PT + PB - KH) / SH) + 1; (N, C) for global pooling
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.functional.geometry import IntPair, Padding, conv_geometry, pad_channels_last, pair

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
    "PoolCache",
]

_NO_DILATION = (1, 1)


@dataclass
class PoolCache:
    """What a pooling backward pass needs."""

    x_shape: tuple[int, int, int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    out_hw: tuple[int, int]
    dtype: np.dtype
    argmax: np.ndarray | None = None  # (N, C, H_out, W_out): flat offset p*KW + q of each window's max


def _pool_geometry(x: np.ndarray, kernel_size: IntPair, stride: IntPair | None, padding: Padding, op: str):
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"{op}: expected x of shape (N, C, H, W), got {np.shape(x)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{op}: expected a floating-point x, got dtype {x.dtype}")
    kernel = pair(kernel_size, "kernel_size", op)
    stride = kernel if stride is None else pair(stride, "stride", op)
    pads, out_hw = conv_geometry(x.shape[2:], kernel, stride, padding, _NO_DILATION, op, x.shape)
    # A window made only of padding would have no input to pool (PyTorch's rule).
    if max(pads[0], pads[1]) > kernel[0] // 2 or max(pads[2], pads[3]) > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding!r} must be at most half the kernel size {kernel}")
    return kernel, stride, pads, out_hw


def _window_offsets(x: np.ndarray, cache: PoolCache, pad_value: float):
    """Yield ``(k, values)`` for every kernel offset k = p*KW + q, in row-major order.

    ``values[n, i, j, c] = x_padded[n, i*SH + p, j*SW + q, c]``: the entry at
    offset (p, q) of every window, as a strided view of the channels-last
    input (no copy). Looping over the KH*KW offsets instead of gathering whole
    windows keeps every pass a simple elementwise op over an output-sized array.

    Shape: x (N, C, H, W) -> values (N, H_out, W_out, C)
    """
    x_padded = pad_channels_last(x.transpose(0, 2, 3, 1), cache.pads, pad_value)  # (N, Hp, Wp, C)
    (kh, kw), (sh, sw), (h_out, w_out) = cache.kernel_size, cache.stride, cache.out_hw
    for p in range(kh):
        for q in range(kw):
            yield p * kw + q, x_padded[:, p : p + sh * (h_out - 1) + 1 : sh, q : q + sw * (w_out - 1) + 1 : sw, :]


def _scatter_windows(window_grads, cache: PoolCache) -> np.ndarray:
    """Add per-window-offset gradients back onto the (padded) input, then crop.

    ``window_grads(p, q)`` returns the (N, H_out, W_out, C) gradient that flows
    to kernel offset (p, q) of every window. One strided slice-add per offset;
    overlapping windows accumulate. Returns the NCHW-shaped view of a
    channels-last array.
    """
    n, channels, height, width = cache.x_shape
    top, bottom, left, right = cache.pads
    (kh, kw), (sh, sw), (h_out, w_out) = cache.kernel_size, cache.stride, cache.out_hw
    dx_padded = np.zeros((n, height + top + bottom, width + left + right, channels), dtype=cache.dtype)
    for p in range(kh):
        for q in range(kw):
            dx_padded[:, p : p + sh * (h_out - 1) + 1 : sh, q : q + sw * (w_out - 1) + 1 : sw, :] += window_grads(p, q)
    return dx_padded[:, top : top + height, left : left + width, :].transpose(0, 3, 1, 2)


def max_pool2d_forward(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None, padding: Padding = 0
) -> tuple[np.ndarray, PoolCache]:
    """Maximum of every window; ``stride`` defaults to ``kernel_size``.

    Returns ``(out, cache)``; out is (N, C, H_out, W_out), stored channels-last.
    """
    kernel, stride, pads, out_hw = _pool_geometry(x, kernel_size, stride, padding, "max_pool2d")
    cache = PoolCache(x.shape, kernel, stride, pads, out_hw, x.dtype)
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
    kw = cache.kernel_size[1]
    zero = dout.dtype.type(0)
    return _scatter_windows(lambda p, q: np.where(cache.argmax == p * kw + q, dout_nhwc, zero), cache)


def avg_pool2d_forward(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None, padding: Padding = 0
) -> tuple[np.ndarray, PoolCache]:
    """Mean of every window, zero padding included in the count.

    Returns ``(out, cache)``; out is (N, C, H_out, W_out), stored channels-last.
    """
    kernel, stride, pads, out_hw = _pool_geometry(x, kernel_size, stride, padding, "avg_pool2d")
    cache = PoolCache(x.shape, kernel, stride, pads, out_hw, x.dtype)
    offsets = _window_offsets(x, cache, 0.0)
    _, first = next(offsets)
    out = first.copy()  # (N, Ho, Wo, C): the running window sum
    for _, values in offsets:
        out += values
    out *= x.dtype.type(1.0 / (kernel[0] * kernel[1]))
    return out.transpose(0, 3, 1, 2), cache


def avg_pool2d_backward(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """Every input in a window receives dout / (KH*KW) from that window.

    Shape: dout (N, C, H_out, W_out) -> dx (N, C, H, W).
    """
    _check_dout(dout, cache, "avg_pool2d_backward")
    kh, kw = cache.kernel_size
    dout_share = dout.transpose(0, 2, 3, 1) / dout.dtype.type(kh * kw)
    return _scatter_windows(lambda p, q: dout_share, cache)


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
