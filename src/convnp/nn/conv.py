"""The Conv2D layer: parameters around ``convnp.functional.conv2d_*``."""

from __future__ import annotations

import numpy as np

from convnp.checks import positive_int
from convnp.functional.conv import conv2d_backward, conv2d_forward
from convnp.functional.geometry import IntPair, Padding, conv_geometry, padding_argument, padding_config, pair
from convnp.functional.winograd import winograd_conv2d_backward, winograd_conv2d_forward, winograd_unsupported
from convnp.nn.activations import activation_config, get_activation
from convnp.nn.init import Initializer, constant, get_initializer, initialize
from convnp.nn.layer import Layer
from convnp.parameter import Parameter

#: The ways a Conv2D can compute its convolution: name -> (forward, backward). Same values up to rounding.
CONV_ALGORITHMS = {
    "im2col": (conv2d_forward, conv2d_backward),
    "winograd": (winograd_conv2d_forward, winograd_conv2d_backward),
}


class Conv2D(Layer):
    """2-D convolution with ``out_channels`` filters, optionally followed by an activation.

    The math lives in ``convnp/functional/conv.py``. ``in_channels`` is inferred
    from the input shape at build time unless given.

    Shape:
        input: (N, C, H, W)
        weight: (out_channels, C // groups, KH, KW); bias: (out_channels,)
        output: (N, out_channels, H_out, W_out),
            H_out = floor((H + PT + PB - DH*(KH-1) - 1) / SH) + 1

    ``padding`` is an int, a pair, ``((top, bottom), (left, right))``, "valid" or "same".

    ``algorithm`` chooses how the convolution is computed, per layer: "im2col"
    (any convolution; ``convnp/functional/conv.py``) or "winograd" (Winograd's
    F(2x2, 3x3), for 3x3 kernels with stride 1, dilation 1 and groups=1 only;
    ``convnp/functional/winograd.py``). Both give the same values and
    gradients up to rounding; which is faster depends on the layer's shape.
    It is saved with the model, and may be changed on a built layer.
    """

    param_names = ("weight", "bias")
    sublayer_names = ("activation",)

    def __init__(
        self,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        use_bias: bool = True,
        activation=None,
        init: Initializer = "he",
        in_channels: int | None = None,
        algorithm: str = "im2col",
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        positive_int(out_channels, "out_channels", "Conv2D")
        positive_int(groups, "groups", "Conv2D")
        if out_channels % groups:
            raise ValueError(f"Conv2D: out_channels={out_channels} must be divisible by groups={groups}")
        if in_channels is not None:
            positive_int(in_channels, "in_channels", "Conv2D")
        self.out_channels = int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2D")
        self.stride = pair(stride, "stride", "Conv2D")
        self.dilation = pair(dilation, "dilation", "Conv2D")
        # Validated now; "same" is resolved at build, when the input size is known.
        self.padding = padding_argument(padding, "Conv2D")
        self.groups = int(groups)
        self.use_bias = bool(use_bias)
        self.activation = get_activation(activation, owner="Conv2D")
        get_initializer(init, owner="Conv2D")  # fail now, not at build time
        self.init = init
        self.in_channels = None if in_channels is None else int(in_channels)
        self.algorithm = algorithm
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    @property
    def algorithm(self) -> str:
        """How the convolution is computed: "im2col" or "winograd" (see the class docstring)."""
        return self._algorithm

    @algorithm.setter
    def algorithm(self, algorithm: str) -> None:
        if algorithm not in CONV_ALGORITHMS:
            raise ValueError(f"{self.label}: algorithm must be one of {', '.join(map(repr, CONV_ALGORITHMS))}, "
                             f"got {algorithm!r}")  # fmt: skip
        if algorithm == "winograd":
            reason = winograd_unsupported(self.kernel_size, self.stride, self.dilation, self.groups)
            if reason is not None:
                raise ValueError(f"{self.label}: algorithm='winograd' is not available: {reason}")
        self._algorithm = algorithm
        self.cache = None  # a cache of the other algorithm is no use to this one's backward pass

    def _build(self, input_shape, rng):
        channels, height, width = input_channels(self, input_shape)
        _, (h_out, w_out) = conv_geometry(
            (height, width), self.kernel_size, self.stride, self.padding, self.dilation, self.label, input_shape
        )
        create_weight_and_bias(self, (self.out_channels, channels // self.groups, *self.kernel_size), rng)
        output_shape = (self.out_channels, h_out, w_out)
        if self.activation is not None:
            output_shape = self.activation.build(output_shape, self.dtype)
        return output_shape

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        convolution_forward, _ = CONV_ALGORITHMS[self.algorithm]
        out, self.cache = convolution_forward(
            x,
            self.weight.data,
            None if self.bias is None else self.bias.data,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )
        if self.activation is not None:
            out = self.activation.forward(out, training)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self._backward(dout, input_grad=True)

    def backward_params(self, dout: np.ndarray) -> None:
        self._backward(dout, input_grad=False)

    def _backward(self, dout: np.ndarray, input_grad: bool) -> np.ndarray | None:
        dout = self.check_grad(dout)
        if self.activation is not None:
            dout = self.activation.backward(dout)
        _, convolution_backward = CONV_ALGORITHMS[self.algorithm]
        dx, dweight, dbias = convolution_backward(dout, self.cache, input_grad=input_grad)
        self.weight.grad = dweight
        if self.bias is not None:
            self.bias.grad = dbias
        return dx

    def get_config(self) -> dict:
        return {
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding_config(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "use_bias": self.use_bias,
            "activation": activation_config(self.activation),
            "init": self.init if isinstance(self.init, str) else "he",
            "in_channels": self.in_channels,
            "algorithm": self.algorithm,
        }


def input_channels(layer: Layer, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A convolution layer's per-sample input (C, H, W), checked against its ``in_channels`` and ``groups``.

    Sets ``layer.in_channels`` (inferred when it was not given); shared by Conv2D and ConvTranspose2D.
    """
    if len(input_shape) != 3:
        raise ValueError(f"{layer.label}: expected a per-sample input shape (C, H, W), got {input_shape}")
    channels, height, width = input_shape
    if layer.in_channels is not None and channels != layer.in_channels:
        raise ValueError(f"{layer.label}: expected {layer.in_channels} input channels, got input shape {input_shape}")
    if channels % layer.groups:
        raise ValueError(f"{layer.label}: {channels} input channels are not divisible by groups={layer.groups}")
    layer.in_channels = channels
    return channels, height, width


def create_weight_and_bias(layer: Layer, weight_shape: tuple[int, ...], rng: np.random.Generator) -> None:
    """The layer's ``weight`` drawn by its initialiser, and a zero ``bias`` of ``out_channels`` (None without one)."""
    layer.weight = Parameter(initialize(layer.init, weight_shape, rng, layer.dtype, layer.label), "weight")
    layer.bias = None
    if layer.use_bias:
        layer.bias = Parameter(constant(0.0, (layer.out_channels,), layer.dtype, layer.label), "bias")
