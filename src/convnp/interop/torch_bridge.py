"""Move models and weights between convnp and PyTorch's ``torch.nn.Sequential``.

``to_torch(model)`` builds the equivalent ``torch.nn.Sequential``;
``from_torch(module, input_shape)`` builds the equivalent convnp ``Sequential``;
``from_torch(state_dict, model=model)`` loads PyTorch weights into a convnp model.

What maps to what (convnp -> PyTorch; ``from_torch`` reads the same modules back):

    Conv2D            [ZeroPad2d] Conv2d [activation]
    MaxPool2D         [ConstantPad2d(-inf)] MaxPool2d
    AvgPool2D         [ZeroPad2d] AvgPool2d(count_include_pad=True)
    GlobalAvgPool2D   AdaptiveAvgPool2d(1), Flatten
    Dense             Linear [activation]
    Flatten           Flatten
    ReLU, LeakyReLU(alpha), ELU(alpha), Sigmoid, Tanh
                      ReLU, LeakyReLU(negative_slope=alpha), ELU(alpha), Sigmoid, Tanh
    Gaussian          TorchGaussian (exp(-x**2); defined here, created on first use)
    Softmax           Softmax(dim=1)
    Dropout(p)        Dropout(p)
    BatchNorm1D/2D    BatchNorm1d/2d (weight, bias, running_mean, running_var, eps, momentum)
    GroupNorm(G)      GroupNorm(G, C)
    LayerNorm         LayerNorm(per-sample shape)

A fused ``activation`` of Conv2D/Dense becomes its own module after the
Conv2d/Linear. Padding that convnp resolves to unequal sides ("same" with an
even kernel, or with stride > 1) becomes an explicit pad module in front,
because PyTorch's layers pad both sides alike. So a convnp layer may expand
into several modules and the state_dict indices shift: ``torch_key_map(model)``
gives the mapping, and ``from_torch(state_dict, model=model)`` applies it.

``torch`` is imported only inside these functions.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from convnp._optional import require
from convnp.functional.geometry import conv_geometry, normalize_padding, pair
from convnp.nn.activations import ELU, Gaussian, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from convnp.nn.conv import Conv2D
from convnp.nn.dense import Dense, Flatten
from convnp.nn.dropout import Dropout
from convnp.nn.layer import Layer
from convnp.nn.normalization import BatchNorm1D, BatchNorm2D, GroupNorm, LayerNorm
from convnp.nn.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from convnp.nn.sequential import Sequential

__all__ = ["to_torch", "from_torch", "torch_key_map"]

_INSTALL_HINT = "pip install torch (see https://pytorch.org for the build that fits your machine)"
_IGNORED_SUFFIX = "num_batches_tracked"
_SUPPORTED_TORCH = (
    "Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1) followed by Flatten, Linear, Flatten, "
    "ReLU, LeakyReLU, ELU, Sigmoid, Tanh, TorchGaussian, Softmax(dim=1), Dropout, BatchNorm1d, "
    "BatchNorm2d, GroupNorm, LayerNorm, and ZeroPad2d/ConstantPad2d in front of a conv or pool"
)


# ------------------------------------------------------------- the Gaussian module
_GAUSSIAN_CLASS = None


def _gaussian_class():
    """The torch module for convnp's Gaussian activation, created on first use.

    It is defined inside this function so that importing convnp never imports
    torch, and published as ``convnp.interop.torch_bridge.TorchGaussian`` (through
    the module ``__getattr__`` below) so that pickled modules load again.
    """
    global _GAUSSIAN_CLASS
    if _GAUSSIAN_CLASS is None:
        torch = require("torch", "convnp.interop.torch_bridge.TorchGaussian", hint=_INSTALL_HINT)

        class TorchGaussian(torch.nn.Module):
            """out = exp(-x**2), convnp's ``Gaussian`` activation."""

            def forward(self, x):
                return torch.exp(-(x * x))

        TorchGaussian.__module__ = __name__
        TorchGaussian.__qualname__ = "TorchGaussian"
        _GAUSSIAN_CLASS = TorchGaussian
    return _GAUSSIAN_CLASS


def __getattr__(name: str):
    if name == "TorchGaussian":
        return _gaussian_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------ the layout
