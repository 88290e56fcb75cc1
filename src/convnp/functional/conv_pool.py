"""A convolution followed by 2x2 / stride 2 pooling, computed chunk by chunk in one pass.

Two fusions: ``conv2d_max_pool2d`` (a convolution, then max pooling) and
``conv2d_relu_avg_pool2d`` (a convolution, ReLU, then average pooling: LeNet's
block). The text below is about the first; the second is the same with the
ReLU applied to each chunk in place and its mask kept (see its docstring).

The values and gradients are exactly those of ``conv2d`` then ``max_pool2d(2)``
(see conv.py and pooling.py for the math). What changes is where the
full-resolution convolution output lives. Unfused, the convolution writes all
of it to memory, (N, H_out, W_out, F), and the pooling reads it back; in the
backward pass the unpooling writes a gradient of that size and the
convolution's backward reads it back. Here each chunk of a few images is
convolved and immediately pooled while its output is still in the CPU cache,
and in the backward pass each chunk's gradient is unpooled into a scratch
buffer and consumed by the convolution's backward at once, so neither
full-size array ever exists.

Forward, per chunk:   conv output chunk (scratch) -> 2x2 max pool -> pooled rows and two masks
Backward, per chunk:  pooled gradient -> unpool (scratch) -> dbias, dweight, dx of the chunk

A NaN in the pooled output falls back to the two separate ops, so that
PyTorch's NaN rule (``max_pool2d``'s general path) still applies.

Shape:
    x: (N, C, H, W); weight: (F, C // G, KH, KW); bias: (F,) or None
    out: (N, F, H_conv // 2, W_conv // 2), H_conv being the convolution's output height
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convnp.backend import images_per_chunk, run_batched, scratch
from convnp.functional.conv import (
    Conv2dCache,
    _check_conv_args,
    cache_work,
    conv2d_backward,
    conv2d_forward,
    conv_backward_by_chunks,
    convolve_chunk,
    im2col_values,
    weight_rows,
)
from convnp.functional.geometry import IntPair, Padding, conv_geometry, pair
from convnp.functional.pooling import (
    PoolCache,
    halving_avg_pool_chunk,
    halving_avg_unpool_chunk,
    halving_pool_chunk,
    halving_unpool_chunk,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = [
    "conv2d_max_pool2d_forward",
    "conv2d_max_pool2d_backward",
    "ConvPoolCache",
    "conv2d_relu_avg_pool2d_forward",
    "conv2d_relu_avg_pool2d_backward",
    "ConvReLUAvgPoolCache",
]


@dataclass
class ConvPoolCache:
    """The convolution's cache, and the pooling's masks (or, after a NaN, the pooling's own cache)."""

    conv: Conv2dCache
    right_wins: np.ndarray | None = None  # (N, 2*H_pool, W_pool, F): as in PoolCache
    bottom_wins: np.ndarray | None = None  # (N, H_pool, W_pool, F)
    pool: PoolCache | None = None  # set when the two ops ran separately


def conv2d_max_pool2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, ConvPoolCache]:
    """``max_pool2d(conv2d(x, weight, bias, ...), 2)`` without the full-size convolution output.

    Arguments as ``conv2d_forward``. Returns ``(out, cache)``; out is
    (N, F, H_conv // 2, W_conv // 2), stored channels-last.
    """
    conv_cache = _pooled_conv_cache(x, weight, bias, stride, padding, dilation, groups, "conv2d_max_pool2d")
    n, filters, (h_conv, w_conv) = len(x), weight.shape[0], conv_cache.out_hw
    out = np.empty((n, h_conv // 2, w_conv // 2, filters), dtype=x.dtype)
    right_wins = np.empty((n, 2 * (h_conv // 2), w_conv // 2, filters), dtype=bool)
    bottom_wins = np.empty(out.shape, dtype=bool)

    def pool_chunk(conv_out: np.ndarray, first: int, last: int) -> None:
        halving_pool_chunk(conv_out, out[first:last], right_wins[first:last], bottom_wins[first:last])

    _convolve_by_chunks(conv_cache, bias, pool_chunk)
    if np.isnan(out).any():
        conv_out, conv_cache = conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
        pooled, pool_cache = max_pool2d_forward(conv_out, 2)
        return pooled, ConvPoolCache(conv_cache, pool=pool_cache)
    return out.transpose(0, 3, 1, 2), ConvPoolCache(conv_cache, right_wins, bottom_wins)


def conv2d_max_pool2d_backward(
    dout: np.ndarray, cache: ConvPoolCache, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of ``conv2d_max_pool2d_forward`` with respect to x, weight and bias.

    Shape: dout (N, F, H_pool, W_pool) -> dx (N, C, H, W) (None with ``input_grad=False``),
    dweight (F, C/G, KH, KW), dbias (F,) or None.
    """
    _check_pooled_dout(dout, cache.conv, "conv2d_max_pool2d_backward")
    if cache.pool is not None:
        return conv2d_backward(max_pool2d_backward(dout, cache.pool), cache.conv, input_grad)
    dout_nhwc = dout.transpose(0, 2, 3, 1)

    def unpool_chunk(dconv: np.ndarray, first: int, last: int) -> None:
        halving_unpool_chunk(dout_nhwc[first:last], cache.right_wins[first:last], cache.bottom_wins[first:last], dconv)

    return _conv_backward_from_pooled(cache.conv, dout.dtype, unpool_chunk, input_grad)


def _pooled_conv_cache(x, weight, bias, stride, padding, dilation, groups, op: str) -> Conv2dCache:
    """The checked arguments of a convolution whose output a 2x2 pooling reads, as its cache."""
    _check_conv_args(x, weight, bias, groups)
    stride = pair(stride, "stride", "conv2d")
    dilation = pair(dilation, "dilation", "conv2d")
    pads, conv_hw = conv_geometry(x.shape[2:], weight.shape[2:], stride, padding, dilation, "conv2d", x.shape)
    if min(conv_hw) < 2:
        raise ValueError(f"{op}: the convolution output {conv_hw} is smaller than the 2x2 pool")
    x_nhwc = x.transpose(0, 2, 3, 1)
    return Conv2dCache(x_nhwc, weight, bias is not None, x.shape, pads, stride, dilation, groups, conv_hw)


def _convolve_by_chunks(
    conv: Conv2dCache, bias: np.ndarray | None, pool_chunk: Callable[[np.ndarray, int, int], None]
) -> None:
    """Convolve a few images at a time into a scratch buffer and hand it to ``pool_chunk(conv_out, first, last)``.

    conv_out is the chunk's (n, H_conv, W_conv, F) output, valid until the next chunk.
    """
    rows = weight_rows(conv.weight, conv.groups)  # (G, F/G, KH*KW*C/G)
    shape = (*conv.out_hw, conv.weight.shape[0])
    dtype = conv.x_nhwc.dtype

    def forward_chunk(first: int, last: int) -> None:
        conv_out = scratch("conv-pool conv out", (last - first, *shape), dtype)  # never kept
        convolve_chunk(conv.x_nhwc[first:last], rows, bias, conv, out=conv_out)
        pool_chunk(conv_out, first, last)

    # The chunk's convolution output must stay in the cache beside its im2col rows.
    values_per_image = im2col_values(conv) + math.prod(shape)
    run_batched(forward_chunk, len(conv.x_nhwc), cache_work(conv), images_per_chunk(values_per_image, dtype))


def _check_pooled_dout(dout: np.ndarray, conv: Conv2dCache, op: str) -> None:
    expected = (conv.x_shape[0], conv.weight.shape[0], conv.out_hw[0] // 2, conv.out_hw[1] // 2)
    if dout.shape != expected:
        raise ValueError(f"{op}: expected dout of shape {expected}, got {dout.shape}")


def _conv_backward_from_pooled(
    conv: Conv2dCache, dtype, unpool_chunk: Callable[[np.ndarray, int, int], None], input_grad: bool
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """The convolution's backward pass, its dout built a chunk at a time by ``unpool_chunk(dconv, first, last)``.

    dconv is a scratch (n, H_conv, W_conv, F) buffer that ``unpool_chunk`` fills.
    """
    shape = (*conv.out_hw, conv.weight.shape[0])

    def dout_chunk(first: int, last: int) -> np.ndarray:
        dconv = scratch("conv-pool unpooled", (last - first, *shape), dtype)
        unpool_chunk(dconv, first, last)
        return dconv.reshape(-1, shape[-1])

    return conv_backward_by_chunks(conv, dout_chunk, input_grad, dout_built_per_chunk=True)


# ------------------------------------------------- convolution, ReLU, 2x2 average pooling
@dataclass
class ConvReLUAvgPoolCache:
    """The convolution's cache and where its output was positive (ReLU's mask)."""

    conv: Conv2dCache
    positive: np.ndarray  # (N, H_conv, W_conv, F) bool: conv output > 0


def conv2d_relu_avg_pool2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, ConvReLUAvgPoolCache]:
    """``avg_pool2d(relu(conv2d(x, weight, bias, ...)), 2)`` without the full-size convolution output.

    Per chunk of a few images: the convolution into a scratch buffer,
    z = max(z, 0) in place with the mask z > 0 kept, then each 2x2 window's
    mean in ``avg_pool2d``'s order of summation (``halving_avg_pool_chunk``):
    the values of the three ops, bit for bit. An odd last row or column of the
    convolution output is dropped, as the pooling drops it.

    Shape: x (N, C, H, W) -> out (N, F, H_conv // 2, W_conv // 2), stored channels-last.
    """
    conv_cache = _pooled_conv_cache(x, weight, bias, stride, padding, dilation, groups, "conv2d_relu_avg_pool2d")
    n, filters, (h_conv, w_conv) = len(x), weight.shape[0], conv_cache.out_hw
    out = np.empty((n, h_conv // 2, w_conv // 2, filters), dtype=x.dtype)
    positive = np.empty((n, h_conv, w_conv, filters), dtype=bool)
    zero = x.dtype.type(0)

    def pool_chunk(conv_out: np.ndarray, first: int, last: int) -> None:
        np.maximum(conv_out, zero, out=conv_out)
        np.greater(conv_out, zero, out=positive[first:last])
        halving_avg_pool_chunk(conv_out, out[first:last])

    _convolve_by_chunks(conv_cache, bias, pool_chunk)
    return out.transpose(0, 3, 1, 2), ConvReLUAvgPoolCache(conv_cache, positive)


def conv2d_relu_avg_pool2d_backward(
    dout: np.ndarray, cache: ConvReLUAvgPoolCache, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of ``conv2d_relu_avg_pool2d_forward`` with respect to x, weight and bias.

    Per chunk: each window's dout / 4 to its four inputs (0 to an odd last row
    or column), times ReLU's mask, handed straight to the convolution's
    backward pass.

    Shape: dout (N, F, H_pool, W_pool) -> dx (N, C, H, W) (None with ``input_grad=False``),
    dweight (F, C/G, KH, KW), dbias (F,) or None.
    """
    _check_pooled_dout(dout, cache.conv, "conv2d_relu_avg_pool2d_backward")
    dout_nhwc = dout.transpose(0, 2, 3, 1)

    def unpool_chunk(dconv: np.ndarray, first: int, last: int) -> None:
        halving_avg_unpool_chunk(dout_nhwc[first:last], dconv)
        np.multiply(dconv, cache.positive[first:last], out=dconv)  # ReLU's backward, as relu_backward does it

    return _conv_backward_from_pooled(cache.conv, dout.dtype, unpool_chunk, input_grad)
