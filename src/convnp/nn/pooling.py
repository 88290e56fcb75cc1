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
    padding_argument,
    padding_config,
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
    """Shared construction and shape logic of the windowed pools.

    Subclasses list their options beyond kernel, stride and padding in
    ``options`` (passed to the functional pair as keywords) and set
    ``self.dilation`` (the window's spacing; (1, 1) for average pooling).
    """

    _forward = staticmethod(max_pool2d_forward)
    _backward = staticmethod(max_pool2d_backward)
    options: tuple[str, ...] = ()

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.kernel_size = pair(kernel_size, "kernel_size", self.label)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", self.label)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"{self.label}: ceil_mode must be True or False, got {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)
        self.padding = padding_argument(padding, self.label)
        if not isinstance(self.padding, str):
            pads = normalize_padding(self.padding, self.kernel_size, self.stride, (1, 1), owner=self.label)
            check_pool_padding(pads, self.kernel_size, self.padding, self.label)

    def _build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self.label}: expected a per-sample input shape (C, H, W), got {input_shape}")
        _, out_hw = pool_geometry(
            input_shape[1:],
            self.kernel_size,
            self.stride,
            self.padding,
            self.label,
            input_shape,
            self.dilation,
            self.ceil_mode,
        )
        return (input_shape[0], *out_hw)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        options = {option: getattr(self, option) for option in self.options}
        out, self.cache = type(self)._forward(x, self.kernel_size, self.stride, self.padding, **options)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return type(self)._backward(self.check_grad(dout), self.cache)

    def get_config(self) -> dict:
        config = {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding_config(self.padding),
        }
        for option in self.options:
            value = getattr(self, option)
            config[option] = list(value) if isinstance(value, tuple) else value
        return config


class MaxPool2D(_Pool2D):
    """Max pooling; ``stride`` defaults to ``kernel_size``. Shape: (N, C, H, W) -> (N, C, H_out, W_out).

    ``dilation`` spaces a window's entries apart; ``ceil_mode`` rounds the
    output size up (PyTorch's ``MaxPool2d`` options; see docs/pooling.md).
    """

    _forward = staticmethod(max_pool2d_forward)
    _backward = staticmethod(max_pool2d_backward)
    options = ("dilation", "ceil_mode")

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: Padding = 0,
        dilation: IntPair = 1,
        ceil_mode: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, name=name)
        self.dilation = pair(dilation, "dilation", self.label)


class AvgPool2D(_Pool2D):
    """Average pooling; ``stride`` defaults to ``kernel_size``. Shape: (N, C, H, W) -> (N, C, H_out, W_out).

    Zero padding counts in the average unless ``count_include_pad=False``;
    ``ceil_mode`` rounds the output size up (PyTorch's ``AvgPool2d`` options).
    """

    _forward = staticmethod(avg_pool2d_forward)
    _backward = staticmethod(avg_pool2d_backward)
    options = ("ceil_mode", "count_include_pad")
    dilation = (1, 1)

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: Padding = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, name=name)
        if not isinstance(count_include_pad, (bool, np.bool_)):
            raise TypeError(f"{self.label}: count_include_pad must be True or False, got {count_include_pad!r}")
        self.count_include_pad = bool(count_include_pad)


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
