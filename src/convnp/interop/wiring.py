"""Which values each layer of a model reads, for the exporters that walk a model's graph."""

from __future__ import annotations

from convnp.nn.graph import Model
from convnp.nn.network import Network

__all__ = ["layer_inputs"]


def layer_inputs(model: Network) -> list[tuple[int, ...]]:
    """The values each of ``model.layers`` reads: 0 is the model's input, k the output of layer k - 1.

    A ``Sequential`` is the chain ``[(0,), (1,), ...]``; a ``Model`` says its
    wiring in its description (``get_config()["inputs"]``, what a model file stores).
    """
    if isinstance(model, Model):
        return [tuple(inputs) for inputs in model.get_config()["inputs"]]
    return [(index,) for index in range(len(model.layers))]
