"""Upsampling by integer factors: nearest neighbour and bilinear, as PyTorch's ``interpolate``.

With scale factors SH, SW the output is (N, C, H*SH, W*SW).

Nearest:
    out[n, c, i, j] = x[n, c, i // SH, j // SW]
    dx[n, c, h, w]  = sum over a < SH, b < SW of dout[n, c, h*SH + a, w*SW + b]

Bilinear with align_corners=False (PyTorch's default). Along an axis of size H
scaled by S, output index i reads the source position (PyTorch's formula,
pixel centres aligned, clamped at the first pixel)

    src(i) = max((i + 0.5) / S - 0.5, 0)
    i0 = floor(src),  i1 = min(i0 + 1, H - 1),  l1 = src - i0,  l0 = 1 - l1

and the output mixes the four pixels around (src(i), src(j)):

    out[n, c, i, j] = l0(i)*(l0(j)*x[i0, j0] + l1(j)*x[i0, j1]) + l1(i)*(l0(j)*x[i1, j0] + l1(j)*x[i1, j1])

Its backward pass sends dout[n, c, i, j] back to those four pixels with the
same four weights (dx[i0, j0] += l0(i)*l0(j)*dout[i, j], and so on); a
pixel collects from every output that mixed it.

Computation: the weights factor by axis, so both ops run one axis at a time
(columns, then rows). Along one axis, write i = S*k + r (r < S, the phase);
then src(i) = k + d_r with d_r = (r + 0.5)/S - 0.5, so every output of phase
r mixes the same two neighbours, k + floor(d_r) and the next one, with the
same weight d_r - floor(d_r). Only the clamps at the two edges differ, and
replicating the edge pixel once on each side reproduces them. So each phase
is one weighted sum of two shifted slices, and its backward pass adds two
weighted slices back: no per-pixel index arrays. ``convnp.functional.naive``
computes the same values pixel by pixel from the formula above.

Memory layout: like conv.py, the work runs channels-last; ``out`` is the
NCHW-shaped view of an (N, H*SH, W*SW, C) array.

Shape:
    x:   (N, C, H, W)
    out: (N, C, H*SH, W*SW)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from convnp.functional.geometry import IntPair, pair

__all__ = ["upsample2d_forward", "upsample2d_backward", "UpsampleCache", "UPSAMPLE_MODES"]

UPSAMPLE_MODES = ("nearest", "bilinear")


@dataclass
class UpsampleCache:
    """What the backward pass needs: the input's shape, the scale factors and the mode."""

    x_shape: tuple[int, int, int, int]
    scale_factor: tuple[int, int]
    mode: str


