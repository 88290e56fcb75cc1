"""Pooling layers around ``convnp.functional.pooling`` and ``convnp.functional.adaptive_pool``."""

from __future__ import annotations

import numpy as np

from convnp.functional.adaptive_pool import adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward
from convnp.functional.geometry import (
    IntPair,
    Padding,
    adaptive_output_hw,
    check_pool_padding,
    normalize_padding,
    pair,
    pool_geometry,
)
from convnp.functional.pooling import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from convnp.nn.layer import Layer


class _Pool2D(Layer):
    """Shared construction and shape logic of the windowed pools."""

    _forward = staticmethod(max_pool2d_forward)
    _backward = staticmethod(max_pool2d_backward)

    def __init__(
        self, kernel_size: IntPair, stride: IntPair | None = None, padding: Padding = 0, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        self.kernel_size = pair(kernel_size, "kernel_size", self.label)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", self.label)
        if not isinstance(padding, str):
            padding = padding if isinstance(padding, (int, np.integer)) else tuple(padding)
            pads = normalize_padding(padding, self.kernel_size, self.stride, (1, 1), owner=self.label)
            padding = int(padding) if isinstance(padding, (int, np.integer)) else (int(padding[0]), int(padding[1]))
            check_pool_padding(pads, self.kernel_size, padding, self.label)
        self.padding = padding

    def _build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self.label}: expected a per-sample input shape (C, H, W), got {input_shape}")
        _, out_hw = pool_geometry(input_shape[1:], self.kernel_size, self.stride, self.padding, self.label, input_shape)
        return (input_shape[0], *out_hw)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        out, self.cache = type(self)._forward(x, self.kernel_size, self.stride, self.padding)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return type(self)._backward(self.check_grad(dout), self.cache)

    def get_config(self) -> dict:
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding) if isinstance(self.padding, tuple) else self.padding,
        }


class MaxPool2D(_Pool2D):
    """Max pooling; ``stride`` defaults to ``kernel_size``. Shape: (N, C, H, W) -> (N, C, H_out, W_out)."""

    _forward = staticmethod(max_pool2d_forward)
    _backward = staticmethod(max_pool2d_backward)


class AvgPool2D(_Pool2D):
    """Average pooling (zero padding counted). Shape: (N, C, H, W) -> (N, C, H_out, W_out)."""

    _forward = staticmethod(avg_pool2d_forward)
    _backward = staticmethod(avg_pool2d_backward)


class GlobalAvgPool2D(Layer):
    """Mean over the spatial axes. Shape: (N, C, H, W) -> (N, C)."""

    def _build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self.label}: expected a per-sample input shape (C, H, W), got {input_shape}")
        return (input_shape[0],)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        out, self.cache = global_avg_pool2d_forward(self.check_input(x))
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return global_avg_pool2d_backward(self.check_grad(dout), self.cache)


class AdaptiveAvgPool2D(Layer):
    """Average pooling to a fixed ``output_size`` whatever the input size, over PyTorch's adaptive bins.

    ``output_size`` is an int or a pair (H_out, W_out) whose entries may be
    None (that axis keeps the input's size). Shape: (N, C, H, W) -> (N, C, H_out, W_out).
    """

    def __init__(self, output_size: int | tuple[int | None, int | None], name: str | None = None) -> None:
        super().__init__(name=name)
        self.output_size = adaptive_output_hw(output_size, owner="AdaptiveAvgPool2D")

    def _build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self.label}: expected a per-sample input shape (C, H, W), got {input_shape}")
        return (input_shape[0], *adaptive_output_hw(self.output_size, input_shape[1:], self.label))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        out, self.cache = adaptive_avg_pool2d_forward(self.check_input(x), self.output_size)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return adaptive_avg_pool2d_backward(self.check_grad(dout), self.cache)

    def get_config(self) -> dict:
        return {"output_size": list(self.output_size)}
