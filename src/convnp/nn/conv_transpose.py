"""The ConvTranspose2D layer: parameters around ``convnp.functional.conv_transpose2d_*``."""

from __future__ import annotations

import numpy as np

from convnp.checks import positive_int
from convnp.functional.conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from convnp.functional.geometry import IntPair, check_output_padding, conv_transpose_geometry, pair
from convnp.nn.conv import create_weight_and_bias, input_channels
from convnp.nn.init import Initializer, get_initializer
from convnp.nn.layer import Layer
from convnp.parameter import Parameter


class ConvTranspose2D(Layer):
    """2-D transposed convolution to ``out_channels`` channels (PyTorch's ``ConvTranspose2d``).

    The input gradient of a convolution, used as a layer: with stride S it
    upsamples by S (the decoder half of an encoder-decoder network). The math
    lives in ``convnp/functional/conv_transpose.py``. ``in_channels`` is
    inferred from the input shape at build time unless given. ``padding`` is
    an int or a pair (rows and columns cropped from each side of the output);
    ``output_padding`` (smaller than the stride or the dilation of its axis)
    adds rows at the bottom and columns on the right.

    The weight has PyTorch's layout, so a ``ConvTranspose2d`` weight loads as
    it is; ``init`` reads its fans as PyTorch does (``convnp/nn/init.py``:
    fan_in = out_channels/groups * KH * KW).

    Shape:
        input: (N, C, H, W)
        weight: (C, out_channels // groups, KH, KW); bias: (out_channels,)
        output: (N, out_channels, H_out, W_out),
            H_out = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding_h + 1
    """

    param_names = ("weight", "bias")

    def __init__(
        self,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        output_padding: IntPair = 0,
        groups: int = 1,
        dilation: IntPair = 1,
        use_bias: bool = True,
        init: Initializer = "he",
        in_channels: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        owner = "ConvTranspose2D"
        self.out_channels = positive_int(out_channels, "out_channels", owner)
        self.groups = positive_int(groups, "groups", owner)
        if self.out_channels % self.groups:
            raise ValueError(f"{owner}: out_channels={out_channels} must be divisible by groups={groups}")
        self.in_channels = positive_int(in_channels, "in_channels", owner, allow_none=True)
        if self.in_channels is not None and self.in_channels % self.groups:
            raise ValueError(f"{owner}: in_channels={in_channels} must be divisible by groups={groups}")
        self.kernel_size = pair(kernel_size, "kernel_size", owner)
        self.stride = pair(stride, "stride", owner)
        self.dilation = pair(dilation, "dilation", owner)
        self.padding = pair(padding, "padding", owner, minimum=0)
        self.output_padding = pair(output_padding, "output_padding", owner, minimum=0)
        check_output_padding(self.output_padding, self.stride, self.dilation, owner)
        self.use_bias = bool(use_bias)
        get_initializer(init, owner=owner)  # fail now, not at build time
        self.init = init
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def _build(self, input_shape, rng):
        channels, height, width = input_channels(self, input_shape)
        h_out, w_out = conv_transpose_geometry(
            (height, width),
            self.kernel_size,
            self.stride,
            self.padding,
            self.output_padding,
            self.dilation,
            self.label,
            input_shape,
        )
        create_weight_and_bias(self, (channels, self.out_channels // self.groups, *self.kernel_size), rng)
        return (self.out_channels, h_out, w_out)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        out, self.cache = conv_transpose2d_forward(
            x,
            self.weight.data,
            None if self.bias is None else self.bias.data,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self._backward(dout, input_grad=True)

    def backward_params(self, dout: np.ndarray) -> None:
        self._backward(dout, input_grad=False)

    def _backward(self, dout: np.ndarray, input_grad: bool) -> np.ndarray | None:
        dx, dweight, dbias = conv_transpose2d_backward(self.check_grad(dout), self.cache, input_grad=input_grad)
        self.weight.grad = dweight
        if self.bias is not None:
            self.bias.grad = dbias
        return dx

    def get_config(self) -> dict:
        return {
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "output_padding": list(self.output_padding),
            "groups": self.groups,
            "dilation": list(self.dilation),
            "use_bias": self.use_bias,
            "init": self.init if isinstance(self.init, str) else "he",
            "in_channels": self.in_channels,
        }
