"""Activation layers, and the lookup that turns an ``activation=`` argument into one.

Each layer is a thin wrapper over a pair in ``convnp.functional.activations``.
They hold no parameters, so they take the dtype of their first input and keep
it (float32 in, float32 out).

``get_activation`` serves the ``activation=`` argument of Dense and Conv2D: a
name, a layer, None, or the JSON form that ``activation_config`` writes.
"""

from __future__ import annotations

import copy

import numpy as np

from convnp.functional import activations as F
from convnp.nn.layer import LAYER_REGISTRY, Layer

__all__ = [
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Sigmoid",
    "Tanh",
    "Gaussian",
    "Softmax",
    "ACTIVATIONS",
    "get_activation",
    "activation_config",
]


class Activation(Layer):
    """Base of the parameter-free activation layers.

    Subclasses name their functional pair in ``forward_fn``/``backward_fn`` and,
    when the op takes arguments, return them from ``op_kwargs``.
    """

    forward_fn = None
    backward_fn = None

    def op_kwargs(self) -> dict:
        """Keyword arguments passed to ``forward_fn`` besides x."""
        return {}

    def get_config(self) -> dict:
        # An activation's constructor arguments are exactly its op's arguments.
        return self.op_kwargs()

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        out, self.cache = self.forward_fn(x, **self.op_kwargs())
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout = self.check_grad(dout)
        return self.backward_fn(dout, self.cache)


class ReLU(Activation):
    """out = max(x, 0); dx = dout where x > 0."""

    forward_fn = staticmethod(F.relu_forward)
    backward_fn = staticmethod(F.relu_backward)


class LeakyReLU(Activation):
    """out = x if x > 0 else alpha * x."""

    forward_fn = staticmethod(F.leaky_relu_forward)
    backward_fn = staticmethod(F.leaky_relu_backward)

    def __init__(self, alpha: float = 0.01, name: str | None = None) -> None:
        super().__init__(name=name)
        self.alpha = _real(alpha, "alpha", self.label)

    def op_kwargs(self) -> dict:
        return {"alpha": self.alpha}


class ELU(Activation):
    """out = x if x > 0 else alpha * (exp(x) - 1)."""

    forward_fn = staticmethod(F.elu_forward)
    backward_fn = staticmethod(F.elu_backward)

    def __init__(self, alpha: float = 1.0, name: str | None = None) -> None:
        super().__init__(name=name)
        self.alpha = _real(alpha, "alpha", self.label)

    def op_kwargs(self) -> dict:
        return {"alpha": self.alpha}


class Sigmoid(Activation):
    """out = 1 / (1 + exp(-x)), overflow-free for any finite x."""

    forward_fn = staticmethod(F.sigmoid_forward)
    backward_fn = staticmethod(F.sigmoid_backward)


class Tanh(Activation):
    """out = tanh(x)."""

    forward_fn = staticmethod(F.tanh_forward)
    backward_fn = staticmethod(F.tanh_backward)


class Gaussian(Activation):
    """out = exp(-x**2)."""

    forward_fn = staticmethod(F.gaussian_forward)
    backward_fn = staticmethod(F.gaussian_backward)


class Softmax(Activation):
    """Softmax along ``axis`` of the batch: by default 1 (the features of (N, F), the channels of (N, C, H, W)).

    ``axis`` counts NCHW axes (PyTorch's ``dim``; negative counts from the
    end) and may not be 0, the batch axis.
    """

    forward_fn = staticmethod(F.softmax_forward)
    backward_fn = staticmethod(F.softmax_backward)

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        super().__init__(name=name)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(f"{self.label}: axis must be a nonzero int (axis 0 is the batch), got {axis!r}")
        self.axis = int(axis)

    def _build(self, input_shape, rng):
        if not -len(input_shape) <= self.axis <= len(input_shape):
            raise ValueError(f"{self.label}: axis {self.axis} is out of range for inputs of shape (N, *{input_shape})")
        return input_shape

    def normalizes_axis_one(self) -> bool:
        """Whether it normalises along axis 1 (the classes of (N, C) logits): the softmax a loss can take over."""
        if self.axis == 1:
            return True
        return self.built and self.axis % (len(self.input_shape) + 1) == 1

    def op_kwargs(self) -> dict:
        return {"axis": self.axis}


def _real(value: float, name: str, owner: str) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}") from error


# Names accepted by activation=...; "linear" (or None) means no activation.
ACTIVATIONS: dict[str, type[Activation]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "gaussian": Gaussian,
    "softmax": Softmax,
}
_VALID_NAMES = [*ACTIVATIONS, "linear"]


def get_activation(activation: str | Layer | dict | None, owner: str = "") -> Layer | None:
    """Turn an ``activation=`` argument into a fresh layer, or None for no activation.

    Accepts a name ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "gaussian",
    "softmax"; "linear" or None for none), a Layer instance (copied, because a
    layer keeps its forward cache and one instance shared by two layers would
    mix them up), or ``{"class": "LeakyReLU", "config": {"alpha": 0.2}}`` as
    written by ``activation_config``.
    """
    prefix = f"{owner}: " if owner else ""
    if activation is None:
        return None
    if isinstance(activation, Layer):
        return copy.deepcopy(activation)
    if isinstance(activation, str):
        key = activation.lower()
        if key == "linear":
            return None
        if key not in ACTIVATIONS:
            raise ValueError(
                f"{prefix}unknown activation {activation!r}; valid names: {_VALID_NAMES}, None, or a layer"
            )
        return ACTIVATIONS[key]()
    if isinstance(activation, dict):
        class_name = activation.get("class")
        if class_name not in LAYER_REGISTRY or set(activation) - {"class", "config"}:
            raise ValueError(
                f"{prefix}activation dict must be "
                f"{{'class': <layer class name>, 'config': {{...}}}} naming a known layer, "
                f"got {activation!r}"
            )
        return LAYER_REGISTRY[class_name](**activation.get("config", {}))
    raise TypeError(
        f"{prefix}activation must be a name ({_VALID_NAMES}), a layer or None, got {type(activation).__name__}"
    )


def activation_config(activation: Layer | None) -> str | dict | None:
    """JSON form of an activation layer, which ``get_activation`` turns back into one.

    None stays None; a layer equal to what its name builds is stored as the
    name ("relu"); any other layer as ``{"class": ..., "config": layer.get_config()}``.
    """
    if activation is None:
        return None
    config = activation.get_config()
    for name, cls in ACTIVATIONS.items():
        if type(activation) is cls and config == cls().get_config():
            return name
    return {"class": type(activation).__name__, "config": config}
