"""Loop-based reference implementations: the formulas, index by index.

Every function here has the same signature and returns the same things as its
fast counterpart in ``convnp.functional.conv`` / ``convnp.functional.pooling``,
but computes them with explicit for-loops over every index (n, f, i, j, c, p,
q). They are slow on purpose: each line is one term of the textbook formula, so
they serve as test oracles for the vectorised code and as teaching material.
Keep the inputs small (a few channels, images of ~10x10).

Only the window geometry is shared with the fast path: padding normalisation
and the output size come from ``convnp.functional.geometry``, which is the one
definition of them in the library.

Notation used in every docstring below:
    x_padded   the input with PT/PB rows above/below and PL/PR columns left/right
               of padding (zeros for convolution and average pooling, -inf for
               max pooling)
    SH, SW     stride; DH, DW dilation; KH, KW kernel size
    G          groups; C/G input channels and F/G filters per group
    g(f)       = f // (F/G), the group of filter f
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.functional.geometry import IntPair, Padding, conv_geometry, pad_spatial, pair, pool_geometry

__all__ = [
    "NaiveConv2dCache",
    "NaivePoolCache",
    "conv2d_forward",
    "conv2d_backward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
]


# --------------------------------------------------------------------------- convolution


@dataclass
class NaiveConv2dCache:
    """Everything ``conv2d_backward`` needs: the padded input and the settings."""

    x_padded: np.ndarray  # (N, C, H + PT + PB, W + PL + PR)
    weight: np.ndarray  # (F, C/G, KH, KW)
    has_bias: bool
    x_shape: tuple[int, int, int, int]
    pads: tuple[int, int, int, int]  # (top, bottom, left, right)
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    out_hw: tuple[int, int]


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, NaiveConv2dCache]:
    """2-D convolution (cross-correlation), one multiply-add at a time.

    Formula, for filter f in group g = g(f) and input channel c of that group:

        out[n, f, i, j] = bias[f] + sum over c < C/G, p < KH, q < KW of
            weight[f, c, p, q] * x_padded[n, g*C/G + c, i*SH + p*DH, j*SW + q*DW]

    Shape:
        x:      (N, C, H, W)
        weight: (F, C // G, KH, KW)
        bias:   (F,) or None
        out:    (N, F, H_out, W_out), H_out = floor((H + PT + PB - DH*(KH-1) - 1) / SH) + 1

    Returns ``(out, cache)`` like ``convnp.functional.conv.conv2d_forward``.
    """
    batch, channels, height, width = x.shape
    filters, channels_per_group, kernel_h, kernel_w = weight.shape
    if channels % groups or filters % groups or channels_per_group != channels // groups:
        raise ValueError(f"naive conv2d: x shape {x.shape} and weight shape {weight.shape} do not fit groups={groups}")
    stride_h, stride_w = pair(stride, "stride", "naive conv2d")
    dilation_h, dilation_w = pair(dilation, "dilation", "naive conv2d")
    pads, (out_h, out_w) = conv_geometry(
        (height, width),
        (kernel_h, kernel_w),
        (stride_h, stride_w),
        padding,
        (dilation_h, dilation_w),
        "naive conv2d",
        x.shape,
    )
    filters_per_group = filters // groups
    x_padded = pad_spatial(x, pads)

    out = np.zeros((batch, filters, out_h, out_w), dtype=x.dtype)
    for n in range(batch):
        for f in range(filters):
            group = f // filters_per_group
            for i in range(out_h):
                for j in range(out_w):
                    total = bias[f] if bias is not None else x.dtype.type(0)
                    for c in range(channels_per_group):
                        for p in range(kernel_h):
                            for q in range(kernel_w):
                                row = i * stride_h + p * dilation_h
                                col = j * stride_w + q * dilation_w
                                total += weight[f, c, p, q] * x_padded[n, group * channels_per_group + c, row, col]
                    out[n, f, i, j] = total

    cache = NaiveConv2dCache(
        x_padded=x_padded,
        weight=weight,
        has_bias=bias is not None,
        x_shape=x.shape,
        pads=pads,
        stride=(stride_h, stride_w),
        dilation=(dilation_h, dilation_w),
        groups=groups,
        out_hw=(out_h, out_w),
    )
    return out, cache


def conv2d_backward(dout: np.ndarray, cache: NaiveConv2dCache) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of the convolution, by differentiating each term of the forward sum.

    Every forward term ``weight[f, c, p, q] * x_padded[n, g*C/G + c, row, col]``
    (row = i*SH + p*DH, col = j*SW + q*DW) was multiplied into out[n, f, i, j],
    so it sends dout[n, f, i, j] back to both of its factors:

        dweight[f, c, p, q]                  += dout[n, f, i, j] * x_padded[n, g*C/G + c, row, col]
        dx_padded[n, g*C/G + c, row, col]    += dout[n, f, i, j] * weight[f, c, p, q]
        dbias[f] = sum over n, i, j of dout[n, f, i, j]

    and dx is dx_padded with the padding cropped off (padding is a constant).
    An input pixel read by several windows collects a term from each of them.

    Shape:
        dout: (N, F, H_out, W_out)
        returns dx (N, C, H, W), dweight (F, C/G, KH, KW), dbias (F,) or None
    """
    batch, _, height, width = cache.x_shape
    filters, channels_per_group, kernel_h, kernel_w = cache.weight.shape
    out_h, out_w = cache.out_hw
    stride_h, stride_w = cache.stride
    dilation_h, dilation_w = cache.dilation
    top, _, left, _ = cache.pads
    filters_per_group = filters // cache.groups
    if dout.shape != (batch, filters, out_h, out_w):
        raise ValueError(
            f"naive conv2d_backward: expected dout of shape {(batch, filters, out_h, out_w)}, got {dout.shape}"
        )

    x_padded, weight = cache.x_padded, cache.weight
    dx_padded = np.zeros_like(x_padded)
    dweight = np.zeros_like(weight)
    for n in range(batch):
        for f in range(filters):
            group = f // filters_per_group
            for i in range(out_h):
                for j in range(out_w):
                    grad_out = dout[n, f, i, j]
                    for c in range(channels_per_group):
                        channel = group * channels_per_group + c
                        for p in range(kernel_h):
                            for q in range(kernel_w):
                                row = i * stride_h + p * dilation_h
                                col = j * stride_w + q * dilation_w
                                dweight[f, c, p, q] += grad_out * x_padded[n, channel, row, col]
                                dx_padded[n, channel, row, col] += grad_out * weight[f, c, p, q]

    dbias = None
    if cache.has_bias:
        dbias = np.zeros(filters, dtype=dout.dtype)
        for f in range(filters):
            for n in range(batch):
                for i in range(out_h):
                    for j in range(out_w):
                        dbias[f] += dout[n, f, i, j]

    dx = dx_padded[:, :, top : top + height, left : left + width].copy()
    return dx, dweight, dbias


# --------------------------------------------------------------------------- pooling


@dataclass
class NaivePoolCache:
    """Everything a pooling backward pass needs."""

    x_shape: tuple[int, int, int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # (top, bottom, left, right)
    out_hw: tuple[int, int]
    dtype: np.dtype
    # Max pooling only: (N, C, H_out, W_out, 2), the (row, col) in x_padded of
    # the input each window chose as its maximum.
    argmax: np.ndarray | None = None


def _pool_geometry(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None, padding: Padding, op: str
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
    """Kernel, stride (default: the kernel), pads and output size of a pooling op (see ``pool_geometry``)."""
    kernel = pair(kernel_size, "kernel_size", op)
    stride_hw = kernel if stride is None else pair(stride, "stride", op)
    pads, out_hw = pool_geometry(x.shape[2:], kernel, stride_hw, padding, op, x.shape)
    return kernel, stride_hw, pads, out_hw


def max_pool2d_forward(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None, padding: Padding = 0
) -> tuple[np.ndarray, NaivePoolCache]:
    """Maximum of every window, remembering where it was.

    Formula (x_padded is padded with -inf, so padding is never the maximum):

        out[n, c, i, j] = max over p < KH, q < KW of x_padded[n, c, i*SH + p, j*SW + q]

    Tie rule: the window is scanned in row-major order (p, then q) and a value
    replaces the current best only when it is strictly greater, so the first
    maximum wins. The backward pass sends the gradient to that one input only.
    A NaN replaces whatever is the best so far (PyTorch's CPU rule), so a NaN in
    a window propagates and, with several, the gradient goes to the last one.

    Shape:
        x:   (N, C, H, W)
        out: (N, C, H_out, W_out), H_out = floor((H + PT + PB - KH) / SH) + 1
    """
    kernel, (stride_h, stride_w), pads, (out_h, out_w) = _pool_geometry(
        x, kernel_size, stride, padding, "naive max_pool2d"
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
                            row = i * stride_h + p
                            col = j * stride_w + q
                            value = x_padded[n, c, row, col]
                            if best_value is None or _beats(value, best_value):
                                best_value = value
                                best_row, best_col = row, col
                    out[n, c, i, j] = best_value
                    argmax[n, c, i, j] = (best_row, best_col)

    cache = NaivePoolCache(x.shape, kernel, (stride_h, stride_w), pads, (out_h, out_w), x.dtype, argmax)
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
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None, padding: Padding = 0
) -> tuple[np.ndarray, NaivePoolCache]:
    """Mean of every window; zero padding counts in the average (PyTorch's default).

    Formula (x_padded is padded with zeros):

        out[n, c, i, j] = (1 / (KH*KW)) * sum over p < KH, q < KW of
            x_padded[n, c, i*SH + p, j*SW + q]

    Shape:
        x:   (N, C, H, W)
        out: (N, C, H_out, W_out), H_out = floor((H + PT + PB - KH) / SH) + 1
    """
    kernel, (stride_h, stride_w), pads, (out_h, out_w) = _pool_geometry(
        x, kernel_size, stride, padding, "naive avg_pool2d"
    )
    kernel_h, kernel_w = kernel
    batch, channels = x.shape[:2]
    window_area = kernel_h * kernel_w
    x_padded = pad_spatial(x, pads)

    out = np.zeros((batch, channels, out_h, out_w), dtype=x.dtype)
    for n in range(batch):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    total = x.dtype.type(0)
                    for p in range(kernel_h):
                        for q in range(kernel_w):
                            total += x_padded[n, c, i * stride_h + p, j * stride_w + q]
                    out[n, c, i, j] = total / window_area

    cache = NaivePoolCache(x.shape, kernel, (stride_h, stride_w), pads, (out_h, out_w), x.dtype)
    return out, cache


def avg_pool2d_backward(dout: np.ndarray, cache: NaivePoolCache) -> np.ndarray:
    """Every position of a window receives an equal share of that window's gradient.

    Formula:

        dx_padded[n, c, i*SH + p, j*SW + q] += dout[n, c, i, j] / (KH*KW)
            for every p < KH, q < KW

    The shares that land on padding are dropped when dx is cropped.

    Shape:
        dout: (N, C, H_out, W_out)
        dx:   (N, C, H, W)
    """
    _check_pool_dout(dout, cache, "naive avg_pool2d_backward")
    kernel_h, kernel_w = cache.kernel_size
    stride_h, stride_w = cache.stride
    window_area = kernel_h * kernel_w
    dx_padded = _zeros_padded(cache)
    batch, channels, out_h, out_w = dout.shape
    for n in range(batch):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    share = dout[n, c, i, j] / window_area
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
