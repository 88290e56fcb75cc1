"""Weight initialisers.

Each initialiser draws an array of ``shape`` from ``rng`` given the layer's
fan-in and fan-out (for a convolution weight ``(F, C/groups, KH, KW)``:
fan_in = C/groups * KH * KW, fan_out = F * KH * KW). A transposed
convolution's weight ``(C, F/groups, KH, KW)`` is read the same way, axis 1
as the fan-in (fan_in = F/groups * KH * KW, fan_out = C * KH * KW): that is
what PyTorch computes for ``ConvTranspose2d``.

- "he" (Kaiming normal): N(0, 2 / fan_in), for ReLU networks.
- "xavier" (Glorot uniform): U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
- "lecun" (LeCun normal): N(0, 1 / fan_in).
- "zeros".
A callable ``f(shape, rng) -> ndarray`` may be passed instead of a name.

Layers create every parameter and buffer through ``initialize`` (drawn
weights) and ``constant`` (biases, norm scales, running statistics). Inside
``with shapes_only():`` both hand out placeholders instead: read-only views of
one value with the array's shape and dtype and zero strides
(``np.broadcast_to``), which take no memory whatever their shape and draw
nothing from the generator. A model built that way has every parameter shape
it implies, for nothing; ``convnp.load`` builds the described model so,
compares each shape with the arrays in the file, and only then gives it the
file's arrays. A placeholder cannot be written into: a forward pass that would
update it (batch-norm running statistics) or an optimizer step raises
``ValueError`` instead of writing into memory the layer never allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

Initializer = str | Callable[[tuple[int, ...], np.random.Generator], np.ndarray]

# A context rather than an argument: a shapes-only build must reach every layer that
# builds, including layers held by user-defined blocks and layers built when they are
# called on a graph node, none of which pass such an argument on.
_SHAPES_ONLY: ContextVar[bool] = ContextVar("convnp_shapes_only", default=False)


@contextmanager
def shapes_only() -> Iterator[None]:
    """Build layers without allocating or drawing their parameters (see the module docstring).

    Within the block, ``initialize`` and ``constant`` return zero-stride,
    read-only placeholders. Give the model real arrays (``load_state_dict``)
    before using it.
    """
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def placeholder(shape: tuple[int, ...], dtype, value: float = 0.0, owner: str = "") -> np.ndarray:
    """A read-only view of ``value`` with ``shape`` and ``dtype`` and zero strides: no memory for any shape.

    Raises ``ValueError`` when the shape has more elements than any array can.
    """
    try:
        return np.broadcast_to(np.asarray(value, dtype=dtype), tuple(shape))
    except ValueError as error:
        raise ValueError(f"{owner}: a parameter of shape {tuple(shape)} cannot exist ({error})") from error


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: axis 1 times the kernel area, axis 0 times the kernel area.

    Dense ``(out, in)``, Conv2D ``(out, in/groups, kh, kw)``, ConvTranspose2D ``(in, out/groups, kh, kw)``.
    """
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def he(shape, rng):
    fan_in, _ = fans(shape)
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def xavier(shape, rng):
    fan_in, fan_out = fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def lecun(shape, rng):
    fan_in, _ = fans(shape)
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), size=shape)


def zeros(shape, rng):
    return np.zeros(shape)


INITIALIZERS = {"he": he, "xavier": xavier, "glorot": xavier, "lecun": lecun, "zeros": zeros}


def get_initializer(init: Initializer, owner: str = "") -> Callable:
    """Look up an initialiser by name, or pass a callable through."""
    if callable(init):
        return init
    if isinstance(init, str) and init.lower() in INITIALIZERS:
        return INITIALIZERS[init.lower()]
    raise ValueError(
        f"{owner + ': ' if owner else ''}unknown initializer {init!r}; "
        f"valid names: {sorted(INITIALIZERS)} or a callable f(shape, rng)"
    )


def initialize(
    init: Initializer, shape: tuple[int, ...], rng: np.random.Generator, dtype, owner: str = ""
) -> np.ndarray:
    """Weights of ``shape`` drawn by ``init`` from ``rng``, cast to ``dtype``; a placeholder in a shapes-only build."""
    if _SHAPES_ONLY.get():
        return placeholder(shape, dtype, owner=owner)
    values = np.asarray(get_initializer(init, owner)(tuple(shape), rng))
    if values.shape != tuple(shape):
        raise ValueError(f"{owner}: initializer returned shape {values.shape}, expected {tuple(shape)}")
    return values.astype(dtype, copy=False)


def constant(value: float, shape: tuple[int, ...], dtype, owner: str = "") -> np.ndarray:
    """``np.full(shape, value, dtype)`` for biases, norm scales and running statistics.

    A placeholder of ``value`` in a shapes-only build.
    """
    if _SHAPES_ONLY.get():
        return placeholder(shape, dtype, value, owner=owner)
    return np.full(shape, value, dtype=dtype)
