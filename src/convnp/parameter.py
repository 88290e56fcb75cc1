"""Trainable tensors."""

from __future__ import annotations

import numpy as np


class Parameter:
    """A trainable array and the gradient that the last backward pass left in it.

    Attributes:
        data: the values, an ndarray that optimizers update in place.
        grad: an array shaped like ``data`` after a backward pass, else None.
        name: the key under which the owning layer stores it ("weight", "bias").
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data: np.ndarray, name: str = "") -> None:
        self.data = np.asarray(data)
        self.grad: np.ndarray | None = None
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    def zero_grad(self) -> None:
        self.grad = None

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"
