"""3x3 convolution by Winograd's minimal filtering, F(2x2, 3x3), and its two backward products.

The convolution of ``convnp.functional.conv`` (stride 1, dilation 1, one group,
3x3 kernels) computed another way (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016). The padded input is cut into 4x4 tiles
that overlap by two pixels (stride 2); each tile gives a 2x2 block of the
output. Per tile, channel pair (c, f):

    V = B^T d B      d: the (4, 4) input tile of channel c
    U = G g G^T      g: the (3, 3) filter weight[f, c]
    Y = A^T M A,     M = sum over c of U[f, c] * V[c]   (elementwise: 16 products)

instead of the 36 multiplications of the direct sum. The sum over c is a
matrix product: for each of the 16 tile positions (xi, nu),

    M[xi, nu] = V[xi, nu] @ U[xi, nu]^T    (tiles, C) @ (C, F) = (tiles, F), U[xi, nu] being (F, C)

so the work is 16 GEMMs per chunk of images, with the transforms (additions
and subtractions only) around them. docs/winograd.md derives the matrices.

Backward. The weight gradient, for one tile, reads the forward pass right to
left (each step is linear, so its adjoint is its transpose):

    dM = A dY A^T                               the output gradient in the transformed domain
    dU[f, c] = sum over tiles of dM[f] * V[c]   -> dweight = G^T dU G

16 GEMMs per chunk again, dU[xi, nu] = dM[xi, nu]^T @ V[xi, nu], summed over the
batch before G^T . G is applied once: the transposed algorithm F(3x3, 2x2).
The input gradient of a stride-1 convolution is itself a 3x3 stride-1
convolution: dout, padded by 2 - p on each side (cropped where p > 2),
correlated with the kernel rotated by 180 degrees with its channel axes
swapped. So it is this module's forward pass again, on dout.

Odd output sizes: the last tile row (column) reaches one row past the output;
the input gets one more row of zeros there, the extra output row is cropped,
and in the backward pass it receives a zero gradient.

Memory layout, chunking and threads are those of ``conv2d_forward``: the input
is read channels-last, the output is an (N, H_out, W_out, F) buffer returned
as its NCHW view, and ``convnp.backend`` runs the per-chunk functions over the
batch (one slice per core) and adds the chunks' weight gradients in a fixed order.

Shape:
    x:      (N, C, H, W)
    weight: (F, C, 3, 3)
    bias:   (F,) or None
    out:    (N, F, H_out, W_out), H_out = H + PT + PB - 2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.backend import column_sum, images_per_chunk, run_batched, scratch, sum_batched
from convnp.functional.geometry import IntPair, Padding, conv_geometry, pad_channels_last, pair

__all__ = [
    "B_T", "G", "A_T", "WinogradCache", "winograd_conv2d_forward", "winograd_conv2d_backward",
    "winograd_unsupported", "transform_filters", "filter_gradient",
]  # fmt: skip

#: Input transform B^T (4x4): V = B^T d B. The rows are the interpolation points 0, 1, -1 and infinity.
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
#: Filter transform G (4x3): U = G g G^T, the filter's values at those points.
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
#: Output transform A^T (2x4): Y = A^T M A.
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)

TILE = 4  # input tile side; output tile side TILE - 2 = 2
POSITIONS = TILE * TILE  # the 16 elementwise products of a tile


@dataclass
class WinogradCache:
    """What the backward pass needs: the input (channels-last view), the transformed filters, the geometry."""

    x_nhwc: np.ndarray  # (N, H, W, C)
    weight: np.ndarray  # (F, C, 3, 3)
    transformed_filters: np.ndarray  # (16, F, C): U at each tile position
    has_bias: bool
    x_shape: tuple[int, int, int, int]
    pads: tuple[int, int, int, int]  # (top, bottom, left, right)
    out_hw: tuple[int, int]
    tiles_hw: tuple[int, int]  # (ceil(H_out / 2), ceil(W_out / 2))


def winograd_unsupported(
    kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int], groups: int
) -> str | None:
    """Why F(2x2, 3x3) cannot compute this convolution, or None when it can."""
    reasons = []
    if tuple(kernel_size) != (3, 3):
        reasons.append(f"kernel_size={tuple(kernel_size)}")
    if tuple(stride) != (1, 1):
        reasons.append(f"stride={tuple(stride)}")
    if tuple(dilation) != (1, 1):
        reasons.append(f"dilation={tuple(dilation)}")
    if groups != 1:
        reasons.append(f"groups={groups}")
    if not reasons:
        return None
    return f"Winograd F(2x2, 3x3) needs a 3x3 kernel, stride 1, dilation 1 and groups=1, got {', '.join(reasons)}"


def transform_filters(weight: np.ndarray) -> np.ndarray:
    """U = G g G^T for every filter, laid out as one (F, C) matrix per tile position.

    U[xi, nu] = sum over p, q of G[xi, p] g[p, q] G[nu, q]: for all filters at
    once, one product with kron(G, G) (16x9) over the flattened 3x3 kernels.

    Shape: weight (F, C, 3, 3) -> (16, F, C)
    """
    filters, channels = weight.shape[:2]
    kernels = weight.reshape(filters * channels, 9)  # (F*C, 9), taps (p, q) row-major
    return np.dot(np.kron(G, G).astype(weight.dtype), kernels.T).reshape(POSITIONS, filters, channels)


def filter_gradient(transformed_grad: np.ndarray) -> np.ndarray:
    """dweight = G^T dU G, the adjoint of ``transform_filters``.

    Shape: transformed_grad (16, F, C) -> (F, C, 3, 3)
    """
    _, filters, channels = transformed_grad.shape
    kernel_grads = np.dot(transformed_grad.reshape(POSITIONS, -1).T, np.kron(G, G).astype(transformed_grad.dtype))
    return kernel_grads.reshape(filters, channels, 3, 3)  # (F*C, 9) -> (F, C, 3, 3)


def winograd_conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, WinogradCache]:
    """The convolution of ``conv2d_forward``, by F(2x2, 3x3): 16 GEMMs per chunk between the tile transforms.

    Arguments as ``conv2d_forward``; ``ValueError`` unless the kernel is 3x3,
    stride and dilation 1 and groups 1.

    Returns:
        out: (N, F, H_out, W_out) in x's dtype, stored channels-last.
        cache: for ``winograd_conv2d_backward``.
    """
    _check_args(x, weight, bias, stride, dilation, groups)
    n, channels, height, width = x.shape
    filters = weight.shape[0]
    pads, (h_out, w_out) = conv_geometry((height, width), (3, 3), (1, 1), padding, (1, 1), "winograd conv2d", x.shape)
    tiles_hw = (-(-h_out // 2), -(-w_out // 2))
    x_nhwc = x.transpose(0, 2, 3, 1)  # (N, H, W, C): a view
    cache = WinogradCache(
        x_nhwc, weight, transform_filters(weight), bias is not None, x.shape, pads, (h_out, w_out), tiles_hw
    )
    out_nhwc = np.empty((n, h_out, w_out, filters), dtype=x.dtype)

    def forward_chunk(first: int, last: int) -> None:
        convolve_tiles(x_nhwc[first:last], cache.transformed_filters, pads[0], pads[2], out_nhwc[first:last])
        if bias is not None:
            out_nhwc[first:last] += bias  # broadcast: the channel axis is innermost

    run_batched(forward_chunk, n, n * _tile_values(cache), images_per_chunk(_tile_values(cache), x.dtype))
    return out_nhwc.transpose(0, 3, 1, 2), cache  # NCHW view of NHWC memory


def winograd_conv2d_backward(
    dout: np.ndarray, cache: WinogradCache, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of ``winograd_conv2d_forward`` with respect to x, weight and bias.

    Per chunk: dM = A dY A^T for every output tile and dU += dM^T @ V at each
    tile position (the weight gradient, transformed back once with G^T dU G at
    the end); dx is the Winograd convolution of dout, padded by 2 - p, with the
    rotated, channel-swapped kernel. ``input_grad=False`` skips dx (returned as None).

    Shape:
        dout: (N, F, H_out, W_out)
        returns dx (N, C, H, W), dweight (F, C, 3, 3), dbias (F,) or None
    """
    n, channels, height, width = cache.x_shape
    filters = cache.weight.shape[0]
    h_out, w_out = cache.out_hw
    if dout.shape != (n, filters, h_out, w_out):
        raise ValueError(
            f"winograd conv2d_backward: expected dout of shape {(n, filters, h_out, w_out)}, got {dout.shape}"
        )
    dout_nhwc = dout.transpose(0, 2, 3, 1)  # (N, H_out, W_out, F): free when dout is channels-last in memory
    dtype = cache.x_nhwc.dtype
    top, _, left, _ = cache.pads
    dx_nhwc = np.empty((n, height, width, channels), dtype=dtype) if input_grad else None
    # dx's filters: the kernel rotated by 180 degrees, input and output channels swapped, (C, F, 3, 3).
    rotated = np.ascontiguousarray(cache.weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    rotated_filters = transform_filters(rotated) if input_grad else None  # (16, C, F)

    def backward_chunk(first: int, last: int) -> tuple[np.ndarray, np.ndarray | None]:
        dout_part = dout_nhwc[first:last]  # (n, H_out, W_out, F)
        dbias = column_sum(dout_part.reshape(-1, filters)) if cache.has_bias else None
        output_grad = transformed_output_grad(dout_part, cache.tiles_hw)  # (16, T, F): dM
        input_tiles = transformed_input_chunk(cache.x_nhwc[first:last], cache.tiles_hw, top, left)  # (16, T, C): V
        transformed_grad = np.empty((POSITIONS, filters, channels), dtype=dtype)
        for position in range(POSITIONS):  # dU = dM^T @ V at each tile position
            np.dot(output_grad[position].T, input_tiles[position], out=transformed_grad[position])
        if dx_nhwc is not None:  # last: its tiles reuse the scratch buffers V lives in
            convolve_tiles(dout_part, rotated_filters, 2 - top, 2 - left, dx_nhwc[first:last])
        return transformed_grad, dbias

    values = _tile_values(cache)
    transformed_grad, dbias = sum_batched(backward_chunk, n, n * values, images_per_chunk(values, dtype))
    dweight = filter_gradient(transformed_grad)
    return (None if dx_nhwc is None else dx_nhwc.transpose(0, 3, 1, 2)), dweight, dbias


def convolve_tiles(x_chunk: np.ndarray, transformed_filters: np.ndarray, top: int, left: int, out: np.ndarray) -> None:
    """A chunk's convolution by F(2x2, 3x3), written into ``out``: Y = A^T [ (V @ U^T per position) ] A.

    ``top`` and ``left`` are the padding before the first row and column (negative:
    that many rows or columns are skipped); the padding after follows from the
    output size, which ``out`` gives.

    Shape: x_chunk (n, H, W, C), transformed_filters (16, F, C) -> out (n, H_out, W_out, F), C-contiguous
    """
    filters = out.shape[3]
    tiles_hw = (-(-out.shape[1] // 2), -(-out.shape[2] // 2))
    input_tiles = transformed_input_chunk(x_chunk, tiles_hw, top, left)  # (16, T, C): V
    products = scratch("winograd products", (POSITIONS, input_tiles.shape[1], filters), out.dtype)
    for position in range(POSITIONS):  # M = V @ U^T at each tile position
        np.dot(input_tiles[position], transformed_filters[position].T, out=products[position])
    output_transform(products, tiles_hw, out)


# ------------------------------------------------------------------------------ the tile transforms
def transformed_input_chunk(x_chunk: np.ndarray, tiles_hw: tuple[int, int], top: int, left: int) -> np.ndarray:
    """V = B^T d B for every 4x4 tile of a chunk's padded images, in this thread's scratch buffer (never kept).

    Tile (a, b) is rows 2a..2a+3, columns 2b..2b+3 of the image padded by
    ``top`` rows and ``left`` columns of zeros (negative: that many are
    skipped), and by zeros after it up to the last tile's edge.

    Shape: x_chunk (n, H, W, C) -> (16, T, C), T = n * tiles_h * tiles_w, position xi*4 + nu
    """
    count, height, width, channels = x_chunk.shape
    tiles_h, tiles_w = tiles_hw
    padded_h, padded_w = 2 * tiles_h + 2, 2 * tiles_w + 2
    # The rows and columns of x that the tiles read: padded row r is row r - top of x.
    first_row, last_row = max(0, -top), min(height, padded_h - top)
    first_col, last_col = max(0, -left), min(width, padded_w - left)
    x_read = x_chunk[:, first_row:last_row, first_col:last_col]
    above, before = max(top, 0), max(left, 0)
    tile_pads = (above, padded_h - above - x_read.shape[1], before, padded_w - before - x_read.shape[2])
    buffer = scratch("winograd padded", (count, padded_h, padded_w, channels), x_chunk.dtype)
    x_padded = pad_channels_last(x_read, tile_pads, out=buffer)
    rows_done = scratch("winograd input rows", (TILE, count, tiles_h, padded_w, channels), x_chunk.dtype)
    # Rows: B^T applied to rows 2a + k (k < 4) of every tile row a.
    combine(B_T, [x_padded[:, k : k + 2 * tiles_h : 2] for k in range(TILE)], rows_done)
    tiles = scratch("winograd input tiles", (TILE, TILE, count, tiles_h, tiles_w, channels), x_chunk.dtype)
    # Columns: B^T applied to columns 2b + l; out[nu] is tiles[:, nu].
    combine(B_T, [rows_done[:, :, :, l : l + 2 * tiles_w : 2] for l in range(TILE)], tiles.swapaxes(0, 1))
    return tiles.reshape(POSITIONS, count * tiles_h * tiles_w, channels)


def output_transform(products: np.ndarray, tiles_hw: tuple[int, int], out: np.ndarray) -> None:
    """Y = A^T M A for every tile, each 2x2 block written into ``out`` (cropped where the output size is odd).

    Shape: products (16, T, F), T = n * tiles_h * tiles_w -> out (n, H_out, W_out, F), C-contiguous
    """
    count, h_out, w_out, filters = out.shape
    tiles_h, tiles_w = tiles_hw
    products = products.reshape(TILE, TILE, count, tiles_h, tiles_w, filters)
    rows_done = scratch("winograd output rows", (2, TILE, count, tiles_h, tiles_w, filters), out.dtype)
    combine(A_T, products, rows_done)  # A^T M along the tile's rows
    even = h_out == 2 * tiles_h and w_out == 2 * tiles_w
    blocks = out if even else scratch("winograd output blocks", (count, 2 * tiles_h, 2 * tiles_w, filters), out.dtype)
    # blocks[n, 2a + i, 2b + j] as an (i, j, n, a, b, F) view, so that (A^T M) A lands in place.
    by_offset = blocks.reshape(count, tiles_h, 2, tiles_w, 2, filters).transpose(2, 4, 0, 1, 3, 5)
    combine(A_T, rows_done.swapaxes(0, 1), by_offset.swapaxes(0, 1))
    if not even:
        out[...] = blocks[:, :h_out, :w_out]


def transformed_output_grad(dout_part: np.ndarray, tiles_hw: tuple[int, int]) -> np.ndarray:
    """dM = A dY A^T for every 2x2 output tile, in this thread's scratch buffer (never kept).

    The adjoint of ``output_transform``: a cropped output row or column had no
    gradient, so it enters as zeros.

    Shape: dout_part (n, H_out, W_out, F) -> (16, T, F), T = n * tiles_h * tiles_w
    """
    count, h_out, w_out, filters = dout_part.shape
    tiles_h, tiles_w = tiles_hw
    extra = (0, 2 * tiles_h - h_out, 0, 2 * tiles_w - w_out)
    buffer = scratch("winograd dout padded", (count, 2 * tiles_h, 2 * tiles_w, filters), dout_part.dtype)
    dout_tiles = pad_channels_last(dout_part, extra, out=buffer)  # (n, 2*tiles_h, 2*tiles_w, F)
    rows_done = scratch("winograd dout rows", (TILE, count, tiles_h, 2 * tiles_w, filters), dout_part.dtype)
    combine(A_T.T, [dout_tiles[:, i::2] for i in range(2)], rows_done)  # A dY along the rows
    grad = scratch("winograd output grad", (TILE, TILE, count, tiles_h, tiles_w, filters), dout_part.dtype)
    combine(A_T.T, [rows_done[:, :, :, j::2] for j in range(2)], grad.swapaxes(0, 1))
    return grad.reshape(POSITIONS, count * tiles_h * tiles_w, filters)


def combine(matrix: np.ndarray, parts, out) -> None:
    """out[i] = sum over k of matrix[i, k] * parts[k], for a matrix of 0 and +-1 entries: additions only.

    ``parts`` and ``out`` are sequences of equally shaped arrays (or arrays
    indexed along their first axis). A row with two terms is one ufunc call.
    """
    for i, row in enumerate(matrix):
        # Positive terms first: a row with one is its first term plus and minus the others.
        terms = sorted(((int(sign), parts[k]) for k, sign in enumerate(row) if sign), key=lambda term: -term[0])
        target = out[i]
        (first_sign, first), rest = terms[0], terms[1:]
        if not rest:
            if first_sign > 0:
                np.copyto(target, first)
            else:
                np.negative(first, out=target)
            continue
        # Signs relative to the first term's; an all-negative row is negated at the end.
        sign, second = rest[0]
        (np.add if sign == first_sign else np.subtract)(first, second, out=target)
        for sign, part in rest[1:]:
            (np.add if sign == first_sign else np.subtract)(target, part, out=target)
        if first_sign < 0:
            np.negative(target, out=target)


# ------------------------------------------------------------------------------ checks and sizes
def _check_args(x, weight, bias, stride, dilation, groups) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"winograd conv2d: expected x of shape (N, C, H, W), got {np.shape(x)}")
    if not isinstance(weight, np.ndarray) or weight.ndim != 4:
        raise ValueError(f"winograd conv2d: expected weight of shape (F, C, 3, 3), got {np.shape(weight)}")
    if not np.issubdtype(x.dtype, np.floating) or x.dtype != weight.dtype:
        raise TypeError(f"winograd conv2d: x and weight must share one float dtype, got {x.dtype} and {weight.dtype}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool):
        raise ValueError(f"winograd conv2d: groups must be an int, got {groups!r}")
    stride = pair(stride, "stride", "winograd conv2d")
    dilation = pair(dilation, "dilation", "winograd conv2d")
    reason = winograd_unsupported(weight.shape[2:], stride, dilation, int(groups))
    if reason is not None:
        raise ValueError(f"winograd conv2d: {reason}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"winograd conv2d: weight expects {weight.shape[1]} input channels, got x of shape {x.shape}")
    filters = weight.shape[0]
    if bias is not None and (bias.shape != (filters,) or bias.dtype != x.dtype):
        raise ValueError(
            f"winograd conv2d: expected bias of shape ({filters},) and dtype {x.dtype}, got {bias.shape} {bias.dtype}"
        )


def _tile_values(cache: WinogradCache) -> int:
    """Values one image's tiles hold in a pass: its transformed input and output tiles (sizes the chunks)."""
    channels, filters = cache.x_shape[1], cache.weight.shape[0]
    tiles_h, tiles_w = cache.tiles_hw
    return POSITIONS * tiles_h * tiles_w * (channels + filters)
