"""2-D transposed convolution: a convolution's input gradient, used as an op of its own.

Take the convolution (conv.py) with weight ``weight`` of shape (C_in, C_out/G, KH, KW)
read in conv2d's layout (F = C_in filters over C_out input channels):

    conv2d:            z (N, C_out, H_out, W_out)  ->  y (N, C_in, H, W)
    conv_transpose2d:  x (N, C_in, H, W)           ->  out (N, C_out, H_out, W_out)

``conv_transpose2d(x)`` is that convolution's input gradient for the output
gradient ``x``: each input value x[n, c, i, j] goes back, through every
weight, to the pixels that output position (i, j) of the convolution read.
For input channel c of group g = c // (C_in/G) and f < C_out/G:

    out[n, g*C_out/G + f, i*SH - PH + p*DH, j*SW - PW + q*DW] += x[n, c, i, j] * weight[c, f, p, q]

plus bias[o] on every position of output channel o; contributions that land
on the padding (rows above PH, for instance) are dropped. PyTorch's
``ConvTranspose2d`` computes exactly this, with this weight layout. So the
three passes are the convolution's own passes, exchanged:

    forward:  out     = col2im(x_cols @ weight_rows)    the convolution's dx, with x as its dout
    backward: dx      = conv2d(dout, weight)            the convolution's forward pass
              dweight = x_cols^T @ im2col(dout)         the convolution's weight gradient
              dbias   = sum of dout over N, H_out, W_out

Output size (``transposed_output_size`` in geometry.py):

    H_out = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding_h + 1

A strided convolution floors its output size, so up to SH input heights give
the same H; ``output_padding`` (< max(SH, DH), PyTorch's rule) says which one
is meant. Its extra rows sit at the bottom: the adjoint convolution pads
``PH - output_padding_h`` rows below instead of PH, and where that is below
zero, the last ``output_padding_h - PH`` rows of ``out`` are beyond every
kernel's reach and hold the bias alone.

Each pass is written for one chunk of images and run over the batch by
``convnp.backend``, as in conv.py, whose pieces it uses: ``input_grad_function``
(col2im, or its faster transposed form) for the forward pass, ``im2col_chunk``
with ``multiply_weight_rows`` and ``weight_grad_rows`` (one gather of dout,
two products) for the backward pass.

Shape:
    x:      (N, C_in, H, W)
    weight: (C_in, C_out // G, KH, KW)
    bias:   (C_out,) or None
    out:    (N, C_out, H_out, W_out)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from convnp.backend import column_sum, images_per_chunk, run_batched, scratch, sum_batched
from convnp.functional.conv import (
    Conv2dCache,
    cache_work,
    im2col_chunk,
    im2col_values,
    input_grad_function,
    multiply_weight_rows,
    weight_from_rows,
    weight_grad_rows,
    weight_rows,
)
from convnp.functional.geometry import IntPair, conv_transpose_geometry, pair

__all__ = ["conv_transpose2d_forward", "conv_transpose2d_backward", "ConvTranspose2dCache"]

OP = "conv_transpose2d"


@dataclass
class ConvTranspose2dCache:
    """What the backward pass needs: the input, the weight, and the adjoint convolution's geometry."""

    x_nhwc: np.ndarray  # (N, H, W, C_in): the input, channels-last view
    weight: np.ndarray  # (C_in, C_out/G, KH, KW)
    has_bias: bool
    out_shape: tuple[int, int, int, int]  # (N, C_out, H_out, W_out)
    # The output rows and columns some input reaches: all of them but the last
    # max(output_padding - padding, 0), which hold the bias alone.
    reached_hw: tuple[int, int]
    pads: tuple[int, int, int, int]  # the adjoint convolution's (top, bottom, left, right)
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


