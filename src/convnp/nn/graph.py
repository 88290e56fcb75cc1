"""``Model(inputs, outputs)``: a directed acyclic graph of layers, described with ``Input`` and layer calls.

    inputs = Input((3, 32, 32))
    x = Conv2D(16, 3, padding=1)(inputs)
    y = ReLU()(Add()([Conv2D(16, 3, padding=1)(ReLU()(x)), x]))   # a residual connection
    logits = Dense(10)(Flatten()(GlobalAvgPool2D()(y)))
    model = Model(inputs, logits)

The model finds its layers by walking back from the output through the nodes
(``convnp/nn/node.py``), puts them in topological order (every layer after
the layers it reads; ``order=`` chooses among the valid ones), and runs on the same engine as ``Sequential``: the
plan's fusions, sharded training and inference passes, and the backward pass
that adds up the gradients of a value read twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convnp.nn.layer import Layer
from convnp.nn.network import Network
from convnp.nn.node import Node

__all__ = ["Model"]


def _single(value, what: str) -> Node:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(
                f"Model: expected one {what} node, got {len(value)} (models have one input and one output)"
            )
        value = value[0]
    if not isinstance(value, Node):
        raise TypeError(f"Model: {what} must be a node (from Input or a layer call), got {type(value).__name__}")
    return value


def topological_nodes(inputs: Node, outputs: Node) -> list[tuple[Layer, tuple[int, ...]]]:
    """The layers between ``inputs`` and ``outputs``, each after the ones it reads, with their input values.

    Value 0 is the input; node k writes value k + 1; the output's layer is last.
    A depth-first walk from the output, each node listed after its parents.
    """
    order: list[Node] = []
    state: dict[int, str] = {}
    stack: list[tuple[Node, bool]] = [(outputs, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            state[id(node)] = "done"
            order.append(node)
            continue
        if state.get(id(node)) == "done":
            continue
        if node.layer is None:
            if node is not inputs:
                raise ValueError(f"Model: the output depends on an Input {node} that is not the model's input")
            state[id(node)] = "done"
            continue
        state[id(node)] = "visiting"
        stack.append((node, True))
        for parent in reversed(node.parents):
            if state.get(id(parent)) != "done":
                stack.append((parent, False))
    if inputs is outputs:
        raise ValueError("Model: the output is the input itself; add at least one layer")
    values = {id(inputs): 0}
    nodes = []
    for node in order:
        if id(node) in values:
            continue  # a node reached along two paths is listed once
        nodes.append((node.layer, tuple(values[id(parent)] for parent in node.parents)))
        values[id(node)] = len(nodes)
    return nodes


def reordered_nodes(
    nodes: list[tuple[Layer, tuple[int, ...]]], order: Sequence[Layer]
) -> list[tuple[Layer, tuple[int, ...]]]:
    """``nodes`` listed in ``order`` instead, their value numbers renumbered to match.

    ``order`` must hold each layer of ``nodes`` once, every layer after the
    layers it reads (a topological order); ``ValueError`` otherwise.
    """
    order = list(order)
    position = {id(layer): index for index, (layer, _) in enumerate(nodes)}
    if len(order) != len(nodes) or {id(layer) for layer in order} != set(position):
        listed = {id(layer) for layer in order}
        missing = [layer.label for layer, _ in nodes if id(layer) not in listed]
        extra = [getattr(layer, "label", repr(layer)) for layer in order if id(layer) not in position]
        raise ValueError(
            f"Model: order must list each of the graph's {len(nodes)} layers once; got {len(order)} "
            f"(missing {missing}, not in the graph {extra})"
        )
    renumbered = {0: 0}  # old value number -> new one; 0, the input, stays
    result = []
    for layer in order:
        old = position[id(layer)]
        inputs = nodes[old][1]
        unread = [nodes[value - 1][0].label for value in inputs if value not in renumbered]
        if unread:
            raise ValueError(f"Model: order lists {layer.label} before {unread}, which it reads")
        result.append((layer, tuple(renumbered[value] for value in inputs)))
        renumbered[old + 1] = len(result)
    return result


class Model(Network):
    """A graph of layers from ``inputs`` (an ``Input`` node) to ``outputs`` (a node computed from it).

    Args:
        inputs, outputs: nodes (or one-element lists of nodes).
        dtype: "float32" (default) or "float64".
        seed: seeds the parameter initialisation of layers that the graph
            built (layers built before they were called keep their weights).
        order: the layers in the order ``layers`` lists them (and with it the
            order of ``named_parameters``, ``state_dict`` and the positions that
            key unnamed layers); any topological order of the graph's layers.
            By default, a depth-first walk back from the output.

    Everything ``Sequential`` has works the same way (``forward``, ``backward``,
    ``fit``, ``evaluate``, ``predict``, ``save``, ``state_dict``, ``summary``, ...).
    ``layers`` lists the layers in topological order; an unnamed layer's
    state_dict keys start with its position in that order.
    """

    def __init__(
        self, inputs, outputs, dtype: str | np.dtype = "float32", seed=None, order: Sequence[Layer] | None = None
    ) -> None:
        inputs, outputs = _single(inputs, "input"), _single(outputs, "output")
        if inputs.layer is not None:
            raise ValueError("Model: inputs must be an Input node, not the output of a layer")
        self._nodes = topological_nodes(inputs, outputs)
        if order is not None:
            self._nodes = reordered_nodes(self._nodes, order)
        self.layers = [layer for layer, _ in self._nodes]
        self.input_node, self.output_node = inputs, outputs
        self._init_common(dtype, seed)
        # Layers built only for the shape checks of the graph calls are built again with the model's
        # dtype and seed; layers the user built before calling them keep their weights.
        self._prebuilt = {id(layer) for layer in self.layers if not getattr(layer, "_built_for_graph", False)}
        self.build(inputs.shape)

    @property
    def inputs(self) -> list[Node]:
        return [self.input_node]

    @property
    def outputs(self) -> list[Node]:
        return [self.output_node]

    def __repr__(self) -> str:
        inner = ",\n".join(
            f"  ({key}): {layer!r} <- {list(inputs)}" for key, (layer, inputs) in zip(self.layer_keys(), self._nodes)
        )
        return f"Model(\n{inner}\n)"
