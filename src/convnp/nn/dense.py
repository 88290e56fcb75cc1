"""Fully connected layer and the Flatten layer that feeds it."""

from __future__ import annotations

import math

import numpy as np

from convnp.checks import positive_int
from convnp.functional.linear import linear_backward, linear_forward
from convnp.nn import init as init_module
from convnp.nn.activations import activation_config, get_activation
from convnp.nn.layer import Layer
from convnp.parameter import Parameter

__all__ = ["Dense", "Flatten"]


class Dense(Layer):
    """Fully connected layer: out = activation(x @ weight.T + bias).

    Args:
        out_features: number of outputs.
        use_bias: add a learned bias (zeros at start).
        activation: None, a name ("relu", ...) or a layer, applied after the affine map.
        init: weight initialiser ("he", "xavier", "lecun", "zeros" or f(shape, rng)).
        in_features: expected input features; inferred at build when None.

    Shape:
        x: (N, in_features)
        weight: (out_features, in_features), bias: (out_features,)
        out: (N, out_features)
    """

    param_names = ("weight", "bias")
    sublayer_names = ("activation",)

    def __init__(
        self,
        out_features: int,
        use_bias: bool = True,
        activation: str | Layer | dict | None = None,
        init: init_module.Initializer = "he",
        in_features: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.out_features = positive_int(out_features, "out_features", self.label)
        self.in_features = positive_int(in_features, "in_features", self.label, allow_none=True)
        self.use_bias = bool(use_bias)
        self.activation = get_activation(activation, owner=self.label)
        init_module.get_initializer(init, owner=self.label)  # fail now, not at build time
        self.init = init
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def _build(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        if len(input_shape) != 1:
            raise ValueError(
                f"{self.label}: expected a per-sample input of shape (features,), "
                f"got {input_shape}; add a Flatten layer before it"
            )
        (features,) = input_shape
        if self.in_features is not None and self.in_features != features:
            raise ValueError(
                f"{self.label}: in_features={self.in_features} was given but the input has {features} features"
            )
        self.in_features = features
        shape = (self.out_features, features)
        self.weight = Parameter(init_module.initialize(self.init, shape, rng, self.dtype, owner=self.label), "weight")
        self.bias = None
        if self.use_bias:
            self.bias = Parameter(init_module.constant(0.0, (self.out_features,), self.dtype, self.label), "bias")
        if self.activation is not None:
            self.activation.build((self.out_features,), dtype=self.dtype)
        return (self.out_features,)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        bias = None if self.bias is None else self.bias.data
        out, self.cache = linear_forward(x, self.weight.data, bias)
        if self.activation is not None:
            out = self.activation.forward(out, training=training)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout = self.check_grad(dout)
        if self.activation is not None:
            dout = self.activation.backward(dout)  # the activation ran last, so it goes first
        dx, dweight, dbias = linear_backward(dout, self.cache)
        self.weight.grad = dweight
        if self.bias is not None:
            self.bias.grad = dbias
        return dx

    def astype(self, dtype) -> Dense:
        super().astype(dtype)
        if self.activation is not None:
            self.activation.astype(dtype)
        return self

    def get_config(self) -> dict:
        config = {
            "out_features": self.out_features,
            "use_bias": self.use_bias,
            "activation": activation_config(self.activation),
            "in_features": self.in_features,
        }
        # A callable initialiser cannot go into JSON; it only shapes the starting
        # weights, which a saved model stores anyway, so the default stands in.
        if isinstance(self.init, str):
            config["init"] = self.init
        return config


class Flatten(Layer):
    """Flatten each sample into a vector (the batch axis stays).

    Shape:
        x: (N, d1, d2, ...)
        out: (N, d1 * d2 * ...)
    """

    def _build(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        return (math.prod(input_shape),)  # exact: np.prod would wrap around past 2**63

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)  # (N, C, H, W) -> (N, C*H*W)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout = np.asarray(self.check_grad(dout))
        input_shape = self.cache
        expected = (input_shape[0], *self.output_shape)
        if dout.shape != expected:
            raise ValueError(f"{self.label}: expected dout of shape {expected}, got {dout.shape}")
        return dout.reshape(input_shape)  # (N, C*H*W) -> (N, C, H, W)
