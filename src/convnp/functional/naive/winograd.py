"""Winograd's F(2x2, 3x3) convolution, one tile at a time (notation: ``convnp.functional.naive``).

The loop version of ``convnp.functional.winograd``: for every image n and
every 4x4 input tile (a, b) (rows 2a..2a+3, columns 2b..2b+3 of the padded
image), the tile ``d`` of each channel, the filter ``g`` of each channel pair,
and the three transforms written as the 4x4 / 4x3 / 2x4 matrix products of
docs/winograd.md. The matrices B^T, G and A^T are the fast module's: they are
the definition of the algorithm, like the window geometry.

The backward pass here is the transposed algorithm, tile by tile (dx as
B dV B^T added back onto each tile); the fast path computes dx as a Winograd
convolution of dout with the rotated kernel instead, so the tests compare two
derivations of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.functional.geometry import IntPair, Padding, conv_geometry, pad_spatial, pair
from convnp.functional.winograd import A_T, B_T, G, winograd_unsupported

__all__ = ["NaiveWinogradCache", "winograd_conv2d_forward", "winograd_conv2d_backward"]


@dataclass
class NaiveWinogradCache:
    """Everything ``winograd_conv2d_backward`` needs: the tile-padded input, the filters and the geometry."""

    x_tiles_padded: np.ndarray  # (N, C, 2*tiles_h + 2, 2*tiles_w + 2): padding, then zeros up to the last tile
    weight: np.ndarray  # (F, C, 3, 3)
    has_bias: bool
    x_shape: tuple[int, int, int, int]
    pads: tuple[int, int, int, int]  # (top, bottom, left, right)
    out_hw: tuple[int, int]
    tiles_hw: tuple[int, int]


def winograd_conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, NaiveWinogradCache]:
    """The 3x3, stride-1 convolution, tile by tile.

    For image n, output tile (a, b) and filter f:

        U[f, c] = G @ weight[f, c] @ G^T                      (4, 4)
        V[c]    = B^T @ d[c] @ B,  d[c] = x_padded[n, c, 2a:2a+4, 2b:2b+4]
        M       = sum over c of U[f, c] * V[c]                (elementwise: 16 products per c)
        out[n, f, 2a:2a+2, 2b:2b+2] = A^T @ M @ A + bias[f]   (cropped to the output)

    Shape:
        x: (N, C, H, W); weight: (F, C, 3, 3); bias: (F,) or None
        out: (N, F, H_out, W_out), H_out = H + PT + PB - 2

    Returns ``(out, cache)`` like ``convnp.functional.winograd.winograd_conv2d_forward``.
    """
    reason = winograd_unsupported(
        weight.shape[2:], pair(stride, "stride", "naive winograd"), pair(dilation, "dilation", "naive winograd"), groups
    )
    if reason is not None or weight.shape[1] != x.shape[1]:
        raise ValueError(f"naive winograd conv2d: {reason or f'x shape {x.shape} does not fit weight {weight.shape}'}")
    batch, channels, height, width = x.shape
    filters = weight.shape[0]
    pads, (out_h, out_w) = conv_geometry((height, width), (3, 3), (1, 1), padding, (1, 1), "naive winograd", x.shape)
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    top, bottom, left, right = pads
    # Zeros past the bottom/right padding where the output size is odd: the last tile reads one more row/column.
    x_tiles_padded = pad_spatial(x, (top, bottom + 2 * tiles_h - out_h, left, right + 2 * tiles_w - out_w))

    transformed_filters = np.zeros((filters, channels, 4, 4), dtype=x.dtype)  # U[f, c] = G g G^T
    for f in range(filters):
        for c in range(channels):
            transformed_filters[f, c] = G @ weight[f, c] @ G.T

    out = np.zeros((batch, filters, out_h, out_w), dtype=x.dtype)
    for n in range(batch):
        for a in range(tiles_h):
            for b in range(tiles_w):
                transformed_tiles = [  # V[c] = B^T d[c] B
                    B_T @ x_tiles_padded[n, c, 2 * a : 2 * a + 4, 2 * b : 2 * b + 4] @ B_T.T for c in range(channels)
                ]
                for f in range(filters):
                    products = np.zeros((4, 4), dtype=x.dtype)  # M, summed over the channels
                    for c in range(channels):
                        products += transformed_filters[f, c] * transformed_tiles[c]
                    block = A_T @ products @ A_T.T  # (2, 2)
                    for i in range(2):
                        for j in range(2):
                            if 2 * a + i < out_h and 2 * b + j < out_w:
                                out[n, f, 2 * a + i, 2 * b + j] = block[i, j] + (0 if bias is None else bias[f])

    cache = NaiveWinogradCache(
        x_tiles_padded, weight, bias is not None, x.shape, pads, (out_h, out_w), (tiles_h, tiles_w)
    )
    return out, cache


def winograd_conv2d_backward(
    dout: np.ndarray, cache: NaiveWinogradCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of the tile-by-tile convolution: each transform's transpose, in reverse order.

    The forward tile is Y = A^T M A with M = sum over c of U[f, c] * V[c]. With
    dY the tile's (2, 2) block of dout (zeros for cropped positions):

        dM[f]      = A @ dY[f] @ A^T                               (4, 4)
        dU[f, c]  += dM[f] * V[c]                                  (summed over every tile)
        dV[c]      = sum over f of dM[f] * U[f, c]
        dx_padded[n, c, 2a:2a+4, 2b:2b+4] += B @ dV[c] @ B^T       (neighbouring tiles overlap)
        dweight[f, c] = G^T @ dU[f, c] @ G,  dbias[f] = sum of dout[:, f]

    and dx is dx_padded with the padding cropped.

    Shape:
        dout: (N, F, H_out, W_out)
        returns dx (N, C, H, W), dweight (F, C, 3, 3), dbias (F,) or None
    """
    batch, channels, height, width = cache.x_shape
    filters = cache.weight.shape[0]
    out_h, out_w = cache.out_hw
    tiles_h, tiles_w = cache.tiles_hw
    top, _, left, _ = cache.pads
    if dout.shape != (batch, filters, out_h, out_w):
        raise ValueError(
            f"naive winograd_backward: expected dout of shape {(batch, filters, out_h, out_w)}, got {dout.shape}"
        )
    transformed_filters = np.zeros((filters, channels, 4, 4), dtype=dout.dtype)
    for f in range(filters):
        for c in range(channels):
            transformed_filters[f, c] = G @ cache.weight[f, c] @ G.T

    dx_padded = np.zeros_like(cache.x_tiles_padded)
    transformed_grad = np.zeros((filters, channels, 4, 4), dtype=dout.dtype)
    for n in range(batch):
        for a in range(tiles_h):
            for b in range(tiles_w):
                transformed_tiles = [  # V[c] = B^T d[c] B
                    B_T @ cache.x_tiles_padded[n, c, 2 * a : 2 * a + 4, 2 * b : 2 * b + 4] @ B_T.T
                    for c in range(channels)
                ]
                product_grads = []
                for f in range(filters):
                    block_grad = np.zeros((2, 2), dtype=dout.dtype)
                    for i in range(2):
                        for j in range(2):
                            if 2 * a + i < out_h and 2 * b + j < out_w:
                                block_grad[i, j] = dout[n, f, 2 * a + i, 2 * b + j]
                    product_grads.append(A_T.T @ block_grad @ A_T)
                for c in range(channels):
                    tile_grad = np.zeros((4, 4), dtype=dout.dtype)
                    for f in range(filters):
                        transformed_grad[f, c] += product_grads[f] * transformed_tiles[c]
                        tile_grad += product_grads[f] * transformed_filters[f, c]
                    dx_padded[n, c, 2 * a : 2 * a + 4, 2 * b : 2 * b + 4] += B_T.T @ tile_grad @ B_T

    dweight = np.zeros_like(cache.weight)
    for f in range(filters):
        for c in range(channels):
            dweight[f, c] = G.T @ transformed_grad[f, c] @ G
    dbias = None
    if cache.has_bias:
        dbias = np.zeros(filters, dtype=dout.dtype)
        for f in range(filters):
            dbias[f] = dout[:, f].sum()
    dx = dx_padded[:, :, top : top + height, left : left + width].copy()
    return dx, dweight, dbias
