"""The convolution and the transposed convolution, loop by loop (notation: ``convnp.functional.naive``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.functional.geometry import IntPair, Padding, conv_geometry, conv_transpose_geometry, pad_spatial, pair

__all__ = [
    "NaiveConv2dCache",
    "conv2d_forward",
    "conv2d_backward",
    "NaiveConvTranspose2dCache",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
]


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


@dataclass
class NaiveConvTranspose2dCache:
    """Everything ``conv_transpose2d_backward`` needs: the input and the settings."""

    x: np.ndarray  # (N, C_in, H, W)
    weight: np.ndarray  # (C_in, C_out/G, KH, KW)
    has_bias: bool
    padding: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    out_hw: tuple[int, int]


def conv_transpose2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> tuple[np.ndarray, NaiveConvTranspose2dCache]:
    """Transposed convolution, one multiply-add at a time: every input value scattered through every weight.

    Formula, for input channel c in group g = c // (C_in/G) and f < C_out/G:

        out[n, g*C_out/G + f, i*SH - PH + p*DH, j*SW - PW + q*DW] += x[n, c, i, j] * weight[c, f, p, q]

    for every term whose position lies inside out (the others fall on the
    cropped padding), then out[n, o, :, :] += bias[o].

    Shape:
        x:      (N, C_in, H, W)
        weight: (C_in, C_out // G, KH, KW)
        out:    (N, C_out, H_out, W_out), H_out = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding_h + 1

    Returns ``(out, cache)`` like ``convnp.functional.conv_transpose.conv_transpose2d_forward``.
    """
    batch, in_channels, height, width = x.shape
    _, out_per_group, kernel_h, kernel_w = weight.shape
    if in_channels % groups or weight.shape[0] != in_channels:
        raise ValueError(f"naive conv_transpose2d: x shape {x.shape} and weight shape {weight.shape} do not fit")
    stride_hw = pair(stride, "stride", "naive conv_transpose2d")
    dilation_hw = pair(dilation, "dilation", "naive conv_transpose2d")
    pad_h, pad_w = pair(padding, "padding", "naive conv_transpose2d", minimum=0)
    extra = pair(output_padding, "output_padding", "naive conv_transpose2d", minimum=0)
    out_h, out_w = conv_transpose_geometry(
        (height, width), (kernel_h, kernel_w), stride_hw, (pad_h, pad_w), extra, dilation_hw, "naive conv_transpose2d"
    )
    in_per_group = in_channels // groups

    out = np.zeros((batch, out_per_group * groups, out_h, out_w), dtype=x.dtype)
    for n in range(batch):
        for c in range(in_channels):
            group = c // in_per_group
            for i in range(height):
                for j in range(width):
                    for f in range(out_per_group):
                        for p in range(kernel_h):
                            for q in range(kernel_w):
                                row = i * stride_hw[0] - pad_h + p * dilation_hw[0]
                                col = j * stride_hw[1] - pad_w + q * dilation_hw[1]
                                if 0 <= row < out_h and 0 <= col < out_w:
                                    out[n, group * out_per_group + f, row, col] += x[n, c, i, j] * weight[c, f, p, q]
    if bias is not None:
        for o in range(out.shape[1]):
            out[:, o] += bias[o]
    cache = NaiveConvTranspose2dCache(
        x, weight, bias is not None, (pad_h, pad_w), stride_hw, dilation_hw, groups, (out_h, out_w)
    )
    return out, cache


def conv_transpose2d_backward(
    dout: np.ndarray, cache: NaiveConvTranspose2dCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of the transposed convolution, term by term.

    Each forward term ``x[n, c, i, j] * weight[c, f, p, q]`` was added to
    out[n, o, row, col] (o = g*C_out/G + f, row = i*SH - PH + p*DH, col = j*SW - PW + q*DW),
    so it sends dout[n, o, row, col] back to both of its factors:

        dx[n, c, i, j]       += dout[n, o, row, col] * weight[c, f, p, q]
        dweight[c, f, p, q]  += dout[n, o, row, col] * x[n, c, i, j]
        dbias[o] = sum over n, rows, cols of dout[n, o, row, col]

    Shape:
        dout: (N, C_out, H_out, W_out)
        returns dx (N, C_in, H, W), dweight (C_in, C_out/G, KH, KW), dbias (C_out,) or None
    """
    x, weight = cache.x, cache.weight
    batch, in_channels, height, width = x.shape
    _, out_per_group, kernel_h, kernel_w = weight.shape
    out_h, out_w = cache.out_hw
    if dout.shape != (batch, out_per_group * cache.groups, out_h, out_w):
        raise ValueError(f"naive conv_transpose2d_backward: dout shape {dout.shape} does not fit the forward output")
    in_per_group = in_channels // cache.groups

    dx = np.zeros_like(x)
    dweight = np.zeros_like(weight)
    for n in range(batch):
        for c in range(in_channels):
            group = c // in_per_group
            for i in range(height):
                for j in range(width):
                    for f in range(out_per_group):
                        for p in range(kernel_h):
                            for q in range(kernel_w):
                                row = i * cache.stride[0] - cache.padding[0] + p * cache.dilation[0]
                                col = j * cache.stride[1] - cache.padding[1] + q * cache.dilation[1]
                                if 0 <= row < out_h and 0 <= col < out_w:
                                    grad_out = dout[n, group * out_per_group + f, row, col]
                                    dx[n, c, i, j] += grad_out * weight[c, f, p, q]
                                    dweight[c, f, p, q] += grad_out * x[n, c, i, j]
    dbias = None
    if cache.has_bias:
        dbias = np.zeros(dout.shape[1], dtype=dout.dtype)
        for o in range(dout.shape[1]):
            for n in range(batch):
                for row in range(out_h):
                    for col in range(out_w):
                        dbias[o] += dout[n, o, row, col]
    return dx, dweight, dbias