def _resolved_pads(layer: Layer) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a built conv or pool layer, "same" resolved."""
    dilation = layer.dilation if isinstance(layer, Conv2D) else (1, 1)
    pads, _ = conv_geometry(
        layer.input_shape[1:], layer.kernel_size, layer.stride, layer.padding, dilation, layer.label
    )
    return pads


def _needs_pad_module(layer: Layer) -> bool:
    top, bottom, left, right = _resolved_pads(layer)
    return top != bottom or left != right


def _plan(layer: Layer) -> list[str]:
    """The PyTorch modules one convnp layer becomes, by role, in order.

    Roles: "pad" (an explicit pad module), "main" (the module holding the
    layer's parameters, or its only module), "activation" (a fused activation),
    "flatten" (after AdaptiveAvgPool2d).
    """
    if isinstance(layer, (Conv2D, MaxPool2D, AvgPool2D)):
        roles = ["pad", "main"] if _needs_pad_module(layer) else ["main"]
    elif isinstance(layer, GlobalAvgPool2D):
        roles = ["main", "flatten"]
    else:
        roles = ["main"]
    if getattr(layer, "activation", None) is not None:
        roles.append("activation")
    return roles


def torch_key_map(model: Sequential) -> dict[str, str]:
    """convnp state_dict key -> key of the same array in ``to_torch(model)``'s state_dict.

    Parameters
    ----------
    model : convnp.nn.Sequential
        A built model.

    Returns
    -------
    dict[str, str]
        E.g. ``{"0.weight": "0.weight", "1.weight": "2.weight", ...}`` for a
        Conv2D with a fused activation followed by a BatchNorm2D. Needs no torch.
    """
    model._require_built("torch_key_map")
    key_map: dict[str, str] = {}
    position = 0
    for index, layer in enumerate(model.layers):
        roles = _plan(layer)
        main = position + roles.index("main")
        for name in [*(n for n, _ in layer.named_parameters()), *(n for n, _ in layer.named_buffers())]:
            key_map[f"{index}.{name}"] = f"{main}.{name}"
        position += len(roles)
    return key_map


# -------------------------------------------------------------------- to_torch
def _torch_activation(layer: Layer, nn):
    """The torch module of a parameter-free convnp layer, or None."""
    if isinstance(layer, ReLU):
        return nn.ReLU()
    if isinstance(layer, LeakyReLU):
        return nn.LeakyReLU(negative_slope=layer.alpha)
    if isinstance(layer, ELU):
        return nn.ELU(alpha=layer.alpha)
    if isinstance(layer, Sigmoid):
        return nn.Sigmoid()
    if isinstance(layer, Tanh):
        return nn.Tanh()
    if isinstance(layer, Gaussian):
        return _gaussian_class()()
    if isinstance(layer, Softmax):
        return nn.Softmax(dim=1)
    if isinstance(layer, Dropout):
        return nn.Dropout(p=layer.p)
    return None


def _torch_main(layer: Layer, nn, index: int):
    """The torch module holding a convnp layer's parameters (or its only module)."""
    module = _torch_activation(layer, nn)
    if module is not None:
        return module
    if isinstance(layer, (Conv2D, MaxPool2D, AvgPool2D)):
        top, bottom, left, right = _resolved_pads(layer)
        # Unequal sides are padded by the pad module in front; equal ones by the layer.
        padding = (0, 0) if _needs_pad_module(layer) else (top, left)
        if isinstance(layer, Conv2D):
            return nn.Conv2d(
                layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                padding=padding, dilation=layer.dilation, groups=layer.groups,
                bias=layer.bias is not None,
            )  # fmt: skip
        if isinstance(layer, MaxPool2D):
            return nn.MaxPool2d(layer.kernel_size, stride=layer.stride, padding=padding)
        return nn.AvgPool2d(layer.kernel_size, stride=layer.stride, padding=padding, count_include_pad=True)
    if isinstance(layer, GlobalAvgPool2D):
        return nn.AdaptiveAvgPool2d(1)
    if isinstance(layer, Dense):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, BatchNorm1D):
        return nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, BatchNorm2D):
        return nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, GroupNorm):
        return nn.GroupNorm(layer.num_groups, layer.input_shape[0], eps=layer.eps)
    if isinstance(layer, LayerNorm):
        return nn.LayerNorm(list(layer.input_shape), eps=layer.eps)
    raise TypeError(f"to_torch: layer {index} ({type(layer).__name__}) has no PyTorch equivalent")


