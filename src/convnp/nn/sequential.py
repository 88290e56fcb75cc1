"""``Sequential``: layers applied one after another, the chain case of the graph engine."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from convnp.nn.layer import Layer
from convnp.nn.network import Network

__all__ = ["Sequential"]


class Sequential(Network):
    """Layers applied one after another.

    Args:
        layers: the layers, in order (blocks such as ``Residual`` included).
        input_shape: per-sample input shape, e.g. (1, 28, 28). When given, the
            model is built at once (parameters drawn, shapes checked); otherwise
            it is built from the first batch it sees.
        dtype: "float32" (default) or "float64".
        seed: seeds the parameter initialisation (Generator, int or None).

    ``state_dict`` keys follow PyTorch's ``nn.Sequential``: "<index>.<name>",
    e.g. "0.weight", "3.running_mean"; a layer given ``name=`` uses its name
    in place of its index. It runs on the same engine as ``Model``: its
    nodes are the chain ``[(layer_0, (0,)), (layer_1, (1,)), ...]``.
    """

    def __init__(
        self,
        layers: list[Layer] | tuple[Layer, ...],
        input_shape: tuple[int, ...] | None = None,
        dtype: str | np.dtype = "float32",
        seed: np.random.Generator | int | None = None,
    ) -> None:
        layers = list(layers)
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {index} is {type(layer).__name__}, not a convnp layer")
            if layer.multi_input:
                raise TypeError(f"Sequential: item {index} ({type(layer).__name__}) merges branches; use Model")
        if not layers:
            raise ValueError("Sequential: needs at least one layer")
        self.layers: list[Layer] = layers
        self._nodes = [(layer, (index,)) for index, layer in enumerate(layers)]
        self._init_common(dtype, seed)
        if input_shape is not None:
            self.build(input_shape)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({key}): {layer!r}" for key, layer in zip(self.layer_keys(), self.layers))
        return f"Sequential(\n{inner}\n)"
