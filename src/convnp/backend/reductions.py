"""Sums with a fixed order and column sums of tall matrices: the reductions behind every gradient and statistic."""

from __future__ import annotations

import numpy as np

__all__ = ["column_sum", "add_parts", "ordered_sum"]

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
    return np.dot(_ones_vector(matrix.shape[0], matrix.dtype), matrix)  # np.dot, not @: see backend/threads.py


def add_parts(total, part):
    """``total + part`` for arrays, None, or tuples of those (element by element; None stays None)."""
    if isinstance(total, tuple):
        return tuple(None if a is None else a + b for a, b in zip(total, part))
    return total + part


def ordered_sum(parts: list):
    """The sum of ``parts`` added first to last, so that the result is the same on every run.

    Floating-point addition is not associative: summing per-slice or per-shard
    results in whatever order threads finish would change the last bits from
    run to run. Each part is an array, or a tuple of arrays and Nones.
    """
    total = parts[0]
    for part in parts[1:]:
        total = add_parts(total, part)
    return total