def check_upsample_args(scale_factor: IntPair, mode: str, owner: str) -> tuple[tuple[int, int], str]:
    """``(scale_factor as (SH, SW), mode)``; ``TypeError``/``ValueError`` naming ``owner`` for a bad one."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"{owner}: mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    return pair(scale_factor, "scale_factor", owner), mode


def upsample2d_forward(
    x: np.ndarray, scale_factor: IntPair = 2, mode: str = "nearest"
) -> tuple[np.ndarray, UpsampleCache]:
    """Upsample the last two axes by integer factors (``F.interpolate(x, scale_factor, mode)``).

    Args:
        x: (N, C, H, W), floating point.
        scale_factor: an int or a pair of ints (SH, SW), each >= 1.
        mode: "nearest" or "bilinear" (align_corners=False).

    Returns:
        out: (N, C, H*SH, W*SW), stored channels-last.
        cache: for ``upsample2d_backward``.
    """
    scale, mode = check_upsample_args(scale_factor, mode, "upsample2d")
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"upsample2d: expected x of shape (N, C, H, W), got {np.shape(x)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"upsample2d: expected a floating-point x, got dtype {x.dtype}")
    n, channels, height, width = x.shape
    x_nhwc = x.transpose(0, 2, 3, 1)  # (N, H, W, C): a view
    if mode == "nearest":
        out = np.empty((n, height, scale[0], width, scale[1], channels), dtype=x.dtype)
        out[...] = x_nhwc[:, :, None, :, None, :]  # every pixel copied into its SH x SW block
        out_nhwc = out.reshape(n, height * scale[0], width * scale[1], channels)
    else:
        out_nhwc = _linear_along(_linear_along(x_nhwc, 2, scale[1]), 1, scale[0])
    return out_nhwc.transpose(0, 3, 1, 2), UpsampleCache(x.shape, scale, mode)


def upsample2d_backward(dout: np.ndarray, cache: UpsampleCache) -> np.ndarray:
    """Gradient of the upsampling with respect to x.

    Shape: dout (N, C, H*SH, W*SW) -> dx (N, C, H, W)
    """
    n, channels, height, width = cache.x_shape
    sh, sw = cache.scale_factor
    expected = (n, channels, height * sh, width * sw)
    if dout.shape != expected:
        raise ValueError(f"upsample2d_backward: expected dout of shape {expected}, got {dout.shape}")
    dout_nhwc = dout.transpose(0, 2, 3, 1)  # (N, H*SH, W*SW, C)
    if cache.mode == "nearest":
        dx_nhwc = dout_nhwc.reshape(n, height, sh, width, sw, channels).sum(axis=(2, 4))  # each block's sum
    else:
        dx_nhwc = _linear_along_backward(_linear_along_backward(dout_nhwc, 1, sh, height), 2, sw, width)
    return dx_nhwc.transpose(0, 3, 1, 2)


def _phases(scale: int) -> Iterator[tuple[int, int, float]]:
    """``(r, offset, far_weight)`` for every phase r < scale of one axis.

    Output S*k + r = (1 - far_weight) * x[k + offset] + far_weight * x[k + offset + 1],
    with offset = floor(d_r) and far_weight = d_r - offset, d_r = (r + 0.5)/S - 0.5.
    """
    for r in range(scale):
        shift = (r + 0.5) / scale - 0.5
        offset = math.floor(shift)
        yield r, offset, shift - offset


def _along(axis: int, index: slice) -> tuple[slice, ...]:
    """An index that applies ``index`` to ``axis`` and takes everything before it."""
    return (slice(None),) * axis + (index,)


def _linear_along(x_nhwc: np.ndarray, axis: int, scale: int) -> np.ndarray:
    """Linear interpolation of one axis (1: rows, 2: columns) of a channels-last array, by ``scale``.

    Shape: (N, H, W, C) -> the same with ``axis`` scale times longer
    """
    size = x_nhwc.shape[axis]
    # Index k + 1 of x_edge holds x[k], and each end is repeated once: the clamps at the edges.
    x_edge = np.concatenate(
        [x_nhwc[_along(axis, slice(0, 1))], x_nhwc, x_nhwc[_along(axis, slice(size - 1, size))]], axis=axis
    )  # (N, H + 2, W, C) for axis 1
    shape = list(x_nhwc.shape)
    shape[axis] = size * scale
    out = np.empty(shape, dtype=x_nhwc.dtype)
    for r, offset, far_weight in _phases(scale):
        near = x_edge[_along(axis, slice(1 + offset, 1 + offset + size))]  # x[k + offset] for every k
        far = x_edge[_along(axis, slice(2 + offset, 2 + offset + size))]  # x[k + offset + 1]
        out[_along(axis, slice(r, None, scale))] = (1 - far_weight) * near + far_weight * far
    return out


def _linear_along_backward(dout_nhwc: np.ndarray, axis: int, scale: int, size: int) -> np.ndarray:
    """The adjoint of ``_linear_along``: each output's gradient goes back to its two taps with their weights.

    Shape: (N, H*S, W, C) for axis 1 -> (N, H, W, C)
    """
    shape = list(dout_nhwc.shape)
    shape[axis] = size + 2
    dx_edge = np.zeros(shape, dtype=dout_nhwc.dtype)  # the gradient of x_edge
    for r, offset, far_weight in _phases(scale):
        dout_phase = dout_nhwc[_along(axis, slice(r, None, scale))]
        dx_edge[_along(axis, slice(1 + offset, 1 + offset + size))] += (1 - far_weight) * dout_phase
        dx_edge[_along(axis, slice(2 + offset, 2 + offset + size))] += far_weight * dout_phase
    dx = dx_edge[_along(axis, slice(1, size + 1))].copy()
    # The repeated edge pixels are x[0] and x[H - 1]: their gradient goes there.
    dx[_along(axis, slice(0, 1))] += dx_edge[_along(axis, slice(0, 1))]
    dx[_along(axis, slice(size - 1, size))] += dx_edge[_along(axis, slice(size + 1, size + 2))]
    return dx
