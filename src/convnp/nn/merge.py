"""Layers that merge branches (``Add``, ``Concatenate``) and the do-nothing ``Identity``.

Merge layers take a list of inputs (``multi_input``): in a graph,
``Add()([a, b])``; on arrays, ``Add().forward([xa, xb])``. Their backward
pass returns one gradient per input.
"""

from __future__ import annotations

import numpy as np

from convnp.nn.layer import Layer

__all__ = ["Add", "Concatenate", "Identity"]


class _Merge(Layer):
    multi_input = True

    def check_inputs(self, xs) -> list[np.ndarray]:
        """The inputs as arrays of the built shapes and one float dtype (building on first use)."""
        if not isinstance(xs, (list, tuple)) or len(xs) < 2:
            raise TypeError(f"{self.label}: expected a list of at least two arrays, got {type(xs).__name__}")
        arrays = [np.asarray(x) for x in xs]
        if not self.built:
            self.build([a.shape[1:] for a in arrays], dtype=arrays[0].dtype)
        shapes = [a.shape[1:] for a in arrays]
        if shapes != list(self.input_shape) or len({len(a) for a in arrays}) != 1:
            raise ValueError(
                f"{self.label}: expected inputs of shapes {[(None, *s) for s in self.input_shape]}, "
                f"got {[a.shape for a in arrays]}"
            )
        if len({a.dtype for a in arrays}) != 1 or not np.issubdtype(arrays[0].dtype, np.floating):
            raise TypeError(f"{self.label}: inputs must share one float dtype, got {[str(a.dtype) for a in arrays]}")
        return arrays


class Add(_Merge):
    """out = x_1 + x_2 + ... (inputs of one shape); each input's gradient is dout itself.

    Shape: k inputs (N, *S) -> (N, *S)
    """

    def _build(self, input_shapes: list[tuple[int, ...]], rng: np.random.Generator) -> tuple[int, ...]:
        if len(input_shapes) < 2:
            raise ValueError(f"{self.label}: needs at least two inputs, got {len(input_shapes)}")
        if len(set(input_shapes)) != 1:
            raise ValueError(f"{self.label}: inputs must have one shape, got {input_shapes}")
        return input_shapes[0]

    def forward(self, xs, training: bool = False) -> np.ndarray:
        arrays = self.check_inputs(xs)
        out = arrays[0] + arrays[1]
        for x in arrays[2:]:
            out += x
        self.cache = len(arrays)
        return out

    def backward(self, dout: np.ndarray) -> list[np.ndarray]:
        dout = self.check_grad(dout)
        return [dout] * self.cache  # d(sum)/dx_i = 1: each input gets dout unchanged


class Concatenate(_Merge):
    """Join inputs along ``axis`` (NCHW terms: 1 is channels); the gradient is dout cut back into pieces.

    Shape: inputs (N, C_i, H, W) -> (N, sum C_i, H, W) for axis=1
    """

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        super().__init__(name=name)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(f"{self.label}: axis must be a non-zero int (axis 0 is the batch), got {axis!r}")
        self.axis = int(axis)

    def _sample_axis(self, ndim: int) -> int:
        axis = self.axis if self.axis > 0 else self.axis + ndim + 1  # counted with the batch axis
        if not 1 <= axis <= ndim:
            raise ValueError(f"{self.label}: axis {self.axis} is out of range for inputs of {ndim + 1} dimensions")
        return axis - 1

    def _build(self, input_shapes: list[tuple[int, ...]], rng: np.random.Generator) -> tuple[int, ...]:
        if len(input_shapes) < 2:
            raise ValueError(f"{self.label}: needs at least two inputs, got {len(input_shapes)}")
        ndim = len(input_shapes[0])
        axis = self._sample_axis(ndim)
        others = {s[:axis] + s[axis + 1 :] for s in input_shapes}
        if any(len(s) != ndim for s in input_shapes) or len(others) != 1:
            raise ValueError(f"{self.label}: inputs must agree on every axis but {self.axis}, got {input_shapes}")
        shape = list(input_shapes[0])
        shape[axis] = sum(s[axis] for s in input_shapes)
        return tuple(shape)

    def forward(self, xs, training: bool = False) -> np.ndarray:
        arrays = self.check_inputs(xs)
        axis = self._sample_axis(arrays[0].ndim - 1) + 1
        self.cache = (axis, np.cumsum([a.shape[axis] for a in arrays])[:-1])
        return np.concatenate(arrays, axis=axis)

    def backward(self, dout: np.ndarray) -> list[np.ndarray]:
        dout = self.check_grad(dout)
        axis, splits = self.cache
        return np.split(dout, splits, axis=axis)

    def get_config(self) -> dict:
        return {"axis": self.axis}


class Identity(Layer):
    """out = x; dx = dout. A placeholder (an identity shortcut, a layer switched off)."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        self.cache = True
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self.check_grad(dout)
