"""2-D convolution (cross-correlation, as in every deep-learning library).

Forward, for output channel f of group g = f // (F / G):

    out[n, f, i, j] = bias[f] + sum over c in group g, p < KH, q < KW of
        weight[f, c - g*C/G, p, q] * x_padded[n, c, i*SH + p*DH, j*SW + q*DW]

The fast path is im2col: every receptive field becomes one row of a matrix
``x_cols`` and the whole convolution is one matrix product with the weights
flattened to rows. The backward pass is the same picture read in reverse:

    dweight = dout_cols^T @ x_cols         (one GEMM)
    dbias   = sum of dout over N, H_out, W_out
    dx      = sum over kernel offsets (p, q) of (dout_cols @ weight[:, :, p, q]),
              each added onto the input pixels that offset read (im2col's adjoint)

With stride 1 and no more than twice as many filters as channels, dx is
computed instead as a convolution of dout with the flipped filters: one more
im2col and one GEMM per chunk (the section "Speed only" at the end).

Each pass below is written for one chunk of images (``forward_chunk``,
``backward_chunk``): that is the formula. ``convnp.backend`` runs it over the
batch, one slice per core and a few images per chunk, so that each chunk's
im2col rows are still in the CPU cache when the product reads them, and it
adds up the chunks' weight gradients in a fixed order.

Memory layout: the arguments and results are NCHW-shaped arrays, but the
computation runs channels-last. ``x.transpose(0, 2, 3, 1)`` is a free view;
im2col gathers rows whose entries are ordered (kernel row, kernel column,
channel), so the product lands directly in an (N, H_out, W_out, F) buffer,
which is returned as its NCHW-shaped view ``out.transpose(0, 3, 1, 2)``. When
the next layer is a convolution too, its ``transpose(0, 2, 3, 1)`` gives the
contiguous channels-last array back and nothing is copied between layers.
Shapes and values are exactly those of an NCHW convolution; only the strides
differ, and NumPy handles strides transparently.

Shape:
    x:      (N, C, H, W)
    weight: (F, C // G, KH, KW)
    bias:   (F,) or None
    out:    (N, F, H_out, W_out), H_out = floor((H + PT + PB - DH*(KH-1) - 1) / SH) + 1
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convnp.backend import column_sum, images_per_chunk, run_batched, scratch, sum_batched
from convnp.functional.geometry import (
    IntPair,
    Padding,
    conv_geometry,
    pad_channels_last,
    padded_shape,
    pair,
    sliding_windows,
)

__all__ = [
    "conv2d_forward", "conv2d_backward", "Conv2dCache", "im2col", "im2col_chunk", "weight_rows", "weight_from_rows",
    "convolve_chunk", "multiply_weight_rows", "weight_grad_rows", "input_grad_function",
]  # fmt: skip


@dataclass
class Conv2dCache:
    """What the backward pass needs from the forward pass.

    The input itself is kept, not its im2col matrix: the backward pass gathers
    each chunk again, which costs one cache-resident copy and saves holding
    (and streaming through memory) a matrix KH*KW times the input's size.
    """

    x_nhwc: np.ndarray  # (N, H, W, C): the input, channels-last view
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
        raise ValueError(
            f"conv2d: expected bias of shape ({filters},) and dtype {x.dtype}, got {bias.shape} {bias.dtype}"
        )


def weight_rows(weight: np.ndarray, groups: int) -> np.ndarray:
    """Filters flattened in im2col column order (kernel row, kernel column, channel).

    Shape: weight (F, C/G, KH, KW) -> (G, F/G, KH*KW*C/G)
    """
    filters, group_channels, kh, kw = weight.shape
    return weight.transpose(0, 2, 3, 1).reshape(groups, filters // groups, kh * kw * group_channels)


def im2col(
    x_padded_nhwc: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Gather every receptive field into one row.

    ``x_cols[(n*H_out + i)*W_out + j, (p*KW + q)*C + c] = x_padded[n, i*SH + p*DH, j*SW + q*DW, c]``

    ``out``, if given, is a C-contiguous array of N*H_out*W_out*KH*KW*C
    elements (any shape) that the rows are gathered into.

    Shape:
        x_padded_nhwc: (N, Hp, Wp, C), channels-last
        returns: (N*H_out*W_out, KH*KW*C)
    """
    n, _, _, channels = x_padded_nhwc.shape
    (kh, kw), (h_out, w_out) = kernel_size, out_hw
    windows = sliding_windows(x_padded_nhwc, kernel_size, stride, dilation, out_hw)  # (N, Ho, Wo, KH, KW, C)
    if channels == 1:
        # One channel (a network's first layer on gray images): a copy whose innermost
        # run is one value is slow, so gather planes instead, planes[p, q] being the
        # image shifted by kernel offset (p, q), copied along image rows. The result is
        # the transposed view of those planes, which BLAS reads as it is.
        shape = (kh, kw, n, h_out, w_out)
        planes = np.empty(shape, dtype=x_padded_nhwc.dtype) if out is None else out.reshape(shape)
        np.copyto(planes, windows[..., 0].transpose(3, 4, 0, 1, 2))
        return planes.reshape(kh * kw, n * h_out * w_out).T  # (N*Ho*Wo, KH*KW), column-major
    if out is None:
        return windows.reshape(n * h_out * w_out, kh * kw * channels)  # the one copy
    np.copyto(out.reshape(windows.shape), windows)
    return out.reshape(n * h_out * w_out, kh * kw * channels)


