"""A convnp ``Model`` (or a ``Residual`` block) as a ``torch.fx.GraphModule`` with the same state_dict keys.

The torch graph is written node by node, in the order of ``model.layers``:

    the model's input      placeholder "x"
    a layer                call_module at the layer's key (its name, or its position when
                           unnamed), the module of ``torch_layers.py`` holding the layer's
                           parameters under the layer's own keys; its extra modules (a pad in
                           front, a fused activation after, Flatten after global pooling) at
                           "<key>_pad", "<key>_activation", "<key>_flatten"
    Add                    operator.add (chained for more than two inputs)
    Concatenate(axis)      torch.cat(inputs, dim=axis)
    Residual               call_module at its key: a GraphModule of its own, with the body's
                           layers at "body.0", "body.1", ..., the shortcut's at "shortcut.0", ...,
                           and operator.add of the two
    the model's output     output

A dotted key is a path of containers ("layer1.0.conv1" is module ``conv1``
inside module ``0`` inside module ``layer1``, plain ``torch.nn.Module``s), so
every state_dict key is the convnp key. Modules are registered in the order
the nodes are written, the model's layer order, and so is the torch
module's ``named_parameters``. A key may not be both a layer and the path to
other layers ("block" and "block.conv").
"""

from __future__ import annotations

import operator

from convnp.interop.torch_layers import torch_modules
from convnp.nn.blocks import Residual
from convnp.nn.graph import Model
from convnp.nn.layer import Layer
from convnp.nn.merge import Add, Concatenate

__all__ = ["is_block", "block_module", "graph_to_torch"]


def is_block(layer: Layer) -> bool:
    """Whether the layer becomes a GraphModule of its own (a ``Residual``)."""
    return isinstance(layer, Residual)


class _GraphWriter:
    """An fx graph being written, and the modules its call_module nodes name."""

    def __init__(self, torch, keys: list[str]) -> None:
        self.torch = torch
        self.graph = torch.fx.Graph()
        # The modules, placed at their paths as the nodes are written, so that they are registered
        # (and the torch module's named_parameters ordered) in the graph's order.
        self.root = torch.nn.Module()
        self.targets: set[str] = set()
        self.reserved = set(keys)  # the layers' own keys: no extra module may take one

    def _call(self, target: str, module, value, where: str):
        *path, field = target.split(".")
        owner = self.root
        for depth, part in enumerate(path):
            child = dict(owner.named_children()).get(part)
            if child is None:
                child = self.torch.nn.Module()
                owner.add_module(part, child)
            elif type(child) is not self.torch.nn.Module:
                raise ValueError(
                    f"to_torch: {where} is keyed {target!r}, inside the layer keyed {'.'.join(path[: depth + 1])!r}; "
                    "a torch module path is a layer or holds layers, not both"
                )
            owner = child
        if dict(owner.named_children()).get(field) is not None:
            raise ValueError(f"to_torch: {where} is keyed {target!r}, the path of other layers; give it another name")
        try:
            owner.add_module(field, module)
        except KeyError as error:
            raise ValueError(f"to_torch: {where} is keyed {target!r}, which torch refuses: {error}") from error
        self.targets.add(target)
        return self.graph.call_module(target, (value,))

    def _extra_target(self, key: str, role: str) -> str:
        target, suffix = f"{key}_{role}", 1
        while target in self.reserved or target in self.targets:
            suffix += 1
            target = f"{key}_{role}{suffix}"
        return target

    def layer(self, layer: Layer, key: str, values: list, where: str):
        """Write the nodes of one layer reading fx nodes ``values``; returns the node of its output."""
        if any(not part for part in key.split(".")):
            raise ValueError(f"to_torch: {where} is named {key!r}, which is not a torch module path (an empty part)")
        if isinstance(layer, Add):
            out = values[0]
            for value in values[1:]:
                out = self.graph.call_function(operator.add, (out, value))
            return out
        if isinstance(layer, Concatenate):
            return self.graph.call_function(self.torch.cat, (list(values),), {"dim": layer.axis})
        if layer.multi_input:
            raise TypeError(f"to_torch: {where} ({type(layer).__name__}) has no PyTorch equivalent")
        (value,) = values
        if is_block(layer):
            return self._call(key, block_module(layer, self.torch, where), value, where)
        for role, module in torch_modules(layer, self.torch.nn, where):
            value = self._call(key if role == "main" else self._extra_target(key, role), module, value, where)
        return value

    def finish(self, output, class_name: str):
        self.graph.output(output)
        return self.torch.fx.GraphModule(self.root, self.graph, class_name=class_name)


def block_module(layer: Residual, torch, where: str):
    """The GraphModule of a ``Residual``: body(x) + shortcut(x), keyed "body.0...", "shortcut.0..."."""
    body_keys = [f"body.{index}" for index in range(len(layer.body))]
    shortcut_keys = [f"shortcut.{index}" for index in range(len(layer.shortcut or ()))]
    writer = _GraphWriter(torch, body_keys + shortcut_keys)
    x = writer.graph.placeholder("x")
    body = x
    for key, sublayer in zip(body_keys, layer.body):
        body = writer.layer(sublayer, key, [body], f"{where}, {key}")
    skip = x
    for key, sublayer in zip(shortcut_keys, layer.shortcut or ()):
        skip = writer.layer(sublayer, key, [skip], f"{where}, {key}")
    return writer.finish(writer.graph.call_function(operator.add, (body, skip)), "Residual")


def graph_to_torch(model: Model, torch):
    """The GraphModule of a convnp ``Model`` (modules in float32, weights not yet copied)."""
    keys = model.layer_keys()
    writer = _GraphWriter(torch, keys)
    values = {0: writer.graph.placeholder("x")}
    for index, (layer, inputs, key) in enumerate(zip(model.layers, model.layer_inputs(), keys)):
        values[index + 1] = writer.layer(layer, key, [values[value] for value in inputs], f"layer {index}")
    return writer.finish(values[len(model.layers)], "Model")
