"""A convnp ``Sequential`` and a ``torch.nn.Sequential``, both ways, and the state_dict key map between them.

One convnp layer becomes one or more torch modules (``torch_layers.py``: a pad
module in front (``torch_padding.py``), a fused activation after, ``Flatten``
after global pooling),
so the two state_dicts key the same arrays under shifted indices;
``torch_key_map(model)`` relates them. A ``Residual`` block becomes one module,
a ``torch.fx.GraphModule`` holding its layers under the block's own keys
(``torch_graph_export.py``). Going back, a pad module folds into the conv or
pool after it where that is exact, and ``AdaptiveAvgPool2d(1), Flatten()`` become one
``GlobalAvgPool2D``.
"""

from __future__ import annotations

from convnp.interop.torch_graph_export import block_module, is_block
from convnp.interop.torch_layers import layer_from_module, module_dtype, module_roles, to_numpy, torch_modules
from convnp.interop.torch_padding import is_pad_module, pad_sides
from convnp.nn.layer import Layer
from convnp.nn.pooling import GlobalAvgPool2D
from convnp.nn.sequential import Sequential

__all__ = ["sequential_key_map", "sequential_to_torch", "sequential_from_torch"]


def _roles(layer: Layer) -> list[str]:
    return ["main"] if is_block(layer) else module_roles(layer)


def sequential_key_map(model: Sequential) -> dict[str, str]:
    """convnp state_dict key -> key of the same array in ``sequential_to_torch(model)``'s state_dict."""
    key_map: dict[str, str] = {}
    position = 0
    for index, layer in enumerate(model.layers):
        roles = _roles(layer)
        main = position + roles.index("main")
        for name in [*(n for n, _ in layer.named_parameters()), *(n for n, _ in layer.named_buffers())]:
            key_map[f"{index}.{name}"] = f"{main}.{name}"
        position += len(roles)
    return key_map


def sequential_to_torch(model: Sequential, torch):
    """The ``torch.nn.Sequential`` (modules in the model's dtype, weights not yet copied) of a convnp Sequential."""
    modules = []
    for index, layer in enumerate(model.layers):
        if is_block(layer):
            modules.append(block_module(layer, torch, f"layer {index}"))
        else:
            modules.extend(module for _, module in torch_modules(layer, torch.nn, f"layer {index}"))
    return torch.nn.Sequential(*modules)


def _global_pool(children: list, index: int, nn) -> Layer:
    """``AdaptiveAvgPool2d(1)`` at ``index`` followed by ``Flatten()``: one GlobalAvgPool2D."""
    child = children[index]
    if child.output_size not in (1, (1, 1)):
        raise ValueError(f"from_torch: module {index} ({child!r}) is not supported: output_size must be 1")
    following = children[index + 1] if index + 1 < len(children) else None
    if not (type(following) is nn.Flatten and following.start_dim == 1 and following.end_dim == -1):
        raise ValueError(
            f"from_torch: module {index} ({child!r}) is not supported: it must be followed by Flatten() "
            "(the pair becomes GlobalAvgPool2D)"
        )
    return GlobalAvgPool2D()


def sequential_from_torch(module, input_shape: tuple[int, ...], torch) -> Sequential:
    """The convnp ``Sequential`` of a ``torch.nn.Sequential`` of the modules of ``torch_layers``, weights copied."""
    nn = torch.nn
    dtype = module_dtype(module)
    shape = tuple(int(d) for d in input_shape)
    children = list(module)
    layers: list[Layer] = []
    key_map: dict[int, int] = {}  # torch index -> convnp index
    pad = None
    index = 0
    while index < len(children):
        child = children[index]
        if is_pad_module(child, nn):
            if pad is not None:
                raise ValueError(f"from_torch: two pad modules in a row at index {index}")
            following = children[index + 1] if index + 1 < len(children) else None
            pad = (f"index {index}", pad_sides(child, f"module {index}", following, nn))
            index += 1
            continue
        if type(child) is nn.AdaptiveAvgPool2d:
            layer, consumed = _global_pool(children, index, nn), 2
        else:
            layer, consumed = layer_from_module(child, nn, shape, f"module {index}", pad), 1
        pad = None
        key_map[index] = len(layers)
        try:
            shape = layer.build(shape, dtype=dtype)
        except ValueError as error:
            raise ValueError(f"from_torch: module {index} ({type(child).__name__}): {error}") from error
        layers.append(layer)
        index += consumed
    if pad is not None:
        raise ValueError("from_torch: the last module is a pad module; nothing follows it")
    if not layers:
        raise ValueError("from_torch: the torch Sequential is empty")

    model = Sequential(layers, input_shape=input_shape, dtype=dtype)
    state = model.state_dict()  # defaults stand in for weights PyTorch lacks (affine=False)
    for key, value in module.state_dict().items():
        torch_index, name = key.split(".", 1)
        convnp_key = f"{key_map[int(torch_index)]}.{name}"
        if convnp_key in state:
            state[convnp_key] = to_numpy(value)
    model.load_state_dict(state)
    return model