def _torch_modules(layer: Layer, nn, index: int) -> list:
    """The torch modules of one convnp layer, following ``_plan``."""
    modules = []
    for role in _plan(layer):
        if role == "pad":
            top, bottom, left, right = _resolved_pads(layer)
            if isinstance(layer, MaxPool2D):  # padding never wins a max
                modules.append(nn.ConstantPad2d((left, right, top, bottom), float("-inf")))
            else:
                modules.append(nn.ZeroPad2d((left, right, top, bottom)))
        elif role == "main":
            modules.append(_torch_main(layer, nn, index))
        elif role == "flatten":
            modules.append(nn.Flatten())
        else:  # the fused activation
            module = _torch_activation(layer.activation, nn)
            if module is None:
                raise TypeError(
                    f"to_torch: layer {index} ({type(layer).__name__}) has a fused activation "
                    f"{type(layer.activation).__name__} with no PyTorch equivalent"
                )
            modules.append(module)
    return modules


def to_torch(model: Sequential):
    """Build the ``torch.nn.Sequential`` that computes what ``model`` computes.

    Parameters
    ----------
    model : convnp.nn.Sequential
        A built model.

    Returns
    -------
    torch.nn.Sequential
        In eval mode (call ``.train()`` to fine-tune), with the model's weights
        and batch-norm running statistics copied, in the model's dtype (float32
        or float64). Its output is the model's output (logits unless the model
        ends with Softmax): ``torch.softmax(module(x), dim=1)`` equals
        ``model.predict(x)``. ``torch_key_map(model)`` relates the state_dict keys.

    Raises
    ------
    ImportError
        When torch is not installed.
    TypeError
        For a layer type without a PyTorch equivalent (named with its index).
    """
    torch = require("torch", "convnp.interop.to_torch", hint=_INSTALL_HINT)
    if not isinstance(model, Sequential):
        raise TypeError(f"to_torch: expected a convnp Sequential, got {type(model).__name__}")
    model._require_built("to_torch")
    modules = []
    for index, layer in enumerate(model.layers):
        modules.extend(_torch_modules(layer, torch.nn, index))
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}.get(model.dtype)
    if dtype is None:
        raise TypeError(f"to_torch: model dtype must be float32 or float64, got {model.dtype}")
    module = torch.nn.Sequential(*modules).to(dtype)
    state = module.state_dict()
    key_map = torch_key_map(model)
    for key, value in model.state_dict().items():
        state[key_map[key]] = torch.from_numpy(np.array(value, dtype=model.dtype))
    module.load_state_dict(state)
    return module.eval()


# ------------------------------------------------------------------ from_torch
def _to_numpy(value) -> np.ndarray:
    """A torch tensor (or array-like) as a NumPy array."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _load_state(model: Sequential, state: Mapping) -> Sequential:
    """Load a state_dict keyed either as ``to_torch(model)``'s or as ``model``'s own."""
    arrays = {key: _to_numpy(value) for key, value in state.items() if not key.endswith(_IGNORED_SUFFIX)}
    key_map = torch_key_map(model)
    from_torch_keys = {torch_key: key for key, torch_key in key_map.items()}
    if set(arrays) == set(from_torch_keys):
        arrays = {from_torch_keys[key]: value for key, value in arrays.items()}
    elif set(arrays) != set(key_map):
        missing = sorted(set(from_torch_keys) - set(arrays))
        unexpected = sorted(set(arrays) - set(from_torch_keys))
        raise KeyError(
            "from_torch: the state_dict does not fit the model: keys of the equivalent PyTorch "
            f"Sequential missing {missing}, unexpected {unexpected} (see torch_key_map(model))"
        )
    model.load_state_dict(arrays)
    return model


def _int_pair(value, name: str = "value", minimum: int = 1) -> tuple[int, int]:
    """A torch size argument (an int, or a tuple or list of two) as ``(height, width)``."""
    return pair(tuple(value) if isinstance(value, list) else value, name, minimum=minimum)


def _module_padding(module) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a torch conv or pool's own numeric padding."""
    ph, pw = _int_pair(module.padding, "padding", minimum=0)
    return (ph, ph, pw, pw)


def _convnp_padding(module, index: int, pad: tuple[int, int, int, int] | None, kernel, stride, dilation, input_hw):
    """The convnp ``padding`` argument for a torch conv/pool plus an optional pad in front."""
    if isinstance(module.padding, str):  # Conv2d(padding="same" | "valid")
        own = normalize_padding(module.padding, kernel, stride, dilation)
        if pad is None:
            return module.padding
    else:
        own = _module_padding(module)
        if pad is None:
            return (own[0], own[2])
    top, bottom, left, right = (a + b for a, b in zip(own, pad))
    if top == bottom and left == right:
        return (top, left)
    if (top, bottom, left, right) == normalize_padding("same", kernel, stride, dilation, input_hw):
        return "same"
    raise ValueError(
        f"from_torch: module {index - 1} pads ({top}, {bottom}, {left}, {right}) "
        "(top, bottom, left, right) around module "
        f"{index} ({type(module).__name__}); convnp takes equal sides or 'same' only"
    )


