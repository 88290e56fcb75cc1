"""convnp: convolutional neural networks from scratch in NumPy.

Every layer has an explicit forward and backward pass (``convnp.functional``),
layers and models live in ``convnp.nn``, optimizers in ``convnp.optim``.

Submodules and the names below are imported on first use (PEP 562), so
``import convnp`` is quick and ``import convnp.optim`` loads no layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from convnp._version import __version__

# Public name -> (module, attribute in it; None for the module itself).
_LAZY = {
    "F": ("convnp.functional", None),
    "functional": ("convnp.functional", None),
    "backend": ("convnp.backend", None),
    "nn": ("convnp.nn", None),
    "optim": ("convnp.optim", None),
    "callbacks": ("convnp.callbacks", None),
    "training": ("convnp.training", None),
    "data": ("convnp.data", None),
    "distributed": ("convnp.distributed", None),
    "models": ("convnp.models", None),
    "interop": ("convnp.interop", None),
    "plots": ("convnp.plots", None),
    "serialization": ("convnp.serialization", None),
    "files": ("convnp.files", None),
    "Sequential": ("convnp.nn", "Sequential"),
    "History": ("convnp.training", "History"),
    "InputWarning": ("convnp.checks", "InputWarning"),
    "load": ("convnp.serialization", "load"),
    "save": ("convnp.serialization", "save"),
    "gradcheck": ("convnp.gradcheck", "gradcheck"),
    "numerical_gradient": ("convnp.gradcheck", "numerical_gradient"),
    "get_num_threads": ("convnp.backend.threads", "get_num_threads"),
    "set_num_threads": ("convnp.backend.threads", "set_num_threads"),
}

__all__ = [
    "F", "functional", "nn", "optim", "callbacks", "Sequential", "History",
    "load", "save", "gradcheck", "numerical_gradient", "get_num_threads", "set_num_threads", "InputWarning",
    "__version__",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'convnp' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later look-ups find it directly
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # for type checkers and editors: the names resolved lazily above
    from convnp import callbacks, functional, nn, optim
    from convnp import functional as F  # noqa: N812
    from convnp.backend.threads import get_num_threads, set_num_threads
    from convnp.checks import InputWarning
    from convnp.gradcheck import gradcheck, numerical_gradient
    from convnp.nn import Sequential
    from convnp.serialization import load, save
    from convnp.training import History
