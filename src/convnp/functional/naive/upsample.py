"""Nearest and bilinear upsampling, pixel by pixel (notation: ``convnp.functional.naive``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.functional.geometry import IntPair, pair

__all__ = ["NaiveUpsampleCache", "upsample2d_forward", "upsample2d_backward"]


@dataclass
class NaiveUpsampleCache:
    """Everything ``upsample2d_backward`` needs."""

    x_shape: tuple[int, int, int, int]
    scale_factor: tuple[int, int]
    mode: str


def _bilinear_taps(i: int, scale: int, size: int) -> tuple[int, int, float, float]:
    """PyTorch's two source taps of output index i and their weights (align_corners=False).

    src = max((i + 0.5) / scale - 0.5, 0); i0 = floor(src); i1 = min(i0 + 1, size - 1);
    l1 = src - i0; l0 = 1 - l1. Returns ``(i0, i1, l0, l1)``.
    """
    src = max((i + 0.5) / scale - 0.5, 0.0)
    i0 = int(np.floor(src))
    l1 = src - i0
    return i0, min(i0 + 1, size - 1), 1.0 - l1, l1


def upsample2d_forward(
    x: np.ndarray, scale_factor: IntPair = 2, mode: str = "nearest"
) -> tuple[np.ndarray, NaiveUpsampleCache]:
    """Upsampling by integer factors, pixel by pixel.

    Formulas (SH, SW the scale factors):

        nearest:   out[n, c, i, j] = x[n, c, i // SH, j // SW]
        bilinear:  out[n, c, i, j] = l0(i)*(l0(j)*x[i0, j0] + l1(j)*x[i0, j1])
                                   + l1(i)*(l0(j)*x[i1, j0] + l1(j)*x[i1, j1])
                   with the taps and weights of ``_bilinear_taps``

    Shape: x (N, C, H, W) -> out (N, C, H*SH, W*SW)
    """
    scale_h, scale_w = pair(scale_factor, "scale_factor", "naive upsample2d")
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"naive upsample2d: unknown mode {mode!r}")
    batch, channels, height, width = x.shape
    out = np.zeros((batch, channels, height * scale_h, width * scale_w), dtype=x.dtype)
    for n in range(batch):
        for c in range(channels):
            for i in range(height * scale_h):
                for j in range(width * scale_w):
                    if mode == "nearest":
                        out[n, c, i, j] = x[n, c, i // scale_h, j // scale_w]
                        continue
                    row0, row1, row_l0, row_l1 = _bilinear_taps(i, scale_h, height)
                    col0, col1, col_l0, col_l1 = _bilinear_taps(j, scale_w, width)
                    top = col_l0 * x[n, c, row0, col0] + col_l1 * x[n, c, row0, col1]
                    bottom = col_l0 * x[n, c, row1, col0] + col_l1 * x[n, c, row1, col1]
                    out[n, c, i, j] = row_l0 * top + row_l1 * bottom
    return out, NaiveUpsampleCache(x.shape, (scale_h, scale_w), mode)


def upsample2d_backward(dout: np.ndarray, cache: NaiveUpsampleCache) -> np.ndarray:
    """Every output sends its gradient back to the pixels it read, with the weights it read them with.

    Formulas:

        nearest:   dx[n, c, i // SH, j // SW] += dout[n, c, i, j]
        bilinear:  dx[n, c, i0, j0] += l0(i)*l0(j)*dout[n, c, i, j],  dx[n, c, i0, j1] += l0(i)*l1(j)*dout[n, c, i, j],
                   dx[n, c, i1, j0] += l1(i)*l0(j)*dout[n, c, i, j],  dx[n, c, i1, j1] += l1(i)*l1(j)*dout[n, c, i, j]

    Shape: dout (N, C, H*SH, W*SW) -> dx (N, C, H, W)
    """
    batch, channels, height, width = cache.x_shape
    scale_h, scale_w = cache.scale_factor
    if dout.shape != (batch, channels, height * scale_h, width * scale_w):
        raise ValueError(f"naive upsample2d_backward: dout shape {dout.shape} does not fit the forward output")
    dx = np.zeros(cache.x_shape, dtype=dout.dtype)
    for n in range(batch):
        for c in range(channels):
            for i in range(height * scale_h):
                for j in range(width * scale_w):
                    grad_out = dout[n, c, i, j]
                    if cache.mode == "nearest":
                        dx[n, c, i // scale_h, j // scale_w] += grad_out
                        continue
                    row0, row1, row_l0, row_l1 = _bilinear_taps(i, scale_h, height)
                    col0, col1, col_l0, col_l1 = _bilinear_taps(j, scale_w, width)
                    dx[n, c, row0, col0] += row_l0 * col_l0 * grad_out
                    dx[n, c, row0, col1] += row_l0 * col_l1 * grad_out
                    dx[n, c, row1, col0] += row_l1 * col_l0 * grad_out
                    dx[n, c, row1, col1] += row_l1 * col_l1 * grad_out
    return dx
