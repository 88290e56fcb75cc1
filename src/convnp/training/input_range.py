"""Inputs unlike the data a model learned from: the statistics ``fit`` records and the warnings they allow.

``fit`` records the range and mean of its training inputs as
``model.input_stats`` (``{"min", "max", "mean"}``; model files keep them).
``predict`` and ``evaluate`` compare their inputs with them and give one
``convnp.InputWarning`` per call, naming the likely fix, when the inputs

- lie far outside the training range: by more than the range's own width
  below its minimum or above its maximum (for a model trained on [0, 1]:
  below -1 or above 2). When the model learned on [0, 1] and the inputs lie
  in [0, 255], they are 0-255 pixel values: divide by 255;
- look inverted: within the range, but with a mean closer to the mirror image
  of the training mean (min + max - mean) than to the mean itself, and at
  least ``INVERTED_GAP`` of the range away from it (an MNIST model, mean 0.13,
  given dark ink on white paper, mean 0.85): use 1 - x (``--invert``). Only
  where the training mean lies off the middle of the range by at least half
  that gap: for photos (CIFAR-10's mean is 0.47) inverted and plain images
  have the same mean, and a bright photo is no sign of inversion.

``fit`` itself warns when float images lie far outside [0, 1] (beyond
+-``UNSCALED_LIMIT``): 0-255 values train with a huge loss or not at all.
Inputs of standardised data (mean 0, std 1: values within a few units) give
no warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np

from convnp.checks import InputWarning

__all__ = [
    "UNSCALED_LIMIT",
    "INVERTED_GAP",
    "input_stats",
    "mismatch",
    "mismatch_message",
    "warn_if_unfamiliar",
    "warn_if_unscaled",
]

UNSCALED_LIMIT = 10.0  # float images beyond +-10 are far outside [0, 1]
INVERTED_GAP = 0.3  # an inverted mean lies at least this share of the training range from the training mean

SCALED_255, INVERTED, OUT_OF_RANGE = "0-255", "inverted", "out of range"


def input_stats(x: np.ndarray) -> dict[str, float] | None:
    """``{"min", "max", "mean"}`` of the finite values of ``x`` as floats (mean accumulated in float64).

    None when ``x`` has no finite value. (NaN and inf inputs are ``fit``'s
    business: it stops with an error naming the batch that holds them.)
    """
    x = np.asarray(x)
    if x.size and not (math.isfinite(x.min()) and math.isfinite(x.max())):
        x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    return {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean(dtype=np.float64))}


def _number(value: float) -> str:
    """Three significant digits, and 0 for what rounds to 0 at the precision of an 8-bit pixel."""
    return "0" if abs(value) < 5e-4 else f"{value:.3g}"


def _within_unit(trained: Mapping[str, float]) -> bool:
    """Whether the training inputs lay in [0, 1] (images scaled by 1/255)."""
    return trained["min"] >= -0.01 and trained["max"] <= 1.01


def _span(trained: Mapping[str, float]) -> float:
    """The width of the training range (a constant training set counts as width 1e-6, or its size)."""
    return max(trained["max"] - trained["min"], 1e-6 * max(1.0, abs(trained["max"])))


def mismatch(trained: Mapping[str, float], seen: Mapping[str, float]) -> str | None:
    """How inputs with statistics ``seen`` differ from training inputs with ``trained``, or None.

    One of ``SCALED_255`` ("0-255"), ``INVERTED`` ("inverted"), ``OUT_OF_RANGE``
    ("out of range"); see the module docstring for the rules.
    """
    span = _span(trained)
    if seen["min"] < trained["min"] - span or seen["max"] > trained["max"] + span:
        if _within_unit(trained) and seen["min"] >= 0 and seen["max"] <= 255.0:
            return SCALED_255
        return OUT_OF_RANGE
    mirrored = trained["min"] + trained["max"] - trained["mean"]
    distance = abs(seen["mean"] - trained["mean"])
    off_middle = abs(trained["mean"] - mirrored) / 2 >= INVERTED_GAP / 2 * span
    if off_middle and distance >= INVERTED_GAP * span and abs(seen["mean"] - mirrored) < distance:
        return INVERTED
    return None


def mismatch_message(
    kind: str, trained: Mapping[str, float], seen: Mapping[str, float], subject: str, invert_fix: str | None = None
) -> str:
    """What to tell the user about a ``mismatch``: what ``subject`` ("predict: the inputs") looks like, and the fix.

    ``invert_fix`` is the fix for inverted inputs (default: "use 1 - x", or
    min + max - x for training inputs outside [0, 1]).
    """
    low, high, mean = trained["min"], trained["max"], trained["mean"]
    trained_range = f"{_number(low)} to {_number(high)}, mean {_number(mean)}"
    seen_range = f"range from {_number(seen['min'])} to {_number(seen['max'])}"
    if kind == SCALED_255:
        return (
            f"{subject} {seen_range}, but the model was trained on inputs from {trained_range}: they look like "
            "0-255 pixel values; divide them by 255 (uint8 arrays are divided automatically)"
        )
    if kind == INVERTED:
        fix = invert_fix or f"use {1 if _within_unit(trained) else _number(low + high)} - x"
        return (
            f"{subject} have mean {_number(seen['mean'])}, but the model was trained on inputs from {trained_range}: "
            f"they look inverted (light where the training images are dark, or the reverse); {fix}"
        )
    return (
        f"{subject} {seen_range}, far outside the inputs the model was trained on ({trained_range}); "
        "scale them the way the training inputs were scaled"
    )


def warn_if_unfamiliar(model, x: np.ndarray, owner: str, stacklevel: int = 4) -> None:
    """One ``InputWarning`` when ``x`` differs from ``model.input_stats`` (nothing when the model has none)."""
    trained = getattr(model, "input_stats", None)
    seen = None if trained is None else input_stats(x)
    if seen is None:
        return
    kind = mismatch(trained, seen)
    if kind is not None:
        warnings.warn(
            InputWarning(mismatch_message(kind, trained, seen, f"{owner}: the inputs")), stacklevel=stacklevel
        )


def warn_if_unscaled(x: np.ndarray, owner: str, stacklevel: int = 4) -> None:
    """One ``InputWarning`` when float images (N, C, H, W) lie far outside [0, 1] (beyond +-UNSCALED_LIMIT)."""
    stats = input_stats(x) if np.ndim(x) == 4 else None
    if stats is None:
        return
    low, high = stats["min"], stats["max"]
    if -UNSCALED_LIMIT <= low and high <= UNSCALED_LIMIT:
        return
    if low >= 0 and high <= 255:
        fix = "they look like 0-255 pixel values; divide them by 255 (uint8 arrays are divided automatically)"
    else:
        fix = "scale them to about [0, 1] (or standardise them)"
    warnings.warn(
        InputWarning(
            f"{owner}: the images range from {_number(low)} to {_number(high)}, far outside [0, 1]: {fix}. Unscaled "
            "images make every layer's outputs huge: the loss explodes or training stalls"
        ),
        stacklevel=stacklevel,
    )