def _check_args(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, groups: int) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"{OP}: expected x of shape (N, C_in, H, W), got {np.shape(x)}")
    if not isinstance(weight, np.ndarray) or weight.ndim != 4:
        raise ValueError(f"{OP}: expected weight of shape (C_in, C_out/groups, KH, KW), got {np.shape(weight)}")
    if not np.issubdtype(x.dtype, np.floating) or x.dtype != weight.dtype:
        raise TypeError(f"{OP}: x and weight must share one float dtype, got {x.dtype} and {weight.dtype}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{OP}: groups must be a positive int, got {groups!r}")
    if weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"{OP}: weight expects {weight.shape[0]} input channels (weight shape {weight.shape}), "
            f"got x with {x.shape[1]} (x shape {x.shape})"
        )
    if x.shape[1] % groups:
        raise ValueError(f"{OP}: in_channels={x.shape[1]} must be divisible by groups={groups}")
    out_channels = weight.shape[1] * groups
    if bias is not None and (bias.shape != (out_channels,) or bias.dtype != x.dtype):
        raise ValueError(
            f"{OP}: expected bias of shape ({out_channels},) and dtype {x.dtype}, got {bias.shape} {bias.dtype}"
        )


def conv_transpose2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> tuple[np.ndarray, ConvTranspose2dCache]:
    """Transposed convolution of ``x`` (PyTorch's ``conv_transpose2d``): the convolution's dx, with x as dout.

    Args:
        x: input images, (N, C_in, H, W).
        weight: (C_in, C_out // groups, KH, KW).
        bias: (C_out,) or None.
        stride, dilation: an int or a pair; those of the convolution this op is the input gradient of.
        padding: an int or a pair (PH, PW): rows and columns cropped from each side of the output.
        output_padding: an int or a pair, smaller than the stride or the dilation of its axis:
            rows (columns) added at the bottom (right) of the output.
        groups: channels are split into ``groups`` independent transposed convolutions.

    Returns:
        out: (N, C_out, H_out, W_out), H_out = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding_h + 1,
            stored channels-last.
        cache: for ``conv_transpose2d_backward``.
    """
    _check_args(x, weight, bias, groups)
    stride = pair(stride, "stride", OP)
    dilation = pair(dilation, "dilation", OP)
    padding = pair(padding, "padding", OP, minimum=0)
    output_padding = pair(output_padding, "output_padding", OP, minimum=0)
    n, in_channels, height, width = x.shape
    out_channels = weight.shape[1] * groups
    h_out, w_out = conv_transpose_geometry(
        (height, width), weight.shape[2:], stride, padding, output_padding, dilation, OP, x.shape
    )
    # Output padding replaces bottom (right) padding of the adjoint convolution, up to all of it;
    # rows it adds beyond that are reached by no input.
    (ph, pw), (oph, opw) = padding, output_padding
    cache = ConvTranspose2dCache(
        x_nhwc=x.transpose(0, 2, 3, 1),  # (N, H, W, C_in): a view
        weight=weight,
        has_bias=bias is not None,
        out_shape=(n, out_channels, h_out, w_out),
        reached_hw=(max(h_out - max(oph - ph, 0), 0), max(w_out - max(opw - pw, 0), 0)),
        pads=(ph, max(ph - oph, 0), pw, max(pw - opw, 0)),
        stride=stride,
        dilation=dilation,
        groups=groups,
    )
    reached_h, reached_w = cache.reached_hw
    trimmed = (reached_h, reached_w) != (h_out, w_out)
    out_nhwc = (np.zeros if trimmed else np.empty)((n, h_out, w_out, out_channels), dtype=x.dtype)
    if reached_h and reached_w:
        # The convolution whose input this op's output is; the scatter reads only its geometry.
        conv = _adjoint_conv(cache, out_nhwc[:, :reached_h, :reached_w])
        scatter_chunk = input_grad_function(conv)

        def forward_chunk(first: int, last: int) -> None:
            x_rows = cache.x_nhwc[first:last].reshape(-1, in_channels)  # (count*H*W, C_in)
            if not trimmed:
                scatter_chunk(x_rows, out_nhwc[first:last])
                return
            reached = scratch("conv transpose reached", (last - first, reached_h, reached_w, out_channels), x.dtype)
            scatter_chunk(x_rows, reached)
            out_nhwc[first:last, :reached_h, :reached_w] = reached

        run_batched(forward_chunk, n, cache_work(conv), images_per_chunk(im2col_values(conv), x.dtype))
    if bias is not None:
        out_nhwc += bias  # broadcast over the innermost (channel) axis
    return out_nhwc.transpose(0, 3, 1, 2), cache  # NCHW view of NHWC memory