def _grouped_cols(x_cols: np.ndarray, kernel_area: int, groups: int) -> np.ndarray:
    """Split im2col columns by channel group. Shape: (M, KK*C) -> (G, M, KK*C/G)."""
    m = x_cols.shape[0]
    per_group = x_cols.reshape(m, kernel_area, groups, -1).transpose(2, 0, 1, 3)  # (G, M, KK, C/G)
    return per_group.reshape(groups, m, -1)


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
        x: input images, (N, C, H, W) (any strides; channels-last memory is fastest).
        weight: filters, (F, C // groups, KH, KW).
        bias: (F,) or None.
        stride, dilation: an int or a pair (SH, SW) / (DH, DW).
        padding: an int, a pair, "valid" or "same" (zeros).
        groups: channels are split into ``groups`` independent convolutions.

    Returns:
        out: (N, F, H_out, W_out) in x's dtype, stored channels-last.
        cache: for ``conv2d_backward``.
    """
    _check_conv_args(x, weight, bias, groups)
    stride = pair(stride, "stride", "conv2d")
    dilation = pair(dilation, "dilation", "conv2d")
    n, channels, height, width = x.shape
    filters, _, kh, kw = weight.shape
    pads, (h_out, w_out) = conv_geometry((height, width), (kh, kw), stride, padding, dilation, "conv2d", x.shape)
    x_nhwc = x.transpose(0, 2, 3, 1)  # (N, H, W, C): a view
    cache = Conv2dCache(x_nhwc, weight, bias is not None, x.shape, pads, stride, dilation, groups, (h_out, w_out))
    rows = weight_rows(weight, groups)  # (G, F/G, KH*KW*C/G)
    out_nhwc = np.empty((n, h_out, w_out, filters), dtype=x.dtype)

    def forward_chunk(first: int, last: int) -> None:
        convolve_chunk(x_nhwc[first:last], rows, bias, cache, out=out_nhwc[first:last])

    run_batched(forward_chunk, n, cache_work(cache), images_per_chunk(im2col_values(cache), x.dtype))
    return out_nhwc.transpose(0, 3, 1, 2), cache  # NCHW view of NHWC memory


def convolve_chunk(
    x_chunk: np.ndarray, rows: np.ndarray, bias: np.ndarray | None, cache: Conv2dCache, out: np.ndarray
) -> None:
    """The convolution of a few images, written into ``out``: out = im2col(x_padded) @ weight_rows.T + bias.

    Shape: x_chunk (n, H, W, C), rows (G, F/G, KH*KW*C/G), out (n, H_out, W_out, F)
    """
    filters = out.shape[-1]
    x_cols = im2col_chunk(x_chunk, cache)  # (n*Ho*Wo, KH*KW*C)
    out_cols = out.reshape(-1, filters)  # (n*Ho*Wo, F)
    multiply_weight_rows(x_cols, rows, math.prod(cache.weight.shape[2:]), out_cols)
    if bias is not None:
        out_cols += bias  # broadcast over rows: the channel axis is innermost


def multiply_weight_rows(x_cols: np.ndarray, rows: np.ndarray, kernel_area: int, out_cols: np.ndarray) -> None:
    """The convolution's one product, written into ``out_cols``: out_cols = x_cols @ weight_rows.T, per group.

    Shape: x_cols (m, KH*KW*C), rows (G, F/G, KH*KW*C/G) -> out_cols (m, F); kernel_area = KH*KW
    """
    groups, group_filters, _ = rows.shape
    if groups == 1:
        np.dot(x_cols, rows[0].T, out=out_cols)  # np.dot, not @: see backend/threads.py
    else:
        # (G, m, KK*C/G) @ (G, KK*C/G, F/G) -> (G, m, F/G) -> (m, F)
        out_groups = np.matmul(_grouped_cols(x_cols, kernel_area, groups), rows.transpose(0, 2, 1))
        out_cols[...] = out_groups.transpose(1, 0, 2).reshape(-1, groups * group_filters)


def weight_grad_rows(dout_cols: np.ndarray, x_cols: np.ndarray, kernel_area: int, groups: int) -> np.ndarray:
    """The weight gradient of a chunk, as weight rows: dweight_rows = dout_cols.T @ x_cols, per group.

    Shape: dout_cols (m, F), x_cols (m, KH*KW*C) -> (G, F/G, KH*KW*C/G); kernel_area = KH*KW
    """
    if groups == 1:
        return np.dot(dout_cols.T, x_cols)[None]  # (1, F, KK*C)
    filters = dout_cols.shape[1]
    dout_groups = dout_cols.reshape(-1, groups, filters // groups).transpose(1, 0, 2)  # (G, m, F/G)
    x_groups = _grouped_cols(x_cols, kernel_area, groups)  # (G, m, KK*C/G)
    return np.matmul(dout_groups.transpose(0, 2, 1), x_groups)  # (G, F/G, KK*C/G)


def weight_from_rows(dweight_rows: np.ndarray, weight_shape: tuple[int, int, int, int]) -> np.ndarray:
    """The inverse of ``weight_rows``: (G, F/G, KH*KW*C/G) -> a contiguous (F, C/G, KH, KW)."""
    filters, group_channels, kh, kw = weight_shape
    return np.ascontiguousarray(dweight_rows.reshape(filters, kh, kw, group_channels).transpose(0, 3, 1, 2))


def im2col_values(cache: Conv2dCache) -> int:
    """The number of im2col values one image gathers: H_out * W_out * KH * KW * C."""
    _, channels, _, _ = cache.x_shape
    kh, kw = cache.weight.shape[2:]
    return cache.out_hw[0] * cache.out_hw[1] * kh * kw * channels


def cache_work(cache: Conv2dCache) -> int:
    """The size of the op, in im2col values over the whole batch (it decides whether to split the batch)."""
    return cache.x_shape[0] * im2col_values(cache)


def _pad_chunk(x_nhwc: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """A chunk of images, zero-padded into this thread's scratch buffer (``x_nhwc`` itself without padding).

    The result may be a scratch view: used within the chunk, never kept.
    """
    if not any(pads):
        return x_nhwc
    buffer = scratch("conv padded", padded_shape(x_nhwc.shape, pads), x_nhwc.dtype)
    return pad_channels_last(x_nhwc, pads, out=buffer)


def _gather_chunk(
    x_padded: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """im2col rows of a chunk of padded images, in this thread's scratch buffer (never kept).

    Shape: x_padded (n, Hp, Wp, C) -> x_cols (n*Ho*Wo, KH*KW*C)
    """
    n, channels = x_padded.shape[0], x_padded.shape[3]
    rows, columns = n * out_hw[0] * out_hw[1], kernel_size[0] * kernel_size[1] * channels
    x_cols = scratch("conv columns", (rows, columns), x_padded.dtype)
    return im2col(x_padded, kernel_size, stride, dilation, out_hw, out=x_cols)


def im2col_chunk(x_chunk: np.ndarray, cache: Conv2dCache) -> np.ndarray:
    """im2col rows of a chunk of images: padded, then gathered, in this thread's scratch buffers (never kept).

    Shape: x_chunk (n, H, W, C) -> x_cols (n*H_out*W_out, KH*KW*C)
    """
    x_padded = _pad_chunk(x_chunk, cache.pads)  # (n, H + PT + PB, W + PL + PR, C)
    return _gather_chunk(x_padded, cache.weight.shape[2:], cache.stride, cache.dilation, cache.out_hw)


def conv2d_backward(
    dout: np.ndarray, cache: Conv2dCache, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of the convolution with respect to x, weight and bias.

    ``input_grad=False`` skips dx (returned as None): the first layer of a
    network needs no input gradient, and dx is a third of the backward work.

    Shape:
        dout: (N, F, H_out, W_out)
        returns dx (N, C, H, W), dweight (F, C/G, KH, KW), dbias (F,) or None
    """
    n, filters = cache.x_shape[0], cache.weight.shape[0]
    h_out, w_out = cache.out_hw
    expected = (n, filters, h_out, w_out)
    if dout.shape != expected:
        raise ValueError(f"conv2d_backward: expected dout of shape {expected}, got {dout.shape}")
    # Free when dout is channels-last in memory (as this op's own output is).
    dout_cols = dout.transpose(0, 2, 3, 1).reshape(n * h_out * w_out, filters)  # (M, F)
    rows_per_image = h_out * w_out
    return conv_backward_by_chunks(
        cache, lambda first, last: dout_cols[first * rows_per_image : last * rows_per_image], input_grad
    )


def conv_backward_by_chunks(
    cache: Conv2dCache,
    dout_chunk: Callable[[int, int], np.ndarray],
    input_grad: bool = True,
    dout_built_per_chunk: bool = False,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """``conv2d_backward`` with dout handed over a chunk of images at a time.

    Per chunk (its dout rows still in the CPU cache for all three products):

        dbias   += sum of dout_cols over rows
        dweight += dout_cols.T @ x_cols          (x_cols gathered again from the kept input)
        dx       = col2im(dout_cols @ weight_rows)

    ``dout_chunk(first, last)`` returns the (m, F) rows of dout for images
    first..last-1 (m = their number times H_out*W_out), channels-last; it may
    be a scratch view, computed just then (a fused max pool's backward pass
    does that, so the full-size dout never exists; ``dout_built_per_chunk``
    then sizes the chunks so that it fits in the cache beside the im2col rows).
    """
    n, channels, height, width = cache.x_shape
    filters = cache.weight.shape[0]
    h_out, w_out = cache.out_hw
    input_grad_chunk = input_grad_function(cache) if input_grad else None
    dx_nhwc = np.empty((n, height, width, channels), dtype=cache.x_nhwc.dtype) if input_grad else None

    def backward_chunk(first: int, last: int) -> tuple[np.ndarray, np.ndarray | None]:
        dout_part = dout_chunk(first, last)  # (m, F)
        dbias = column_sum(dout_part) if cache.has_bias else None  # (F,)
        x_cols = im2col_chunk(cache.x_nhwc[first:last], cache)  # (m, KK*C)
        dweight_rows = weight_grad_rows(dout_part, x_cols, math.prod(cache.weight.shape[2:]), cache.groups)
        if input_grad_chunk is not None:  # last: its gather may reuse the scratch buffers x_cols lives in
            input_grad_chunk(dout_part, dx_nhwc[first:last])
        return dweight_rows, dbias

    values_per_image = im2col_values(cache) + (h_out * w_out * filters if dout_built_per_chunk else 0)
    chunk = images_per_chunk(values_per_image, cache.x_nhwc.dtype)
    dweight_rows, dbias = sum_batched(backward_chunk, n, cache_work(cache), chunk)
    dweight = weight_from_rows(dweight_rows, cache.weight.shape)
    if not input_grad:
        return None, dweight, dbias
    return dx_nhwc.transpose(0, 3, 1, 2), dweight, dbias


def input_grad_function(cache: Conv2dCache) -> Callable[[np.ndarray, np.ndarray], None]:
    """The per-chunk dx: ``f(dout_part, dx_part)`` writes dx of a chunk's images.

    ``dout_part`` holds the chunk's (m, F) rows of dout, ``dx_part`` is its
    C-contiguous (n, H, W, C) part of dx (the fast path writes through a reshape).
    The textbook col2im (``_input_grad_chunk``), or, where it applies, the
    faster transposed convolution (see "Speed only" below). Both give the same
    values up to rounding.
    """
    transposed = _transposed_input_grad(cache)
    if transposed is not None:
        return transposed
    filters, group_channels, kh, kw = cache.weight.shape
    groups = cache.groups
    # One product per kernel offset: the filters at each offset, per group.
    offset_weights = np.ascontiguousarray(
        cache.weight.reshape(groups, filters // groups, group_channels, kh, kw).transpose(3, 4, 0, 1, 2)
    )  # (KH, KW, G, F/G, C/G)
    return lambda dout_part, dx_part: _input_grad_chunk(dout_part, offset_weights, cache, dx_part)


def _input_grad_chunk(
    dout_part: np.ndarray, offset_weights: np.ndarray, cache: Conv2dCache, dx_part: np.ndarray
) -> None:
    """dx for a chunk of images, written into ``dx_part``: one matrix product per kernel offset.

    Input pixel (i*SH + p*DH, j*SW + q*DW) of the padded image was read, at
    kernel offset (p, q), by output position (i, j) only. So the gradient that
    offset sends back is ``dout @ weight[:, :, p, q]``, one (C,) row per output
    position, added onto the pixels that offset read. Summing over the KH*KW
    offsets and cropping the padding gives dx. This is im2col's adjoint (col2im)
    with its product split by offset: each product lands in a contiguous
    (n, H_out, W_out, C) block, so every add runs over whole image rows.

    Shape: dout_part (n*H_out*W_out, F), offset_weights (KH, KW, G, F/G, C/G) -> dx_part (n, H, W, C)
    """
    count, height, width, channels = dx_part.shape
    kh, kw, groups, group_filters, _ = offset_weights.shape
    h_out, w_out = cache.out_hw
    top, bottom, left, right = cache.pads
    if any(cache.pads):
        dx_padded = scratch("conv dx padded", (count, height + top + bottom, width + left + right, channels),
                            dx_part.dtype)  # fmt: skip
    else:
        dx_padded = dx_part
    dx_padded.fill(0)
    offset_grad = scratch("conv dx offset", (count * h_out * w_out, channels), dx_part.dtype)
    if groups > 1:
        dout_groups = dout_part.reshape(-1, groups, group_filters).transpose(1, 0, 2)  # (G, m, F/G)
    row_span = cache.stride[0] * (h_out - 1) + 1
    col_span = cache.stride[1] * (w_out - 1) + 1
    for p in range(kh):
        row0 = p * cache.dilation[0]
        for q in range(kw):
            col0 = q * cache.dilation[1]
            if groups == 1:
                np.dot(dout_part, offset_weights[p, q, 0], out=offset_grad)  # (m, F) @ (F, C)
            else:  # (G, m, F/G) @ (G, F/G, C/G) -> (m, G, C/G)
                offset_grad.reshape(-1, groups, channels // groups)[...] = np.matmul(
                    dout_groups, offset_weights[p, q]
                ).transpose(1, 0, 2)
            rows = slice(row0, row0 + row_span, cache.stride[0])
            columns = slice(col0, col0 + col_span, cache.stride[1])
            dx_padded[:, rows, columns, :] += offset_grad.reshape(count, h_out, w_out, channels)
    if dx_padded is not dx_part:
        dx_part[...] = dx_padded[:, top : top + height, left : left + width, :]


# ----------------------------------------------------------------------------------------------
# Speed only: dx as a transposed convolution. The values are those of col2im above (up to
# rounding); what changes is the work: one im2col of dout and one GEMM per chunk, instead of
# KH*KW small products each scattered into dx.
# ----------------------------------------------------------------------------------------------
def _transposed_input_grad(cache: Conv2dCache) -> Callable[[np.ndarray, np.ndarray], None] | None:
    """The per-chunk dx as a convolution of dout with the flipped filters, or None where it does not apply.

    flipped[c, f, p, q] = weight[f, c, KH-1-p, KW-1-q];  dx = conv(dout padded by D*(K-1) - pad, flipped)
    """
    pads = _transposed_pads(cache)
    if pads is None:
        return None
    n, channels, height, width = cache.x_shape
    filters, _, kh, kw = cache.weight.shape
    h_out, w_out = cache.out_hw
    flipped = np.ascontiguousarray(cache.weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, F, KH, KW)
    flipped_rows = weight_rows(flipped, 1)[0]  # (C, KH*KW*F)

    def transposed_chunk(dout_part: np.ndarray, dx_part: np.ndarray) -> None:
        dout_images = dout_part.reshape(len(dx_part), h_out, w_out, filters)
        dout_cols = _gather_chunk(
            _pad_chunk(dout_images, pads), (kh, kw), (1, 1), cache.dilation, (height, width)
        )  # (count*H*W, KK*F)
        np.dot(dout_cols, flipped_rows.T, out=dx_part.reshape(-1, channels))

    return transposed_chunk


def _transposed_pads(cache: Conv2dCache) -> tuple[int, int, int, int] | None:
    """Padding under which dx is a stride-1 convolution of dout, or None when that does not apply.

    With stride 1, dx[h] = sum over p of dout[h + top - p*D] * w[p]: a
    correlation of dout with the flipped kernel, padded by D*(K-1) - top
    before and D*(K-1) - bottom after. Strided, grouped, or over-padded
    convolutions (which would need negative padding), and those with more
    than twice as many filters as input channels, use the col2im ``_input_grad_chunk`` instead.
    """
    filters, channels, kh, kw = cache.weight.shape
    # The gather reads KH*KW*F values per input position: with many more filters
    # than channels, one small product per kernel offset moves less memory.
    if cache.stride != (1, 1) or cache.groups != 1 or filters > 2 * channels:
        return None
    span_h, span_w = cache.dilation[0] * (kh - 1), cache.dilation[1] * (kw - 1)
    top, bottom, left, right = cache.pads
    pads = (span_h - top, span_h - bottom, span_w - left, span_w - right)
    return pads if min(pads) >= 0 else None
