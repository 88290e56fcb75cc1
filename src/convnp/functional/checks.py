"""Argument checks shared by the functional ops: one wording for one mistake."""

from __future__ import annotations

import numpy as np

__all__ = ["float_array", "check_dout"]


def float_array(value, owner: str, name: str = "x") -> np.ndarray:
    """``value`` as an ndarray; ``TypeError`` naming ``owner`` unless its dtype is floating-point."""
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{owner}: {name} must be a floating-point array, got dtype {array.dtype}")
    return array


def check_dout(dout, shape: tuple[int, ...], owner: str) -> np.ndarray:
    """``dout`` as an ndarray of the forward output's ``shape``.

    A mismatched dout would broadcast silently and give wrong gradients, so it
    is a ``ValueError`` naming ``owner``.
    """
    dout = np.asarray(dout)
    if dout.shape != tuple(shape):
        raise ValueError(f"{owner}: dout must have the forward output's shape {tuple(shape)}, got {dout.shape}")
    return dout