def _check(condition: bool, index: int, module, what: str) -> None:
    if not condition:
        raise ValueError(f"from_torch: module {index} ({module!r}) is not supported: {what}")


def _convert(module, index: int, nn, shape: tuple[int, ...], pad) -> Layer:
    """The convnp layer of one torch module (``pad``: a pad module's sides in front, or None)."""
    name = type(module).__name__
    if pad is not None and not isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        raise ValueError(
            f"from_torch: the pad module at index {index - 1} must be followed by Conv2d, "
            f"MaxPool2d or AvgPool2d, not {name}"
        )
    if type(module) is nn.Conv2d:
        _check(module.padding_mode == "zeros", index, module, "padding_mode must be 'zeros'")
        kernel, stride, dilation = (_int_pair(v) for v in (module.kernel_size, module.stride, module.dilation))
        padding = _convnp_padding(module, index, pad, kernel, stride, dilation, shape[1:])
        return Conv2D(
            module.out_channels, kernel, stride=stride, padding=padding, dilation=dilation,
            groups=module.groups, use_bias=module.bias is not None, in_channels=module.in_channels,
        )  # fmt: skip
    if type(module) in (nn.MaxPool2d, nn.AvgPool2d):
        _check(not module.ceil_mode, index, module, "ceil_mode must be False")
        kernel, stride = _int_pair(module.kernel_size), _int_pair(module.stride)
        if isinstance(module, nn.MaxPool2d):
            _check(_int_pair(module.dilation) == (1, 1), index, module, "dilation must be 1")
            _check(not module.return_indices, index, module, "return_indices must be False")
            cls = MaxPool2D
        else:
            _check(module.count_include_pad, index, module, "count_include_pad must be True")
            _check(module.divisor_override is None, index, module, "divisor_override must be None")
            cls = AvgPool2D
        padding = _convnp_padding(module, index, pad, kernel, stride, (1, 1), shape[1:])
        return cls(kernel, stride=stride, padding=padding)
    if type(module) is nn.Linear:
        return Dense(module.out_features, use_bias=module.bias is not None, in_features=module.in_features)
    if type(module) is nn.Flatten:
        _check(module.start_dim == 1 and module.end_dim == -1, index, module, "only Flatten(1, -1)")
        return Flatten()
    if type(module) is nn.ReLU:
        return ReLU()
    if type(module) is nn.LeakyReLU:
        return LeakyReLU(alpha=module.negative_slope)
    if type(module) is nn.ELU:
        return ELU(alpha=module.alpha)
    if type(module) is nn.Sigmoid:
        return Sigmoid()
    if type(module) is nn.Tanh:
        return Tanh()
    if type(module) is _gaussian_class():
        return Gaussian()
    if type(module) is nn.Softmax:
        # dim=None is PyTorch's legacy choice: 1 for 2-D and 4-D inputs.
        dims = {1, -len(shape)} | ({None} if len(shape) in (1, 3) else set())
        _check(module.dim in dims, index, module, "softmax must run along axis 1 (the channels)")
        return Softmax()
    if type(module) is nn.Dropout:
        return Dropout(module.p)
    if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
        _check(module.track_running_stats, index, module, "track_running_stats must be True")
        _check(module.momentum is not None, index, module, "momentum=None (cumulative) has no equivalent")
        cls = BatchNorm1D if isinstance(module, nn.BatchNorm1d) else BatchNorm2D
        return cls(momentum=module.momentum, eps=module.eps, num_features=module.num_features)
    if type(module) is nn.GroupNorm:
        _check(shape[0] == module.num_channels, index, module, f"input shape {shape} has {shape[0]} channels")
        return GroupNorm(module.num_groups, eps=module.eps)
    if type(module) is nn.LayerNorm:
        _check(
            tuple(module.normalized_shape) == tuple(shape), index, module,
            f"normalized_shape must be the whole per-sample shape {tuple(shape)}",
        )  # fmt: skip
        return LayerNorm(eps=module.eps)
    raise TypeError(f"from_torch: module {index} ({name}) is not supported; supported: {_SUPPORTED_TORCH}")


