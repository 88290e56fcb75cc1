"""Move models and weights between convnp and PyTorch.

``to_torch(model)`` builds the equivalent torch module: a ``torch.nn.Sequential``
for a convnp ``Sequential`` (``torch_sequential.py``), a ``torch.fx.GraphModule``
with the same state_dict keys for a graph ``Model`` (``torch_graph_export.py``).
``from_torch(module, input_shape)`` builds the equivalent convnp model: a
``Sequential`` from a ``torch.nn.Sequential`` of supported modules, a ``Model``
with the module's state_dict keys from any other module torch.fx can trace
(``torch_fx_import.py``). ``from_torch(state_dict, model=model)`` loads PyTorch
weights into a convnp model. Which layer is which module: ``torch_layers.py``.

``torch`` is imported only inside these functions.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from convnp._optional import require
from convnp.interop.torch_fx_import import graph_from_torch
from convnp.interop.torch_graph_export import graph_to_torch
from convnp.interop.torch_layers import IGNORED_SUFFIX, INSTALL_HINT, gaussian_class, to_numpy
from convnp.interop.torch_sequential import sequential_from_torch, sequential_key_map, sequential_to_torch
from convnp.nn.graph import Model
from convnp.nn.network import Network
from convnp.nn.sequential import Sequential

__all__ = ["to_torch", "from_torch", "torch_key_map"]


def __getattr__(name: str):
    # TorchGaussian is created on first use (importing convnp never imports torch); pickled modules find it here.
    if name == "TorchGaussian":
        return gaussian_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def torch_key_map(model: Network) -> dict[str, str]:
    """convnp state_dict key -> key of the same array in ``to_torch(model)``'s state_dict.

    Parameters
    ----------
    model : convnp.nn.Sequential or convnp.nn.Model
        A built model.

    Returns
    -------
    dict[str, str]
        For a ``Sequential``, e.g. ``{"0.weight": "0.weight", "1.weight": "2.weight", ...}``
        for a Conv2D with a fused activation followed by a BatchNorm2D (one layer may
        become several modules). For a ``Model``, every key maps to itself. Needs no torch.
    """
    model._require_built("torch_key_map")
    if isinstance(model, Sequential):
        return sequential_key_map(model)
    return {key: key for key in model.state_dict()}


def to_torch(model: Network):
    """Build the torch module that computes what ``model`` computes.

    Parameters
    ----------
    model : convnp.nn.Sequential or convnp.nn.Model
        A built model.

    Returns
    -------
    torch.nn.Sequential or torch.fx.GraphModule
        A ``torch.nn.Sequential`` for a ``Sequential`` (its keys relate to the
        model's through ``torch_key_map``; a ``Residual`` block is one module);
        a ``torch.fx.GraphModule`` with exactly the model's state_dict keys for
        a ``Model``. In eval mode (call ``.train()`` to fine-tune), with the
        model's weights and batch-norm running statistics copied, in the model's
        dtype (float32 or float64). Its output is the model's output (logits
        unless the model ends with Softmax): ``torch.softmax(module(x), dim=1)``
        equals ``model.predict(x)``.

    Raises
    ------
    ImportError
        When torch is not installed.
    TypeError
        For a layer type without a PyTorch equivalent (named with its index).
    """
    torch = require("torch", "convnp.interop.to_torch", hint=INSTALL_HINT)
    if isinstance(model, Sequential):
        model._require_built("to_torch")
        module = sequential_to_torch(model, torch)
    elif isinstance(model, Model):
        module = graph_to_torch(model, torch)
    else:
        raise TypeError(f"to_torch: expected a convnp Sequential or Model, got {type(model).__name__}")
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}.get(model.dtype)
    if dtype is None:
        raise TypeError(f"to_torch: model dtype must be float32 or float64, got {model.dtype}")
    module = module.to(dtype)
    state = module.state_dict()
    key_map = torch_key_map(model)
    for key, value in model.state_dict().items():
        state[key_map[key]] = torch.from_numpy(np.array(value, dtype=model.dtype))
    module.load_state_dict(state)
    return module.eval()


def _load_state(model: Network, state: Mapping) -> Network:
    """Load a state_dict keyed either as ``to_torch(model)``'s or as ``model``'s own."""
    arrays = {key: to_numpy(value) for key, value in state.items() if not key.endswith(IGNORED_SUFFIX)}
    key_map = torch_key_map(model)
    from_torch_keys = {torch_key: key for key, torch_key in key_map.items()}
    if set(arrays) == set(from_torch_keys):
        arrays = {from_torch_keys[key]: value for key, value in arrays.items()}
    elif set(arrays) != set(key_map):
        missing = sorted(set(from_torch_keys) - set(arrays))
        unexpected = sorted(set(arrays) - set(from_torch_keys))
        raise KeyError(
            "from_torch: the state_dict does not fit the model: keys of the equivalent PyTorch "
            f"module missing {missing}, unexpected {unexpected} (see torch_key_map(model))"
        )
    model.load_state_dict(arrays)
    return model


def from_torch(module_or_state_dict, input_shape: tuple[int, ...] | None = None, model: Network | None = None):
    """Build a convnp model from a PyTorch module, or load PyTorch weights into one.

    Parameters
    ----------
    module_or_state_dict : torch.nn.Module or Mapping[str, tensor or ndarray]
        A ``torch.nn.Sequential`` of supported modules (docs/interop.md), any
        other module that ``torch.fx.symbolic_trace`` can trace whose calls are
        supported layers and operations, or a state_dict (tensors or arrays)
        when ``model`` is given.
    input_shape : tuple of int, optional
        Per-sample input shape, e.g. ``(1, 28, 28)``; required to build from a module.
    model : convnp.nn.Sequential or convnp.nn.Model, optional
        A built convnp model to load the weights into (in place). The state_dict's
        keys are those of ``to_torch(model)`` (see ``torch_key_map``) or the
        model's own. A module passed with ``model`` gives its state_dict.

    Returns
    -------
    convnp.nn.Sequential or convnp.nn.Model
        From a ``torch.nn.Sequential``, a ``Sequential`` (one layer per torch
        module, except that ``AdaptiveAvgPool2d(1), Flatten`` become one
        GlobalAvgPool2D and a pad module merges into the conv or pool after it).
        From any other module, a ``Model`` whose layers are named by the torch
        modules' qualified names, so that its state_dict keys are the module's
        ("layer1.0.conv1.weight"; ``num_batches_tracked`` left out) and its
        ``named_parameters`` come in the module's order. Weights and running
        statistics copied, in the module's dtype. Or ``model`` itself, loaded.

    Raises
    ------
    TypeError
        For an unsupported module type or call (named with its index, or its
        torch.fx node, op, target and source line), a module torch.fx cannot
        trace, or a state_dict without ``model``.
    ValueError
        For supported modules or calls with settings convnp lacks (e.g.
        ``return_indices=True``, or a pad module that does not fold exactly into
        the pool after it), weights of modules that forward never calls, or a
        missing ``input_shape``.
    KeyError
        When a state_dict does not fit ``model``.
    ImportError
        When torch is needed (a module, or tensors) and not installed.
    """
    if model is not None:
        if not isinstance(model, Network):
            raise TypeError(f"from_torch: model must be a convnp Sequential or Model, got {type(model).__name__}")
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
            "convnp model), or a torch module with input_shape="
        )
    torch = require("torch", "convnp.interop.from_torch", hint=INSTALL_HINT)
    module = module_or_state_dict
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"from_torch: expected a torch.nn.Sequential or another torch module, got {type(module).__name__}"
        )
    if type(module).__module__.startswith("torch.nn.") and not isinstance(module, torch.nn.Sequential):
        # A lone layer's state_dict keys ("weight") name no layer, and every convnp key starts with one.
        raise TypeError(
            f"from_torch: expected a torch.nn.Sequential or a module that holds its layers, got a single "
            f"{type(module).__name__}; wrap it: torch.nn.Sequential(layer)"
        )
    if input_shape is None:
        raise ValueError("from_torch: input_shape (per sample, e.g. (1, 28, 28)) is required with a module")
    if isinstance(module, torch.nn.Sequential):
        return sequential_from_torch(module, input_shape, torch)
    return graph_from_torch(module, input_shape, torch)
