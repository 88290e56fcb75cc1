"""Inverted dropout.

In training each element is kept with probability 1 - p and scaled by
1 / (1 - p), so the expected output equals the input and inference needs no
rescaling: there the op is the identity.
"""

from __future__ import annotations

import numbers

import numpy as np

from convnp.functional.checks import float_array

__all__ = ["dropout_forward", "dropout_backward"]


def dropout_forward(
    x: np.ndarray,
    p: float,
    training: bool,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Zero each element with probability ``p`` and scale the survivors by 1 / (1 - p).

    mask[i] = keep[i] / (1 - p),  keep[i] ~ Bernoulli(1 - p)
    out     = x * mask            (so E[out] = x)

    Identity (no random numbers drawn) when ``training`` is False or p == 0.
    ``rng`` is a ``numpy.random.Generator`` (advanced by the draw), a seed, or
    None for fresh entropy; the same seed gives the same mask.

    Shape:
        x: any; out: same as x
    """
    x = float_array(x, "dropout_forward")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"dropout_forward: p must be a number in [0, 1), got {p!r}")
    if not training or p == 0:
        return x, None
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    # Uniform draws in float64 whatever x's dtype, so one seed gives one mask
    # in float32 and float64 alike; P(u >= p) = 1 - p. Image batches are drawn in
    # channels-last order, the memory order of convnp's feature maps, so that
    # the mask and the output keep that layout.
    if x.ndim == 4:
        keep = (generator.random((x.shape[0], x.shape[2], x.shape[3], x.shape[1])) >= p).transpose(0, 3, 1, 2)
    else:
        keep = generator.random(x.shape) >= p
    mask = keep * x.dtype.type(1 / (1 - p))  # entries 0 or 1 / (1 - p), in x's dtype
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache: np.ndarray | None) -> np.ndarray:
    """dx = dout * mask (the same elements dropped, the same scale); dout in identity mode."""
    mask = cache
    dout = np.asarray(dout)
    if mask is None:
        return dout
    if dout.shape != mask.shape:
        raise ValueError(f"dropout_backward: dout must have the forward output's shape {mask.shape}, got {dout.shape}")
    return dout * mask
