"""Symbolic graph nodes: ``Input(shape)``, and a layer called on nodes gives a node (Keras's functional API).

    inputs = Input((1, 28, 28))
    x = Conv2D(16, 3, padding=1)(inputs)          # a Node: the conv's output, shape (16, 28, 28)
    y = Add()([Conv2D(16, 3, padding=1)(x), x])   # merge layers take a list of nodes
    model = Model(inputs, y)

A node records which layer produced it from which nodes; ``convnp.nn.Model``
walks these records back from its outputs to find the graph. Calling a layer
on a node builds the layer for the node's shape at once (so a shape mistake
is reported on the line that makes it); the model builds every layer again
with its own dtype and seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from convnp.nn.layer import Layer

__all__ = ["Node", "Input", "connect", "is_node_input"]


class Node:
    """The symbolic output of a layer (or a model input) in a graph that is being described.

    Attributes:
        shape: per-sample shape of the values it stands for, e.g. (16, 28, 28).
        layer: the layer that computes it, or None for an ``Input``.
        parents: the nodes that layer takes, in order.
        name: an ``Input``'s name (None otherwise).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        layer: Layer | None = None,
        parents: tuple[Node, ...] = (),
        name: str | None = None,
    ) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.layer = layer
        self.parents = parents
        self.name = name

    def __repr__(self) -> str:
        source = "Input" if self.layer is None else self.layer.label
        return f"Node({source}, shape={self.shape})"


def Input(shape: tuple[int, ...], name: str | None = None) -> Node:  # noqa: N802  (Keras's spelling)
    """A model input of per-sample shape ``shape`` (e.g. (1, 28, 28)); returns its node."""
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError as error:
        raise TypeError(f"Input: shape must be a tuple of ints, got {shape!r}") from error
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"Input: shape must be a non-empty tuple of positive ints, got {shape}")
    return Node(shape, name=name)


def is_node_input(value) -> bool:
    """Whether a layer is being called on a node (or a list of nodes) rather than on arrays."""
    if isinstance(value, Node):
        return True
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, Node) for v in value)


def connect(layer: Layer, value: Node | list[Node]) -> Node:
    """The node for ``layer`` applied to ``value``; builds the layer for that input shape.

    A layer computes one node: calling it a second time raises ``ValueError``
    (make a second layer to apply the same op twice; its weights are its own).
    """
    if getattr(layer, "_node", None) is not None:
        raise ValueError(
            f"{layer.label}: this layer already computes a node of a graph; a layer is called once "
            "(create another layer to apply the same operation again)"
        )
    parents = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if layer.multi_input:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{layer.label}: expected a list of nodes, got one node")
        shape = [parent.shape for parent in parents]
    else:
        if len(parents) != 1:
            raise TypeError(f"{layer.label}: takes one input, got a list of {len(parents)} nodes")
        shape = parents[0].shape
    if layer.built:
        expected = layer.input_shape
        if (list(expected) if layer.multi_input else expected) != shape:
            raise ValueError(f"{layer.label}: built for inputs of shape {expected}, called on a node of shape {shape}")
        output_shape = layer.output_shape
    else:
        # Built now for the shape checks; the model builds it again with its own dtype and seed.
        output_shape = layer.build(shape, rng=0)
        layer._built_for_graph = True
    node = Node(output_shape, layer, parents)
    layer._node = node
    return node
