"""Blocks: layers that hold layers. ``Residual(body, shortcut=None)`` computes body(x) + shortcut(x).

A residual block (He et al. 2016) adds its input, or a projection of it, to
the output of a few layers:

    out = body(x) + shortcut(x)          (shortcut = identity when None)
    dx  = dbody/dx^T dout + dshortcut/dx^T dout

The input is read by both branches, so its gradient is the sum of what each
branch sends back (the fan-out rule, docs/graphs.md). The branches run on the
same engine as a model (``convnp/nn/engine.py``), with its fusions.
"""

from __future__ import annotations

import numpy as np

from convnp.nn import engine
from convnp.nn.layer import Layer, layer_config, layer_from_config
from convnp.nn.plan import Plan, build_plan

__all__ = ["Residual"]


def _layer_list(value, what: str) -> list[Layer] | None:
    if value is None:
        return None
    layers = [value] if isinstance(value, Layer) else list(value)
    if not layers or not all(isinstance(layer, Layer) and not layer.multi_input for layer in layers):
        raise TypeError(f"Residual: {what} must be a layer or a non-empty list of single-input layers, got {value!r}")
    return layers


def _chain_plan(layers: list[Layer]) -> Plan:
    return build_plan([(layer, (index,)) for index, layer in enumerate(layers)])


class Residual(Layer):
    """out = body(x) + shortcut(x): a residual block, usable in ``Sequential`` and in graphs.

    Args:
        body: a layer or a list of layers run in order.
        shortcut: None (the identity), or a layer or list of layers (a projection,
            e.g. ``[Conv2D(64, 1, stride=2, use_bias=False), BatchNorm2D()]``).

    Shape: x (N, *S) -> (N, *S_out); body and shortcut must produce the same shape.
    state_dict keys: "body.0.weight", ..., "shortcut.0.weight", ...
    """

    sublayer_names = ("body", "shortcut")

    def __init__(self, body, shortcut=None, name: str | None = None) -> None:
        super().__init__(name=name)
        self.body = _layer_list(body, "body")
        self.shortcut = _layer_list(shortcut, "shortcut")

    def _build(self, input_shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        body_shape = input_shape
        for layer in self.body:
            body_shape = layer.build(body_shape, dtype=self.dtype, rng=rng)
        shortcut_shape = input_shape
        for layer in self.shortcut or ():
            shortcut_shape = layer.build(shortcut_shape, dtype=self.dtype, rng=rng)
        if body_shape != shortcut_shape:
            raise ValueError(
                f"{self.label}: the body gives {body_shape} but the shortcut gives {shortcut_shape} "
                f"for input {input_shape}; give a shortcut that matches (e.g. a strided 1x1 Conv2D)"
            )
        return body_shape

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self.check_input(x)
        out = engine.forward(_chain_plan(self.body), x, training)
        skip = x if self.shortcut is None else engine.forward(_chain_plan(self.shortcut), x, training)
        self.cache = True
        return out + skip

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout = self.check_grad(dout)
        dx = engine.backward(_chain_plan(self.body), dout)
        skip_dx = dout if self.shortcut is None else engine.backward(_chain_plan(self.shortcut), dout)
        return dx + skip_dx  # x feeds both branches: their gradients add

    def get_config(self) -> dict:
        return {
            "body": [layer_config(layer) for layer in self.body],
            "shortcut": None if self.shortcut is None else [layer_config(layer) for layer in self.shortcut],
        }

    @classmethod
    def from_config(cls, config: dict) -> Residual:
        config = dict(config)
        shortcut = config.pop("shortcut", None)
        body = [layer_from_config(item) for item in config.pop("body")]
        return cls(body, None if shortcut is None else [layer_from_config(item) for item in shortcut], **config)

    def short_repr(self) -> str:
        shortcut = "identity" if self.shortcut is None else f"{len(self.shortcut)} layers"
        return f"Residual(body: {len(self.body)} layers, shortcut: {shortcut})"
