"""Adaptive average pooling: a fixed output size whatever the input size (PyTorch's ``adaptive_avg_pool2d``).

Output row i averages the input rows of bin i (``adaptive_bins`` in geometry.py):

    rows(i) = floor(i*H / H_out) ... ceil((i + 1)*H / H_out) - 1     (and cols(j) likewise)
    out[n, c, i, j] = (1 / (|rows(i)| * |cols(j)|)) * sum over h in rows(i), w in cols(j) of x[n, c, h, w]

The bins cover the input; where H_out does not divide H, neighbouring bins
share a row, and with H_out = 1 the op is global average pooling. Backward,
every input of a bin receives an equal share of that output's gradient, and
an input in several bins collects from each:

    dx[n, c, h, w] = sum over bins (i, j) that hold (h, w) of dout[n, c, i, j] / (|rows(i)| * |cols(j)|)

The bin sums factor by axis (sum the rows of each row bin, then the columns
of each column bin), so both passes loop over H_out + W_out bins, each one a
slice of the channels-last input; the division by the bin area happens once.

Shape:
    x:   (N, C, H, W)
    out: (N, C, H_out, W_out)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convnp.functional.geometry import adaptive_bins, adaptive_output_hw

__all__ = ["adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward", "AdaptivePoolCache"]


@dataclass
class AdaptivePoolCache:
    """What the backward pass needs: the input's shape and the bins."""

    x_shape: tuple[int, int, int, int]
    row_bins: list[tuple[int, int]]  # (start, end) of each output row's input rows
    col_bins: list[tuple[int, int]]

    def bin_areas(self, dtype: np.dtype) -> np.ndarray:
        """|rows(i)| * |cols(j)| for every output position. Shape: (H_out, W_out, 1), for channels-last arrays."""
        heights = np.array([end - start for start, end in self.row_bins], dtype=dtype)
        widths = np.array([end - start for start, end in self.col_bins], dtype=dtype)
        return np.multiply.outer(heights, widths)[:, :, None]


def adaptive_avg_pool2d_forward(
    x: np.ndarray, output_size: int | tuple[int | None, int | None]
) -> tuple[np.ndarray, AdaptivePoolCache]:
    """Average over PyTorch's adaptive bins.

    Args:
        x: (N, C, H, W), floating point.
        output_size: an int, or a pair (H_out, W_out) whose entries may be None (keep that axis's size).

    Returns:
        out: (N, C, H_out, W_out), stored channels-last.
        cache: for ``adaptive_avg_pool2d_backward``.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: expected x of shape (N, C, H, W), got {np.shape(x)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"adaptive_avg_pool2d: expected a floating-point x, got dtype {x.dtype}")
    n, channels, height, width = x.shape
    h_out, w_out = adaptive_output_hw(output_size, (height, width), "adaptive_avg_pool2d")
    cache = AdaptivePoolCache(x.shape, adaptive_bins(height, h_out), adaptive_bins(width, w_out))
    x_nhwc = x.transpose(0, 2, 3, 1)  # (N, H, W, C): a view
    row_sums = np.empty((n, h_out, width, channels), dtype=x.dtype)
    for i, (start, end) in enumerate(cache.row_bins):
        np.sum(x_nhwc[:, start:end], axis=1, out=row_sums[:, i])
    out = np.empty((n, h_out, w_out, channels), dtype=x.dtype)
    for j, (start, end) in enumerate(cache.col_bins):
        np.sum(row_sums[:, :, start:end], axis=2, out=out[:, :, j])
    out /= cache.bin_areas(x.dtype)
    return out.transpose(0, 3, 1, 2), cache


def adaptive_avg_pool2d_backward(dout: np.ndarray, cache: AdaptivePoolCache) -> np.ndarray:
    """Share each output's gradient equally among its bin's inputs.

    Shape: dout (N, C, H_out, W_out) -> dx (N, C, H, W)
    """
    n, channels, height, width = cache.x_shape
    expected = (n, channels, len(cache.row_bins), len(cache.col_bins))
    if dout.shape != expected:
        raise ValueError(f"adaptive_avg_pool2d_backward: expected dout of shape {expected}, got {dout.shape}")
    dout_share = dout.transpose(0, 2, 3, 1) / cache.bin_areas(dout.dtype)  # (N, H_out, W_out, C)
    d_row_sums = np.zeros((n, len(cache.row_bins), width, channels), dtype=dout.dtype)
    for j, (start, end) in enumerate(cache.col_bins):
        d_row_sums[:, :, start:end] += dout_share[:, :, j : j + 1]
    dx = np.zeros((n, height, width, channels), dtype=dout.dtype)
    for i, (start, end) in enumerate(cache.row_bins):
        dx[:, start:end] += d_row_sums[:, i : i + 1]
    return dx.transpose(0, 3, 1, 2)