def _adjoint_conv(cache: ConvTranspose2dCache, conv_input_nhwc: np.ndarray) -> Conv2dCache:
    """The convolution whose input gradient this op is, over the reached part of its (N, H_out, W_out, C_out) input.

    Its output is this op's input: (N, C_in, H, W).
    """
    n, out_channels = cache.out_shape[:2]
    return Conv2dCache(
        x_nhwc=conv_input_nhwc,
        weight=cache.weight,
        has_bias=False,
        x_shape=(n, out_channels, *cache.reached_hw),
        pads=cache.pads,
        stride=cache.stride,
        dilation=cache.dilation,
        groups=cache.groups,
        out_hw=cache.x_nhwc.shape[1:3],
    )


def conv_transpose2d_backward(
    dout: np.ndarray, cache: ConvTranspose2dCache, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of the transposed convolution with respect to x, weight and bias.

    Per chunk of images, one im2col of dout serves two products:

        dx_rows      = im2col(dout) @ weight_rows.T     (conv2d of dout: its forward pass)
        dweight_rows = x_rows.T @ im2col(dout)          (conv2d's weight gradient, x being its dout)
        dbias        = sum of dout over N, H_out, W_out

    ``input_grad=False`` skips dx (returned as None).

    Shape:
        dout: (N, C_out, H_out, W_out)
        returns dx (N, C_in, H, W), dweight (C_in, C_out/G, KH, KW), dbias (C_out,) or None
    """
    if dout.shape != cache.out_shape:
        raise ValueError(f"{OP}_backward: expected dout of shape {cache.out_shape}, got {dout.shape}")
    n, height, width, in_channels = cache.x_nhwc.shape
    out_channels = cache.out_shape[1]
    dtype = cache.x_nhwc.dtype
    reached_h, reached_w = cache.reached_hw
    if not (reached_h and reached_w):  # every input lands in the padding: out is the bias alone
        dx = np.zeros((n, in_channels, height, width), dtype=dtype) if input_grad else None
        return dx, np.zeros_like(cache.weight), dout.sum(axis=(0, 2, 3)) if cache.has_bias else None

    dout_nhwc = dout.transpose(0, 2, 3, 1)  # (N, H_out, W_out, C_out): free when dout is channels-last
    dx_nhwc = np.empty((n, height, width, in_channels), dtype=dtype) if input_grad else None
    conv = _adjoint_conv(cache, dout_nhwc[:, :reached_h, :reached_w])
    rows = weight_rows(cache.weight, cache.groups)  # (G, C_in/G, KH*KW*C_out/G)
    taps = math.prod(cache.weight.shape[2:])

    def backward_chunk(first: int, last: int) -> tuple[np.ndarray, np.ndarray | None]:
        dbias = column_sum(dout_nhwc[first:last].reshape(-1, out_channels)) if cache.has_bias else None
        dout_cols = im2col_chunk(conv.x_nhwc[first:last], conv)  # (count*H*W, KH*KW*C_out)
        x_rows = cache.x_nhwc[first:last].reshape(-1, in_channels)  # (count*H*W, C_in)
        dweight_rows = weight_grad_rows(x_rows, dout_cols, taps, cache.groups)  # (G, C_in/G, KH*KW*C_out/G)
        if dx_nhwc is not None:
            multiply_weight_rows(dout_cols, rows, taps, dx_nhwc[first:last].reshape(-1, in_channels))
        return dweight_rows, dbias

    chunk = images_per_chunk(im2col_values(conv), dtype)
    dweight_rows, dbias = sum_batched(backward_chunk, n, cache_work(conv), chunk)
    dweight = weight_from_rows(dweight_rows, cache.weight.shape)
    return (None if dx_nhwc is None else dx_nhwc.transpose(0, 3, 1, 2)), dweight, dbias
