"""convnp: convolutional neural networks from scratch in NumPy.

Every layer has an explicit forward and backward pass (``convnp.functional``),
layers and models live in ``convnp.nn``, optimizers in ``convnp.optim``.
"""

from convnp import callbacks, functional, nn, optim
from convnp import functional as F  # noqa: N812
from convnp._version import __version__
from convnp.functional.threads import get_num_threads, set_num_threads
from convnp.gradcheck import gradcheck, numerical_gradient
from convnp.nn import Sequential
from convnp.serialization import load, save
from convnp.training import History

__all__ = [
    "F", "functional", "nn", "optim", "callbacks", "Sequential", "History",
    "load", "save", "gradcheck", "numerical_gradient", "get_num_threads", "set_num_threads", "__version__",
]  # fmt: skip
