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
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Initializer = str | Callable[[tuple[int, ...], np.random.Generator], np.ndarray]


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
    values = np.asarray(get_initializer(init, owner)(tuple(shape), rng))
    if values.shape != tuple(shape):
        raise ValueError(f"{owner}: initializer returned shape {values.shape}, expected {tuple(shape)}")
    return values.astype(dtype, copy=False)
