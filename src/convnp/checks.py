"""Argument checks shared by every part of convnp: one wording for one mistake.

Each check names its ``owner`` (the layer, function or option being called)
and the expected versus the actual value, and returns the value converted
(an ``int``, a ``float``, an ndarray).

``InputWarning`` is the one warning class for inputs convnp can use but that
are probably not what was meant (see its docstring).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["InputWarning", "positive_int", "positive_float", "check_eps", "float_array", "check_dout"]


class InputWarning(UserWarning):
    """Inputs convnp can use but that are probably not what was meant; the message names the likely fix.

    Given when images lie far outside the range of the data a model was
    trained on (0-255 values for a model trained on [0, 1], inverted
    polarity), when ``fit`` gets float images far outside [0, 1], when
    ``image_folder`` skips files, and when the command line reads an
    ambiguous array one of several ways. A Python warning: silence it with
    ``warnings.filterwarnings("ignore", category=convnp.InputWarning)``, or
    make it an error with ``"error"``.
    """


def positive_int(value, name: str, owner: str, allow_none: bool = False) -> int | None:
    """``value`` as an int >= 1: ``TypeError`` for a non-integer (bools included), ``ValueError`` below 1."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


def positive_float(value, name: str, owner: str) -> float:
    """``value`` as a finite float > 0; ``ValueError`` otherwise (bools and non-numbers included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or not value > 0:
        raise ValueError(f"{owner}: {name} must be a positive number, got {value!r}")
    return float(value)


def check_eps(eps, owner: str) -> float:
    """A normalisation's ``eps``: a positive number (it keeps 1 / sqrt(var + eps) finite)."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
        raise ValueError(f"{owner}: eps must be a positive number, got {eps!r}")
    return float(eps)


def float_array(value, owner: str, name: str = "x") -> np.ndarray:
    """``value`` as an ndarray; ``TypeError`` naming ``owner`` unless its dtype is floating-point."""
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{owner}: {name} must be a floating-point array, got dtype {array.dtype}")
    return array


def check_dout(dout, shape: tuple[int, ...], owner: str) -> np.ndarray:
    """``dout`` as an ndarray of the forward output's ``shape``.

    A mismatched dout would broadcast silently and give wrong gradients, so it
    is a ``ValueError`` naming ``owner``.
    """
    dout = np.asarray(dout)
    if dout.shape != tuple(shape):
        raise ValueError(f"{owner}: dout must have the forward output's shape {tuple(shape)}, got {dout.shape}")
    return dout
