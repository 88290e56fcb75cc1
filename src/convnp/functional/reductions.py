"""Column sums of tall matrices, the reduction behind every bias gradient and batch statistic."""

from __future__ import annotations

import numpy as np

__all__ = ["column_sum"]

# One read-only vector of ones per dtype, grown when a longer one is needed; every
# column sum uses a prefix of it instead of allocating and filling its own.
_ones: dict[np.dtype, np.ndarray] = {}


def _ones_vector(length: int, dtype: np.dtype) -> np.ndarray:
    ones = _ones.get(dtype)
    if ones is None or len(ones) < length:
        ones = np.ones(max(length, 2 * len(ones) if ones is not None else 0), dtype=dtype)
        ones.flags.writeable = False
        _ones[dtype] = ones  # a racing thread may replace it with an equal one: harmless
    return ones[:length]


def column_sum(matrix: np.ndarray) -> np.ndarray:
    """``matrix.sum(axis=0)`` for a 2-D array, computed as the product ``ones @ matrix``.

    For the tall, narrow matrices of a CNN ((N*H*W, C): one row per position)
    NumPy's axis-0 reduction walks the rows one by one; BLAS's matrix-vector
    product does the same sum several times faster.

    Shape: matrix (R, C) -> (C,)
    """
    return np.dot(_ones_vector(matrix.shape[0], matrix.dtype), matrix)  # np.dot, not @: see threads.py