def _pad_sides(module, index: int, children: list, nn) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a ConstantPad2d/ZeroPad2d that a conv or pool follows."""
    left, right, top, bottom = module.padding
    following = children[index + 1] if index + 1 < len(children) else None
    expected = float("-inf") if type(following) is nn.MaxPool2d else 0.0
    if module.value != expected or min(module.padding) < 0:
        raise ValueError(
            f"from_torch: module {index} ({module!r}) must pad with {expected} (non-negative sides) "
            f"in front of {type(following).__name__}"
        )
    return (top, bottom, left, right)


def _module_dtype(module) -> str:
    import torch

    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            if tensor.dtype not in (torch.float32, torch.float64):
                raise TypeError(f"from_torch: parameters must be float32 or float64, got {tensor.dtype}")
            return "float64" if tensor.dtype == torch.float64 else "float32"
    return "float32"


def from_torch(module_or_state_dict, input_shape: tuple[int, ...] | None = None, model: Sequential | None = None):
    """Build a convnp ``Sequential`` from PyTorch, or load PyTorch weights into one.

    Parameters
    ----------
    module_or_state_dict : torch.nn.Sequential or Mapping[str, tensor or ndarray]
        A ``torch.nn.Sequential`` of supported modules (see the module docstring),
        or a state_dict (tensors or arrays) when ``model`` is given.
    input_shape : tuple of int, optional
        Per-sample input shape, e.g. ``(1, 28, 28)``; required to build from a module.
    model : convnp.nn.Sequential, optional
        A built convnp model to load the weights into (in place). The state_dict's
        keys are those of ``to_torch(model)`` (indices shifted past fused
        activations and expanded layers, see ``torch_key_map``) or the model's own.
        A module passed with ``model`` gives its state_dict.

    Returns
    -------
    convnp.nn.Sequential
        The new model (one layer per torch module, except that
        ``AdaptiveAvgPool2d(1), Flatten`` become one GlobalAvgPool2D and a pad
        module merges into the conv or pool after it), with weights and running
        statistics copied, in the module's dtype; or ``model`` itself, loaded.

    Raises
    ------
    TypeError
        For an unsupported module type (named with its index), or a state_dict
        without ``model``.
    ValueError
        For a supported module with settings convnp lacks (e.g. ``ceil_mode=True``),
        or a missing ``input_shape``.
    KeyError
        When a state_dict does not fit ``model``.
    ImportError
        When torch is needed (a module, or tensors) and not installed.
    """
    if model is not None:
        if not isinstance(model, Sequential):
            raise TypeError(f"from_torch: model must be a convnp Sequential, got {type(model).__name__}")
        state = module_or_state_dict
        if not isinstance(state, Mapping):
            if not hasattr(state, "state_dict"):
                raise TypeError(
                    f"from_torch: with model=, pass a state_dict or a torch module, got {type(state).__name__}"
                )
            state = state.state_dict()
        return _load_state(model, state)
    if isinstance(module_or_state_dict, Mapping):
        raise TypeError(
            "from_torch: a state_dict alone does not say the architecture; pass model= (a built "
            "convnp model), or a torch.nn.Sequential with input_shape="
        )
    torch = require("torch", "convnp.interop.from_torch", hint=_INSTALL_HINT)
    nn = torch.nn
    module = module_or_state_dict
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"from_torch: expected a torch.nn.Sequential, got {type(module).__name__}")
    if input_shape is None:
        raise ValueError("from_torch: input_shape (per sample, e.g. (1, 28, 28)) is required with a module")
    dtype = _module_dtype(module)
    shape = tuple(int(d) for d in input_shape)

    children = list(module)
    layers: list[Layer] = []
    key_map: dict[int, int] = {}  # torch index -> convnp index
    pad = None
    index = 0
    while index < len(children):
        child = children[index]
        if type(child) in (nn.ZeroPad2d, nn.ConstantPad2d):
            if pad is not None:
                raise ValueError(f"from_torch: two pad modules in a row at index {index}")
            pad = _pad_sides(child, index, children, nn)
            index += 1
            continue
        if type(child) is nn.AdaptiveAvgPool2d:
            _check(child.output_size in (1, (1, 1)), index, child, "output_size must be 1")
            following = children[index + 1] if index + 1 < len(children) else None
            _check(
                type(following) is nn.Flatten and following.start_dim == 1 and following.end_dim == -1,
                index, child, "it must be followed by Flatten() (the pair becomes GlobalAvgPool2D)",
            )  # fmt: skip
            layer, consumed = GlobalAvgPool2D(), 2
        else:
            layer, consumed = _convert(child, index, nn, shape, pad), 1
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
            state[convnp_key] = _to_numpy(value)
    model.load_state_dict(state)
    return model
