"""Column sums of tall matrices, the reduction behind every bias gradient and batch statistic."""

from __future__ import annotations

import numpy as np

__all__ = ["column_sum"]


def column_sum(matrix: np.ndarray) -> np.ndarray:
    """``matrix.sum(axis=0)`` for a 2-D array, computed as ``ones @ matrix``.

    For the tall, narrow matrices of a CNN ((N*H*W, C): one row per position)
    NumPy's axis-0 reduction walks the rows one by one; BLAS's matrix-vector
    product does the same sum several times faster.

    Shape: matrix (R, C) -> (C,)
    """
    return np.ones(matrix.shape[0], dtype=matrix.dtype) @ matrix
