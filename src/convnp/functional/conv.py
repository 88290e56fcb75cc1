"""2-D convolution (cross-correlation, as in every deep-learning library).

Forward, for output channel f of group g = f // (F / G):

    out[n, f, i, j] = bias[f] + sum over c in group g, p < KH, q < KW of
        weight[f, c - g*C/G, p, q] * x_padded[n, c, i*SH + p*DH, j*SW + q*DW]

The fast path is im2col: every receptive field becomes one row of a matrix
``x_cols`` and the whole convolution is one matrix product with the weights
flattened to rows. The backward pass is the same picture read in reverse:

    dweight = dout_cols^T @ x_cols         (one GEMM)
    dx_cols = dout_cols @ weight_rows      (one GEMM)
    dx      = col2im(dx_cols)              (scatter-add, one strided slice per kernel offset)
    dbias   = sum of dout over N, H_out, W_out

Shape:
    x:      (N, C, H, W)
    weight: (F, C // G, KH, KW)
    bias:   (F,) or None
    out:    (N, F, H_out, W_out), H_out = floor((H + PT + PB - DH*(KH-1) - 1) / SH) + 1
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.functional.geometry import (
    IntPair,
    Padding,
    conv_geometry,
    pad_spatial,
    pair,
    sliding_windows,
)

__all__ = ["conv2d_forward", "conv2d_backward", "Conv2dCache", "col2im"]


@dataclass
class Conv2dCache:
    """What the backward pass needs from the forward pass."""

    x_cols: np.ndarray  # (N*H_out*W_out, G, C/G*KH*KW): the receptive fields
    weight: np.ndarray  # (F, C/G, KH, KW)
    has_bias: bool
    x_shape: tuple[int, int, int, int]
    pads: tuple[int, int, int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    out_hw: tuple[int, int]


def _check_conv_args(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, groups: int) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"conv2d: expected x of shape (N, C, H, W), got {np.shape(x)}")
    if not isinstance(weight, np.ndarray) or weight.ndim != 4:
        raise ValueError(f"conv2d: expected weight of shape (F, C/groups, KH, KW), got {np.shape(weight)}")
    if not np.issubdtype(x.dtype, np.floating) or x.dtype != weight.dtype:
        raise TypeError(f"conv2d: x and weight must share one float dtype, got {x.dtype} and {weight.dtype}")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    channels, filters = x.shape[1], weight.shape[0]
    if channels % groups or filters % groups:
        raise ValueError(
            f"conv2d: in_channels={channels} and out_channels={filters} must both be divisible by groups={groups}"
        )
    if weight.shape[1] != channels // groups:
        raise ValueError(
            f"conv2d: weight expects {weight.shape[1] * groups} input channels "
            f"(weight shape {weight.shape}, groups={groups}), got x with {channels} (x shape {x.shape})"
        )
    if bias is not None and (bias.shape != (filters,) or bias.dtype != x.dtype):
        raise ValueError(f"conv2d: expected bias of shape ({filters},) and dtype {x.dtype}, got {bias.shape} {bias.dtype}")


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, Conv2dCache]:
    """Convolve ``x`` with ``weight``: im2col, then one matrix product per group.

    Args:
        x: input images, (N, C, H, W).
        weight: filters, (F, C // groups, KH, KW).
        bias: (F,) or None.
        stride, dilation: an int or a pair (SH, SW) / (DH, DW).
        padding: an int, a pair, "valid" or "same" (zeros).
        groups: channels are split into ``groups`` independent convolutions.

    Returns:
        out: (N, F, H_out, W_out), contiguous, in x's dtype.
        cache: for ``conv2d_backward``.
    """
    _check_conv_args(x, weight, bias, groups)
    stride = pair(stride, "stride", "conv2d")
    dilation = pair(dilation, "dilation", "conv2d")
    n, channels, height, width = x.shape
    filters, group_channels, kh, kw = weight.shape
    pads, (h_out, w_out) = conv_geometry(
        (height, width), (kh, kw), stride, padding, dilation, "conv2d", x.shape
    )

    x_padded = pad_spatial(x, pads)
    windows = sliding_windows(x_padded, (kh, kw), stride, dilation, (h_out, w_out))  # (N, C, Ho, Wo, KH, KW)
    # Rows are output positions, columns are (channel, kernel row, kernel column):
    # the order of a flattened weight row, so the product needs no transposed weight copy.
    x_cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h_out * w_out, groups, group_channels * kh * kw)
    weight_rows = weight.reshape(groups, filters // groups, group_channels * kh * kw)  # (G, F/G, C/G*KH*KW)

    if groups == 1:
        out_cols = x_cols[:, 0, :] @ weight_rows[0].T  # (N*Ho*Wo, F)
    else:
        # (G, N*Ho*Wo, C/G*KK) @ (G, C/G*KK, F/G) -> (G, N*Ho*Wo, F/G)
        out_cols = np.matmul(x_cols.transpose(1, 0, 2), weight_rows.transpose(0, 2, 1))
        out_cols = out_cols.transpose(1, 0, 2).reshape(n * h_out * w_out, filters)

    out_nhwc = out_cols.reshape(n, h_out, w_out, filters)
    out = np.empty((n, filters, h_out, w_out), dtype=x.dtype)
    if bias is None:
        np.copyto(out, out_nhwc.transpose(0, 3, 1, 2))
    else:
        # Adding the bias while writing NCHW costs no extra pass over the output.
        np.add(out_nhwc.transpose(0, 3, 1, 2), bias[:, None, None], out=out)

    cache = Conv2dCache(x_cols, weight, bias is not None, x.shape, pads, stride, dilation, groups, (h_out, w_out))
    return out, cache


def col2im(
    cols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    pads: tuple[int, int, int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> np.ndarray:
    """Sum window-shaped gradients back onto the image they were read from.

    The inverse of im2col's gather: every input pixel receives the sum of the
    gradients of every window that contains it. One strided slice-add per
    kernel offset (KH*KW Python iterations), never a loop over pixels.

    Shape:
        cols: (N, H_out, W_out, C, KH, KW)
        returns: (N, C, H, W) (padding cropped)
    """
    n, channels, height, width = x_shape
    top, bottom, left, right = pads
    _, h_out, w_out, _, kh, kw = cols.shape
    dx_padded = np.zeros((n, channels, height + top + bottom, width + left + right), dtype=cols.dtype)
    row_span = stride[0] * (h_out - 1) + 1
    col_span = stride[1] * (w_out - 1) + 1
    for p in range(kh):
        row0 = p * dilation[0]
        for q in range(kw):
            col0 = q * dilation[1]
            dx_padded[:, :, row0 : row0 + row_span : stride[0], col0 : col0 + col_span : stride[1]] += cols[
                :, :, :, :, p, q
            ].transpose(0, 3, 1, 2)
    return dx_padded[:, :, top : top + height, left : left + width]


def conv2d_backward(
    dout: np.ndarray, cache: Conv2dCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of the convolution with respect to x, weight and bias.

    Shape:
        dout: (N, F, H_out, W_out)
        returns dx (N, C, H, W), dweight (F, C/G, KH, KW), dbias (F,) or None
    """
    n, channels, _, _ = cache.x_shape
    filters, group_channels, kh, kw = cache.weight.shape
    h_out, w_out = cache.out_hw
    groups = cache.groups
    expected = (n, filters, h_out, w_out)
    if dout.shape != expected:
        raise ValueError(f"conv2d_backward: expected dout of shape {expected}, got {dout.shape}")

    dout_cols = dout.transpose(0, 2, 3, 1).reshape(n * h_out * w_out, groups, filters // groups)
    weight_rows = cache.weight.reshape(groups, filters // groups, group_channels * kh * kw)
    dbias = dout.sum(axis=(0, 2, 3)) if cache.has_bias else None

    if groups == 1:
        dweight_rows = (dout_cols[:, 0, :].T @ cache.x_cols[:, 0, :])[None]  # (1, F, C*KK)
        dx_cols = dout_cols[:, 0, :] @ weight_rows[0]  # (N*Ho*Wo, C*KK)
    else:
        dout_groups = dout_cols.transpose(1, 0, 2)  # (G, M, F/G)
        dweight_rows = np.matmul(dout_groups.transpose(0, 2, 1), cache.x_cols.transpose(1, 0, 2))
        dx_cols = np.matmul(dout_groups, weight_rows).transpose(1, 0, 2)  # (M, G, C/G*KK)

    dweight = dweight_rows.reshape(cache.weight.shape)
    dx = col2im(
        dx_cols.reshape(n, h_out, w_out, channels, kh, kw),
        cache.x_shape,
        (kh, kw),
        cache.pads,
        cache.stride,
        cache.dilation,
    )
    return np.ascontiguousarray(dx), dweight, dbias
